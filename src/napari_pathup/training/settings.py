"""The settings of a ``pathup train`` run (:class:`TrainConfig`, whose :class:`RunSettings` the
fine-tune's config shares) and the resume check: a resumed phase
must share the settings its checkpoints were made with (``*_KEYS``), compared with the run's
``checkpoints/config.json`` before anything is trained."""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from napari_pathup.datasets import DatasetIndex
from napari_pathup.errors import InputError
from napari_pathup.io.atomic import write_text_atomic
from napari_pathup.training.checkpoint import latest_checkpoint, settings_json
from napari_pathup.training.denoiser import DEFAULT_SNR_GAMMA

#: settings a resumed autoencoder phase must share with the checkpoint (``ae_iters`` may grow)
AE_KEYS = (
    "autoencoder",
    "ae_preset",
    "ae_batch_size",
    "ae_crop",
    "ae_lr",
    "latent_channels",
    "seed",
    "min_tissue",
    "reference_size",
)
#: settings a resumed denoiser phase must share (``iters`` may grow)
DENOISER_KEYS = (
    *AE_KEYS,
    "ae_iters",
    "preset",
    "batch_size",
    "crop",
    "prediction",
    "label_dropout",
    "overview_fraction",
    "hed_scale",
    "hed_shift",
    "init",
)
#: settings a resumed decoder (GAN) phase must share (``gan_iters`` may grow, and ``gan_weight`` may
#: change: a run can go on with a heavier adversarial term when its outputs are still too soft; each
#: checkpoint and the final ``trained.json`` record the weights used)
DECODER_KEYS = (
    *AE_KEYS,
    "ae_iters",
    "gan_batch_size",
    "gan_crop",
    "gan_lr",
    "hed_scale",
    "hed_shift",
)
#: settings a resumed adversarial leg of the denoiser (phase 2b) must share (``denoiser_gan_iters`` may
#: grow); the iteration it started from is checked on its own
DENOISER_GAN_KEYS = (
    *DENOISER_KEYS,
    "denoiser_gan_lr",
    "denoiser_gan_weight",
    "denoiser_gan_max_timestep",
    "denoiser_gan_judge",
    "denoiser_gan_class_weights",
    "denoiser_gan_pixel_class_weights",
    "denoiser_gan_crop_emphasis",
)
#: the settings of phases 1 and 1b (autoencoder, GAN decoder): a run whose autoencoder is given
#: (``--init``, ``--autoencoder``) trains neither, so its exported record leaves them out rather than
#: record flags it did not use (the given model is named by label and hash; with ``--init`` its
#: "autoencoder" and "decoder" records are copied)
AUTOENCODER_PHASE_KEYS = (
    "ae_preset",
    "ae_iters",
    "ae_batch_size",
    "ae_crop",
    "ae_lr",
    "gan_iters",
    "gan_batch_size",
    "gan_crop",
    "gan_lr",
    "gan_weight",
)
#: the phases of a run, in order; ``--phases`` runs a subset (e.g. the decoder and the denoiser in two
#: processes at once: both need only the finished autoencoder's encoder)
PHASES = ("autoencoder", "decoder", "denoiser")
#: the checkpoints of phase 2b, beside those of phase 2
DENOISER_GAN_FOLDER = "denoiser_gan"


@dataclass(kw_only=True)
class RunSettings:
    """What both training paths (a PathUp-layout model, a Stable Diffusion fine-tune) take alike: how
    crops are drawn and labelled, which images and hold-outs, checkpoints, device and seed
    (``cli._common.run_settings`` fills most of them from the ``pathup train`` flags)."""

    label_dropout: float = 0.1
    overview_fraction: float = 0.3
    min_tissue: float = 0.5
    reference_size: int = 512
    checkpoint_every: int = 500
    eval_every: int = 250
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    holdout: str | None = None
    splits: tuple[str, ...] = ("train",)
    max_images_per_class: int | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    class_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: bool = True

    def to_json(self) -> dict[str, Any]:
        return settings_json(self)

    def recorded(self) -> dict[str, Any]:
        """The settings an exported model's ``pathup.json`` "training" records: all but how this run
        was invoked (``resume``, ``progress``, ``out``, ``data``)."""
        return {k: v for k, v in self.to_json().items() if k not in ("resume", "progress", "out", "data")}


