"""The embedded default model ships inside the package and works offline out of the box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_pathup.cli import main
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.io import read_attrs, read_image
from napari_pathup.models.default import default_model_path, reference_for_class
from napari_pathup.models.load import load_model, model_hash

MAX_BYTES = 40 * 1024 * 1024  # the issue's cap (45 for version 4.9's 44.2 MB; 29.8 MB in 4.10, 30.6 in 4.11)


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


def test_the_default_models_normal_class_is_autoguided_by_the_weak_denoiser_it_records():
    """Version 4.9 draws ``normal`` guided away from a small weak denoiser (the others by classifier-free
    guidance); the weights shipped are the ones pathup.json's provenance record names."""
    from napari_pathup.checksum import tagged_sha256
    from napari_pathup.models.load import read_model_spec

    folder = default_model_path()
    record = json.loads((folder / "pathup.json").read_text())["weak_denoiser"]
    weights = folder / "weak_denoiser" / "diffusion_pytorch_model.safetensors"
    assert record["sha256"] == tagged_sha256(weights)
    spec = read_model_spec(folder)
    plans = {c: SynthesisSettings(c).resolve(spec) for c in spec.classes}
    autoguided = {c: [stage.autoguided for stage in plan.stages] for c, plan in plans.items()}
    assert autoguided == {"normal": [True, True], "stroma": [False, False], "tumour": [False, False]}


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


def test_a_class_with_several_references_starts_each_seed_from_one_in_turn(pathup_model_dir, tmp_path):
    """pathup.json "references" may list a class's slides; seed s starts from reference s mod n, and
    the output records which one (a class spanning dermis and epidermis is not drawn from one alone)."""
    import shutil

    import pytest
    from PIL import Image

    from napari_pathup.errors import InputError, ModelLoadError
    from napari_pathup.models.default import class_references
    from napari_pathup.models.load import read_model_spec

    model = shutil.copytree(pathup_model_dir, tmp_path / "model")
    (model / "references").mkdir()
    for name, colour in (("a", (200, 120, 180)), ("b", (150, 60, 140))):
        Image.fromarray(np.full((128, 128, 3), colour, np.uint8)).save(model / "references" / f"{name}.png")
    meta = json.loads((model / "pathup.json").read_text())

    def with_references(references):
        (model / "pathup.json").write_text(json.dumps({**meta, "references": references}))
        return read_model_spec(model)

    spec = with_references({"tumour": ["references/a.png", "references/b.png"], "stroma": "references/a.png"})
    assert [reference_for_class(spec, "tumour", s).name for s in range(4)] == ["a.png", "b.png"] * 2
    assert [p.name for p in class_references(spec, "stroma")] == ["a.png"]  # one path, as before
    out = tmp_path / "seed1.ome.zarr"
    argv = ["synthesize", "--model", str(model), "--class", "tumour", "--seed", "1", "--out", str(out)]
    assert main([*argv, "--size", "64", "--steps", "4", "--quiet"]) == 0
    assert read_attrs(out)["reference"]["path"] == str(model / "references" / "b.png")

    with pytest.raises(InputError, match="no reference image for class 'normal'"):
        reference_for_class(spec, "normal")
    for bad, message in (
        ([], r"'tumour'.*non-empty list"),
        (["references/a.png", 3], r"'tumour'.*non-empty list"),
        (["references/a.png", "references/gone.png"], "gone.png named in .* is missing"),
    ):
        with pytest.raises(ModelLoadError, match=message):
            reference_for_class(with_references({"tumour": bad}), "tumour")


def test_a_committed_model_the_default_denoiser_averages_is_still_the_one_recorded():
    """Version 4.6's denoiser is a weighted average (``training.denoiser.weight_average``); a model it
    averages that the repository keeps (``candidates/``) must still be those bytes, or the shipped
    model could no longer be rebuilt from the repository as the training script's usage line says."""
    folder = default_model_path()
    record = json.loads((folder / "pathup.json").read_text())["training"]["denoiser"]
    averaged = record.get("weight_average", [])
    if not averaged:
        pytest.skip("the shipped denoiser is no average")
    assert sum(entry["weight"] for entry in averaged) == pytest.approx(1.0)
    candidates = Path(__file__).resolve().parents[2] / "candidates"
    if not candidates.is_dir():
        pytest.skip("no candidates/ folder beside the tests (an installed package)")
    kept = [entry for entry in averaged if (candidates / entry["model"]).is_dir()]
    assert kept, f"none of {[e['model'] for e in averaged]} is kept in candidates/"
    for entry in kept:
        assert model_hash(candidates / entry["model"], documentation=False) == entry["hash"], entry["model"]
