"""Arguments and helpers shared by the sub-commands.

The sampling flags are built from one table, :data:`napari_pathup.engine.plan.SETTINGS`, so
``synthesize``, ``augment`` and ``info`` take the same flags with the same help, and their defaults
are written once (in :class:`~napari_pathup.engine.plan.SynthesisSettings` and ``DEFAULTS``): an
unset flag leaves the setting to the library, which fills it from the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_pathup.models.folder import ModelFiles

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


def whole(low: int = 0):
    """An argparse type: a whole number of at least ``low`` (the message names the rule)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least {low}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least {low}")
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


positive_int = whole(1)


def number(low: float | None = None, high: float | None = None, low_open: bool = False):
    """An argparse type: a finite number in [low, high] (``low_open``: (low, high]); NaN and inf refused."""
    rule = "a finite number" + (
        f" in {'(' if low_open else '['}{low:g}, {high:g}]"
        if low is not None and high is not None
        else (f" {'>' if low_open else '>='} {low:g}" if low is not None else "")
    )

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {rule}") from None
        ok = math.isfinite(value)
        ok = ok and (low is None or (value > low if low_open else value >= low))
        ok = ok and (high is None or value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {rule}")
        return value

    parse.__name__ = rule
    return parse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from napari_pathup.engine.plan import DTYPE_CHOICES

    parser.add_argument("--model", metavar="DIR", help="model folder (default: the embedded default model)")
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="allow --model to name a hub id and download it (safetensors only); off by default",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPE_CHOICES,
        help="auto (default): bfloat16 on a CPU that computes it in hardware (AVX512-BF16 or AMX), "
        "about 1.6x faster at the same picture; float32 elsewhere",
    )


def load_for_run(args: argparse.Namespace):
    """Load the model named by ``--model`` onto ``--device`` in ``--dtype`` (warning first when that is
    half precision computed in software)."""
    from napari_pathup.engine.device import select_device, select_dtype, slow_half_precision
    from napari_pathup.models.default import resolve_model_spec
    from napari_pathup.models.load import load_model

    device = select_device(args.device)
    dtype = select_dtype(args.dtype, device)
    if (warning := slow_half_precision(device, dtype)) is not None:
        print(f"pathup: warning: {warning}", file=sys.stderr)
    model = load_model(resolve_model_spec(args.model), allow_download=args.allow_download)
    return model.to(device, dtype)


def check_model_folder(
    model: str | None, allow_download: bool, class_name: str | None = None
) -> ModelFiles | None:
    """The checks of ``--model`` and ``--class`` that need no torch: the folder exists (or is a hub id
    the user allows to download), its files are a model's (metadata, component configs, safetensors
    weights: :func:`~napari_pathup.models.folder.check_model_files`), and it has ``class_name``.
    They run before the seconds of torch and diffusers imports, so these mistakes fail at once; the
    full check (:func:`read_spec`) follows, and adds the scheduler's class and the weights.

    Returns the checked files, or None for a hub model (checked once downloaded, after the imports)."""
    from napari_pathup.models.default import resolve_model_spec
    from napari_pathup.models.folder import check_model_files, is_hub_id, resolve_model_path
    from napari_pathup.models.spec import check_class_among

    spec = resolve_model_spec(model)
    if allow_download and is_hub_id(spec):
        return None  # a hub model: downloaded after the imports, then checked whole
    files = check_model_files(resolve_model_path(spec, allow_download=False))
    if class_name is not None:
        check_class_among(files.classes, class_name, files.path)
    return files


def read_spec(args: argparse.Namespace):
    """The ``--model`` folder described from its configs (no weights load)."""
    from napari_pathup.models.default import resolve_model_spec
    from napari_pathup.models.load import read_model_spec

    return read_model_spec(resolve_model_spec(args.model), allow_download=args.allow_download)


def _default_text(field: str) -> str:
    from napari_pathup.engine.plan import DEFAULTS, SynthesisSettings

    if field in DEFAULTS:
        value = DEFAULTS[field]
        if isinstance(value, tuple):
            value = ",".join(f"{v:g}" for v in value)
        return "the model's default" + ("" if value is None else f", else {value}")
    default = {f.name: f.default for f in dataclasses.fields(SynthesisSettings)}[field]
    if field == "patch_size":
        return "the model's default, else the denoiser's native size"
    if field == "overlap":
        return "the model's default at its default patch, else a quarter of the patch"
    return str(default)


