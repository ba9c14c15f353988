"""Whole slides read lazily: levels, pixel size from metadata, RoIs from one level, clear refusals."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from helpers import DEMO, SCN_NS, hamamatsu_ndpi, leica_scn, pyramidal_ome_tiff, rgb
from napari_pathup.errors import InputError
from napari_pathup.geometry import Box
from napari_pathup.io import write_image
from napari_pathup.io.images import image_shape, read_image
from napari_pathup.io.ome_zarr import ome_zarr_pixel_size, write_ome_zarr
from napari_pathup.io.slide import (
    choose_level,
    open_scan_region,
    open_slide,
    open_slide_regions,
    philips_pixel_size,
    read_region,
    roi_from_levels,
    scn_images,
)

SVS = Path(__file__).resolve().parents[2] / "data" / "demo" / "normal" / "cmu_small_region.svs"


def test_svs_opens_lazily_with_its_microns_per_pixel():
    slide = open_slide(SVS)
    assert slide.mpp == pytest.approx(0.499)  # "MPP = 0.4990" in the Aperio description
    (level,) = slide.levels
    assert level.shape == (2967, 2220, 3) and level.dtype == np.uint8
    assert not isinstance(level, np.ndarray)  # dask: nothing read yet
    whole = tifffile.imread(SVS)
    roi = read_region(slide.levels, Box.from_xywh(100, 2000, 640, 512))
    np.testing.assert_array_equal(roi, whole[2000:2512, 100:740])


def test_pyramidal_ome_tiff_levels_and_region_at_a_coarser_level(tmp_path):
    image = rgb(512, 768, seed=2)
    slide = open_slide(pyramidal_ome_tiff(tmp_path / "slide.ome.tif", image))
    assert [level.shape[:2] for level in slide.levels] == [(512, 768), (256, 384), (128, 192)]
    assert slide.mpp == pytest.approx(0.25) and slide.downsamples == [1.0, 2.0, 4.0]
    region = Box.from_xywh(64, 128, 256, 128)
    np.testing.assert_array_equal(read_region(slide.levels, region, 0), image[128:256, 64:320])
    np.testing.assert_array_equal(read_region(slide.levels, region, 1), image[::2, ::2][64:128, 32:160])
    # 1 µm/px is nearest to level 2 (4 x 0.25); the RoI's pixel size follows its level
    assert choose_level(slide.levels, slide.mpp, target_mpp=1.0) == 2
    roi = roi_from_levels(slide.levels, slide.mpp, region, target_mpp=0.6)
    assert roi.level == 1 and roi.pixel_size == pytest.approx(0.5) and roi.image.shape == (64, 128, 3)


def test_ome_zarr_pixel_size_round_trips_as_ngff_micrometres(tmp_path):
    path = write_ome_zarr(tmp_path / "s.ome.zarr", rgb(600, 520), pixel_size=0.5)
    assert ome_zarr_pixel_size(path) == pytest.approx(0.5)
    import zarr

    meta = zarr.open_group(path, mode="r").attrs["ome"]["multiscales"][0]
    assert [a.get("unit") for a in meta["axes"]] == [None, "micrometer", "micrometer"]
    assert meta["datasets"][1]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 1.0]
    slide = open_slide(path)
    assert slide.mpp == pytest.approx(0.5) and slide.level_mpp(1) == pytest.approx(1.0)
    # without a pixel size: unitless, as before
    assert ome_zarr_pixel_size(write_ome_zarr(tmp_path / "u.ome.zarr", rgb(64, 64))) is None


@pytest.mark.parametrize(
    ("per_unit", "unit", "mpp"),
    [(20000, "CENTIMETER", 0.5), (101600, "INCH", 0.25), (20000, "NONE", None)],
)
def test_a_plain_tiff_gives_its_pixel_size_from_the_resolution_tags(tmp_path, per_unit, unit, mpp):
    """A TIFF without SVS or OME metadata records its resolution in pixels per centimetre or inch; a
    resolution without a length unit gives none."""
    path = tmp_path / "plain.tif"
    tifffile.imwrite(
        path, rgb(64, 64), photometric="rgb", resolution=(per_unit, per_unit), resolutionunit=unit
    )
    assert open_slide(path).mpp == (pytest.approx(mpp) if mpp else None)


@pytest.mark.parametrize(
    ("unit", "mpp"),
    [("micron", 0.5), ("\\u00B5m", 0.5), ("um", 0.5), ("mm", 500.0), ("inch", 12700.0), ("pixel", None)],
)
def test_an_imagej_tiff_gives_its_pixel_size_in_its_own_unit(tmp_path, unit, mpp):
    """ImageJ and Fiji write the resolution per their description's ``unit`` (``micron``, or ``µm``
    escaped as ``\\u00B5m``) with a TIFF unit of NONE: a RoI saved from Fiji keeps its physical scale."""
    path = tmp_path / "fiji.tif"
    metadata = {"unit": unit, "axes": "YXS"}
    tifffile.imwrite(path, rgb(64, 64), imagej=True, resolution=(2.0, 2.0), metadata=metadata)
    assert open_slide(path).mpp == (pytest.approx(mpp) if mpp else None)


def philips_tiff(path: Path, image: np.ndarray, spacings_mm: list[tuple[str, str]]) -> Path:
    """A 2-level Philips TIFF as tifffile reads them: software "Philips DP", the first page's description
    the XML whose pixel-data representations give each level's (row, column) spacing in millimetres."""
    attribute = '<Attribute Name="{}" Group="0x0028" Element="0x0030" PMSVR="IDoubleArray">{}</Attribute>'
    levels = "".join(
        '<DataObject ObjectType="PixelDataRepresentation">'
        + attribute.format("DICOM_PIXEL_SPACING", f"&quot;{h}&quot; &quot;{w}&quot;")
        + attribute.format("PIIM_PIXEL_DATA_REPRESENTATION_NUMBER", i)
        + "</DataObject>"
        for i, (h, w) in enumerate(spacings_mm)
    )
    xml = (
        '<?xml version="1.0" encoding="UTF-8" ?><DataObject ObjectType="DPUfsImport">'
        + '<Attribute Name="PIM_DP_SCANNED_IMAGES" PMSVR="IDataObjectArray"><Array>'
        + '<DataObject ObjectType="DPScannedImage">'
        + '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" PMSVR="IDataObjectArray"><Array>'
        + levels
        + "</Array></Attribute></DataObject></Array></Attribute></DataObject>"
    )
    options: dict[str, Any] = {"tile": (64, 64), "photometric": "rgb", "software": "Philips DP v1.0"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, description=xml, metadata=None, **options)
        tif.write(image[::2, ::2], description="level 1", metadata=None, **options)
    return path


