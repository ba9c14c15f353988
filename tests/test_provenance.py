"""An image's recorded attributes give back the command that makes it again (``pathup slide IMAGE``)."""

from __future__ import annotations

import shlex

import numpy as np
import pytest

from helpers import synthesize_argv
from napari_pathup import __version__
from napari_pathup.cli import main
from napari_pathup.io import read_attrs, read_image
from napari_pathup.provenance import REFERENCE_PLACEHOLDER, is_run_record, synthesize_command


def _again_line(capsys) -> list[str]:
    lines = capsys.readouterr().out.splitlines()
    (again,) = [line for line in lines if line.startswith("again ")]
    return shlex.split(again.removeprefix("again").strip())


def test_the_printed_command_makes_the_same_image_again(pathup_model_dir, tmp_path, capsys):
    """Non-default settings of every kind (a bool flag, a pair, floats, a sampler) survive the round trip."""
    from PIL import Image

    reference = tmp_path / "in" / "reference.png"
    reference.parent.mkdir()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (300, 500, 3), dtype=np.uint8)).save(reference)
    out = tmp_path / "first.tif"
    extra = ["--seed", "7", "--steps", "3", "--overlap", "2", "--jitter", "--weights", "gaussian", "--sigma"]
    extra += ["0.25", "--guidance-interval", "0.2,0.9", "--sampler", "euler", "--region", "40,20,320,200"]
    assert main(synthesize_argv(pathup_model_dir, reference, out, *extra, size="160x96")) == 0
    capsys.readouterr()
    assert main(["slide", str(out)]) == 0
    argv = _again_line(capsys)
    assert argv[:2] == ["pathup", "synthesize"] and argv[-2:] == ["--out", "first-again.tif"]
    for flag in ("--jitter", "--weights", "--sampler", "--guidance-interval", "--region"):
        assert flag in argv
    again = tmp_path / "again.tif"
    argv[-1] = str(again)
    assert main([*argv[1:], "--quiet"]) == 0
    np.testing.assert_array_equal(read_image(again), read_image(out))
    settings = read_attrs(again)["settings"]
    assert settings == read_attrs(out)["settings"] and settings["jitter"] is True


def test_a_file_that_napari_pathup_did_not_make_prints_no_command(tmp_path, capsys):
    from PIL import Image

    png = tmp_path / "field.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(png)
    assert main(["slide", str(png)]) == 0
    out = capsys.readouterr().out
    assert "made by" not in out and "again" not in out
    assert not is_run_record({}) and not is_run_record({"generator": "napari-pathup 1", "settings": None})
    assert is_run_record(_attrs())
    for key in ("model", "settings"):  # a record edited by hand: no command rather than a traceback
        assert not is_run_record({k: v for k, v in _attrs().items() if k != key})
    assert not is_run_record(_attrs(seed=None) | {"settings": {"class_name": "tumour"}})
    argv, _ = synthesize_command(_attrs(reference_region={"x": 1}))  # a partial region is left out
    assert "--region" not in argv


def _attrs(**changes):
    settings = {"class_name": "tumour", "seed": 1, "height": 64, "width": 96, "steps": 4, "jitter": False}
    settings["decode_tile"] = 64
    attrs = {
        "generator": f"napari-pathup {__version__}",
        "settings": settings,
        "model": {"path": "/models/m", "hash": "sha256:0"},
        "reference": {"path": "/data/slide.scn", "sha256": "sha256:1"},
        "reference_region": {"x": 5, "y": 6, "width": 70, "height": 80, "level": 1, "scan_region": 2},
        "device": "cpu",
        "dtype": "float32",
    }
    for key, value in changes.items():
        if key in settings:
            settings[key] = value
        else:
            attrs[key] = value
    return attrs


def test_the_command_names_the_region_level_and_scanned_region_of_a_slide():
    argv, notes = synthesize_command(_attrs(), out="x.ome.zarr")
    assert argv[:5] == ["synthesize", "--model", "/models/m", "--reference", "/data/slide.scn"]
    text = " ".join(argv)
    assert "--region 5,6,70,80 --level 1 --scan-region 2" in text
    assert "--class tumour --seed 1 --size 96x64 --steps 4" in text and "--jitter" not in text
    assert text.endswith("--device cpu --dtype float32 --out x.ome.zarr") and notes == []


@pytest.mark.parametrize(
    ("changes", "note"),
    [
        ({"reference": {"path": "", "sha256": ""}}, f"replace {REFERENCE_PLACEHOLDER} with its file"),
        ({"decode_tile": 32}, "decode_tile was 32 (set from Python; no flag sets it)"),
        ({"generator": "napari-pathup 0.0.1"}, "made by napari-pathup 0.0.1; this is napari-pathup"),
        ({"torch": "1.0.0+cpu"}, "made with torch 1.0.0+cpu; this is torch"),
    ],
)
def test_what_the_command_cannot_carry_over_is_said(changes, note):
    argv, notes = synthesize_command(_attrs(**changes))
    assert any(note in n for n in notes), notes
    if "reference" in changes:
        assert argv[argv.index("--reference") + 1] == REFERENCE_PLACEHOLDER
