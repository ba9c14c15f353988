"""``pathup train`` end to end: data → autoencoder (or a given one) → denoiser → model folder.

``MODEL_DIR/checkpoints/`` holds ``config.json`` (the settings a resumed run must share),
``autoencoder/`` and ``denoiser/`` checkpoints (see :mod:`~napari_pathup.training.checkpoint`),
the finished autoencoder (``autoencoder/final``) and the cached training latents. Rerunning with
``--resume`` continues where the run stopped; a finished phase is not trained again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import ModelMixin

from napari_pathup.datasets import DatasetIndex, discover
from napari_pathup.errors import InputError, ModelLoadError
from napari_pathup.models.base import Autoencoder
from napari_pathup.models.spec import PATHUP_JSON
from napari_pathup.training import DENOISER_GAN_JUDGES
from napari_pathup.training.augmentation import HedJitter
from napari_pathup.training.checkpoint import latest_checkpoint
from napari_pathup.training.data import (
    CropSampler,
    TrainingImages,
    build_sources,
    crops_to_tensor,
    holdout_crops,
    load_images,
)
from napari_pathup.training.denoiser import DEFAULT_SNR_GAMMA
from napari_pathup.training.loop import make_ema, run_phase, seeded_generators
from napari_pathup.training.settings import (
    DENOISER_GAN_FOLDER,
    PHASES,
    TrainConfig,
    dataset_fingerprint,
    exported_settings,
    folder_label,
    prepare_output,
)

#: hold-out crops for the autoencoder PSNR (or of the training crop, when no hold-out fits them)
AE_EVAL_CROP = 128
#: the share of the autoencoder's and decoder's training crops drawn from overview (shrunk) images
AE_OVERVIEW_FRACTION = 0.2


def state_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_autoencoder(path: Path) -> ModelMixin:
    """An autoencoder folder (config.json + safetensors) or a PathUp model folder's ``autoencoder/``."""
    from napari_pathup.models.load import load_autoencoder_folder

    path = Path(path).expanduser()
    folder = path / "autoencoder" if (path / PATHUP_JSON).is_file() else path
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{path}: expected an autoencoder folder (config.json) or a PathUp model folder")
    return load_autoencoder_folder(folder)


def finished_info(final: Path, iterations: int) -> dict[str, Any] | None:
    """The ``trained.json`` that :func:`save_final` wrote, when that phase finished ``iterations`` or
    more (a rerun of an earlier leg, e.g. the decoder's lighter adversarial weights, changes nothing)."""
    marker = final / "trained.json"
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    return info if info.get("iterations", 0) >= iterations else None


