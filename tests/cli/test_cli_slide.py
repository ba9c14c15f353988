"""``pathup slide``: what a user needs to choose --scan-region, --region, --level and --mpp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import hamamatsu_ndpi, leica_scn, pyramidal_ome_tiff, rgb
from napari_pathup.cli import main
from napari_pathup.io import read_attrs, read_image

SVS = Path(__file__).resolve().parents[2] / "data" / "demo" / "normal" / "cmu_small_region.svs"


def test_a_pyramid_is_listed_level_by_level_with_sizes_and_pixel_sizes(tmp_path, capsys):
    slide = pyramidal_ome_tiff(tmp_path / "slide.ome.tif", rgb(256, 384), mpp=0.25)
    assert main(["slide", str(slide)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "pixel size  0.25 µm/px at level 0" in lines
    header = next(k for k, line in enumerate(lines) if line.startswith("level"))
    rows = [line.split() for line in lines[header + 1 :]]
    assert rows == [["0", "384x256", "1", "0.25"], ["1", "192x128", "2", "0.5"], ["2", "96x64", "4", "1"]]


def test_a_hamamatsu_ndpi_is_listed_without_its_macro_image(tmp_path, capsys):
    slide = hamamatsu_ndpi(tmp_path / "slide.ndpi", rgb(256, 384), rgb(64, 160, seed=1), mpp=0.25)
    assert main(["slide", str(slide)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "pixel size  0.25 µm/px at level 0" in lines
    header = next(k for k, line in enumerate(lines) if line.startswith("level"))
    rows = [line.split() for line in lines[header + 1 :]]
    assert rows == [["0", "384x256", "1", "0.25"], ["1", "96x64", "4", "1"]]
    assert not any(line.startswith("note") for line in lines)
    planes = [(rgb(256, 384, seed=2), -1000), (rgb(256, 384, seed=3), 1000), (rgb(256, 384, seed=4), 2000)]
    stack = hamamatsu_ndpi(tmp_path / "stack.ndpi", rgb(256, 384), rgb(64, 160, seed=1), planes=planes)
    assert main(["slide", str(stack)]) == 0
    assert (
        "note        scanned at 4 focal planes (Z -1000 to 2000 nm from the nominal focus); the plane at Z 0 "
        "nm is read, as OpenSlide does"
    ) in capsys.readouterr().out.splitlines()


def test_a_bif_is_refused_naming_the_reader_that_opens_it(tmp_path, capsys):
    bif = tmp_path / "slide.bif"
    bif.write_bytes(bytes(16))
    assert main(["slide", str(bif)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pathup slide: error: {bif}: .bif slides are not read by napari-pathup itself")
    assert "open it in napari with napari-wsi (OpenSlide)" in err


def test_a_slide_scanned_in_two_regions_lists_each_as_scan_region_numbers_them(tmp_path, capsys):
    first, second = rgb(256, 384, seed=1), rgb(320, 256, seed=2)
    slide = leica_scn(tmp_path / "two.scn", rgb(64, 160), first, more=[(second, (1_500_000, 300_000))])
    assert main(["slide", str(slide)]) == 0
    out = capsys.readouterr().out
    assert "regions     2 scanned regions (--scan-region N; without it, the largest)" in out
    assert "region 1    two.scn [region 1], at x 0 µm, y 200 µm on the glass" in out
    assert "region 2    two.scn [region 2], at x 500 µm, y 0 µm on the glass" in out
    assert out.index("384x256") < out.index("region 2") < out.index("256x320")


def test_an_image_without_a_pixel_size_says_so_and_a_missing_file_is_one_line(tmp_path, capsys):
    from napari_pathup.io import write_image

    png = tmp_path / "roi.png"
    write_image(png, rgb(64, 96))
    assert main(["slide", str(png)]) == 0
    out = capsys.readouterr().out
    assert "pixel size  none recorded (so --mpp cannot choose a level)" in out and "96x64" in out
    assert main(["slide", str(tmp_path / "missing.svs")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pathup slide: error: {tmp_path / 'missing.svs'}: no such file; expected an image "
        "(.png, .jpg, .jpeg, .tif, .tiff, .svs, .scn, .ndpi, .ome.zarr)"
    )


def test_listing_a_slide_imports_no_torch():
    code = (
        "import sys; from napari_pathup.cli import main; "
        f"assert main(['slide', {str(SVS)!r}]) == 0; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2220x2967" in done.stdout and "0.499 µm/px" in done.stdout


def test_associated_images_are_listed_and_one_is_written_as_openslide_reads_it(tmp_path, capsys):
    openslide = pytest.importorskip("openslide")
    assert main(["slide", str(SVS)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        "associated  label 387x463, macro 1280x431, thumbnail 574x768 "
        "(--associated NAME --out FILE writes one)"
    ) in out
    label = tmp_path / "label.png"
    assert main(["slide", str(SVS), "--associated", "label", "--out", str(label)]) == 0
    with openslide.OpenSlide(str(SVS)) as reference:
        expected = np.asarray(reference.associated_images["label"].convert("RGB"))
    np.testing.assert_array_equal(read_image(label), expected)
    assert read_attrs(label) == {"associated_image": "label", "source": str(SVS)}
    # an existing output is kept, and a name the slide lacks says which it has
    before = label.read_bytes()
    assert main(["slide", str(SVS), "--associated", "macro", "--out", str(label)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert label.read_bytes() == before
    ndpi = hamamatsu_ndpi(tmp_path / "slide.ndpi", rgb(256, 384), rgb(64, 160, seed=1))
    assert main(["slide", str(ndpi), "--associated", "label", "--out", str(tmp_path / "l.png")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pathup slide: error: {ndpi}: the slide has no label image; its associated images: macro"
    )
    assert not (tmp_path / "l.png").exists()
    assert main(["slide", str(ndpi), "--out", str(tmp_path / "l.png")]) == 2
    assert "--associated NAME and --out FILE go together" in capsys.readouterr().err
