"""``pathup train``: train a class-conditioned PathUp model (autoencoder, then denoiser) from images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_pathup.cli._common import (
    add_split_argument,
    number,
    positive_int,
    run_settings,
    trained_message,
    whole,
)
from napari_pathup.cli.train_text_to_image import add_arguments as add_fine_tune_arguments
from napari_pathup.cli.train_text_to_image import run_fine_tune
from napari_pathup.engine.plan import check_defaults
from napari_pathup.errors import SettingsError
from napari_pathup.training import DENOISER_GAN_JUDGES, DENOISER_STORAGES


def _key_value(text: str, flag: str = "--set-default") -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. steps=20")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    try:
        check_defaults({key.strip(): parsed}, flag)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return key.strip(), parsed


def _class_key_value(text: str) -> tuple[str, str, object]:
    name, sep, setting = text.partition(":")
    if not sep or not name.strip():
        example = "tumour:upscale_strength=0.9"
        raise argparse.ArgumentTypeError(f"{text!r}: expected CLASS:KEY=VALUE, e.g. {example}")
    return (name.strip(), *_key_value(setting, "--set-class-default"))


def _class_factor(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected CLASS=FACTOR, e.g. stroma=0")
    return name.strip(), number(0)(value)


def _add_class_factors(group: argparse._ArgumentGroup, flag: str, dest: str, help: str) -> None:
    """A repeatable ``CLASS=FACTOR`` option, collected as a list of (name, factor) pairs in ``dest``."""
    group.add_argument(
        flag, dest=dest, action="append", type=_class_factor, default=[], metavar="CLASS=FACTOR", help=help
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a class-conditioned PathUp model from folders of H&E images",
        description="Train an 8x autoencoder (unless --autoencoder gives one) and a denoiser conditioned on "
        "class and scale (overview: whole images shrunk, for stage 1; native: full-magnification crops, for "
        "the patch stage), then write the model folder that `pathup synthesize --model` loads. DATA holds "
        "one sub-folder of images per class (png, jpg, tif, svs, ome.zarr), or the BRACS RoI layout "
        "DATA/<split>/<k>_<CLASS>/*.png. Regions named in a hold-out file (default DATA/holdout.json) are "
        "never trained on. Checkpoints go to MODEL_DIR/checkpoints; rerun with --resume to continue.",
    )
    p.add_argument("data", metavar="DATA", type=Path, help="folder of class folders (or BRACS layout)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", type=Path, help="model folder to write")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in MODEL_DIR")
    p.add_argument(
        "--holdout",
        metavar="FILE.json",
        help="hold-out regions (default: DATA/holdout.json if present; 'none' for none)",
    )
    add_split_argument(p, "to train on")
    p.add_argument(
        "--max-images-per-class", type=positive_int, metavar="N", help="seeded random subset of each class"
    )
    p.add_argument(
        "--min-tissue", type=number(0, 1), default=0.5, help="least tissue fraction of a crop (0.5)"
    )
    p.add_argument(
        "--reference-size",
        type=positive_int,
        default=512,
        help="stage-1 size whose shrink factor the overview scale imitates (512, as synthesis)",
    )

    ae = p.add_argument_group("autoencoder (phase 1)")
    ae.add_argument(
        "--autoencoder",
        metavar="DIR",
        type=Path,
        help="use this trained autoencoder (folder or PathUp model) instead of training one",
    )
    ae.add_argument("--ae-preset", default="cpu", help="tiny, cpu (default), cpu-wide or patch")
    ae.add_argument("--ae-iters", type=whole(0), default=6000, help="iterations (6000)")
    ae.add_argument("--ae-batch-size", type=positive_int, default=4, help="crops per iteration (4)")
    ae.add_argument("--ae-crop", type=positive_int, default=64, help="crop side in pixels (64)")
    ae.add_argument("--ae-lr", type=number(0, low_open=True), default=2e-3, help="learning rate (2e-3)")
    ae.add_argument("--latent-channels", type=positive_int, default=4, help="latent channels (4)")

    gan = p.add_argument_group("decoder as a conditional GAN (phase 1b; the encoder stays frozen)")
    gan.add_argument("--gan-iters", type=whole(0), default=0, help="iterations (0: keep the phase-1 decoder)")
    gan.add_argument("--gan-batch-size", type=positive_int, default=4, help="crops per iteration (4)")
    gan.add_argument("--gan-crop", type=positive_int, default=128, help="crop side in pixels (128)")
    gan.add_argument(
        "--gan-lr",
        type=number(0, low_open=True),
        default=1e-4,
        help="learning rate, Adam betas (0.9, 0.9) (1e-4)",
    )
    gan.add_argument(
        "--gan-weight",
        type=number(0),
        default=0.5,
        help="adversarial weight against reconstruction 1 (0.5)",
    )
    gan.add_argument(
        "--hed-jitter",
        type=number(0),
        nargs=2,
        default=(0.0, 0.0),
        metavar=("SCALE", "SHIFT"),
        help="H&E stain jitter of training crops: stain scale 1 +- SCALE, shift +- SHIFT optical density "
        "(0 0: none; e.g. 0.05 0.02)",
    )

    dn = p.add_argument_group("denoiser (phase 2)")
    dn.add_argument(
        "--init",
        metavar="MODEL_DIR",
        type=Path,
        help="continue from a trained PathUp model (e.g. the shipped one) when no checkpoint exists: its "
        "autoencoder, denoiser weights and iteration count (a warm start; the optimizer starts anew)",
    )
    dn.add_argument(
        "--preset",
        default=None,
        help="denoiser size: tiny, cpu (default), cpu-large, cpu-deep, cpu-xl, small or base; with --init: "
        "the model's own (default), or a preset of its channels with more layers per block (the model is "
        "deepened without changing its function)",
    )
    dn.add_argument("--iters", type=positive_int, default=6000, help="iterations (6000)")
    dn.add_argument("--batch-size", type=positive_int, default=8, help="latent crops per iteration (8)")
    dn.add_argument(
        "--crop",
        type=positive_int,
        default=256,
        help="crop side in pixels, a multiple of 64 (256); the model's native patch is crop/8 latent pixels",
    )
    dn.add_argument("--lr", type=number(0, low_open=True), default=2e-4, help="learning rate (2e-4)")
    dn.add_argument(
        "--snr-gamma",
        type=number(0),
        default=5.0,
        help="min-SNR-γ loss weighting (5); 0: none, the plain loss, which weighs the low-noise steps "
        "(fine latent texture) far more; may change on resume",
    )
    dn.add_argument("--prediction", default="v_prediction", choices=("v_prediction", "epsilon"))
    dn.add_argument(
        "--label-dropout", type=number(0, 1), default=0.1, help="null-label probability for guidance (0.1)"
    )
    dn.add_argument(
        "--overview-fraction", type=number(0, 1), default=0.3, help="share of overview-scale crops (0.3)"
    )
    dn.add_argument(
        "--set-default",
        dest="defaults",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="synthesis default written to pathup.json, e.g. steps=20 (repeatable)",
    )
    dn.add_argument(
        "--set-class-default",
        dest="class_defaults",
        action="append",
        type=_class_key_value,
        default=[],
        metavar="CLASS:KEY=VALUE",
        help="synthesis default of one class, over --set-default, written to pathup.json "
        '"class_defaults", e.g. tumour:upscale_strength=0.9 (repeatable)',
    )

    adv = p.add_argument_group(
        "denoiser with a latent adversarial term (phase 2b, after phase 2; training/denoiser_gan.py)"
    )
    adv.add_argument(
        "--denoiser-gan-iters",
        type=whole(0),
        default=0,
        metavar="N",
        help="the denoiser's iteration count at the end of its adversarial leg, counting on from --iters "
        "(0: no leg)",
    )
    adv.add_argument(
        "--denoiser-gan-lr", type=number(0, low_open=True), default=5e-5, help="learning rate (5e-5)"
    )
    adv.add_argument(
        "--denoiser-gan-weight",
        type=number(0),
        default=0.1,
        help="adversarial weight against the v loss 1 (0.1)",
    )
    adv.add_argument(
        "--denoiser-gan-max-timestep",
        type=positive_int,
        default=750,
        metavar="T",
        help="judge the clean-latent predictions of timesteps below T only (750, of 1000)",
    )
    adv.add_argument(
        "--denoiser-gan-judge",
        choices=DENOISER_GAN_JUDGES,
        default="clean",
        help="what the discriminator sees: the clean latent alone (clean, default), or beside the "
        "noisy latent it was predicted from and the noise level (pair, as in denoising diffusion GANs), "
        "or the frozen decoder's painting of a 16-latent-pixel window of it beside the same (pixel), or "
        "both of the last two every step, each with its own class factors (pair+pixel)",
    )
    _add_class_factors(
        adv,
        "--denoiser-gan-class-weight",
        "denoiser_gan_class_weights",
        "scale the adversarial weight for one class, e.g. stroma=0 (repeatable; other classes: 1); "
        "with --denoiser-gan-judge pair+pixel, the pair judge's",
    )
    _add_class_factors(
        adv,
        "--denoiser-gan-pixel-class-weight",
        "denoiser_gan_pixel_class_weights",
        "with --denoiser-gan-judge pair+pixel, the pixel judge's factor for one class, e.g. normal=0 "
        "(repeatable; other classes: 1)",
    )
    _add_class_factors(
        adv,
        "--denoiser-gan-crop-emphasis",
        "denoiser_gan_crop_emphasis",
        "during the leg, draw the crops of a class in proportion to 1 + FACTOR x their share of dark "
        "(cellular) tissue against their image's mean, e.g. normal=3 for more epidermis (repeatable; "
        "other classes: drawn uniformly over their tissue)",
    )

    dn.add_argument(
        "--denoiser-storage",
        choices=DENOISER_STORAGES,
        default="float32",
        help="how the exported denoiser's weights are stored: float16 or bfloat16 halves the model "
        "folder; they load as float32; bfloat16 computes the same bits where the model runs in "
        "bfloat16 (--dtype auto on a CPU that computes it) (float32)",
    )

    run_group = p.add_argument_group("run")
    run_group.add_argument(
        "--phases",
        default="autoencoder,decoder,denoiser",
        help="comma-separated subset to run now (default: all, then export); the decoder and the denoiser "
        "need only the finished autoencoder and can run in two processes at once",
    )
    run_group.add_argument(
        "--checkpoint-every", type=positive_int, default=500, metavar="N", help="iterations (500)"
    )
    run_group.add_argument(
        "--eval-every",
        type=whole(0),
        default=250,
        metavar="N",
        help="hold-out PSNR / validation loss every N iterations (250; 0: only at the end)",
    )
    run_group.add_argument("--seed", type=whole(0), default=0)
    run_group.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    run_group.add_argument(
        "--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)"
    )
    run_group.add_argument("--quiet", action="store_true", help="no progress bars")
    add_fine_tune_arguments(p)
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    if args.base is not None:
        return run_fine_tune(args)
    from napari_pathup.datasets import CELL
    from napari_pathup.errors import InputError
    from napari_pathup.models.build import DENOISER_PRESETS
    from napari_pathup.training.autoencoder import PRESET_NAMES
    from napari_pathup.training.settings import TrainConfig
    from napari_pathup.training.train import train

    for flag, value, presets in (
        ("--ae-preset", args.ae_preset, PRESET_NAMES),
        ("--preset", args.preset, DENOISER_PRESETS),
    ):
        if value is not None and value not in presets:
            raise InputError(f"{flag} {value!r}: expected one of {', '.join(presets)}")
    if args.ae_crop % CELL:  # (--crop is checked by training.train itself)
        raise InputError(
            f"--ae-crop must be a multiple of {CELL} (the autoencoder factor), got {args.ae_crop}"
        )
    config = TrainConfig(
        data=args.data,
        out=args.out,
        autoencoder=args.autoencoder,
        ae_preset=args.ae_preset,
        ae_iters=args.ae_iters,
        ae_batch_size=args.ae_batch_size,
        ae_crop=args.ae_crop,
        ae_lr=args.ae_lr,
        preset=args.preset,
        iters=args.iters,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        snr_gamma=args.snr_gamma,
        latent_channels=args.latent_channels,
        prediction=args.prediction,
        label_dropout=args.label_dropout,
        overview_fraction=args.overview_fraction,
        gan_iters=args.gan_iters,
        gan_batch_size=args.gan_batch_size,
        gan_crop=args.gan_crop,
        gan_lr=args.gan_lr,
        gan_weight=args.gan_weight,
        denoiser_gan_iters=args.denoiser_gan_iters,
        denoiser_gan_lr=args.denoiser_gan_lr,
        denoiser_gan_weight=args.denoiser_gan_weight,
        denoiser_gan_max_timestep=args.denoiser_gan_max_timestep,
        denoiser_gan_judge=args.denoiser_gan_judge,
        denoiser_gan_class_weights=dict(args.denoiser_gan_class_weights),
        denoiser_gan_pixel_class_weights=dict(args.denoiser_gan_pixel_class_weights),
        denoiser_gan_crop_emphasis=dict(args.denoiser_gan_crop_emphasis),
        hed_scale=args.hed_jitter[0],
        hed_shift=args.hed_jitter[1],
        init=args.init,
        denoiser_storage=args.denoiser_storage,
        phases=tuple(s.strip() for s in args.phases.split(",") if s.strip()),
        **run_settings(args),
    )
    out = train(config)
    print(trained_message(out))
    return 0