@dataclass
class TrainConfig(RunSettings):
    """Everything ``pathup train`` takes; see ``pathup train --help`` for each."""

    data: Path
    out: Path
    autoencoder: Path | None = None
    ae_preset: str = "cpu"
    ae_iters: int = 6000
    ae_batch_size: int = 4
    ae_crop: int = 64
    ae_lr: float = 2e-3
    preset: str | None = None  # None: "cpu", or with ``init`` the init model's own architecture
    iters: int = 6000
    batch_size: int = 8
    crop: int = 256
    lr: float = 2e-4
    snr_gamma: float = DEFAULT_SNR_GAMMA
    latent_channels: int = 4
    gan_iters: int = 0
    gan_batch_size: int = 4
    gan_crop: int = 128
    gan_lr: float = 1e-4
    gan_weight: float = 0.5
    #: phase 2b, the denoiser's adversarial leg: the denoiser's iteration count at its end (0: none),
    #: its learning rate, adversarial weight, the timesteps it judges and what its discriminator sees
    #: ("clean" latents, "pair"s of clean and noisy latents, the decoder's "pixel" painting beside the
    #: noisy latent, or "pair+pixel": two judges every step; training/denoiser_gan.py)
    denoiser_gan_iters: int = 0
    denoiser_gan_lr: float = 5e-5
    denoiser_gan_weight: float = 0.1
    denoiser_gan_max_timestep: int = 750
    denoiser_gan_judge: str = "clean"
    #: factors on the adversarial weight per class name (classes not named: 1; 0 leaves a class to the
    #: v loss alone)
    denoiser_gan_class_weights: dict[str, float] = field(default_factory=dict)
    #: with judge "pair+pixel", the pixel judge's factors per class name (``denoiser_gan_class_weights``
    #: are then the pair judge's)
    denoiser_gan_pixel_class_weights: dict[str, float] = field(default_factory=dict)
    #: per class name, how much more often the leg draws crops of cellular (dark) tissue than the
    #: rest of their image (``CropSampler``'s emphasis; classes not named: 0, drawn uniformly)
    denoiser_gan_crop_emphasis: dict[str, float] = field(default_factory=dict)
    hed_scale: float = 0.0
    hed_shift: float = 0.0
    init: Path | None = None
    phases: tuple[str, ...] = PHASES
    prediction: str = "v_prediction"
    #: the exported denoiser's weights on disk: "float16" halves the folder (a 10 M-parameter denoiser
    #: fits the 40 MB package); they load as float32 (diffusers upcasts), rounded to float16 once
    denoiser_storage: str = "float32"


def dataset_fingerprint(index: DatasetIndex) -> dict[str, Any]:
    return {
        "layout": index.layout,
        "classes": list(index.classes),
        "images": {e.key: (e.holdout.to_json() if e.holdout else None) for e in index.images},
    }