def test_a_philips_tiff_gives_its_pixel_size_from_its_xml(tmp_path):
    """Philips TIFF keeps its pixel spacing (millimetres, row then column) in the XML of its first
    page, not in the TIFF tags: level 0's column spacing (along x) gives the micrometres per pixel."""
    path = philips_tiff(
        tmp_path / "philips.tiff", rgb(256, 384), [("0.000243", "0.00025"), ("0.000486", "0.0005")]
    )
    slide = open_slide(path)
    assert slide.mpp == pytest.approx(0.25)
    assert [level.shape for level in slide.levels] == [(256, 384, 3), (128, 192, 3)]
    # tifffile itself refuses level spacings it cannot read; the XML alone: level 0's or none
    assert philips_pixel_size('<DataObject ObjectType="DPUfsImport"/>') is None
    assert philips_pixel_size("<DataObject") is None


def test_a_leica_scn_opens_its_main_scan_at_its_pixel_size_as_openslide_reads_it(tmp_path):
    """tifffile lists an SCN's macro image first: the slide opens its main scan (the largest image), at
    the micrometres per pixel of that scan's resolution tags, or of the XML when the tags are missing;
    its pixels are OpenSlide's at the scan's bounds (OpenSlide places it on the macro's canvas)."""
    import openslide

    macro, main = rgb(64, 160), rgb(512, 768)
    path = leica_scn(tmp_path / "slide.scn", macro, main)
    slide = open_slide(path)
    assert [level.shape for level in slide.levels] == [(512, 768, 3), (128, 192, 3)]
    assert slide.mpp == pytest.approx(0.5) and slide.downsamples == [1.0, 4.0]
    region = Box.from_xywh(100, 40, 300, 200)
    ours = np.asarray(read_region(slide.levels, region))
    np.testing.assert_array_equal(ours, main[40:240, 100:400])
    with openslide.OpenSlide(str(path)) as reference:
        assert reference.properties["openslide.vendor"] == "leica"
        assert float(reference.properties["openslide.mpp-x"]) == pytest.approx(slide.mpp)
        x0, y0 = (
            int(reference.properties["openslide.bounds-x"]),
            int(reference.properties["openslide.bounds-y"]),
        )
        theirs = np.asarray(reference.read_region((x0 + 100, y0 + 40), 0, (300, 200)).convert("RGB"))
    np.testing.assert_array_equal(ours, theirs)
    # the whole-image readers take the same series
    assert image_shape(path) == (512, 768) and image_shape(path, 1) == (128, 192)
    np.testing.assert_array_equal(read_image(path, 1), main[::4, ::4])
    # without resolution tags: the XML's view (nanometres) over the level-0 width (pixels)
    bare = leica_scn(tmp_path / "bare.scn", macro, main, resolution_tags=False)
    assert open_slide(bare).mpp == pytest.approx(0.5)
    assert scn_images("<scn", 2) == []
    assert scn_images(f'<scn xmlns="{SCN_NS}"><collection/></scn>', 2) == []
    # image names are optional (tifffile then names every series "Unknown"): matched by position
    unnamed = leica_scn(tmp_path / "unnamed.scn", macro, main, resolution_tags=False, names=False)
    assert open_slide(unnamed).mpp == pytest.approx(0.5)


