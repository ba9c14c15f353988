"""Shared fixtures: tiny random-weight diffusers models built from configs (no downloads), and small
synthetic H&E-like data sets (class folders with a hold-out file, BRACS layout)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


@pytest.fixture
def edited_model(pathup_model_dir: Path, tmp_path: Path):
    """A factory: ``edited_model(name, **meta)`` copies the tiny PathUp model to ``tmp_path / name`` with
    the pathup.json keys in ``meta`` replaced (e.g. ``class_defaults={...}``) and returns the folder."""

    def make(name: str, **meta) -> Path:
        folder = Path(shutil.copytree(pathup_model_dir, tmp_path / name))
        path = folder / "pathup.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **meta}))
        return folder

    return make


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


def he_like(height: int, width: int, seed: int, white: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Pink background with purple blobs (chroma well above the tissue threshold); ``white`` = a glass box."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float64)
    image[:] = (235, 170, 210)
    yy, xx = np.mgrid[:height, :width]
    for _ in range(height * width // 400):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(3, 7)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (110, 60, 160)
    image += rng.normal(0, 6, image.shape)
    if white is not None:
        x, y, w, h = white
        image[y : y + h, x : x + w] = (242, 242, 242)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


class ImageKit:
    """The helpers above, as a fixture (test modules cannot import this conftest)."""

    he_like = staticmethod(he_like)
    write_png = staticmethod(write_png)


@pytest.fixture
def kit() -> type[ImageKit]:
    return ImageKit


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes, three 160x160 images, two of them with a hold-out region (``holdout.json``)."""
    root = tmp_path_factory.mktemp("data") / "demo"
    write_png(root / "tumour" / "a.png", he_like(160, 160, 1))
    write_png(root / "tumour" / "b.png", he_like(160, 192, 2))
    write_png(root / "stroma" / "c.png", he_like(160, 160, 3))
    holdout = {
        "regions": {
            "tumour/a.png": {"x": 112, "y": 0, "width": 48, "height": 160, "why": "right strip"},
            "stroma/c.png": {"x": 40, "y": 40, "width": 64, "height": 64, "why": "centre"},
        }
    }
    (root / "holdout.json").write_text(json.dumps(holdout))
    return root


@pytest.fixture
def bracs_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "BRACS_RoI"
    for split in ("train", "val"):
        for k, name in ((1, "PB"), (0, "N"), (6, "IC")):
            write_png(root / split / f"{k}_{name}" / f"{split}_{name}.png", he_like(64, 64, k))
    return root
