"""Reading images of every supported format as (H, W, 3) uint8 RGB, and the errors users see."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from napari_pathup.errors import InputError
from napari_pathup.io import (
    SUPPORTED_IMAGE_SUFFIXES,
    image_shape,
    list_images,
    read_image,
    write_ome_zarr,
)
from napari_pathup.io.arrays import to_rgb_uint8

HE_DIR = Path("/work/shared/data/he")


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------- Pillow formats


def test_png_rgb_is_read_exactly(tmp_path):
    image = rgb(300, 517)
    Image.fromarray(image).save(tmp_path / "a.png")
    back = read_image(tmp_path / "a.png")
    assert back.dtype == np.uint8 and back.flags.c_contiguous
    np.testing.assert_array_equal(back, image)
    assert image_shape(tmp_path / "a.png") == (300, 517)


def test_greyscale_png_becomes_three_equal_channels(tmp_path):
    grey = rgb(40, 30)[..., 0]
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    back = read_image(tmp_path / "g.png")
    assert back.shape == (40, 30, 3)
    for c in range(3):
        np.testing.assert_array_equal(back[..., c], grey)


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, :, 3] = 255  # opaque row keeps its colour
    rgba[1, :, 3] = 0  # transparent row becomes white
    rgba[2, :, 3] = 128
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    back = read_image(tmp_path / "t.png")
    assert back.shape == (4, 5, 3)
    np.testing.assert_array_equal(back[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(back[1, 0], [255, 255, 255])
    np.testing.assert_array_equal(back[2, 0], [227, 127, 127])  # (200*128 + 255*127) / 255


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    values = np.arange(256, dtype=np.uint16).reshape(16, 16)
    Image.fromarray(values * 257).save(tmp_path / "w.png")
    back = read_image(tmp_path / "w.png")
    np.testing.assert_array_equal(back[..., 1], values.astype(np.uint8))


def test_palette_png_is_expanded(tmp_path):
    image = Image.fromarray(rgb(20, 30)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(image.convert("RGB")))


def test_jpeg_is_read_with_its_shape(tmp_path):
    image = np.full((33, 65, 3), (180, 90, 160), np.uint8)
    Image.fromarray(image).save(tmp_path / "a.JPEG", quality=95)
    back = read_image(tmp_path / "a.JPEG")
    assert back.shape == (33, 65, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - image).max() <= 3
    assert image_shape(tmp_path / "a.JPEG") == (33, 65)


# --------------------------------------------------------------------------------------- TIFF formats


def test_planar_tiff_is_returned_channels_last(tmp_path):
    image = rgb(50, 70)
    tifffile.imwrite(
        tmp_path / "p.tif", np.moveaxis(image, -1, 0), photometric="rgb", planarconfig="separate"
    )
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif"), image)
    assert image_shape(tmp_path / "p.tif") == (50, 70)


def test_sixteen_bit_rgb_tiff_is_scaled(tmp_path):
    image = rgb(20, 10)
    tifffile.imwrite(tmp_path / "w.tiff", image.astype(np.uint16) * 257, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "w.tiff"), image)


def test_greyscale_tiff_and_singleton_axes(tmp_path):
    grey = rgb(20, 10)[..., 0]
    tifffile.imwrite(
        tmp_path / "g.tif", grey[None, None], photometric="minisblack", metadata={"axes": "ZCYX"}
    )
    back = read_image(tmp_path / "g.tif")
    np.testing.assert_array_equal(back, np.repeat(grey[..., None], 3, axis=-1))


def test_tiff_stack_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", rgb(20, 10)[None].repeat(2, 0), photometric="rgb")
    with pytest.raises(InputError, match=r"s\.tif"):
        read_image(tmp_path / "s.tif")


def test_ome_zarr_is_read_like_an_image(tmp_path):
    image = rgb(30, 20)
    write_ome_zarr(tmp_path / "a.ome.zarr", image)
    np.testing.assert_array_equal(read_image(tmp_path / "a.ome.zarr"), image)
    assert image_shape(tmp_path / "a.ome.zarr") == (30, 20)


# ------------------------------------------------------------------------------------------ conversion


@settings(max_examples=15, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(5, 40),
    layout=st.sampled_from(["grey", "grey1", "rgb", "rgba", "chw", "uint16", "float"]),
    seed=st.integers(0, 2**16),
)
def test_conversion_gives_rgb_uint8_of_the_same_size(height, width, layout, seed):
    image = rgb(height, width, seed)
    grey = image[..., 0]
    data = {
        "grey": grey,
        "grey1": grey[..., None],
        "rgb": image,
        "rgba": np.dstack([image, np.full((height, width), 255, np.uint8)]),
        "chw": np.moveaxis(image, -1, 0),
        "uint16": image.astype(np.uint16) * 257,
        "float": image / 255.0,
    }[layout]
    expected = np.repeat(grey[..., None], 3, axis=-1) if layout.startswith("grey") else image
    out = to_rgb_uint8(data)
    assert out.dtype == np.uint8 and out.shape == (height, width, 3)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("shape", [(5,), (6, 5, 7), (2, 3, 4, 5), (0, 4, 3)])
def test_conversion_refuses_non_images(shape):
    with pytest.raises(InputError, match="expected a greyscale, RGB or RGBA image"):
        to_rgb_uint8(np.zeros(shape, np.uint8), "thing.png")


# -------------------------------------------------------------------------------------------- errors


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="no such file") as info:
        read_image(tmp_path / "nope.png")
    assert str(tmp_path / "nope.png") in str(info.value)


def test_unsupported_suffix_lists_the_supported_ones(tmp_path):
    (tmp_path / "a.bmp").write_bytes(b"BM")
    with pytest.raises(InputError, match="unsupported") as info:
        read_image(tmp_path / "a.bmp")
    assert "a.bmp" in str(info.value)
    assert all(suffix in str(info.value) for suffix in SUPPORTED_IMAGE_SUFFIXES)


def test_plain_folder_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="not an OME-Zarr") as info:
        read_image(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_zarr_group_without_multiscales_is_not_an_image(tmp_path):
    import zarr

    zarr.open_group(tmp_path / "x.ome.zarr", mode="w")
    with pytest.raises(InputError, match="not an OME-Zarr image"):
        read_image(tmp_path / "x.ome.zarr")


@pytest.mark.parametrize("name", ["bad.png", "bad.jpg", "bad.tif", "bad.svs", "bad.scn"])
def test_corrupt_file_is_reported_with_its_name(tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not an image at all")
    with pytest.raises(InputError, match="cannot read") as info:
        read_image(tmp_path / name)
    assert name in str(info.value)
    assert info.value.__cause__ is not None
    with pytest.raises(InputError, match="cannot read"):
        image_shape(tmp_path / name)


def test_truncated_png_is_reported(tmp_path):
    Image.fromarray(rgb(100, 100)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"a\.png"):
        read_image(tmp_path / "a.png")


def test_missing_pyramid_level_is_reported(tmp_path):
    Image.fromarray(rgb(10, 10)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", rgb(10, 10), photometric="rgb")
    for name in ("a.png", "a.tif"):
        with pytest.raises(InputError, match="level 1 does not exist"):
            read_image(tmp_path / name, level=1)


# ---------------------------------------------------------------------------------------- list_images


def test_list_images_finds_supported_images_only(tmp_path):
    for name in ["b.png", "a.TIF", "c.jpeg", "d.svs", ".hidden.png", ".x.partial-ab12.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "e.ome.zarr").mkdir()
    (tmp_path / ".f.partial-ab12.ome.zarr").mkdir()
    (tmp_path / "g.ome.zarr").write_bytes(b"")  # a file, not a store
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.png").write_bytes(b"")
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.TIF", "b.png", "c.jpeg", "d.svs", "e.ome.zarr"]
    assert all(p.parent == tmp_path for p in list_images(tmp_path))


def test_list_images_of_an_empty_folder_is_empty(tmp_path):
    assert list_images(tmp_path) == []


def test_list_images_needs_a_folder(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        list_images(tmp_path / "missing")
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(InputError, match="is a file") as info:
        list_images(tmp_path / "f.png")
    assert "f.png" in str(info.value)


# ------------------------------------------------------------------------------------- real H&E files

REAL_FILES = {
    "carcinoma_tia_target.png": (1000, 1000),
    "cmu_small_region.svs": (2967, 2220),
    "hgsc_stroma.jpg": (1500, 1500),
    "hgsc_tumour_nest.jpg": (1500, 1500),
    "skin.tif": (960, 1280),
    "tumour_stardist.jpg": (300, 500),
}


@pytest.mark.parametrize(("name", "shape"), REAL_FILES.items())
def test_real_he_images(name, shape):
    path = HE_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    image = read_image(path)
    assert image.shape == (*shape, 3) and image.dtype == np.uint8
    assert image_shape(path) == shape
    assert 20 < image.mean() < 250 and image.std() > 5  # real tissue, not a blank or failed decode
    assert (image[..., 0].astype(int) - image[..., 1]).mean() > 0  # H&E: more red than green


def test_real_he_folder_listing():
    if not HE_DIR.is_dir():
        pytest.skip(f"{HE_DIR} is not available")
    assert [p.name for p in list_images(HE_DIR)] == sorted(REAL_FILES)


def test_real_svs_has_one_level():
    path = HE_DIR / "cmu_small_region.svs"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    with pytest.raises(InputError, match="level 1 does not exist"):
        read_image(path, level=1)


# ------------------------------------------------------------------------------- decompression bombs


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG header that declares ``width`` x ``height`` RGB pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_a_png_declaring_too_many_pixels_is_refused_from_its_header(tmp_path):
    import resource
    import time

    from napari_pathup.errors import ImageTooLargeError
    from napari_pathup.io.images import MAX_IMAGE_PIXELS

    bomb = bomb_png(tmp_path / "bomb.png", 30000, 30000)
    assert MAX_IMAGE_PIXELS == 250_000_000 and bomb.stat().st_size < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(
        ImageTooLargeError, match=r"declares 30000x30000 = 900,000,000 pixels.*--max-image-pixels"
    ):
        read_image(bomb)
    assert time.perf_counter() - start < 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB: nothing decoded
    assert image_shape(bomb) == (30000, 30000)  # the header alone is fine to read


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".ome.zarr"])
def test_the_pixel_limit_holds_for_every_format_and_can_be_raised(tmp_path, suffix):
    from napari_pathup.errors import ImageTooLargeError

    path = tmp_path / f"image{suffix}"
    image = rgb(40, 50)
    if suffix == ".ome.zarr":
        write_ome_zarr(path, image)
    elif suffix == ".tif":
        tifffile.imwrite(path, image)
    else:
        Image.fromarray(image).save(path)
    with pytest.raises(
        ImageTooLargeError, match="declares 50x40 = 2,000 pixels, more than the limit of 1,999"
    ):
        read_image(path, max_pixels=1999)
    assert read_image(path, max_pixels=2000).shape == (40, 50, 3)
    assert read_image(path, max_pixels=None).shape == (40, 50, 3)


def test_a_tiff_pyramid_level_is_checked_on_its_own_size(tmp_path):
    path = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(rgb(64, 64), subifds=1, photometric="rgb")
        tw.write(rgb(32, 32), subfiletype=1, photometric="rgb")
    assert read_image(path, level=1, max_pixels=32 * 32).shape == (32, 32, 3)
    with pytest.raises(InputError, match="declares 64x64"):
        read_image(path, level=0, max_pixels=32 * 32)