def test_a_leica_scn_scanned_in_two_regions_opens_each_where_it_lies_on_the_glass(tmp_path):
    """Two sections scanned on one glass: each region opens on its own pixel grid and scale, placed by
    its offset on the glass (µm from the corner of the box around both); OpenSlide, which composites
    the regions onto one canvas, shows the same pixels at the same places. ``open_slide`` takes the
    largest region."""
    import openslide

    first, second = rgb(256, 384, seed=1), rgb(320, 256, seed=2)  # 98,304 and 81,920 pixels
    path = leica_scn(tmp_path / "two.scn", rgb(64, 160), first, more=[(second, (1_500_000, 300_000))])
    regions = open_slide_regions(path)
    assert [r.name for r in regions] == ["two.scn [region 1]", "two.scn [region 2]"]
    assert [r.levels[0].shape for r in regions] == [(256, 384, 3), (320, 256, 3)]
    assert [r.mpp for r in regions] == [pytest.approx(0.5), pytest.approx(0.5)]
    # the first region lies at (x 1.0 mm, y 0.5 mm) on the glass, the second at (1.5 mm, 0.3 mm): higher
    assert regions[0].offset_um == pytest.approx((200.0, 0.0))
    assert regions[1].offset_um == pytest.approx((0.0, 500.0))
    with openslide.OpenSlide(str(path)) as reference:
        mpp = float(reference.properties["openslide.mpp-x"])
        x0, y0 = (
            int(reference.properties["openslide.bounds-x"]),
            int(reference.properties["openslide.bounds-y"]),
        )
        for region, image in zip(regions, (first, second), strict=True):
            y, x = (round(offset / mpp) for offset in region.offset_um)
            theirs = reference.read_region((x0 + x, y0 + y), 0, (image.shape[1], image.shape[0]))
            np.testing.assert_array_equal(np.asarray(theirs.convert("RGB")), image)
            np.testing.assert_array_equal(np.asarray(region.levels[0]), image)
    assert open_slide(path).levels[0].shape == (256, 384, 3)
    # a RoI is read from the scanned region asked for, in that region's own level-0 pixels
    assert open_scan_region(path, None).levels[0].shape == (256, 384, 3)
    np.testing.assert_array_equal(np.asarray(open_scan_region(path, 2).levels[0]), second)
    with pytest.raises(
        InputError, match=r"two.scn: scanned region 3 asked for; the slide has 2 scanned regions \(1-2\)"
    ):
        open_scan_region(path, 3)
    with pytest.raises(
        InputError, match=r"scanned region 2 asked for; the slide has one scanned region \(1\)"
    ):
        open_scan_region(SVS, 2)
    plain = tmp_path / "field.png"
    write_image(plain, rgb(64, 64))
    with pytest.raises(
        InputError, match=r"field.png: scanned region 2 asked for; the image is one region \(1\)"
    ):
        open_scan_region(plain, 2)
    # a slide of one region is that region, unmoved; other formats are open_slide's
    (single,) = open_slide_regions(leica_scn(tmp_path / "one.scn", rgb(64, 160), first))
    assert single.name == "one.scn" and single.offset_um == (0.0, 0.0)
    (svs,) = open_slide_regions(SVS)
    assert svs.levels[0].shape == open_slide(SVS).levels[0].shape and svs.offset_um == (0.0, 0.0)
    assert scn_images("<scn", 2) == [] and scn_images(f'<scn xmlns="{SCN_NS}"/>', 2) == []


