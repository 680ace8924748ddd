"""Loading photos: orientation, every mode to 8-bit sRGB, ICC profiles, DCT scaling, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from colorization.errors import ImageError
from colorization.photos import images
from colorization.photos.discover import find_images, iter_images
from tests import icc
from tests.helpers import gradient_rgb, plant_bad_files


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_exif_orientation_is_applied_and_size_reported_upright():
    # A landscape image with a red block in its top-left corner, stored with orientation 6 ("rotate 90 CW to view").
    pixels = np.zeros((60, 100, 3), np.uint8)
    pixels[:20, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())

    photo = images.decode(data)

    assert (photo.width, photo.height) == (60, 100)
    assert photo.image.size == (60, 100)
    upright = np.asarray(photo.image)
    # Rotating 90 degrees clockwise moves the top-left corner to the top-right.
    assert upright[5, 55, 0] > 200 and upright[5, 55, 1] < 60
    assert upright[5, 5, 0] < 60


@pytest.mark.parametrize(
    "mode",
    ["L", "1", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F"],
)
def test_every_mode_becomes_8bit_rgb(mode):
    grey = np.linspace(0, 255, 64 * 48).reshape(48, 64).astype(np.uint8)
    if mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 257)
        assert image.mode == "I;16"
    elif mode == "I":
        image = Image.fromarray(grey.astype(np.int32) * 257)
    elif mode == "F":
        image = Image.fromarray(grey.astype(np.float32) / 255)
    else:
        image = Image.fromarray(gradient_rgb()).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"

    photo = images.decode(encode(image, fmt))

    assert photo.image.mode == "RGB"
    rgb = np.asarray(photo.image)
    assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
    if mode in ("I;16", "I", "F"):
        assert np.abs(rgb[..., 0].astype(int) - grey).max() <= 1, "high bit depth must be rescaled, not clipped"


def test_palette_with_transparency_and_alpha_are_composited_on_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[:, 5:, 3] = 255  # right half opaque blue, left half fully transparent
    photo = images.decode(encode(Image.fromarray(rgba, "RGBA")))
    rgb = np.asarray(photo.image)
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 9]) == (0, 0, 255)

    palette = Image.fromarray(rgba[..., :3]).convert("P")
    palette.info["transparency"] = 0
    assert np.asarray(images.decode(encode(palette)).image).shape == (10, 10, 3)


def test_embedded_icc_profile_is_converted_to_srgb():
    image = Image.fromarray(np.full((8, 8, 3), (200, 30, 30), np.uint8))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    # A profile whose red and green primaries are swapped: its "red" pixels are green in sRGB.
    swapped = icc.rgb_profile({**icc.SRGB_PRIMARIES_D50, "r": icc.SRGB_PRIMARIES_D50["g"],
                               "g": icc.SRGB_PRIMARIES_D50["r"]})

    plain = np.asarray(images.decode(encode(image)).image).astype(int)
    tagged_srgb = np.asarray(images.decode(encode(image, icc_profile=srgb)).image).astype(int)
    converted = np.asarray(images.decode(encode(image, icc_profile=swapped)).image).astype(int)

    assert np.abs(plain - tagged_srgb).max() <= 2, "an sRGB profile must leave pixels as they are"
    r, g, b = converted[0, 0]
    assert g > 150 and r < 90, f"the profile was not applied: {converted[0, 0]}"


def test_grey_image_with_rgb_profile_still_loads():
    image = Image.fromarray(np.full((8, 8), 128, np.uint8), "L")
    photo = images.decode(encode(image, icc_profile=icc.rgb_profile(icc.SRGB_PRIMARIES_D50)))
    assert photo.image.mode == "RGB"
    assert np.ptp(np.asarray(photo.image)[0, 0]) <= 2, "a grey image stays grey"


def test_unusable_icc_profile_falls_back_with_warning(caplog):
    image = Image.fromarray(gradient_rgb())
    photo = images.decode(encode(image, icc_profile=b"not a profile at all"), "odd.png")
    assert photo.image.mode == "RGB"
    assert "odd.png: ignoring unusable ICC profile" in caplog.text


def test_large_jpeg_decodes_at_reduced_dct_scale():
    big = Image.fromarray(np.repeat(np.repeat(gradient_rgb(300, 400), 10, axis=0), 10, axis=1))
    data = encode(big, "JPEG", quality=85)

    photo = images.decode(data, min_side=256)

    assert (photo.width, photo.height) == (4000, 3000), "the original size is reported"
    assert photo.image.size == (500, 375), "decoded at 1/8 scale, the smallest that keeps 256 px"
    assert min(photo.image.size) >= 256
    assert images.decode(data).image.size == (4000, 3000)


def test_pixel_limit_refuses_before_decoding():
    data = encode(Image.new("RGB", (200, 100)), "PNG")
    with pytest.raises(ImageError, match=r"big.png: 200x100 is over the limit of 10,000 pixels"):
        images.decode(data, "big.png", max_pixels=10_000)


def test_bad_files_raise_image_error_naming_file(tmp_path, sample_paths):
    expected = plant_bad_files(tmp_path, sample_paths[0])
    for name, reason in expected.items():
        with pytest.raises(ImageError, match=reason) as info:
            images.load(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name))


def test_fit_square_squeezes_the_whole_frame_or_crops_its_centre():
    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, 100:200] = 255  # white centre third
    pixels[:, :50] = (255, 0, 0)  # red left sixth, outside the centre square
    whole = images.fit_square(Image.fromarray(pixels), 60)
    crop = images.fit_square(Image.fromarray(pixels), 64, "crop")
    assert whole.shape == (60, 60, 3) and crop.shape == (64, 64, 3)
    assert crop[:, 8:56].min() >= 250, "the centre crop keeps the white middle"
    white = (whole.min(axis=(0, 2)) >= 250).sum()
    assert 17 <= white <= 20, f"whole squeezes the white middle third to a third of the width, not {white} of 60"
    red = whole[:, :7].astype(int)
    assert red[..., 0].min() >= 250 and red[..., 1:].max() <= 5, "whole keeps the red edge"
    assert not ((crop[..., 0] > 200) & (crop[..., 1] < 50)).any(), "the crop loses the red edge"


def test_find_images_is_sorted_case_insensitive_and_survives_link_loops(tmp_path):
    for name in ["b/Z.JPG", "a/photo.Png", "a/deep/x.tiff", "c.webp", "skip.txt", ".hidden/y.jpg", "d/e.BMP"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "a" / "deep" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)

    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]

    assert found == ["a/deep/x.tiff", "a/photo.Png", "b/Z.JPG", "c.webp", "d/e.BMP"]


def test_the_walk_finds_photos_in_the_order_their_paths_sort(tmp_path):
    """Streamed in order, with no list of the tree: folders fall where their photos' paths sort among files."""
    names = ["a.jpg", "a/b.jpg", "a/b/c.jpg", "a b/c.jpg", "a-b.png", "a0.jpg", "a/.cache/x.jpg", "B.JPG",
             "a.b/x.jpg", "a/a.jpg", "z/.hidden.jpg", "z/é.jpg", "z/e.jpg"]
    for name in names:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a", target_is_directory=True)
    walked = [p.relative_to(tmp_path).as_posix() for p in iter_images(tmp_path)]
    visible = [n for n in names if "/." not in n]
    assert walked == sorted(visible), "each photo once, loops and hidden names left out, in sorted order"


