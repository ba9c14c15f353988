"""scripts/slide_references.py: one reference per training slide of a class, never a hold-out pixel."""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_pathup.io import read_image
from napari_pathup.models.default import class_references, reference_for_class, take_reference
from napari_pathup.models.load import read_model_spec

SCRIPT = Path(__file__).parents[1] / "scripts" / "slide_references.py"


def run_script(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def model_with_one_reference(pathup_model_dir: Path, tiny_dataset: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model whose only reference is ``tumour``'s, a crop of b.png that is not a
    window the rule picks."""
    from PIL import Image

    model = shutil.copytree(pathup_model_dir, tmp_path / "model")
    (model / "references").mkdir()
    own = read_image(tiny_dataset / "tumour" / "b.png")[:128, :128, :3]
    Image.fromarray(np.ascontiguousarray(own)).save(model / "references" / "tumour.png")
    meta = json.loads((model / "pathup.json").read_text())
    references = {"tumour": "references/tumour.png"}
    (model / "pathup.json").write_text(json.dumps({**meta, "references": references}))
    return model


def test_each_training_slide_of_a_class_becomes_a_reference(
    pathup_model_dir, tiny_dataset, tmp_path, monkeypatch
):
    model = model_with_one_reference(pathup_model_dir, tiny_dataset, tmp_path)
    run_script(monkeypatch, str(model), "--data", str(tiny_dataset), "--classes", "tumour")
    spec = read_model_spec(model)
    paths = class_references(spec, "tumour")
    assert [p.name for p in paths] == ["tumour.png", "tumour-a.png", "tumour-b.png"]
    assert reference_for_class(spec, "tumour", 0) == paths[0]  # seed 0 keeps the reference it had
    taken = [reference_for_class(spec, "tumour", seed) for seed in (1, 2, 3, 5)]
    assert taken == [paths[1], paths[2], paths[0], paths[2]]  # seeds take the slides in turn
    assert take_reference(paths, 4) == reference_for_class(spec, "tumour", 4)
    window = read_image(paths[1])
    assert window.shape[1] <= 112  # a.png's hold-out is the strip x >= 112: none of it
    a = read_image(tiny_dataset / "tumour" / "a.png")[..., :3]
    assert any(
        np.array_equal(a[y : y + window.shape[0], x : x + window.shape[1]], window[..., :3])
        for y in range(0, a.shape[0] - window.shape[0] + 1, 8)
        for x in range(0, 112 - window.shape[1] + 1, 8)
    ), "the window is cut from the slide's training area"

    run_script(monkeypatch, str(model), "--data", str(tiny_dataset), "--classes", "tumour")  # idempotent
    assert [p.name for p in class_references(read_model_spec(model), "tumour")] == [p.name for p in paths]


def test_data_without_hold_outs_is_refused(pathup_model_dir, tiny_dataset, tmp_path, monkeypatch):
    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    (data / "holdout.json").unlink()
    with pytest.raises(SystemExit, match=r"no holdout\.json"):
        run_script(monkeypatch, str(pathup_model_dir), "--data", str(data), "--classes", "tumour")


def test_skipped_slides_give_no_reference_and_an_unknown_key_is_refused(
    pathup_model_dir, tiny_dataset, tmp_path, monkeypatch
):
    model = model_with_one_reference(pathup_model_dir, tiny_dataset, tmp_path)
    before = (model / "pathup.json").read_text()
    data = ["--data", str(tiny_dataset), "--classes", "tumour"]
    with pytest.raises(SystemExit, match=r"--skip tumour/c\.png: no training slide"):
        run_script(monkeypatch, str(model), *data, "--skip", "tumour/c.png")
    assert (model / "pathup.json").read_text() == before and sorted(
        p.name for p in (model / "references").iterdir()
    ) == ["tumour.png"]

    run_script(monkeypatch, str(model), *data, "--skip", "tumour/b.png")
    assert [p.name for p in class_references(read_model_spec(model), "tumour")] == [
        "tumour.png",
        "tumour-a.png",
    ]
