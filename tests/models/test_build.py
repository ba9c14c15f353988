"""Denoiser presets by name and back (``models.build``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_pathup.models.build import DENOISER_PRESETS, build_denoiser, denoiser_config, preset_of

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("preset", list(DENOISER_PRESETS))
def test_a_config_names_the_preset_it_was_built_from(preset: str) -> None:
    assert preset_of(denoiser_config(["a", "b"], preset=preset, latent_channels=16)) == preset


def test_another_architecture_has_no_preset_name() -> None:
    config = dict(build_denoiser(["a"], preset="cpu-large").config)
    config["layers_per_block"] = 3  # as deep as no preset
    assert preset_of(config) is None


@pytest.mark.parametrize(
    ("model", "preset"),
    [
        ("src/napari_pathup/data/default_model", "cpu-large"),
        ("candidates/patch16", "cpu-large"),
        ("candidates/patch16-xl", "cpu-xl"),  # a warm start of this one must not pass cpu-large
    ],
)
def test_the_committed_models_name_their_presets(model: str, preset: str) -> None:
    config = json.loads((REPO / model / "denoiser" / "config.json").read_text())
    assert preset_of(config) == preset