def save_final(vae: ModelMixin, final: Path, info: dict[str, Any]) -> None:
    """Write a finished phase's autoencoder and ``trained.json`` to ``final``, atomically (temp name,
    then rename), so that a killed run never leaves a half-written ``final`` that looks finished."""
    partial = final.with_name(f".{final.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    vae.save_pretrained(partial, safe_serialization=True)
    (partial / "trained.json").write_text(json.dumps(info) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


def train_autoencoder(
    cfg: TrainConfig,
    index: DatasetIndex,
    arrays: list[np.ndarray],
    device: torch.device,
    ckpt: Path,
    log: Callable[[str], None],
) -> tuple[ModelMixin, dict[str, Any]]:
    """Phase 1 (or the given ``--autoencoder``); returns the autoencoder with EMA weights and latent scale."""
    from napari_pathup.training.autoencoder import (
        AutoencoderPhase,
        build_autoencoder,
        initialise,
        latent_statistics,
        reconstruct_psnr,
        set_latent_scale,
    )

    given = cfg.autoencoder if cfg.autoencoder is not None else cfg.init
    if given is not None:
        vae = load_autoencoder(given)
        log(f"autoencoder: {given} ({type(vae).__name__}, not trained further)")
        if cfg.init is not None and cfg.autoencoder is None:
            return vae, _recorded(cfg.init, "autoencoder") or {"source": folder_label(given)}
        return vae, {"source": folder_label(given)}
    if "autoencoder" not in cfg.phases and latest_checkpoint(ckpt / "autoencoder") is None:
        raise InputError("the autoencoder phase has not run yet; run it first (--phases autoencoder)")
    if cfg.ae_iters < 1:
        raise InputError("--ae-iters must be at least 1 unless --autoencoder names a trained one")
    folder, final = ckpt / "autoencoder", ckpt / "autoencoder" / "final"
    if (info := finished_info(final, cfg.ae_iters)) is not None:
        log(
            f"autoencoder: finished earlier ({info['iterations']} iterations, "
            f"hold-out PSNR {info.get('psnr', 'n/a')} dB)"
        )
        return load_autoencoder(final), info

    data = build_sources(index, arrays, cfg.ae_crop, cfg.min_tissue, cfg.reference_size)
    sampler = CropSampler(data, overview_fraction=AE_OVERVIEW_FRACTION)
    eval_crops = [
        c for c, _ in holdout_crops(index, arrays, AE_EVAL_CROP, limit=16, min_tissue=cfg.min_tissue)
    ]
    if not eval_crops:  # hold-outs smaller than the usual evaluation crop
        eval_crops = [
            c for c, _ in holdout_crops(index, arrays, cfg.ae_crop, limit=16, min_tissue=cfg.min_tissue)
        ]
    torch.manual_seed(cfg.seed)
    vae = build_autoencoder(cfg.ae_preset, cfg.latent_channels)
    init_info = initialise(vae, sampler, np.random.default_rng([cfg.seed, 98]))  # its own stream
    vae = vae.to(device)
    numpy_rng, torch_rng = seeded_generators(cfg.seed, 1)
    phase = AutoencoderPhase(
        "autoencoder",
        vae,
        torch.optim.AdamW(vae.parameters(), lr=cfg.ae_lr, weight_decay=1e-4),
        make_ema(vae),
        numpy_rng,
        torch_rng,
        lr=cfg.ae_lr,
        warmup=min(200, cfg.ae_iters // 10),
        device=device,
        sampler=sampler,
        batch_size=cfg.ae_batch_size,
        eval_crops=eval_crops,
    )
    n = sum(p.numel() for p in vae.parameters())
    log(
        f"autoencoder: {cfg.ae_preset} preset, {n / 1e6:.2f} M parameters, {cfg.ae_iters} iterations of "
        f"{cfg.ae_batch_size} x {cfg.ae_crop} px; PSNR on {len(eval_crops)} hold-out crops"
    )
    result = run_phase(
        phase, cfg.ae_iters, folder, cfg.checkpoint_every, cfg.eval_every, cfg.resume, cfg.progress
    )

    phase.ema.copy_to(vae.parameters())
    vae.eval()
    stats_rng = np.random.default_rng([cfg.seed, 99])
    stats = crops_to_tensor([sampler.pixels(sampler.sample(stats_rng)) for _ in range(32)])
    mean, std = latent_statistics(vae, stats, device)
    set_latent_scale(vae, mean, std)
    info = {"iterations": cfg.ae_iters, "latent_mean": mean, "latent_std": std, **init_info}
    if eval_crops:
        info["psnr"] = round(reconstruct_psnr(vae, crops_to_tensor(eval_crops), device), 2)
    save_final(vae, final, info)
    log(
        f"autoencoder: done in {result.seconds / 60:.1f} min; hold-out PSNR {info.get('psnr', 'n/a')} dB, "
        f"latent mean {mean:.3f} std {std:.3f}"
    )
    return vae, info


def train_denoiser(
    cfg: TrainConfig,
    index: DatasetIndex,
    arrays: list[np.ndarray],
    vae: ModelMixin,
    device: torch.device,
    ckpt: Path,
    log: Callable[[str], None],
) -> tuple[ModelMixin, Any, TrainingImages, dict[str, Any]]:
    """Phase 2; returns the UNet with EMA weights, its scheduler, the data and a summary."""
    from napari_pathup.training.denoiser import (
        BANK_OVERLAP,
        BANK_TILE,
        DenoiserPhase,
        LatentBank,
        build_unet,
        holdout_latents,
        training_scheduler,
    )

    vae = vae.to(device).eval().requires_grad_(False)
    autoencoder = Autoencoder(vae)
    if autoencoder.scale_factor != 8:
        raise InputError(
            f"the autoencoder down-samples {autoencoder.scale_factor}x; PathUp training needs 8x"
        )
    if cfg.crop % 64:
        raise InputError(f"--crop must be a multiple of 64 (8 latent pixels per UNet level), got {cfg.crop}")
    folder = ckpt / "denoiser"
    folder.mkdir(parents=True, exist_ok=True)
    data = build_sources(index, arrays, cfg.crop, cfg.min_tissue, cfg.reference_size)
    jitter = HedJitter(cfg.hed_scale, cfg.hed_shift)
    encoder = getattr(vae, "encoder", vae)  # the latents depend on the encoder only, not the decoder
    key = LatentBank.cache_key(data, state_digest(encoder), BANK_TILE, BANK_OVERLAP, jitter, cfg.seed)
    bank_path = folder / "latents.safetensors"
    bank = LatentBank.load(bank_path, key)
    if bank is None:
        pixels = sum(s.pixels.shape[0] * s.pixels.shape[1] for s in data.sources)
        log(
            f"denoiser: encoding {len(data.sources)} training regions x 8 orientations "
            f"({8 * pixels / 1e6:.0f} Mpx)"
        )
        bank = LatentBank.encode(data, autoencoder, key, jitter=jitter, seed=cfg.seed, progress=cfg.progress)
        bank.save(bank_path)
    sampler = CropSampler(data, cfg.overview_fraction)
    n_classes = len(index.classes)
    eval_set = holdout_latents(index, arrays, cfg.crop, cfg.min_tissue, autoencoder)
    torch.manual_seed(cfg.seed + 2)
    initial = 0
    if cfg.init is not None:  # warm start: the model's denoiser and iteration count, a fresh optimizer
        unet, initial = load_denoiser(cfg.init)
        unet = deepened(unet, cfg.preset, cfg.init, log).to(device)
        log(f"denoiser: continuing from {cfg.init} (trained {initial} iterations; a fresh optimizer)")
    else:
        assert cfg.preset is not None  # train() records "cpu" when neither --preset nor --init is given
        unet = build_unet(index.classes, cfg.preset, cfg.crop // 8, autoencoder.latent_channels).to(device)
    scheduler = training_scheduler(cfg.prediction)
    numpy_rng, torch_rng = seeded_generators(cfg.seed, 2, start=initial)  # a warm start: new draws
    phase = DenoiserPhase(
        "denoiser",
        unet,
        torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=1e-2),
        make_ema(unet),
        numpy_rng,
        torch_rng,
        lr=cfg.lr,
        warmup=min(500, cfg.iters // 10),
        device=device,
        sampler=sampler,
        bank=bank,
        n_classes=n_classes,
        batch_size=cfg.batch_size,
        scheduler=scheduler,
        label_dropout=cfg.label_dropout,
        snr_gamma=cfg.snr_gamma,
        eval_set=eval_set,
    )
    if cfg.init is not None:
        phase.warm_start(initial)  # a resumed warm start restores the EMA's own count from its checkpoint
    n = sum(p.numel() for p in unet.parameters())
    preset_name = cfg.preset or "the --init model's"
    held = 0 if eval_set is None else len(eval_set[0])
    log(
        f"denoiser: {preset_name} preset, {n / 1e6:.2f} M parameters, {cfg.iters} iterations of "
        f"{cfg.batch_size} "
        f"x {cfg.crop // 8}^2 latents ({cfg.prediction}); validation on {held} hold-out crops"
    )
    # the learning rate (a cool-down) and the loss weighting may change on resume; the checkpoints
    # record from when each value held
    lr_schedule = _schedule(folder, cfg.resume, "lr_schedule")
    snr_schedule = _schedule(folder, cfg.resume, "snr_gamma_schedule")
    checkpoint = latest_checkpoint(folder) if cfg.resume else None
    if checkpoint is not None and not lr_schedule:  # checkpointed before rates were recorded
        groups = json.loads((checkpoint / "state.json").read_text()).get("optimizer", {}).get("param_groups")
        if groups:
            lr_schedule.append([initial, groups[0]["lr"]])
    if checkpoint is not None and not snr_schedule:  # checkpointed before the weighting was recorded
        snr_schedule.append([initial, DEFAULT_SNR_GAMMA])
    start = max(latest_iteration(folder) if cfg.resume else 0, initial)
    if start < cfg.iters or not lr_schedule:  # an export-only rerun trains nothing: no new entry
        lr_schedule.append([start, cfg.lr])
    if start < cfg.iters or not snr_schedule:
        snr_schedule.append([start, cfg.snr_gamma])
    result = run_phase(
        phase,
        cfg.iters,
        folder,
        cfg.checkpoint_every,
        cfg.eval_every,
        cfg.resume,
        cfg.progress,
        initial=initial,
        extra_state={"lr_schedule": lr_schedule, "snr_gamma_schedule": snr_schedule},
    )
    phase.ema.copy_to(unet.parameters())
    unet.eval()
    log(f"denoiser: done in {result.seconds / 60:.1f} min; {result.metrics}")
    adversarial: dict[str, Any] | None = None
    if cfg.denoiser_gan_iters:
        adversarial = train_denoiser_gan(
            cfg,
            phase,
            scheduler,
            result.iteration,
            ckpt / DENOISER_GAN_FOLDER,
            log,
            index.classes,
            autoencoder,
        )
        unet.eval()
    if cfg.init is not None:  # a warm start records the schedules of the model it continued, too
        lr_schedule = _init_schedule(cfg.init, "lr_from_iteration", "lr", initial) + lr_schedule
        snr_schedule = (
            _init_schedule(cfg.init, "snr_gamma_from_iteration", "snr_gamma", initial) + snr_schedule
        )
    info = {
        "iterations": result.iteration,
        "lr_from_iteration": _merge_schedule(lr_schedule),
        "snr_gamma_from_iteration": _merge_schedule(snr_schedule),
        **result.metrics,
    }
    continued = _recorded(cfg.init, "denoiser") if cfg.init is not None else {}
    for key in ("adversarial", "weight_average"):  # what it continued: a leg, or weights averaged
        if key in continued:
            info[f"init_{key}"] = continued[key]
    if adversarial is not None:
        info = {**info, "iterations": adversarial["iterations"], "adversarial": adversarial}
    return unet, scheduler, data, info


def train_denoiser_gan(
    cfg: TrainConfig,
    plain: Any,
    scheduler: Any,
    start: int,
    folder: Path,
    log: Callable[[str], None],
    classes: Sequence[str],
    autoencoder: Autoencoder,
) -> dict[str, Any]:
    """Phase 2b: the finished denoiser (``plain.model``, its EMA weights, trained ``start`` iterations)
    fine-tuned with an adversarial term up to ``cfg.denoiser_gan_iters``; leaves the EMA weights
    in it and returns the leg's record. Resumes from ``folder`` only when its checkpoints start at
    ``start``. ``classes``: the class names in label order (for ``cfg.denoiser_gan_class_weights``);
    ``autoencoder``: the frozen one whose decoder paints for the pixel judge."""
    from napari_pathup.training.denoiser_gan import (
        PIXEL_KEY,
        DenoiserGanPhase,
        LatentDiscriminator,
        PixelDiscriminator,
        denoiser_gan_optimizer,
    )

    if cfg.denoiser_gan_judge not in DENOISER_GAN_JUDGES:
        expected = ", ".join(DENOISER_GAN_JUDGES)
        raise InputError(f"denoiser_gan_judge {cfg.denoiser_gan_judge!r}: expected one of {expected}")
    judge = cfg.denoiser_gan_judge
    factors, pixel_factors = cfg.denoiser_gan_class_weights, cfg.denoiser_gan_pixel_class_weights
    emphasis = cfg.denoiser_gan_crop_emphasis
    _check_class_factors(factors, classes, "denoiser-gan class weight")
    _check_class_factors(pixel_factors, classes, "denoiser-gan pixel class weight")
    if pixel_factors and judge != "pair+pixel":
        raise InputError(
            f"denoiser_gan_pixel_class_weights {pixel_factors}: only with judge 'pair+pixel' (the pixel "
            f"judge's factors beside the pair judge's); judge {judge!r} takes denoiser_gan_class_weights"
        )
    _check_class_factors(emphasis, classes, "denoiser-gan crop emphasis")

    def per_class(named: dict[str, float]) -> dict[str, float]:
        """A factor for every class in label order (classes not named: 1)."""
        return {c: float(named.get(c, 1.0)) for c in classes}

    if cfg.denoiser_gan_iters < start:
        raise InputError(
            f"--denoiser-gan-iters {cfg.denoiser_gan_iters} is below the denoiser's {start} iterations: it "
            "counts on from them (0: no adversarial leg)"
        )
    checkpoint = latest_checkpoint(folder) if cfg.resume else None
    if checkpoint is not None:
        began = json.loads((checkpoint / "state.json").read_text()).get("start")
        if began != start:
            raise InputError(
                f"cannot resume: the adversarial denoiser's checkpoints in {folder} continue a denoiser of "
                f"{began} iterations, this one has {start}; delete that folder to start its leg again"
            )
    unet = plain.model
    torch.manual_seed(cfg.seed + 5)
    n_labels = unet.config.num_class_embeds
    channels = unet.config.in_channels
    # the first (or only) judge's discriminator under "discriminator"; a pixel judge beside it under its own
    discriminators: dict[str, torch.nn.Module] = {
        "discriminator": PixelDiscriminator(channels, n_labels)
        if judge == "pixel"
        else LatentDiscriminator(channels, n_labels, paired=judge != "clean")
    }
    if judge == "pair+pixel":
        discriminators[PIXEL_KEY] = PixelDiscriminator(channels, n_labels)
    model = torch.nn.ModuleDict({"denoiser": unet, **discriminators}).to(plain.device)
    pixel = "pixel" in judge
    numpy_rng, torch_rng = seeded_generators(cfg.seed, 5)
    phase = DenoiserGanPhase(
        "denoiser-gan",
        model,
        denoiser_gan_optimizer(unet, *discriminators.values(), lr=cfg.denoiser_gan_lr),
        make_ema(model),
        numpy_rng,
        torch_rng,
        lr=cfg.denoiser_gan_lr,
        device=plain.device,
        sampler=CropSampler(
            plain.sampler.data,
            plain.sampler.overview_fraction,
            emphasis={classes.index(name): float(k) for name, k in emphasis.items()},
        )
        if emphasis
        else plain.sampler,
        bank=plain.bank,
        n_classes=plain.n_classes,
        batch_size=plain.batch_size,
        scheduler=scheduler,
        label_dropout=plain.label_dropout,
        snr_gamma=plain.snr_gamma,
        eval_set=plain.eval_set,
        weight=cfg.denoiser_gan_weight,
        start=start,
        max_timestep=cfg.denoiser_gan_max_timestep,
        class_weights=list(per_class(factors).values()) if factors else None,
        pixel_class_weights=list(per_class(pixel_factors).values()) if pixel_factors else None,
        decode=autoencoder.decode_with_grad if pixel else None,
    )
    n = sum(p.numel() for d in discriminators.values() for p in d.parameters())
    seen = {
        "clean": "clean latents",
        "pair": "(clean, noisy) pairs",
        "pixel": "decoded clean latents beside the noisy ones",
        "pair+pixel": "(clean, noisy) pairs and, apart, decoded clean latents beside the noisy ones",
    }[judge]
    kind = {"pixel": "pixel", "pair+pixel": "latent and pixel"}.get(judge, "latent")
    log(
        f"denoiser-gan: {kind} discriminator{'s' if len(discriminators) > 1 else ''} {n / 1e6:.2f} M "
        f"parameters, iterations {start} to {cfg.denoiser_gan_iters}, adversarial weight "
        f"{cfg.denoiser_gan_weight} below timestep {cfg.denoiser_gan_max_timestep}, judging {seen}"
        + (f", class factors {factors}" if factors else "")
        + (f", the pixel judge's class factors {pixel_factors}" if pixel_factors else "")
        + (f", cellular crops emphasised {emphasis}" if emphasis else "")
    )
    result = run_phase(
        phase,
        cfg.denoiser_gan_iters,
        folder,
        cfg.checkpoint_every,
        cfg.eval_every,
        cfg.resume,
        cfg.progress,
        initial=start,
        extra_state={"start": start},
    )
    phase.ema.copy_to(model.parameters())
    log(f"denoiser-gan: done in {result.seconds / 60:.1f} min; {result.metrics}")
    return {
        "iterations": result.iteration,
        "from_iteration": start,
        "lr": cfg.denoiser_gan_lr,
        "weight": cfg.denoiser_gan_weight,
        "max_timestep": cfg.denoiser_gan_max_timestep,
        "judge": cfg.denoiser_gan_judge,
        "class_weights": per_class(factors),
        **({"pixel_class_weights": per_class(pixel_factors)} if judge == "pair+pixel" else {}),
        **({"crop_emphasis": {c: float(k) for c, k in emphasis.items()}} if emphasis else {}),
        "discriminator_parameters": n,
        **result.metrics,
    }


def _check_class_factors(factors: dict[str, float], classes: Sequence[str], what: str) -> None:
    """Refuse a per-class factor for a name that is not a class, or one that is not a finite number >= 0."""
    for name, factor in factors.items():
        if name not in classes:
            raise InputError(f"{what} {name!r}: not a class (classes: {', '.join(classes)})")
        if not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 0:
            raise InputError(f"{what} {name}={factor!r}: expected a finite number >= 0")


def _recorded(model: Path, phase: str) -> dict[str, Any]:
    """What ``pathup.json`` of a trained model records of one training phase (or {})."""
    meta = json.loads((Path(model) / PATHUP_JSON).read_text())
    return dict(meta.get("training", {}).get(phase) or {})


def _init_schedule(model: Path, key: str, setting: str, before: int) -> list[list[float]]:
    """The entries of a warm start's model's schedule ``key`` before iteration ``before``; a model
    trained before schedules were recorded held its ``setting`` (or the default) from iteration 0."""
    recorded = _recorded(model, "denoiser").get(key)
    if recorded is None:
        recorded = {"0": _recorded(model, "settings").get(setting, getattr(TrainConfig, setting))}
    return [[int(k), float(v)] for k, v in recorded.items() if int(k) < before]


def deepened(
    unet: ModelMixin, preset: str | None, init: Path, log: Callable[[str], None] = print
) -> ModelMixin:
    """The warm start's denoiser for ``preset``: as it is (no preset, or its own architecture), or
    grown to the preset's deeper blocks without changing its function (``training.grow``)."""
    from napari_pathup.models.build import DENOISER_PRESETS
    from napari_pathup.training.grow import grow_depth

    if preset is None:
        return unet
    want = DENOISER_PRESETS[preset]
    have = unet.config
    same_widths = tuple(have["block_out_channels"]) == tuple(want["block_out_channels"])
    if not same_widths or have["norm_num_groups"] != want["norm_num_groups"]:
        raise InputError(
            f"--preset {preset} ({want['block_out_channels']} channels) does not fit the denoiser of --init "
            f"{init} ({tuple(have['block_out_channels'])} channels); a warm start keeps the channels and may "
            "add layers per block (leave --preset out to keep the model's own)"
        )
    if want["layers_per_block"] < have["layers_per_block"]:
        raise InputError(
            f"--preset {preset} has {want['layers_per_block']} layers per block, fewer than the "
            f"{have['layers_per_block']} of the --init denoiser; a warm start may only add layers"
        )
    if want["layers_per_block"] > have["layers_per_block"]:
        log(
            f"denoiser: deepened from {have['layers_per_block']} to {want['layers_per_block']} layers per "
            "block; the new layers start as the identity (same function)"
        )
    return grow_depth(unet, want["layers_per_block"])


def load_denoiser(model: Path) -> tuple[ModelMixin, int]:
    """A PathUp model folder's denoiser (``UNet2DModel``, safetensors) and its trained iterations."""
    from diffusers import UNet2DModel

    folder = Path(model).expanduser() / "denoiser"
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{model}: expected a PathUp model folder with denoiser/config.json")
    try:
        unet = UNet2DModel.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load {folder}: {exc}") from exc
    return unet, trained_iterations(model)


def trained_iterations(model: Path) -> int:
    """The iterations a PathUp model folder's denoiser was trained for, as its ``pathup.json`` records
    them: the count a warm start from it continues from (0 when none is recorded)."""
    return int(_recorded(model, "denoiser").get("iterations", 0))


def latest_iteration(folder: Path) -> int:
    path = latest_checkpoint(folder)
    return int(json.loads((path / "state.json").read_text())["iteration"]) if path else 0


def _schedule(folder: Path, resume: bool, key: str) -> list[list[float]]:
    """[[first iteration, value], ...] of a setting that may change on resume (the decoder's adversarial
    weight, the denoiser's learning rate and loss weighting), as the latest checkpoint of ``folder``
    recorded it."""
    path = latest_checkpoint(folder) if resume else None
    if path is None:
        return []
    return [list(x) for x in json.loads((path / "state.json").read_text()).get(key, [])]


def _merge_schedule(schedule: list[list[float]]) -> dict[str, float]:
    """{"0": 0.5, "2000": 2.0}: the value from each iteration on (repeats dropped)."""
    merged: dict[str, float] = {}
    for start, weight in schedule:
        if not merged or list(merged.values())[-1] != weight:
            merged[str(int(start))] = float(weight)
    return merged


def train_decoder(
    cfg: TrainConfig,
    index: DatasetIndex,
    arrays: list[np.ndarray],
    vae: ModelMixin,
    device: torch.device,
    ckpt: Path,
    log: Callable[[str], None],
) -> tuple[ModelMixin, dict[str, Any]]:
    """Phase 1b: the decoder as a conditional GAN against the frozen encoder (``--gan-iters``, 0: skip)."""
    from diffusers import AutoencoderTiny

    from napari_pathup.models.patch_autoencoder import PatchAutoencoder
    from napari_pathup.training.decoder_gan import GanWeights, decoder_gan_phase

    if cfg.init is not None and cfg.autoencoder is None:  # the model's decoder, as it was trained
        return vae, _recorded(cfg.init, "decoder")
    if cfg.gan_iters < 1 or cfg.autoencoder is not None or cfg.init is not None:
        return vae, {}
    if not isinstance(vae, AutoencoderTiny | PatchAutoencoder):
        raise InputError("the decoder phase trains an AutoencoderTiny or PatchAutoencoder decoder")
    folder, final = ckpt / "decoder", ckpt / "decoder" / "final"
    if (info := finished_info(final, cfg.gan_iters)) is not None:
        log(f"decoder: finished earlier ({info})")
        return load_autoencoder(final), info
    if "decoder" not in cfg.phases:
        if latest_checkpoint(folder) is not None:
            raise InputError(f"the decoder phase has not finished {cfg.gan_iters} iterations; run it first")
        return vae, {}
    data = build_sources(index, arrays, cfg.gan_crop, cfg.min_tissue, cfg.reference_size)
    sampler = CropSampler(data, overview_fraction=AE_OVERVIEW_FRACTION)
    eval_crops = [
        c for c, _ in holdout_crops(index, arrays, AE_EVAL_CROP, limit=16, min_tissue=cfg.min_tissue)
    ]
    vae = vae.to(device)
    phase = decoder_gan_phase(
        vae,
        sampler,
        lr=cfg.gan_lr,
        batch_size=cfg.gan_batch_size,
        seed=cfg.seed,
        device=device,
        eval_crops=eval_crops,
        weights=GanWeights(adversarial=cfg.gan_weight),
        jitter=HedJitter(cfg.hed_scale, cfg.hed_shift),
    )
    n = sum(p.numel() for p in phase.discriminator.parameters())
    log(
        f"decoder: conditional GAN, patch discriminator {n / 1e6:.2f} M parameters, {cfg.gan_iters} its "
        f"of {cfg.gan_batch_size} x {cfg.gan_crop} px, adversarial weight {cfg.gan_weight}"
    )
    schedule = _schedule(folder, cfg.resume, "gan_weight_schedule")
    start = latest_iteration(folder) if cfg.resume else 0
    if start < cfg.gan_iters or not schedule:  # a rerun that trains nothing adds no entry
        schedule.append([start, cfg.gan_weight])
    result = run_phase(
        phase,
        cfg.gan_iters,
        folder,
        cfg.checkpoint_every,
        cfg.eval_every,
        cfg.resume,
        cfg.progress,
        extra_state={"gan_weight_schedule": schedule},
    )
    phase.ema.copy_to(phase.model.parameters())
    vae.eval()
    info = {
        "iterations": cfg.gan_iters,
        "adversarial_weight_from_iteration": _merge_schedule(schedule),
        **{k: round(v, 3) for k, v in phase.evaluate().items()},
    }
    save_final(vae, final, info)
    log(f"decoder: done in {result.seconds / 60:.1f} min; {info}")
    return vae, info


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train both phases and write the model folder ``cfg.out``; returns it."""
    from napari_pathup import __version__
    from napari_pathup.engine.device import select_device
    from napari_pathup.engine.plan import check_class_defaults, check_defaults
    from napari_pathup.training.export import export_model, folder_megabytes

    check_defaults(cfg.defaults, "--set-default")  # refused now, not by the first synthesis hours later
    if cfg.preset is None and cfg.init is None:  # recorded as "cpu", as before --init could deepen
        cfg = dataclasses.replace(cfg, preset="cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = select_device(cfg.device)
    index = discover(cfg.data, cfg.splits, cfg.holdout, cfg.max_images_per_class, cfg.seed)
    check_class_defaults(cfg.class_defaults, index.classes, "--set-class-default")
    held = sum(e.holdout is not None for e in index.images)
    log(
        f"data: {cfg.data} ({index.layout}), classes {', '.join(index.classes)}; {len(index.images)} images, "
        f"{held} with a hold-out region" + (f" ({index.holdout_file})" if index.holdout_file else "")
    )
    ckpt = prepare_output(cfg, index)
    arrays = load_images(index)
    log(f"device: {device}, {torch.get_num_threads()} CPU threads, seed {cfg.seed}")
    unknown = [p for p in cfg.phases if p not in PHASES]
    if unknown or not cfg.phases:
        raise InputError(f"--phases {','.join(cfg.phases)}: expected a subset of {','.join(PHASES)}")
    vae, ae_info = train_autoencoder(cfg, index, arrays, device, ckpt, log)
    vae, gan_info = train_decoder(cfg, index, arrays, vae, device, ckpt, log)
    if "denoiser" not in cfg.phases:
        log(f"phases {', '.join(cfg.phases)} done; rerun with all phases to train the rest and export")
        return cfg.out
    unet, scheduler, data, dn_info = train_denoiser(cfg, index, arrays, vae, device, ckpt, log)
    if tuple(cfg.phases) != PHASES:
        log("denoiser done; rerun with all phases to export the model folder")
        return cfg.out
    training = {
        "pathup_version": __version__,
        "data": dataset_fingerprint(index),
        "settings": exported_settings(cfg, unet.config.in_channels),
        "autoencoder": ae_info,
        "decoder": gan_info,
        "denoiser": dn_info,
    }
    export_model(
        cfg.out, unet, vae, scheduler, data, cfg.defaults, training, cfg.denoiser_storage, cfg.class_defaults
    )
    log(f"model: {cfg.out} ({folder_megabytes(cfg.out):.1f} MB without checkpoints)")
    return cfg.out
