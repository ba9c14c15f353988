import numpy as np
import pytest

from napari_pathup.engine.grid import PatchGrid
from napari_pathup.engine.seams import seam_measure


def textured(height: int, width: int, seed: int = 0, noise: float = 25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(150, noise, (height, width, 3)), 0, 255).astype(np.uint8)


def test_seamless_texture_measures_about_one():
    assert seam_measure(textured(512, 640), patch_size=16, overlap=4) == pytest.approx(1.0, abs=0.05)


def test_patchwise_offsets_are_detected():
    """Each patch region gets its own brightness, as naive tiling without blending would."""
    image = textured(512, 512, noise=3).astype(np.int16)
    grid = PatchGrid(64, 64, 16, 0)
    rng = np.random.default_rng(1)
    for box in grid.boxes():
        px = box.scaled(8)
        image[px.y0 : px.y1, px.x0 : px.x1] += int(rng.integers(-20, 20))
    seamy = np.clip(image, 0, 255).astype(np.uint8)
    assert seam_measure(seamy, patch_size=16, overlap=0) > 1.5


def test_works_on_zarr_arrays():
    zarr = pytest.importorskip("zarr")
    image = textured(256, 384)
    z = zarr.create_array(
        store=zarr.storage.MemoryStore(), shape=image.shape, chunks=(64, 64, 3), dtype="uint8"
    )
    z[:] = image
    assert seam_measure(z, 8, 2) == pytest.approx(seam_measure(image, 8, 2))


def test_single_patch_has_no_seam_to_measure():
    assert np.isnan(seam_measure(textured(128, 128), patch_size=16, overlap=4))


def test_seam_grid_comes_from_recorded_settings_else_the_model_run_plan(
    tmp_path, pathup_model_dir, edited_model
):
    from napari_pathup.engine.plan import SynthesisSettings
    from napari_pathup.engine.seams import seam_grid
    from napari_pathup.errors import ModelLoadError
    from napari_pathup.models.load import read_model_spec

    recorded = seam_grid(512, 512, {"patch_size": 24, "overlap": 6})
    assert (recorded.patch_size, recorded.overlap, recorded.source) == (24, 6, "recorded settings")
    grid = seam_grid(1024, 2048, {}, pathup_model_dir)  # the tiny model: native patch 16
    assert (grid.patch_size, grid.overlap, grid.scale_factor) == (16, 4, 8)
    assert seam_grid(64, 2048, None, pathup_model_dir).patch_size == 8  # clamped to the 8-pixel latent
    # the same grid the run plan gives synthesize: one source of truth
    plan = SynthesisSettings("tumour", height=1024, width=2048).resolve(read_model_spec(pathup_model_dir))
    assert (plan.stages[1].grid.patch_size, plan.stages[1].grid.overlap) == (grid.patch_size, grid.overlap)
    model = edited_model("model", defaults={"patch_size": 12, "overlap": 2})
    assert (seam_grid(1024, 1024, None, model).patch_size, seam_grid(1024, 1024, None, model).overlap) == (
        12,
        2,
    )
    with pytest.raises(ModelLoadError, match="does not exist"):
        seam_grid(512, 512, None, tmp_path / "missing")
