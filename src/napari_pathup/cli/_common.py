"""Arguments and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import re

SIZE = re.compile(r"^(\d+)(?:x(\d+))?$")


def parse_size(text: str) -> tuple[int, int]:
    """``2048`` → (2048, 2048); ``3072x2048`` → height 2048, width 3072.

    WIDTHxHEIGHT, as image tools write sizes; the result is (height, width), as arrays are shaped.
    """
    match = SIZE.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected N or WIDTHxHEIGHT, e.g. 2048 or 3072x2048")
    width = int(match.group(1))
    height = int(match.group(2) or match.group(1))
    return height, width


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the embedded default model)")
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="allow --model to name a hub id and download it (safetensors only); off by default",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))


def load_for_run(args: argparse.Namespace):
    """Load the model named by ``--model`` onto ``--device`` in ``--dtype``."""
    from napari_pathup.engine.device import select_device, select_dtype
    from napari_pathup.models.default import resolve_model_spec
    from napari_pathup.models.load import load_model

    device = select_device(args.device)
    dtype = select_dtype(args.dtype)
    model = load_model(resolve_model_spec(args.model), allow_download=args.allow_download)
    return model.to(device, dtype)


def add_sampling_arguments(parser: argparse.ArgumentParser, scheduler_flag: str = "--scheduler") -> None:
    """The engine's sampling settings (steps, strengths, guidance, patches, blend, sampler, batch).

    ``pathup augment`` names the diffusers scheduler ``--sampler``: there ``--scheduler`` is the Dask
    scheduler's address.
    """
    parser.add_argument("--steps", type=int, help="scheduler steps of the full schedule (model default)")
    parser.add_argument("--strength", type=float, help="stage-1 img2img strength t_i in (0, 1]")
    parser.add_argument("--upscale-strength", type=float, help="stage-2 noise strength in (0, 1]")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (1 = none)")
    parser.add_argument("--patch", type=int, help="latent patch size p (default: the denoiser's native size)")
    parser.add_argument("--overlap", type=int, help="latent patch overlap o (default: p/4)")
    parser.add_argument("--weights", choices=("uniform", "gaussian", "cosine"), help="blend weights w")
    parser.add_argument(
        "--sigma", type=float, default=0.3, help="gaussian weights: sigma relative to the patch"
    )
    parser.add_argument("--jitter", action="store_true", help="shift the patch grid every step (seeded)")
    parser.add_argument("--batch-size", type=int, default=8, help="patches per denoiser call")
    parser.add_argument(
        scheduler_flag,
        dest="sampler",
        help="ddim, ddpm, euler, euler-a, dpm++, unipc, ... (model default)",
    )
    parser.add_argument(
        "--reference-size", type=int, default=512, help="stage-1 size (shorter side), default 512"
    )


def sampling_settings(args: argparse.Namespace) -> dict:
    """The :class:`~napari_pathup.engine.pipeline.SynthesisSettings` fields that
    :func:`add_sampling_arguments` sets (plus ``--size``), by field name."""
    height, width = args.size
    return {
        "height": height,
        "width": width,
        "reference_size": args.reference_size,
        "steps": args.steps,
        "strength": args.strength,
        "upscale_strength": args.upscale_strength,
        "guidance": args.guidance,
        "patch_size": args.patch,
        "overlap": args.overlap,
        "weights": args.weights,
        "sigma": args.sigma,
        "jitter": args.jitter,
        "batch_size": args.batch_size,
        "scheduler": args.sampler,
    }