def test_find_images_refuses_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_images(Path(tmp_path / "missing"))


def test_keep_grey_leaves_untagged_grey_images_single_channel():
    grey = Image.fromarray(np.linspace(0, 255, 48 * 64).reshape(48, 64).astype(np.uint8), "L")
    assert images.decode(encode(grey), keep_grey=True).image.mode == "L"
    assert images.decode(encode(grey)).image.mode == "RGB"
    tagged = encode(grey, icc_profile=icc.rgb_profile(icc.SRGB_PRIMARIES_D50))
    assert images.decode(tagged, keep_grey=True).image.mode == "RGB", "a profile still needs converting"


def test_rgbx_pixels_become_an_rgb_image_without_a_copy():
    pixels = np.zeros((3, 5, 4), np.uint8)
    pixels[..., :3] = (10, 200, 30)
    image = images.as_image(pixels)
    assert (image.mode, image.size, image.getpixel((4, 2))) == ("RGBX", (5, 3), (10, 200, 30, 0))
    pixels[2, 4, 0] = 99
    assert image.getpixel((4, 2))[0] == 99, "the image is the array's memory"
    assert images.as_image(pixels[..., :3].copy()).mode == "RGB"


def test_pixels_of_a_grey_image_are_its_own_memory_and_outlive_it():
    grey = images.decode(encode(Image.fromarray(np.arange(7 * 9, dtype=np.uint8).reshape(7, 9))),
                         keep_grey=True).image
    pixels = images.pixels(grey)
    assert np.array_equal(pixels, np.asarray(grey)) and pixels.shape == (7, 9) and not pixels.flags.writeable
    grey.putpixel((8, 6), 200)
    assert pixels[6, 8] == 200, "a view of the image, not a copy"
    del grey
    assert pixels[6, 8] == 200 and pixels[0, 1] == 1, "the memory stays while the view does"


def test_pixels_copy_what_cannot_be_viewed():
    large = Image.new("L", (4200, 4200), 7)  # 17.6 MB: more than one of Pillow's 16 MiB blocks
    assert np.array_equal(images.pixels(large), np.full((4200, 4200), 7, np.uint8))
    colour = Image.fromarray(gradient_rgb(6, 8))
    assert np.array_equal(images.pixels(colour), np.asarray(colour))