def test_a_hamamatsu_ndpi_opens_its_scan_at_its_pixel_size_as_openslide_reads_it(tmp_path):
    """An NDPI (64-bit offsets in a classic TIFF) opens its scan as a pyramid, its macro image left out,
    at the µm/px of its resolution tags, each level in tiles of one JPEG restart interval (its McuStarts),
    so that a RoI decodes only the intervals it covers; its pixels at every level are OpenSlide's (the
    same JPEG strips, decoded alike); the whole-image readers, the RoI reader and the plugin's reader
    take it."""
    import openslide

    from napari_pathup._reader import get_slide_reader

    main = read_image(DEMO / "stroma" / "hgsc_stroma.jpg")[:512, :768]  # real H&E
    path = hamamatsu_ndpi(tmp_path / "slide.ndpi", main, rgb(100, 300, seed=1), mpp=0.5)
    slide = open_slide(path)
    assert [level.shape for level in slide.levels] == [(512, 768, 3), (128, 192, 3)]
    assert slide.mpp == pytest.approx(0.5) and slide.downsamples == [1.0, 4.0] and slide.notes == ()
    assert slide.levels[0].chunksize == (8, 384, 3)  # 8x8-pixel MCUs, a restart every half row
    region = Box.from_xywh(100, 40, 300, 200)
    ours = np.asarray(read_region(slide.levels, region))
    with openslide.OpenSlide(str(path)) as reference:
        assert reference.properties["openslide.vendor"] == "hamamatsu"
        assert float(reference.properties["openslide.mpp-x"]) == pytest.approx(slide.mpp)
        theirs = np.asarray(reference.read_region((100, 40), 0, (300, 200)).convert("RGB"))
        coarse = reference.get_best_level_for_downsample(4.0)
        theirs_coarse = np.asarray(reference.read_region((0, 0), coarse, (192, 128)).convert("RGB"))
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(np.asarray(slide.levels[1]), theirs_coarse)
    assert np.abs(ours.astype(int) - main[40:240, 100:400]).mean() < 4  # JPEG, quality 90
    assert image_shape(path) == (512, 768) and image_shape(path, 1) == (128, 192)
    np.testing.assert_array_equal(read_image(path, 1), theirs_coarse)
    roi = roi_from_levels(slide.levels, slide.mpp, region, target_mpp=2.0)  # 4x coarser: level 1
    assert roi.level == 1 and roi.image.shape == (50, 75, 3) and roi.pixel_size == pytest.approx(2.0)
    (layer,) = get_slide_reader(str(path))(str(path))
    assert layer[1]["scale"] == pytest.approx((0.5, 0.5)) and layer[1]["multiscale"]


