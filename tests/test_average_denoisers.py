"""scripts/experiments/average_denoisers.py: weighted means of one architecture's denoisers, written whole
or not at all (the thirty-third session's interpolation between a plain denoiser and its leg)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from napari_pathup.models.build import build_random_pathup_model
from napari_pathup.models.load import model_hash

SCRIPT = Path(__file__).parents[1] / "scripts" / "experiments" / "average_denoisers.py"
WEIGHTS = "denoiser/diffusion_pytorch_model.safetensors"


def run_script(monkeypatch: pytest.MonkeyPatch, *args: object) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *map(str, args)])
    runpy.run_path(str(SCRIPT), run_name="__main__")


@pytest.fixture(scope="module")
def two_starts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("soup")
    return build_random_pathup_model(root / "a", seed=0), build_random_pathup_model(root / "b", seed=1)


def test_weights_interpolate_every_tensor(
    two_starts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leg, plain = two_starts
    out = tmp_path / "mix"
    run_script(monkeypatch, out, leg, leg, plain, "--weights", 0.65, 0.35)
    mixed, a, b = (load_file(p / WEIGHTS) for p in (out, leg, plain))
    assert set(mixed) == set(a)
    for name, tensor in mixed.items():
        torch.testing.assert_close(tensor.float(), 0.65 * a[name].float() + 0.35 * b[name].float())
    meta, base = (json.loads((p / "pathup.json").read_text()) for p in (out, leg))
    made_by = [
        {"model": "a", "hash": model_hash(leg, documentation=False), "weight": 0.65},
        {"model": "b", "hash": model_hash(plain, documentation=False), "weight": 0.35},
    ]
    training = base.get("training", {})
    denoiser = {**training.get("denoiser", {}), "weight_average": made_by}
    assert meta == {**base, "training": {**training, "denoiser": denoiser}}  # BASE's, and what made it
    assert not (tmp_path / "mix.partial").exists()


def test_refuses_an_existing_out_or_weights_that_do_not_sum_to_one(
    two_starts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leg, plain = two_starts
    out = tmp_path / "mix"
    out.mkdir()
    (out / "keep.txt").write_text("a user's file")
    with pytest.raises(SystemExit, match="exists"):
        run_script(monkeypatch, out, leg, leg, plain)
    assert (out / "keep.txt").read_text() == "a user's file"
    with pytest.raises(SystemExit, match="summing to 1"):
        run_script(monkeypatch, tmp_path / "other", leg, leg, plain, "--weights", 0.7, 0.7)
    assert not (tmp_path / "other").exists()


def test_refuses_denoisers_of_other_architectures(
    two_starts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leg, _ = two_starts
    wider = build_random_pathup_model(tmp_path / "wider", classes=("tumour", "stroma", "normal", "other"))
    with pytest.raises(SystemExit, match="differ in config"):
        run_script(monkeypatch, tmp_path / "mix", leg, leg, wider)
    assert not (tmp_path / "mix").exists()
