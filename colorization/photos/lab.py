"""CIELab conversion, quantisation for storage, and colour statistics.

Storage quantisation: L in [0, 100] is stored as uint8 on 0..255; a and b are rounded and clipped to int8.
The model predicts ``ab / 128`` through a tanh.

scikit-image is the reference (and does the Lab -> sRGB of small images); the hot paths — every photo in
preprocessing, full-resolution colouring where skimage takes seconds on a 12 MP photo — use lookup tables and
float32 matrix work that the tests hold to within a fraction of a grey level of skimage.
"""

from __future__ import annotations

import warnings
from functools import cache

import cv2
import numpy as np
from skimage import color

AB_SCALE = 128.0  # the model's a,b output is ab / AB_SCALE, in tanh's range
AB_OFFSET = 128  # a,b held in uint8 planes (full-resolution rendering) as value + AB_OFFSET
L_SCALE = 255.0 / 100.0  # stored L = L * L_SCALE, on 0..255

# The D65 white point for the CIE 1931 2° observer (CIE 15:2004), normalised to Y = 1, as scikit-image's
# ``xyz_tristimulus_values``; the linear-light sRGB -> XYZ matrix of the sRGB primaries (IEC 61966-2-1:1999) as
# scikit-image's ``xyz_from_rgb``, and its inverse as Bruce Lindbloom's published table. The transfer curve
# below (0.04045, 12.92, 0.055, 2.4) is IEC 61966-2-1's; L*, a*, b* from XYZ are CIE 15:2004's (section 8.2.1).
_D65 = np.array([0.95047, 1.0, 1.08883], np.float32)
_XYZ_TO_RGB = np.array(
    [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560], [0.0556434, -0.2040259, 1.0572252]],
    np.float32,
)
_RGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]], np.float32
)
_Y_WEIGHTS = _RGB_TO_XYZ[1]


def model_inputs(lightness: np.ndarray) -> np.ndarray:
    """The network's L input (n, h, w, 1) float32 on 0..255, from stored L (n, h, w) uint8."""
    return lightness.astype(np.float32)[..., None]


def model_target(ab: np.ndarray) -> np.ndarray:
    """What the network learns to output, ab / 128 float32, from a,b in Lab units (stored int8 or float)."""
    return np.divide(ab, np.float32(AB_SCALE), dtype=np.float32)  # one pass, no float copy of ab first


def from_model_output(output: np.ndarray) -> np.ndarray:
    """a,b in Lab units (float32) from the network's ab / 128 (the inverse of :func:`model_target`)."""
    return np.asarray(output, np.float32) * np.float32(AB_SCALE)
_GAMMA_STEPS = 16383
_EPSILON = 216 / 24389
_KAPPA = 24389 / 27


@cache
def _srgb_to_linear_lut() -> np.ndarray:
    values = np.arange(256, dtype=np.float64) / 255
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4).astype(np.float32)


@cache
def _linear_to_srgb_lut() -> np.ndarray:
    values = np.arange(_GAMMA_STEPS + 1, dtype=np.float64) / _GAMMA_STEPS
    encoded = np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)
    return np.rint(np.clip(encoded, 0, 1) * 255).astype(np.uint8)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB (..., 3) to float32 CIELab (D65), as ``skimage.color.rgb2lab`` computes it.

    A lookup table linearises the 8-bit values and the rest runs in float32: about 7x faster than skimage on
    a 256x256 photo, within 1e-3 of it (tests compare the two), which is what preprocessing needs.
    """
    xyz = _srgb_to_linear_lut()[rgb] @ (_RGB_TO_XYZ.T / _D65)
    f = _f(xyz)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELab (..., 3) to 8-bit sRGB, out-of-gamut colours clipped (silently: predictions often leave the gamut)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Conversion from CIE-LAB", category=UserWarning)
        rgb = color.lab2rgb(lab)
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def quantize(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float Lab (..., 3) to storage form: L as uint8 (..., ) and ab as int8 (..., 2)."""
    lightness = np.rint(np.clip(lab[..., 0], 0.0, 100.0) * L_SCALE).astype(np.uint8)
    ab = np.rint(np.clip(lab[..., 1:], -128.0, 127.0)).astype(np.int8)
    return lightness, ab