def test_an_ndpi_scanned_at_several_focal_planes_reads_the_nominal_one_as_openslide(tmp_path):
    """A Z-stack NDPI (planes stored in order of Z, the nominal one second here) reads the plane at Z
    offset 0 at every level, lazily and whole, as OpenSlide does; the other planes are never mixed in."""
    import openslide

    field = read_image(DEMO / "stroma" / "hgsc_stroma.jpg")  # real H&E: three fields as three planes
    main, above, below = field[:256, :384], field[256:512, :384], field[512:768, :384]
    path = hamamatsu_ndpi(tmp_path / "stack.ndpi", main, rgb(50, 100), planes=[(above, -2000), (below, 2000)])
    slide = open_slide(path)
    assert [level.shape for level in slide.levels] == [(256, 384, 3), (64, 96, 3)]
    assert slide.notes == (
        "scanned at 3 focal planes (Z -2000 to 2000 nm from the nominal focus); the plane at Z 0 nm is "
        "read, as OpenSlide does",
    )
    with openslide.OpenSlide(str(path)) as reference:
        theirs = np.asarray(reference.read_region((0, 0), 0, (384, 256)).convert("RGB"))
        coarse = reference.get_best_level_for_downsample(4.0)
        theirs_coarse = np.asarray(reference.read_region((0, 0), coarse, (96, 64)).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(slide.levels[0]), theirs)
    np.testing.assert_array_equal(np.asarray(slide.levels[1]), theirs_coarse)
    np.testing.assert_array_equal(read_image(path), theirs)
    np.testing.assert_array_equal(read_image(path, 1), theirs_coarse)
    assert np.abs(theirs.astype(int) - main).mean() < 4  # the nominal plane (JPEG, quality 90)


@pytest.mark.parametrize("suffix", [".bif", ".mrxs", ".vms"])
def test_an_openslide_only_slide_is_refused_with_where_to_open_it(tmp_path, suffix):
    """A whole-slide format tifffile cannot read correctly (a Ventana BIF's tiles overlap) is refused from
    its name, before any read, pointing to the napari reader that opens it."""
    path = tmp_path / f"slide{suffix}"
    path.write_bytes(b"II*\x00" + bytes(16))
    with pytest.raises(InputError, match=rf"slide\{suffix}: \{suffix} slides are not read by napari-pathup"):
        open_slide(path)
    with pytest.raises(InputError, match="open it in napari with napari-wsi"):
        read_image(path)


def test_a_ventana_scan_saved_as_tif_is_refused_not_read_unstitched(tmp_path):
    """A Ventana/Roche scan is a BigTIFF whose tiles overlap (stitched by OpenSlide from its XMP);
    tifffile would place them unstitched, so a .tif that holds one is refused, naming the file, and the
    plugin's reader leaves it to other readers (napari-wsi)."""
    from napari_pathup._reader import get_slide_reader

    xmp = b'<?xml version="1.0"?><Metadata><iScan ScanRes="0.25" Magnification="40"/></Metadata>'
    path = tmp_path / "ventana.tif"
    tifffile.imwrite(
        path,
        rgb(256, 256),
        photometric="rgb",
        tile=(128, 128),
        bigtiff=True,
        software="ScanOutputManager 1.1.0.15854",
        description="level=0 mag=40 quality=90",
        extratags=[(700, 1, len(xmp), xmp, True)],
    )
    message = "^" + re.escape(f"{path}: a Ventana/Roche (BIF) scan, whose overlapping tiles")
    for read in (open_slide, read_image, image_shape):
        with pytest.raises(InputError, match=message):
            read(path)
        assert not open_handles(path)  # refused and closed, not left to the garbage collector
    assert get_slide_reader(str(path)) is None