class _Deprecated(argparse.Action):
    """An old flag spelling: stores into the new destination and says so once on stderr."""

    def __init__(self, *args: Any, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            f"pathup: {option_string} is deprecated and will be removed in the next release; use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def noise_interval(text: str) -> tuple[float, float]:
    """An argparse type: ``LOW,HIGH``, two noise levels (the plan checks their range)."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return (float(parts[0]), float(parts[1]))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected two noise levels LOW,HIGH between 0 and 1 (e.g. 0.3,1)"
        ) from None


def add_sampling_arguments(parser: argparse.ArgumentParser, old_scheduler_flag: bool = True) -> None:
    """The engine's sampling settings, one flag per row of the settings table (no defaults here).

    ``--sampler`` names the diffusers scheduler; with ``old_scheduler_flag`` the old spelling
    ``--scheduler`` still works, with a deprecation message (``pathup augment`` gives
    ``--scheduler`` to the Dask address for one more release instead).
    """
    from napari_pathup.engine.plan import (
        GUIDANCE_MODES,
        REFERENCE_FITS,
        SAMPLING_FIELDS,
        SETTINGS,
        WEIGHT_MODES,
    )

    types: dict[str, Callable[[str], Any]] = {
        "strength": float,
        "upscale_strength": float,
        "guidance": float,
        "guidance_interval": noise_interval,
        "sigma": float,
        "scheduler": str,
    }
    choices = {"weights": WEIGHT_MODES, "reference_fit": REFERENCE_FITS, "guidance_mode": GUIDANCE_MODES}
    group = parser.add_argument_group("sampling (unset: the model's default, else the library's)")
    for setting in SETTINGS:
        if setting.field not in SAMPLING_FIELDS:
            continue
        assert setting.flag is not None  # every sampling setting has one
        help_text = f"{setting.help} (default: {_default_text(setting.field)})"
        dest = setting.field
        if setting.field == "jitter":
            group.add_argument(setting.flag, dest=dest, action="store_true", default=None, help=setting.help)
        elif setting.field in choices:
            group.add_argument(setting.flag, dest=dest, choices=choices[setting.field], help=help_text)
        else:
            group.add_argument(
                setting.flag,
                dest=dest,
                type=types.get(setting.field, int),
                metavar=setting.metavar,
                help=help_text,
            )
    if old_scheduler_flag:
        group.add_argument(
            "--scheduler", dest="scheduler", action=_Deprecated, new="--sampler", help=argparse.SUPPRESS
        )
    group.add_argument(
        "--max-image-pixels",
        type=positive_int,
        metavar="N",
        help="refuse input images that declare more pixels than N, checked from the header before "
        "decoding (default: 250000000)",
    )
    group.add_argument(
        "--allow-large-run",
        action="store_true",
        help="start a run whose estimated work (denoiser patch evaluations, budget 500000), memory "
        "or disk need is above the budget; it is refused otherwise, saying the estimate",
    )


def sampling_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~napari_pathup.engine.pipeline.SynthesisSettings` fields the user gave (plus
    ``--size``), by field name; unset flags are left out so that the library's defaults apply."""
    from napari_pathup.engine.plan import SAMPLING_FIELDS

    given = {name: getattr(args, name) for name in SAMPLING_FIELDS if getattr(args, name, None) is not None}
    size = getattr(args, "size", None)
    if size is not None:
        given["height"], given["width"] = size
    return given


def split_names(text: str) -> tuple[str, ...]:
    """An argparse type: BRACS split folder names, comma-separated (``train`` or ``train,val``)."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected one or more split folder names, comma-separated (e.g. train or train,val)"
        )
    return names


def add_split_argument(parser: argparse.ArgumentParser, purpose: str) -> None:
    """``--split``: which BRACS split folders a command reads (a folder of class folders has none)."""
    parser.add_argument(
        "--split",
        type=split_names,
        default=("train",),
        metavar="NAME[,NAME...]",
        help=f"BRACS split folder(s) {purpose}, comma-separated (default: train)",
    )


def max_image_pixels(args: argparse.Namespace) -> int:
    from napari_pathup.io.images import MAX_IMAGE_PIXELS

    return args.max_image_pixels or MAX_IMAGE_PIXELS


def add_size_argument(parser: argparse.ArgumentParser, help_text: str = "output size") -> None:
    from napari_pathup.engine.plan import SynthesisSettings

    defaults = SynthesisSettings("x")
    parser.add_argument(
        "--size",
        type=parse_size,
        metavar="N|WxH",
        help=f"{help_text}, a multiple of the autoencoder factor "
        f"(default: {defaults.width}x{defaults.height})",
    )


def class_defaults(flags: list[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    """``--set-class-default`` flags, (class, key, value) each, as ``pathup.json`` "class_defaults"."""
    grouped: dict[str, dict[str, Any]] = {}
    for name, key, value in flags:
        grouped.setdefault(name, {})[key] = value
    return grouped


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``pathup train`` settings both training paths share (data, hold-outs, run), by field name."""
    return {
        "min_tissue": args.min_tissue,
        "reference_size": args.reference_size,
        "checkpoint_every": args.checkpoint_every,
        "eval_every": args.eval_every,
        "resume": args.resume,
        "seed": args.seed,
        "device": args.device,
        "threads": args.threads,
        "holdout": args.holdout,
        "splits": args.split,
        "max_images_per_class": args.max_images_per_class,
        "defaults": dict(args.defaults),
        "class_defaults": class_defaults(args.class_defaults),
        "progress": not args.quiet,
    }


def trained_message(out: Any) -> str:
    """What ``pathup train`` says when a model folder is written."""
    return (
        f"pathup train: wrote {out}; synthesise with: "
        f"pathup synthesize --model {out} --class CLASS --out OUT.png"
    )
