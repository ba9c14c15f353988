"""Denoiser patch evaluations per step and per run, beside the public PathUp tiling (counting only).

Run: ``python benchmarks/bench_patch_evals.py``. Counts come from ``engine.estimate.count_work``;
the stage-2 count per step is cross-checked by running ``denoise_patches`` with a stub denoiser
that only counts the patches it is given (so the count is what the sampler does, not a formula).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import NOTE, drain, load_small_model, machine_info, markdown_table
from napari_pathup.engine.estimate import count_work
from napari_pathup.engine.grid import PatchGrid
from napari_pathup.engine.pipeline import SynthesisSettings
from napari_pathup.engine.sampler import PatchSampling, denoise_patches

OUTPUT = 2048  # output side in pixels → latent 256
PUBLIC_PATCH, PUBLIC_STRIDE = 64, 16  # public PathUp code: 64-latent patches at stride 16 (overlap 48)
OVERLAP_FRACTIONS: tuple[tuple[str, float], ...] = (
    ("0", 0),
    ("1/8", 1 / 8),
    ("1/4", 1 / 4),
    ("1/2", 1 / 2),
    ("3/4", 3 / 4),
)
SIDES: tuple[int, ...] = (1024, 2048, 4096, 8192)


def counted_evaluations(model, latent: int, patch: int, overlap: int, steps: int, strength: float) -> int:
    """Patch evaluations the sampler actually asks of the denoiser (stub denoiser, CFG on)."""
    seen = 0

    def stub(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        nonlocal seen
        seen += x.shape[0]
        return torch.zeros_like(x)

    sampling = PatchSampling(steps=steps, strength=strength, guidance=3.0, patch_size=patch, overlap=overlap)
    scheduler = model.scheduler.from_config(model.scheduler.config)
    clean = torch.zeros(1, model.latent_channels, latent, latent)
    cond, uncond = model.conditioner("tumour", "native"), model.conditioner(None, "native")
    drain(denoise_patches(stub, scheduler, clean, cond, uncond, sampling, torch.Generator().manual_seed(0)))
    return seen


def main() -> None:
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as folder:
        model = load_small_model(folder)
        settings = SynthesisSettings("tumour", height=OUTPUT, width=OUTPUT).resolve(model)
        one, two = count_work(model, settings)
        latent = OUTPUT // model.vae_scale_factor
        stub_two = counted_evaluations(
            model, latent, two.patch_size, two.overlap, settings.steps, settings.upscale_strength
        )

        public = PatchGrid(latent, latent, PUBLIC_PATCH, PUBLIC_PATCH - PUBLIC_STRIDE)
        cfg = 2
        stage_one = one.steps * one.patches_per_step * cfg  # stage-1 latent 64x64: one patch, both tilings
        rows: list[list[Any]] = []
        for name, per_step in (
            (f"napari-pathup default (p={two.patch_size}, o={two.overlap})", two.patches_per_step),
            (
                f"public PathUp code (p={PUBLIC_PATCH}, stride {PUBLIC_STRIDE}, o={public.overlap})",
                len(public),
            ),
        ):
            stage_two = two.steps * per_step * cfg
            rows.append(
                [
                    name,
                    per_step,
                    per_step * cfg,
                    one.steps,
                    two.steps,
                    stage_one,
                    stage_two,
                    stage_one + stage_two,
                ]
            )
        table_1 = markdown_table(
            [
                "tiling",
                "patches/step (stage 2)",
                "evals/step with CFG",
                "stage-1 steps",
                "stage-2 steps",
                "stage-1 evals",
                "stage-2 evals",
                "evals per run",
            ],
            rows,
        )
        ratio = rows[1][-1] / rows[0][-1]

        rows_overlap = []
        for label, fraction in OVERLAP_FRACTIONS:
            p = two.patch_size
            o = int(p * fraction)
            cells = []
            for side in SIDES:
                lat = side // model.vae_scale_factor
                cells.append(len(PatchGrid(lat, lat, p, o)))
            grid = PatchGrid(latent, latent, p, o)
            evaluated = len(grid) * p * p / latent**2
            rows_overlap.append(
                [f"{label} ({o})", p - o, *cells, f"{evaluated:.2f}x", len(grid) * two.steps * cfg]
            )
        table_2 = markdown_table(
            [
                "overlap (latent px)",
                "stride",
                *(f"patches/step {s}²" for s in SIDES),
                f"latent px evaluated / latent px ({OUTPUT}²)",
                f"stage-2 evals per run ({OUTPUT}²)",
            ],
            rows_overlap,
        )

    print("# Denoiser patch evaluations")
    print()
    print(f"Machine: {machine_info()}")
    print(NOTE)
    print(
        f"Settings: output {OUTPUT}x{OUTPUT} (latent {latent}x{latent}), reference 512 (stage-1 latent "
        f"{one.latent_shape[0]}x{one.latent_shape[1]}, 1 patch), steps={settings.steps}, "
        f"strength={settings.strength}, upscale_strength={settings.upscale_strength}, "
        f"guidance={settings.guidance} (classifier-free guidance doubles every evaluation), "
        f"patch={two.patch_size}, overlap={two.overlap}, batch_size={settings.batch_size}. Counts from "
        f"engine.estimate.count_work; the public-code row uses the same schedule and PatchGrid."
    )
    print()
    print(table_1)
    print()
    print(
        f"Stub-denoiser check: denoise_patches asked for {stub_two} stage-2 evaluations "
        f"({'matches' if stub_two == rows[0][6] else 'DOES NOT MATCH'} count_work's {rows[0][6]}). "
        f"The public tiling needs {ratio:.2f}x the evaluations per run. Its grid math gives "
        f"(256 - 64) / 16 + 1 = {len(public) ** 0.5:.0f} starts per axis = {len(public)} patches per step "
        f"(the issue's 'about 157' is not a square grid count on 256x256)."
    )
    print()
    print(f"Patches per step by overlap (patch {two.patch_size}; the last row/column snaps to the edge):")
    print()
    print(table_2)


if __name__ == "__main__":
    main()
