"""Shared fixtures: tiny random-weight diffusers models built from configs (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_HE = Path(__file__).resolve().parents[2] / "shared" / "data" / "he"
CLASSES = ("tumour", "stroma", "normal")


@pytest.fixture(scope="session")
def pathup_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_pathup.models.build import build_random_pathup_model

    return build_random_pathup_model(tmp_path_factory.mktemp("models") / "pathup", classes=CLASSES)


@pytest.fixture(scope="session")
def sd_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_pathup.models.build import build_random_stable_diffusion

    return build_random_stable_diffusion(tmp_path_factory.mktemp("models") / "sd")


@pytest.fixture(scope="session")
def pathup_model(pathup_model_dir: Path):
    from napari_pathup.models.load import load_model

    return load_model(pathup_model_dir)


@pytest.fixture
def reference() -> np.ndarray:
    """A real H&E field when the shared data is present, else a seeded H&E-coloured random image."""
    path = SHARED_HE / "tumour_stardist.jpg"
    if path.is_file():
        from napari_pathup.io import read_image

        return read_image(path)
    rng = np.random.default_rng(0)
    base = np.array([200, 120, 170], np.float64)
    return np.clip(base + rng.normal(0, 30, (300, 500, 3)), 0, 255).astype(np.uint8)
