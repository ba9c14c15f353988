"""The embedded default model ships inside the package and works offline out of the box."""

from __future__ import annotations

import json

import numpy as np

from napari_pathup.cli import main
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.io import read_attrs, read_image
from napari_pathup.models.default import default_model_path, reference_for_class
from napari_pathup.models.load import load_model

MAX_BYTES = 40 * 1024 * 1024


def test_the_default_model_ships_and_loads():
    folder = default_model_path()
    assert folder is not None, "the package ships no default model"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= MAX_BYTES
    model = load_model(folder)
    assert model.kind == "pathup"
    assert sorted(model.classes) == ["normal", "stroma", "tumour"]
    meta = json.loads((folder / "pathup.json").read_text())
    assert meta["holdout"], "the model records the regions it never trained on"
    for name in model.classes:
        reference = read_image(reference_for_class(model, name))
        assert reference.ndim == 3 and reference.shape[2] == 3 and min(reference.shape[:2]) >= 256


def test_default_model_synthesis_is_deterministic_and_class_dependent():
    model = load_model(default_model_path())
    settings = {"height": 256, "width": 256, "reference_size": 128, "steps": 6}
    ref = read_image(reference_for_class(model, "tumour"))
    a = run(model, ref, SynthesisSettings("tumour", seed=1, **settings)).image
    b = run(model, ref, SynthesisSettings("tumour", seed=1, **settings)).image
    c = run(model, ref, SynthesisSettings("stroma", seed=1, **settings)).image
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.std() > 5  # an image, not a flat field


def test_cli_runs_on_the_default_model_without_model_or_reference(tmp_path):
    out = tmp_path / "tumour.ome.zarr"
    argv = ["synthesize", "--class", "tumour", "--out", str(out), "--size", "256", "--steps", "4", "--quiet"]
    assert main(argv) == 0
    assert read_image(out).shape == (256, 256, 3)
    attrs = read_attrs(out)
    assert attrs["model"]["path"] == str(default_model_path())
