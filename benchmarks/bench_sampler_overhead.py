"""Sampler overhead: wall time of ``denoise_patches`` over the time spent inside the denoiser it calls.

Run: ``python benchmarks/bench_sampler_overhead.py [--steps N] [--profile]``. One run per row: the
denoiser is wrapped in a timer that sums ``time.perf_counter`` around every call, and the whole
sampler loop (noise, timesteps, patch cutting, guidance, merge, scheduler steps, events) is timed
around it, so ratio = total / inside-denoiser in the same run. Previews are never rendered.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import NOTE, drain, load_small_model, machine_info, markdown_table
from napari_pathup.engine.events import PatchPreview
from napari_pathup.engine.grid import default_overlap, default_patch_size
from napari_pathup.engine.sampler import PatchSampling, denoise_patches
from napari_pathup.engine.weights import WEIGHT_MODES
from napari_pathup.models.base import DenoiserFn
from napari_pathup.models.schedulers import scheduler_by_name

OUTPUT = 1024  # output side in pixels → latent 128 (stage 2)
STUB_OUTPUTS: tuple[int, ...] = (1024, 4096)  # engine-only cost: stub denoiser on these outputs
SCHEDULERS: tuple[tuple[str, str], ...] = (("ddim", "DDIM"), ("dpm++", "DPM-Solver++"))
TARGET = 1.10


class TimedDenoiser:
    """Calls ``denoiser`` and accumulates the seconds spent inside it, the calls and the patches."""

    def __init__(self, denoiser: DenoiserFn) -> None:
        self.denoiser = denoiser
        self.seconds = 0.0
        self.calls = 0
        self.samples = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.denoiser(x, t, cond)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.samples += x.shape[0]
        return out


def stub_denoiser(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A zero-cost stand-in for the denoiser (returns its input)."""
    return x


def run_once(
    model,
    clean: torch.Tensor,
    scheduler_name: str,
    sampling: PatchSampling,
    denoiser: DenoiserFn | None = None,
) -> tuple[float, TimedDenoiser, int]:
    """One sampler run: (wall seconds, the timed denoiser, patch previews seen)."""
    timed = TimedDenoiser(denoiser or model.denoiser)
    scheduler = scheduler_by_name(scheduler_name, model.scheduler)
    cond, uncond = model.conditioner("tumour", "native"), model.conditioner(None, "native")
    patches = 0

    def count(event: object) -> None:
        nonlocal patches
        patches += isinstance(event, PatchPreview)

    start = time.perf_counter()
    drain(
        denoise_patches(
            timed,
            scheduler,
            clean,
            cond,
            uncond,
            sampling,
            torch.Generator().manual_seed(0),
            torch.Generator().manual_seed(1),
            previewer=None,
            stage=2,
            scale_factor=8,
        ),
        count,
    )
    return time.perf_counter() - start, timed, patches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="schedule length (strength 0.5 keeps half)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one DDIM/cosine run, print hot spots"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        model = load_small_model(folder)
        f = model.vae_scale_factor
        latent = OUTPUT // f
        patch = default_patch_size(model.native_size, latent, latent)
        overlap = default_overlap(patch)
        clean = torch.randn(
            1, model.latent_channels, latent, latent, generator=torch.Generator().manual_seed(0)
        )
        base = PatchSampling(
            steps=args.steps, strength=0.5, guidance=3.0, patch_size=patch, overlap=overlap, batch_size=8
        )
        warm = torch.zeros(16, model.latent_channels, patch, patch)
        model.denoiser(warm, torch.tensor(500), model.conditioner("tumour", "native").expand(16))  # warm-up

        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            run_once(model, clean, "ddim", base)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return

        rows = []
        worst = 0.0
        for scheduler_name, label in SCHEDULERS:
            for weights in WEIGHT_MODES:
                for jitter in (False, True):
                    sampling = PatchSampling(**{**base.__dict__, "weights": weights, "jitter": jitter})
                    total, timed, patches = run_once(model, clean, scheduler_name, sampling)
                    ratio = total / timed.seconds
                    worst = max(worst, ratio)
                    overhead_ms = 1000 * (total - timed.seconds) / max(patches, 1)
                    rows.append(
                        [
                            label,
                            weights,
                            "on" if jitter else "off",
                            patches,
                            timed.calls,
                            timed.samples,
                            f"{total:.2f}",
                            f"{timed.seconds:.2f}",
                            f"{overhead_ms:.1f}",
                            f"{ratio:.3f}",
                        ]
                    )

        stub_rows = []
        for side in STUB_OUTPUTS:
            lat = side // f
            z = torch.randn(1, model.latent_channels, lat, lat, generator=torch.Generator().manual_seed(0))
            for scheduler_name, label in SCHEDULERS:
                total, timed, patches = run_once(model, z, scheduler_name, base, stub_denoiser)
                outside = total - timed.seconds
                stub_rows.append(
                    [
                        f"{side}² (latent {lat}²)",
                        label,
                        patches,
                        f"{total:.2f}",
                        f"{1000 * outside / patches:.2f}",
                    ]
                )

    print("# Sampler overhead")
    print()
    print(f"Machine: {machine_info()}")
    print(NOTE)
    print(
        f"Settings: denoise_patches over a stage-2 latent {latent}x{latent} (a {OUTPUT}x{OUTPUT} output), "
        f"patch={patch} (native size, clamped), overlap={overlap} (p/4), guidance=3.0 (CFG on, doubled "
        f"batches), batch_size=8, steps={args.steps}, strength=0.5 ({args.steps - int(args.steps * 0.5)} "
        f"denoising steps), float32 on CPU, events consumed without rendering previews; one warm-up "
        f"denoiser call before the first run. Target: ratio <= {TARGET:.2f}."
    )
    print()
    print(
        markdown_table(
            [
                "scheduler",
                "weights",
                "jitter",
                "patches",
                "denoiser calls",
                "samples",
                "total s",
                "inside denoiser s",
                "overhead ms/patch",
                "ratio",
            ],
            rows,
        )
    )
    print()
    print(f"Worst ratio {worst:.3f}: target {'met' if worst <= TARGET else 'NOT met'}.")
    print()
    print(
        "Engine-only cost: the same sampler (cosine weights, no jitter) with a stub denoiser that returns "
        "its input, so everything measured outside the stub is the engine's own work per patch evaluation "
        "(patch cutting, CFG cat/combine, float64 merge, scheduler step, events) - the overhead a faster "
        "denoiser (e.g. a GPU) would see:"
    )
    print()
    print(markdown_table(["output", "scheduler", "patches", "total s", "engine ms/patch"], stub_rows))


if __name__ == "__main__":
    main()
