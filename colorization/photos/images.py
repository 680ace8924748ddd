"""Load photos the way a person sees them: oriented, 8-bit sRGB, colour-managed."""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from colorization.errors import ImageError

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 200_000_000
_SRGB = ImageCms.createProfile("sRGB")
_ICC_MODES = {"RGB", "CMYK", "L"}
_ORIENTATION = 0x0112
Framing = Literal["whole", "crop"]
"""How a photo becomes the model's square: ``whole`` squeezes the whole frame into it (how colorize shows every
photo to the model), ``crop`` keeps the centre square at the photo's own aspect (datasets made before 2026-11-27)."""
SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}, "TIFF": {"compression": "tiff_deflate"}}


@dataclass(frozen=True)
class Photo:
    """A decoded photo in 8-bit sRGB, with the size of the original file after orientation and the metadata
    an output should carry over (EXIF, ICC profile, DPI, file format)."""

    image: Image.Image
    width: int
    height: int
    format: str | None = None
    exif: bytes | None = None
    icc: bytes | None = None
    dpi: tuple[float, float] | None = None


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes; an empty or unreadable file raises :class:`ImageError` naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes)")
    return data


def decode(
    data: bytes,
    name: str | Path = "<bytes>",
    *,
    min_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    keep_grey: bool = False,
) -> Photo:
    """Decode image bytes into an oriented 8-bit sRGB :class:`Photo`.

    ``min_side`` lets a JPEG decode at a reduced DCT scale whose shorter side is still at least that many
    pixels, which is many times faster for camera-size files that are only needed small. Images above
    ``max_pixels`` are refused before decoding. With ``keep_grey``, a grey image without a colour profile
    stays a one-channel ``L`` image instead of being expanded to three equal channels.
    """
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"{name}: {width}x{height} is over the limit of {max_pixels:,} pixels")
        if min_side and image.format == "JPEG":
            scale = min_side / min(width, height)
            if scale < 1:
                image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        if image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):
            width, height = height, width
        metadata = {"format": image.format, "icc": image.info.get("icc_profile"), "dpi": image.info.get("dpi")}
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an upright photo
        exif = Image.Exif() if hasattr(image, "tag_v2") else image.getexif()  # a TIFF's tags are not EXIF to copy
        if not (keep_grey and image.mode == "L" and not metadata["icc"]):
            image = to_srgb(image, name)
        return Photo(image, width, height, exif=exif.tobytes() if len(exif) else None, **metadata)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image, or a format Pillow cannot read") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: truncated or corrupt image ({exc})") from exc


def load(path: str | Path, **kwargs) -> Photo:
    """Read and decode one file; see :func:`decode` for the options."""
    return decode(read_bytes(path), path, **kwargs)


def to_srgb(image: Image.Image, name: str | Path = "<image>") -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB in sRGB.

    Palette images expand to RGB(A); alpha is composited on white (how viewers show it); 16-bit and float
    greys are rescaled; an embedded ICC profile is honoured, falling back to a plain conversion (with a
    warning) when the profile is unusable.
    """
    icc = image.info.get("icc_profile")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _grey_to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = _flatten_alpha(image)
    if icc and image.mode in _ICC_MODES:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError) as exc:
            log.warning("%s: ignoring unusable ICC profile (%s)", name, exc)
    return image.convert("RGB")


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    """16-bit integer or float grey to 8-bit grey, keeping the full range."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0 if values.max(initial=0) > 255 else 1.0
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite an image with alpha over white, keeping grey images grey."""
    rgba = image.convert("LA" if image.mode.startswith("L") else "RGBA")
    background = Image.new(rgba.mode, rgba.size, (255, 255) if rgba.mode == "LA" else (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert(rgba.mode[:-1])


def fit_square(image: Image.Image, size: int, framing: Framing = "whole") -> np.ndarray:
    """The photo as ``size``x``size`` pixels (antialiased): its whole frame resized to the square, or for
    ``crop`` its shorter side resized to ``size`` and the centre square kept."""
    if framing == "crop":
        return np.asarray(ImageOps.fit(image, (size, size), method=Image.Resampling.LANCZOS))
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0))


def pixels(image: Image.Image) -> np.ndarray:
    """The image's pixels as a read-only array: a grey image is viewed in place, without a copy, when Pillow
    holds it in one block of memory (up to 16 MiB: a 16 MP grey photo), through Pillow's Arrow export. Other
    images are copied out (``np.asarray``), as is a grey image too large for one block. The copy of a 12 MP grey
    photo cost render 5-13 ms (BENCHMARKS.md, "render against its I/O floor")."""
    if image.mode == "L":
        try:
            exported = pa.array(image)
        except ValueError:  # rows in several blocks
            return np.asarray(image)
        data = exported.buffers()[1]
        return np.frombuffer(data, np.uint8, len(exported), exported.offset).reshape(image.height, image.width)
    return np.asarray(image)


def as_image(pixels: np.ndarray) -> Image.Image:
    """8-bit sRGB pixels (h, w, 3), or RGBX (h, w, 4) whose fourth byte is padding, as a Pillow image; RGBX is
    Pillow's own layout of RGB, so it is wrapped without a copy (12 MP photos: 30 ms less than RGB)."""
    if pixels.shape[-1] == 4:
        height, width = pixels.shape[:2]
        return Image.frombuffer("RGBX", (width, height), np.ascontiguousarray(pixels), "raw", "RGBX", 0, 1)
    return Image.fromarray(pixels, "RGB")


def encode_like(image: Image.Image, original: Photo) -> bytes:
    """Encode an sRGB result (RGB or RGBX, :func:`as_image`) in the original's format with its EXIF
    (orientation normal), DPI and colour space.

    An original with an RGB ICC profile gets its pixels converted back into that profile and the profile
    embedded; other originals (untagged, grey or CMYK profiles) are written as sRGB.
    """
    fmt = original.format or "PNG"
    if image.mode == "RGBX" and (fmt != "JPEG" or original.icc):  # only JPEG's writer reads RGBX as RGB
        image = image.convert("RGB")
    options: dict = dict(SAVE_OPTIONS.get(fmt, {}))
    if original.icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(original.icc))
            if profile.profile.xcolor_space.strip() == "RGB":
                image = ImageCms.profileToProfile(image, _SRGB, profile, outputMode="RGB")
                options["icc_profile"] = original.icc
        except (ImageCms.PyCMSError, OSError):
            pass
    if original.exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["exif"] = original.exif
    if original.dpi:
        options["dpi"] = original.dpi
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()
