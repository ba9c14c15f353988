"""``pathup train --base PIPELINE``: the options and the run of a Stable Diffusion fine-tune.

The data, crop, iteration, checkpoint and run options of ``pathup train`` keep their meaning; the
options that only shape a PathUp-layout model (autoencoder, GAN decoder, denoiser preset, ...) are
refused with ``--base``. ``--crop`` and ``--lr`` default to the pipeline's native size and to 1e-5
(1e-4 with LoRA) unless given.
"""

from __future__ import annotations

import argparse
import os

from napari_pathup.cli._common import run_settings, trained_message
from napari_pathup.errors import InputError
from napari_pathup.training import MIXED_PRECISION

#: ``pathup train`` options that build a PathUp-layout model and mean nothing for a fine-tune
PATHUP_ONLY = (
    "autoencoder",
    "ae_preset",
    "ae_iters",
    "ae_batch_size",
    "ae_crop",
    "ae_lr",
    "latent_channels",
    "gan_iters",
    "gan_batch_size",
    "gan_crop",
    "gan_lr",
    "gan_weight",
    "denoiser_gan_iters",
    "denoiser_gan_lr",
    "denoiser_gan_weight",
    "denoiser_gan_max_timestep",
    "denoiser_gan_judge",
    "denoiser_gan_class_weights",
    "denoiser_gan_pixel_class_weights",
    "denoiser_gan_crop_emphasis",
    "hed_jitter",
    "init",
    "preset",
    "prediction",
    "phases",
    "denoiser_storage",
)


class _DefaultInt(int):
    """A default value the user did not give (so ``--base`` may choose its own)."""


class _DefaultFloat(float):
    """A default value the user did not give (so ``--base`` may choose its own)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the fine-tune options to the ``train`` parser (after all its own options)."""
    defaults = {name: p.get_default(name) for name in PATHUP_ONLY}
    p.set_defaults(
        pathup_only_defaults=defaults,
        crop=_DefaultInt(p.get_default("crop")),
        lr=_DefaultFloat(p.get_default("lr")),
    )
    g = p.add_argument_group(
        "fine-tune a Stable Diffusion pipeline instead (--base; see docs/training.md)",
        "UNet fine-tune (text encoder frozen unless --train-text-encoder) with prompts from class and scale; "
        "writes a pipeline folder that `pathup synthesize --model` loads with the same prompts. The data, "
        "--iters, --batch-size, --label-dropout, --overview-fraction and run options above apply; --crop "
        "defaults to the pipeline's native size and --lr to 1e-5 (1e-4 with --lora-rank). Under "
        "`accelerate launch` or torchrun, --batch-size is the batch of all processes together",
    )
    g.add_argument(
        "--base",
        metavar="PIPELINE",
        help="diffusers Stable Diffusion 1.x/2.x pipeline folder (safetensors only), or a hub id with "
        "--allow-download",
    )
    g.add_argument("--allow-download", action="store_true", help="allow downloading a hub id given as --base")
    g.add_argument(
        "--lora-rank",
        type=int,
        default=0,
        metavar="R",
        help="train LoRA adapters of rank R (needs peft; 0: all)",
    )
    g.add_argument("--train-text-encoder", action="store_true", help="also fine-tune the text encoder")
    g.add_argument("--ema-decay", type=float, default=0.9999, help="EMA decay cap (0.9999)")
    g.add_argument("--warmup", type=int, default=100, metavar="N", help="linear learning-rate warm-up (100)")
    g.add_argument(
        "--mixed-precision",
        default="auto",
        choices=MIXED_PRECISION,
        help="auto (default: bf16 on CUDA when supported, fp16 otherwise; none on CPU), no, fp16, bf16",
    )
    g.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations: less memory, more compute",
    )
    g.add_argument(
        "--prompt-template",
        metavar="TEXT",
        help="prompt with {class_name} and {scale} (default: the base's, else the synthesis default)",
    )


def run_fine_tune(args: argparse.Namespace) -> int:
    from napari_pathup.training.text_to_image import FineTuneConfig, fine_tune

    given = [
        name
        for name, default in args.pathup_only_defaults.items()
        if getattr(args, name) != default and getattr(args, name) is not None
    ]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise InputError(
            f"{flags}: only for a PathUp-layout model, not with --base (see pathup train --help)"
        )
    config = FineTuneConfig(
        data=args.data,
        out=args.out,
        base=args.base,
        allow_download=args.allow_download,
        lora_rank=args.lora_rank,
        train_text_encoder=args.train_text_encoder,
        iters=args.iters,
        batch_size=args.batch_size,
        crop=None if isinstance(args.crop, _DefaultInt) else args.crop,
        lr=None if isinstance(args.lr, _DefaultFloat) else args.lr,
        ema_decay=args.ema_decay,
        warmup=args.warmup,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        prompt_template=args.prompt_template,
        label_dropout=args.label_dropout,
        overview_fraction=args.overview_fraction,
        **run_settings(args),
    )
    out = fine_tune(config)
    if int(os.environ.get("RANK", "0")) == 0:  # the main process of a multi-process run speaks
        print(trained_message(out))
    return 0