def check_settings(saved: dict[str, Any], current: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    """Refuse to resume when a setting in ``keys`` differs; a key the saved settings lack predates that
    setting, whose default (unchanged since it was added) is what the checkpoint was made with. A warm
    start's model is compared by its hash where the saved settings record one, else by its path."""
    defaults = {
        f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
        for f in fields(TrainConfig)
        if f.default is not MISSING or f.default_factory is not MISSING
    }
    if "init_hash" in saved:  # the warm start's model by its weights, wherever its folder is now
        keys = tuple("init_hash" if k == "init" else k for k in keys)
    saved = {k: saved.get(k, defaults.get(k)) for k in keys}
    changed = [k for k in keys if saved.get(k) != current.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} → {current.get(k)!r}" for k in changed)
        hint = (
            "; the --init folder holds other weights now (or, for a work folder begun before 2026-12-04, "
            "other Markdown files): pass a copy of the model it started from"
        )
        raise InputError(
            f"cannot resume: the {what} checkpoint was made with other settings ({detail})"
            + (hint if "init_hash" in changed else "")
        )


def init_hash(cfg: TrainConfig) -> dict[str, str]:
    """``{"init_hash": ...}`` of a warm start's model folder (its path may later hold another model,
    as the package's default model does after a new version ships), else ``{}``. Its Markdown files
    are left out: a candidate's README may be edited while a run that started from it goes on."""
    from napari_pathup.models.load import model_hash

    return {"init_hash": model_hash(cfg.init, documentation=False)} if cfg.init is not None else {}


def recorded_init_hash(saved: dict[str, Any], cfg: TrainConfig) -> str | None:
    """The ``init_hash`` a work folder's saved settings match for this run's --init: the current one,
    or the whole-folder hash (documentation included) that work folders recorded until 2026-12-04;
    ``None`` when there is nothing to compare."""
    from napari_pathup.models.load import model_hash

    if cfg.init is None or "init_hash" not in saved:
        return None
    current = model_hash(cfg.init, documentation=False)
    if saved["init_hash"] != current and saved["init_hash"] == model_hash(cfg.init):
        return saved["init_hash"]
    return current


def folder_label(folder: Path) -> str:
    """A folder as an exported record names it: its path below the working folder, else its name (a
    path elsewhere on the training machine means nothing where the model is used)."""
    path, here = Path(folder).resolve(), Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else path.name


def exported_settings(cfg: TrainConfig, latent_channels: int) -> dict[str, Any]:
    """The settings an exported model's ``pathup.json`` records: the run's, with each folder it started
    from (``init``, ``autoencoder``) named by :func:`folder_label` and its weights hash, and
    ``latent_channels`` as the model has them (a warm start's or a given autoencoder's, not the unused
    ``--latent-channels``); without the settings of the phases such a run skips
    (:data:`AUTOENCODER_PHASE_KEYS`)."""
    from napari_pathup.models.load import model_hash

    settings = cfg.recorded()
    for key in ("init", "autoencoder"):
        folder = getattr(cfg, key)
        if folder is not None:
            settings[key] = folder_label(folder)
            settings[f"{key}_hash"] = model_hash(folder, documentation=False)
    if cfg.init is not None or cfg.autoencoder is not None:
        for key in AUTOENCODER_PHASE_KEYS:
            del settings[key]
    settings["latent_channels"] = latent_channels
    return settings


def prepare_output(cfg: TrainConfig, index: DatasetIndex) -> Path:
    """Check ``--out`` against ``--resume`` and record the settings; returns the checkpoint folder."""
    out, ckpt = cfg.out, cfg.out / "checkpoints"
    current = {**cfg.to_json(), "dataset": dataset_fingerprint(index), **init_hash(cfg)}
    saved_path = ckpt / "config.json"
    if cfg.resume and saved_path.is_file():
        saved = json.loads(saved_path.read_text())
        if (recorded := recorded_init_hash(saved, cfg)) is not None:
            current["init_hash"] = recorded  # keep what the work folder recorded: it still matches
        if saved.get("dataset") != current["dataset"]:
            raise InputError(
                "cannot resume: the classes, images or hold-out regions differ from the checkpoint's"
            )
        if latest_checkpoint(ckpt / "denoiser") is not None:
            check_settings(saved, current, DENOISER_KEYS, "denoiser")
        if latest_checkpoint(ckpt / DENOISER_GAN_FOLDER) is not None:
            check_settings(saved, current, DENOISER_GAN_KEYS, "adversarial denoiser")
        if latest_checkpoint(ckpt / "decoder") is not None:
            check_settings(saved, current, DECODER_KEYS, "decoder")
        if latest_checkpoint(ckpt / "autoencoder") is not None:
            check_settings(saved, current, AE_KEYS, "autoencoder")
    elif out.exists() and any(out.iterdir()):
        hint = "pass --resume to continue its training" if saved_path.is_file() else "choose an empty folder"
        raise InputError(f"{out} is not empty; {hint}")
    ckpt.mkdir(parents=True, exist_ok=True)
    write_text_atomic(saved_path, json.dumps(current, indent=1) + "\n")
    return ckpt