def open_handles(path: Path) -> list[str]:
    """This process's open file descriptors on ``path`` (Linux's /proc; none where it has no /proc)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return []
    return [fd.name for fd in fds.iterdir() if os.path.realpath(fd) == os.path.realpath(path)]


def test_image_without_pixel_size_falls_back_and_says_so(tmp_path):
    png = tmp_path / "x.png"
    write_image(png, rgb(64, 96))
    slide = open_slide(png)
    assert slide.mpp is None
    roi = roi_from_levels(slide.levels, None, Box.from_xywh(0, 0, 32, 32), model_mpp=0.5)
    assert roi.pixel_size == 0.5 and "records no pixel size" in roi.notes[0] and "0.5" in roi.notes[0]
    bare = roi_from_levels(slide.levels, None, None)
    assert bare.pixel_size is None and bare.image.shape == (64, 96, 3) and "no unit" in bare.notes[0]
    with pytest.raises(InputError, match="records no pixel size; give a pyramid level"):
        choose_level(slide.levels, None, target_mpp=0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3", "expected X,Y,W,H as four integers"),
        ("a,b,c,d", "expected X,Y,W,H as four integers"),
        ("0,0,0,10", "width and height must be positive"),
    ],
)
def test_bad_region_text_is_refused(text, message):
    with pytest.raises(InputError, match=message):
        Box.parse_xywh(text)


def test_region_outside_too_small_or_bad_level_is_refused():
    slide = open_slide(SVS)
    with pytest.raises(InputError, match=r"not inside the image of 2220x2967 pixels"):
        read_region(slide.levels, Box.from_xywh(2000, 0, 512, 512))
    with pytest.raises(InputError, match="smaller than the model's native patch of 128x128"):
        read_region(slide.levels, Box.from_xywh(0, 0, 100, 512), min_size=128)
    with pytest.raises(InputError, match="level 3 does not exist; it has 1 level"):
        choose_level(slide.levels, slide.mpp, level=3)
    with pytest.raises(
        InputError, match=r"^small.svs: pyramid level 3 does not exist; it has 1 level\(s\) \(0-0\)"
    ):
        choose_level(slide.levels, slide.mpp, level=3, source="small.svs")
    with pytest.raises(InputError, match="not both"):
        choose_level(slide.levels, slide.mpp, level=0, target_mpp=0.5)


def test_an_image_file_is_checked_from_its_header_and_decoded_only_when_read(tmp_path, monkeypatch):
    import napari_pathup.io.images as images_module

    png = tmp_path / "ref.png"
    image = rgb(64, 96, seed=4)
    write_image(png, image)
    decoded = []
    read_pillow = images_module._read_pillow
    monkeypatch.setattr(images_module, "_read_pillow", lambda path: decoded.append(path) or read_pillow(path))
    slide = open_slide(png)
    roi = roi_from_levels(slide.levels, None, Box.from_xywh(8, 4, 48, 32), lazy=True)
    assert decoded == [] and roi.image.shape == (32, 48, 3)  # shapes known, nothing decoded yet
    np.testing.assert_array_equal(np.asarray(roi.image), image[4:36, 8:56])
    assert len(decoded) == 1
    with pytest.raises(InputError, match="max-image-pixels"):
        open_slide(png, max_pixels=64 * 96 - 1)


def test_a_slide_cut_short_is_refused_as_holding_no_image_naming_it(tmp_path):
    broken = tmp_path / "broken.svs"
    broken.write_bytes(SVS.read_bytes()[:4096])  # the header, no IFD: tifffile finds no page
    refused = "broken.svs: the TIFF holds no readable image (is the file cut short or damaged?)"
    with pytest.raises(InputError, match=re.escape(refused)):
        open_slide(broken)