def dequantize(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Storage form back to float32 Lab (..., 3); the inverse of :func:`quantize`."""
    out = np.empty(lightness.shape + (3,), np.float32)
    out[..., 0] = lightness / np.float32(L_SCALE)
    out[..., 1:] = ab
    return out


@cache
def _grey_lut() -> np.ndarray:
    """The sRGB grey level of each stored L value (a = b = 0): 256 entries."""
    lab = np.zeros((256, 3), np.float64)
    lab[:, 0] = np.arange(256) / L_SCALE
    return lab_to_rgb(lab)[:, 0]


def lightness_to_grey(lightness: np.ndarray) -> np.ndarray:
    """Stored L (uint8) to the 8-bit grey sRGB value a viewer shows for it (exact, via a lookup table)."""
    return _grey_lut()[lightness]


def chroma_spread(lightness: np.ndarray, ab: np.ndarray) -> float:
    """Chroma that a single tone curve cannot explain, in ab units (98th percentile).

    Each pixel's ab is compared with the mean ab of pixels of similar lightness (32 bins). Grey photos score 0;
    so do sepia, selenium or cyanotype prints, whose tint is a function of lightness. Colour photos spread far
    beyond: on the bundled photos the least colourful scores above 3, while toned prints stay below 2.
    """
    bins = lightness.reshape(-1) >> 3
    counts = np.maximum(np.bincount(bins, minlength=32), 1)
    squared = np.zeros(bins.shape, np.float32)
    for channel in np.moveaxis(ab.reshape(-1, 2), -1, 0):
        residual = channel.astype(np.float32)
        residual -= (np.bincount(bins, residual, minlength=32) / counts).astype(np.float32)[bins]
        squared += residual * residual
    return _percentile_of_root(squared, 98)


def _percentile_of_root(squared: np.ndarray, percent: float) -> float:
    """``np.percentile(np.sqrt(squared), percent)`` (linear interpolation), from the two order statistics it
    needs: the root is monotonic, so only those two are found and rooted (this halves the grey check's time)."""
    position = percent / 100 * (len(squared) - 1)
    low = int(position)
    high = min(low + 1, len(squared) - 1)
    ordered = np.partition(squared, (low, high))
    below, above = float(np.sqrt(ordered[low])), float(np.sqrt(ordered[high]))
    return below + (above - below) * (position - low)


GREY_THRESHOLD = 2.5  # a,b spread (Lab units) under which a photo counts as grey or toned; see chroma_spread


def is_monochrome(lightness: np.ndarray, ab: np.ndarray, threshold: float = GREY_THRESHOLD) -> bool:
    """Whether a photo is grey or toned (sepia and the like): :func:`chroma_spread` below ``threshold``."""
    return chroma_spread(lightness, ab) < threshold


@cache
def _grey_lightness_lut() -> np.ndarray:
    return (_f(_srgb_to_linear_lut()) * 116 - 16).astype(np.float32)


def lightness(pixels: np.ndarray) -> np.ndarray:
    """CIELab L (float32, 0..100) of 8-bit sRGB (h, w, 3) or grey (h, w), fast enough for full-resolution photos.

    Grey images (one channel, or all channels equal) take a single table lookup.
    """
    if pixels.ndim == 2:
        return _grey_lightness_lut()[pixels]
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    if np.array_equal(red, green) and np.array_equal(green, blue):
        return _grey_lightness_lut()[red]
    linear = _srgb_to_linear_lut()
    out = np.empty(pixels.shape[:-1], np.float32)
    for rows in blocks(len(out)):
        luminance = linear[red[rows]] * _Y_WEIGHTS[0]
        luminance += linear[green[rows]] * _Y_WEIGHTS[1]
        luminance += linear[blue[rows]] * _Y_WEIGHTS[2]
        out[rows] = _f(luminance) * 116 - 16
    return out


def blocks(height: int, rows: int = 64) -> list[slice]:
    """Row bands small enough that a chain of float32 operations stays in the CPU cache."""
    return [slice(start, min(start + rows, height)) for start in range(0, height, rows)]


def _f(t: np.ndarray) -> np.ndarray:
    """CIE's f: the cube root, linear near black. Only the few values in the linear part take its formula."""
    out = np.cbrt(t, dtype=np.float32)
    dark = t <= _EPSILON
    if dark.any():
        out[dark] = (_KAPPA * t[dark] + 16) / 116
    return out


def _f_inverse(t: np.ndarray) -> np.ndarray:
    cubed = t * t * t
    return np.where(cubed > _EPSILON, cubed, (116 * t - 16) / _KAPPA).astype(np.float32)


def lab_to_srgb_fast(lightness_: np.ndarray, a: np.ndarray, b: np.ndarray, ab_offset: float = 0) -> np.ndarray:
    """8-bit sRGB (h, w, 3) of the planes L, a and b (h, w); ``ab_offset`` is subtracted from a and b first
    (for a and b stored in uint8 planes as ``value + 128``). ``lightness_`` is float L, or the uint8 pixels of a
    grey photo, whose L is then looked up band by band instead of being held as a full-size float plane.

    Colours outside the sRGB gamut are desaturated towards the grey of the same luminance (in linear light)
    until they fit, instead of being clipped channel by channel: lightness is kept, so a coloured photo keeps
    the tones of the original even where the predicted colour is too strong for its highlights or shadows.
    """
    out = np.empty(lightness_.shape + (3,), np.uint8)
    encode = _linear_to_srgb_lut()
    matrix = _XYZ_TO_RGB * _D65
    for rows in blocks(len(out)):
        band = lightness_[rows]
        fy = ((_grey_lightness_lut()[band] if band.dtype == np.uint8 else band) + 16) / 116
        x = _f_inverse(fy + (a[rows] - np.float32(ab_offset)) / 500)
        y = _f_inverse(fy)
        z = _f_inverse(fy - (b[rows] - np.float32(ab_offset)) / 200)
        linear = [x * matrix[c, 0] + y * matrix[c, 1] + z * matrix[c, 2] for c in range(3)]
        if min(c.min() for c in linear) < 0 or max(c.max() for c in linear) > 1:
            _desaturate_into_gamut(linear, y)
        for c, channel in enumerate(linear):
            np.clip(channel, 0, 1, out=channel)
            channel *= _GAMMA_STEPS
            channel += 0.5
            out[rows, :, c] = encode[channel.astype(np.int32)]
    return out


def grey_to_srgb(grey: np.ndarray, a: np.ndarray, b: np.ndarray, pad: bool = False,
                 out: np.ndarray | None = None) -> np.ndarray:
    """:func:`lab_to_srgb_fast` of a grey photo's uint8 pixels with a and b as uint8 planes holding
    ``value + AB_OFFSET``, the same output by one table lookup per pixel: every input is one of 256³ triples.
    With ``pad``, the result is (h, w, 4) RGBX, the fourth byte zero: the table's own layout, which Pillow
    takes as an image without copying it (``images.as_image``). ``out`` is an RGBX buffer of that shape to
    write into, for a caller that reuses one.

    The index of a pixel is its bytes (grey, b, a, 0) read as one little-endian uint32, interleaved by OpenCV;
    the table is ordered by a, then b, then grey, so that neighbouring pixels, whose a and b (upsampled from the
    model's grid) barely change, read neighbouring entries.
    """
    table = _grey_table()
    rgbx = np.empty(grey.shape + (4,), np.uint8) if out is None else out
    entries = rgbx.view(np.uint32)[..., 0]
    zeros = np.zeros((GREY_BAND_ROWS, grey.shape[1]), np.uint8)
    for rows in blocks(len(rgbx), GREY_BAND_ROWS):  # cache-sized bands
        index = cv2.merge([grey[rows], b[rows], a[rows], zeros[: rows.stop - rows.start]]).view(np.uint32)[..., 0]
        np.take(table, index, out=entries[rows], mode="clip")  # every index is in the table: no bounds pass
    return rgbx if pad else cv2.cvtColor(rgbx, cv2.COLOR_RGBA2RGB)


GREY_BAND_ROWS = 64  # rows converted at a time by grey_to_srgb: its index and lookup stay in cache


@cache
def _grey_table() -> np.ndarray:
    """sRGB of every (a + AB_OFFSET, b + AB_OFFSET, grey level), packed four bytes to an entry: 64 MiB, built
    once per process (about a second), after which a 12 MP photo costs a seventh of the band-by-band
    conversion."""
    table = np.zeros((256, 256, 256, 4), np.uint8)
    levels = np.arange(256, dtype=np.uint8)
    grey = np.ascontiguousarray(np.broadcast_to(levels[None, :], (256, 256)))
    b = np.broadcast_to(levels[:, None], (256, 256))
    for a in range(256):
        table[a, ..., :3] = lab_to_srgb_fast(grey, np.full((256, 256), a, np.uint8), b, ab_offset=AB_OFFSET)
    return table.view(np.uint32).reshape(-1)


def _desaturate_into_gamut(linear: list[np.ndarray], luminance: np.ndarray) -> None:
    """Move each out-of-gamut pixel towards grey of equal luminance just far enough; in place."""
    keep = np.ones_like(luminance)
    ratio = np.empty_like(luminance)
    for channel in linear:
        chroma = channel - luminance
        for outside, room in ((channel > 1, 1 - luminance), (channel < 0, -luminance)):
            if outside.any():
                ratio.fill(1)
                np.divide(room, chroma, out=ratio, where=outside)
                np.minimum(keep, ratio, out=keep)
    for channel in linear:
        channel -= luminance
        channel *= keep
        channel += luminance
