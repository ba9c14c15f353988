"""``pathup train --base PIPELINE``: fine-tune a Stable Diffusion 1.x/2.x pipeline on class folders.

PathUp's own model is a text-to-image latent diffusion model fine-tuned on pathology RoIs, guided by a
prompt per class and scale. This module fine-tunes such a pipeline folder (safetensors only, loaded and
checked by :func:`napari_pathup.models.load.load_model`) on the same crops as ``pathup train`` (class
folders or the BRACS layout, hold-out regions, class-balanced ``native`` and ``overview`` crops), with
prompts from the one template :class:`~napari_pathup.models.conditioning.TextConditioner` uses at
synthesis, and writes a pipeline folder whose ``pathup.json`` stores that template, the classes, the
synthesis defaults and a real reference per class, so ``pathup synthesize --model`` builds the same
prompts.

Trained: the UNet (all weights, or LoRA adapters with ``lora_rank`` > 0 through ``peft``), and the text
encoder only with ``train_text_encoder``. The VAE is frozen; latents are the distribution's mode in the
pipeline's latent scale, as synthesis encodes them. Loss: the scheduler's prediction type (epsilon for
SD 1.x, v for SD 2.x 768) MSE with min-SNR-5 weighting; prompts are replaced by the empty prompt with
probability ``label_dropout`` (classifier-free guidance). EMA, mixed precision (CUDA), gradient
checkpointing and checkpoints come from :mod:`~napari_pathup.training.loop` and
:mod:`~napari_pathup.training.checkpoint`; checkpoints hold only the trained tensors.

Several processes (``accelerate launch -m napari_pathup train ...`` or ``torchrun``): every process
draws the whole batch from the same seeded generators and trains on its own equal slice; gradients are
averaged across processes before clipping, so every process holds the same weights, the main process
alone writes checkpoints and the model, and a run (or a resumed one) with N processes equals one with a
single process up to the order of floating-point sums. ``batch_size`` is the batch of all processes.

PathUp's class-contrastive term is not implemented (its definition is not available to this project).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from napari_pathup.datasets import CELL, DatasetIndex, discover
from napari_pathup.engine.device import autocast
from napari_pathup.engine.plan import check_class_defaults, check_defaults
from napari_pathup.errors import InputError, ModelLoadError
from napari_pathup.io.atomic import write_text_atomic
from napari_pathup.models.base import Autoencoder, PathupModel
from napari_pathup.models.conditioning import TextConditioner
from napari_pathup.models.spec import PATHUP_JSON, SCALES
from napari_pathup.training import MIXED_PRECISION
from napari_pathup.training.checkpoint import latest_checkpoint
from napari_pathup.training.data import (
    CropSampler,
    build_sources,
    crops_to_tensor,
    holdout_crops,
    load_images,
)
from napari_pathup.training.denoiser import diffusion_target, min_snr_weight
from napari_pathup.training.loop import Phase, make_ema, run_phase, seeded_generators
from napari_pathup.training.settings import RunSettings, folder_label

if TYPE_CHECKING:
    from diffusers import ModelMixin
    from transformers import PreTrainedModel

#: attention projections that LoRA adapts (as diffusers' text-to-image LoRA example)
LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
#: settings a resumed run must share with its checkpoint (``iters`` may grow)
RESUME_KEYS = (
    "base_hash",
    "lora_rank",
    "train_text_encoder",
    "batch_size",
    "crop",
    "lr",
    "warmup",
    "snr_gamma",
    "ema_decay",
    "mixed_precision",
    "label_dropout",
    "overview_fraction",
    "min_tissue",
    "reference_size",
    "prompt_template",
    "seed",
)
#: files copied from the base pipeline (pickle weights never are)
COPIED_SUFFIXES = (".json", ".safetensors", ".txt", ".model")
PHASE = "text_to_image"
#: weight files of other precisions or without EMA that hub pipelines ship beside the main ones
VARIANTS = (".fp16.", ".bf16.", ".non_ema.", ".ema.")


@dataclass
class FineTuneConfig(RunSettings):
    """Everything ``pathup train --base`` takes; see ``pathup train --help``."""

    data: Path
    out: Path
    base: str
    allow_download: bool = False
    lora_rank: int = 0
    train_text_encoder: bool = False
    iters: int = 2000
    batch_size: int = 8
    crop: int | None = None
    lr: float | None = None
    warmup: int = 100
    ema_decay: float = 0.9999
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    prompt_template: str | None = None
    snr_gamma: float = 5.0


# ---------------------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Processes:
    """This process's place in a multi-process run (rank 0 of 1 when started on its own)."""

    rank: int = 0
    world: int = 1
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def mean(self, tensors: list[torch.Tensor], bucket: int = 1 << 25) -> None:
        """Average ``tensors`` in place across processes (flattened in buckets of ``bucket`` elements)."""
        if self.world == 1:
            return
        group: list[torch.Tensor] = []
        size = 0
        for tensor in [*tensors, None]:
            if tensor is not None:
                group.append(tensor)
                size += tensor.numel()
            if group and (tensor is None or size >= bucket):
                flat = torch.cat([t.reshape(-1) for t in group])
                torch.distributed.all_reduce(flat)
                flat /= self.world
                offset = 0
                for t in group:
                    t.copy_(flat[offset : offset + t.numel()].view_as(t))
                    offset += t.numel()
                group, size = [], 0


def current_processes(device: str = "auto") -> Processes:
    """Join the process group that ``accelerate launch`` or ``torchrun`` set up (gloo on CPUs, NCCL on
    GPUs, through Accelerate's ``PartialState``); a process started alone is rank 0 of 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    return Processes(state.process_index, state.num_processes, torch.device(state.device))


# ------------------------------------------------------------------------------------------- prompts


class Prompts:
    """Token ids of every (class, scale) prompt and of the empty prompt, from the synthesis template."""

    def __init__(self, conditioner: TextConditioner, classes: tuple[str, ...]) -> None:
        self.conditioner = conditioner
        self.classes = classes
        texts = {"": ""}
        for c in classes:
            for s in SCALES:
                texts[f"{c}|{s}"] = conditioner.prompt(c, s)
        self.texts = texts
        tokenizer = conditioner.tokenizer
        self.keys = list(texts)
        self.ids = tokenizer(
            [texts[k] for k in self.keys],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    def index(self, class_index: int | None, scale_index: int) -> int:
        if class_index is None:
            return 0
        return self.keys.index(f"{self.classes[class_index]}|{SCALES[scale_index]}")


# ----------------------------------------------------------------------------------------- the phase


class TrainableParameters(torch.nn.Module):
    """The trainable parameters of several modules (the same tensors), so that the EMA, the optimizer
    and the checkpoints hold only what is trained; keys are ``<module>__<parameter name with __>``."""

    def __init__(self, modules: dict[str, torch.nn.Module]) -> None:
        super().__init__()
        self.trainable = torch.nn.ParameterDict(
            {
                f"{name}.{pname}".replace(".", "__"): p
                for name, module in modules.items()
                for pname, p in module.named_parameters()
                if p.requires_grad
            }
        )

    def tensors_of(self, module: str) -> dict[str, torch.Tensor]:
        """The trained tensors of one module under its own parameter names."""
        prefix = f"{module}__"
        return {
            k[len(prefix) :].replace("__", "."): v.detach()
            for k, v in self.trainable.items()
            if k.startswith(prefix)
        }


class TextToImagePhase(Phase):
    """One UNet (and optionally text encoder) update on a global batch split across processes."""

    def __init__(
        self,
        *args: Any,
        unet: ModelMixin,
        text_encoder: PreTrainedModel,
        train_text_encoder: bool,
        autoencoder: Autoencoder,
        sampler: CropSampler,
        prompts: Prompts,
        scheduler: Any,
        batch_size: int,
        processes: Processes,
        label_dropout: float,
        snr_gamma: float,
        autocast_dtype: torch.dtype | None,
        eval_set: tuple[torch.Tensor, torch.Tensor] | None,
        scaler_state: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.unet, self.text_encoder, self.train_text_encoder = unet, text_encoder, train_text_encoder
        self.autoencoder, self.sampler, self.prompts = autoencoder, sampler, prompts
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise InputError(f"the base scheduler predicts {self.prediction_type!r}; expected epsilon or v")
        self.alphas = scheduler.alphas_cumprod.to(torch.float32)
        self.T = int(scheduler.config.num_train_timesteps)
        self.batch_size, self.processes = batch_size, processes
        self.label_dropout, self.snr_gamma = label_dropout, snr_gamma
        self.autocast_dtype = autocast_dtype
        self.eval_set = eval_set
        self.size = sampler.data.crop // CELL
        self.channels = int(unet.config.in_channels)
        self.scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
        self.scaler_state = scaler_state  # checkpointed through run_phase's extra state
        if self.scaler is not None and scaler_state.get("grad_scaler"):
            self.scaler.load_state_dict(scaler_state["grad_scaler"])
        self._frozen_embeddings: torch.Tensor | None = None

    def _embeddings(self, prompt_indices: torch.Tensor) -> torch.Tensor:
        ids = self.prompts.ids.to(self.device)
        if self.train_text_encoder:
            with autocast(self.device, self.autocast_dtype):
                return self.text_encoder(ids[prompt_indices.to(self.device)])[0]
        if self._frozen_embeddings is None:
            with torch.no_grad(), autocast(self.device, self.autocast_dtype):
                self._frozen_embeddings = self.text_encoder(ids)[0].detach()
        return self._frozen_embeddings[prompt_indices.to(self.device)]

    def _predict(self, noisy: torch.Tensor, t: torch.Tensor, prompt_indices: torch.Tensor) -> torch.Tensor:
        hidden = self._embeddings(prompt_indices)
        with autocast(self.device, self.autocast_dtype):
            return self.unet(noisy.to(self.device), t.to(self.device), encoder_hidden_states=hidden).sample

    def loss(self) -> torch.Tensor:
        n, rank, world = self.batch_size, self.processes.rank, self.processes.world
        crops = [self.sampler.sample(self.numpy_rng, jitter=True) for _ in range(n)]
        drop = self.numpy_rng.random(n) < self.label_dropout
        t = torch.randint(0, self.T, (n,), generator=self.torch_rng)
        noise = torch.randn((n, self.channels, self.size, self.size), generator=self.torch_rng)
        mine = slice(rank * n // world, (rank + 1) * n // world)  # this process's share of the batch
        pixels = crops_to_tensor([self.sampler.pixels(c) for c in crops[mine]])
        x0 = self.autoencoder.encode(pixels).float().cpu().clone()
        prompt_indices = torch.tensor(
            [
                self.prompts.index(None if d else c.class_index, c.scale_index)
                for c, d in zip(crops[mine], drop[mine], strict=True)
            ]
        )
        alpha_bar = self.alphas[t[mine]].view(-1, 1, 1, 1)
        noisy, target = diffusion_target(x0, noise[mine], alpha_bar, self.prediction_type)
        self.unet.train()
        self.text_encoder.train(self.train_text_encoder)
        pred = self._predict(noisy, t[mine], prompt_indices)
        per_sample = (pred.float() - target.to(self.device)).pow(2).mean(dim=(1, 2, 3))
        weight = min_snr_weight(alpha_bar.view(-1), self.prediction_type, self.snr_gamma).to(self.device)
        return (weight * per_sample).mean()

    def train_step(self) -> float:
        loss = self.loss()
        value = loss.detach().float().reshape(1).clone()
        self.processes.mean([value])  # the same loss (and the same finiteness check) on every process
        if not torch.isfinite(value).all():
            raise FloatingPointError(f"{self.name}: loss became {value.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        self.processes.mean([p.grad for p in params if p.grad is not None])
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scaler_state["grad_scaler"] = self.scaler.state_dict()
        else:
            self.optimizer.step()
        self.ema.step(self.model.parameters())
        return float(value.item())

    def evaluate(self) -> dict[str, float]:
        """Unweighted MSE on hold-out crops at fixed timesteps and noise, with the EMA weights."""
        if self.eval_set is None:
            return {}
        x0, prompt_indices = self.eval_set
        g = torch.Generator().manual_seed(1234)
        t = torch.linspace(50, self.T - 50, len(x0)).round().long()
        noise = torch.randn(x0.shape, generator=g)
        noisy, target = diffusion_target(x0, noise, self.alphas[t].view(-1, 1, 1, 1), self.prediction_type)

        def run() -> dict[str, float]:
            self.unet.eval()
            self.text_encoder.eval()
            pred = self._predict(noisy, t, prompt_indices).float().cpu()
            return {"val": float((pred - target).pow(2).mean())}

        return self.with_ema_weights(run)


# ------------------------------------------------------------------------------------------ set-up


def load_base(cfg: FineTuneConfig) -> tuple[Path, PathupModel]:
    """The base pipeline (checked by ``load_model``: safetensors only, every component present)."""
    from napari_pathup.models.folder import resolve_model_path
    from napari_pathup.models.load import load_model

    path = resolve_model_path(cfg.base, cfg.allow_download)
    model = load_model(path)
    if model.kind != "stable-diffusion":
        raise ModelLoadError(
            f"--base {cfg.base}: expected a diffusers Stable Diffusion pipeline folder (model_index.json, "
            "unet, vae, text_encoder, tokenizer, scheduler); this is a PathUp-layout model"
        )
    unet = model.modules["denoiser"]
    if getattr(unet.config, "addition_embed_type", None) is not None:
        raise ModelLoadError(
            f"--base {cfg.base}: the UNet expects added {unet.config.addition_embed_type!r} embeddings "
            "(Stable Diffusion XL or later); only Stable Diffusion 1.x/2.x pipelines can be fine-tuned"
        )
    return path, model


def _unet_multiple(unet: ModelMixin) -> int:
    """Crop sides must be multiples of this (8 per latent pixel, halved at every UNet level)."""
    return CELL * 2 ** (len(unet.config.block_out_channels) - 1)


def resolve_config(cfg: FineTuneConfig, model: PathupModel, processes: Processes) -> FineTuneConfig:
    """Fill the defaults that depend on the base pipeline and check every setting."""
    check_defaults(cfg.defaults, "--set-default")
    unet = model.modules["denoiser"]
    crop = cfg.crop if cfg.crop is not None else model.native_size * CELL
    multiple = _unet_multiple(unet)
    if crop < multiple or crop % multiple:
        raise InputError(
            f"--crop {crop}: this pipeline's UNet needs a positive multiple of {multiple} pixels"
        )
    lr = cfg.lr if cfg.lr is not None else (1e-4 if cfg.lora_rank else 1e-5)
    assert isinstance(model.conditioner, TextConditioner)  # load_base takes Stable Diffusion pipelines only
    template = cfg.prompt_template or model.conditioner.template
    if "{class_name}" not in template or "{scale}" not in template:
        raise InputError(f"--prompt-template {template!r}: it must contain {{class_name}} and {{scale}}")
    try:
        template.format(class_name="x", scale="y")
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"--prompt-template {template!r}: only {{class_name}} and {{scale}} allowed"
        ) from exc
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise InputError(
            f"--mixed-precision {cfg.mixed_precision!r}: expected one of {', '.join(MIXED_PRECISION)}"
        )
    if cfg.lora_rank < 0 or cfg.warmup < 0 or cfg.iters < 1 or cfg.batch_size < 1:
        raise InputError("--lora-rank and --warmup must be >= 0, --iters and --batch-size >= 1")
    if cfg.batch_size % processes.world:
        raise InputError(
            f"--batch-size {cfg.batch_size} (the batch of all processes) must divide evenly among "
            f"{processes.world} processes"
        )
    if not 0 <= cfg.label_dropout < 1 or not 0 <= cfg.overview_fraction <= 1:
        raise InputError("--label-dropout must lie in [0, 1) and --overview-fraction in [0, 1]")
    return dataclasses.replace(cfg, crop=crop, lr=lr, prompt_template=template)


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--mixed-precision`` (auto: bf16 on CUDA when supported, else none)."""
    if mode == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if mode == "no":
        return None
    if device.type != "cuda":
        raise InputError(f"--mixed-precision {mode} needs a CUDA device; this run uses {device}")
    return torch.float16 if mode == "fp16" else torch.bfloat16


def add_lora(unet: ModelMixin, rank: int, seed: int) -> None:
    """LoRA adapters (rank ``rank``, alpha = rank) on the UNet's attention projections, via peft."""
    try:
        from peft import LoraConfig
    except ImportError as exc:
        raise InputError(
            "--lora-rank needs the peft package: pip install 'napari-pathup[lora]' (or pip install peft)"
        ) from exc
    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(LORA_TARGETS)
    )
    unet.add_adapter(config)


def check_resume(cfg: FineTuneConfig, current: dict[str, Any]) -> bool:
    """Check ``--out`` against ``--resume`` (read only); True when a checkpoint will be resumed."""
    saved_path = cfg.out / "checkpoints" / "config.json"
    if cfg.resume and saved_path.is_file():
        saved = json.loads(saved_path.read_text())
        if saved.get("dataset") != current["dataset"]:
            raise InputError(
                "cannot resume: the classes, images or hold-out regions differ from the checkpoint's"
            )
        if latest_checkpoint(cfg.out / "checkpoints" / PHASE) is not None:
            changed = [k for k in RESUME_KEYS if saved.get(k) != current.get(k)]
            if changed:
                detail = ", ".join(f"{k}: {saved.get(k)!r} → {current.get(k)!r}" for k in changed)
                raise InputError(f"cannot resume: the checkpoint was made with other settings ({detail})")
            return True
        return False
    if cfg.out.exists() and any(cfg.out.iterdir()):
        hint = "pass --resume to continue its training" if saved_path.is_file() else "choose an empty folder"
        raise InputError(f"{cfg.out} is not empty; {hint}")
    return False


def _restore_scaler_state(folder: Path) -> dict[str, Any]:
    path = latest_checkpoint(folder)
    if path is None:
        return {}
    state = json.loads((path / "state.json").read_text())
    return {"grad_scaler": state["grad_scaler"]} if state.get("grad_scaler") else {}


def _place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move ``module``, casting only when its dtype differs (diffusers warns about every cast)."""
    current = next(module.parameters()).dtype
    return module.to(device) if current == dtype else module.to(device, dtype)


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------- export


def export_pipeline(
    cfg: FineTuneConfig,
    base: Path,
    trained: TrainableParameters,
    index: DatasetIndex,
    data: Any,
    prompts: Prompts,
    training: dict[str, Any],
) -> Path:
    """Write the fine-tuned pipeline into ``cfg.out``: the base's files (never pickles), the trained UNet
    (LoRA merged) and text encoder, references and ``pathup.json``; ``model_index.json`` goes last, so
    the folder is a model only when it is complete."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from napari_pathup.models.layout import clean_saved_config
    from napari_pathup.training.export import DEFAULT_SYNTHESIS, choose_references, write_references

    out = cfg.out
    (out / "model_index.json").unlink(missing_ok=True)
    staging = out / ".export.partial"
    if staging.exists():
        shutil.rmtree(staging)

    def ignore(folder: str, names: list[str]) -> list[str]:
        """Copy the component folders and model_index.json; never pickles, precision variants, the
        base's own single-file checkpoints, references, pathup.json or training checkpoints."""
        here = Path(folder)
        top = here.resolve() == base.resolve()
        return [
            n
            for n in names
            if n.startswith(".")
            or ((here / n).is_file() and (not n.endswith(COPIED_SUFFIXES) or any(v in n for v in VARIANTS)))
            or (top and (here / n).is_file() and n != "model_index.json")
            or (top and n in ("checkpoints", "references"))
        ]

    shutil.copytree(base, staging, ignore=ignore)
    unet = UNet2DConditionModel.from_pretrained(base / "unet", use_safetensors=True, local_files_only=True)
    if cfg.lora_rank:
        add_lora(unet, cfg.lora_rank, cfg.seed)
    _load_named(unet, trained.tensors_of("unet"), "unet")
    if cfg.lora_rank:
        unet.fuse_lora()
        unet.unload_lora()
    assert cfg.crop is not None  # resolve_config fills it
    if cfg.crop // CELL != unet.config.sample_size:
        unet.register_to_config(sample_size=cfg.crop // CELL)  # synthesis patches at the trained size
    shutil.rmtree(staging / "unet")
    unet.save_pretrained(staging / "unet", safe_serialization=True)
    clean_saved_config(staging / "unet" / "config.json")
    if cfg.train_text_encoder:
        text_encoder = CLIPTextModel.from_pretrained(
            base / "text_encoder", use_safetensors=True, local_files_only=True
        )
        _load_named(text_encoder, trained.tensors_of("text_encoder"), "text_encoder")
        shutil.rmtree(staging / "text_encoder")
        text_encoder.save_pretrained(staging / "text_encoder", safe_serialization=True)
    references = write_references(staging, choose_references(data))
    base_meta = json.loads((base / PATHUP_JSON).read_text()) if (base / PATHUP_JSON).is_file() else {}
    conditioner = prompts.conditioner
    meta = {
        "classes": list(index.classes),
        "prompt_template": conditioner.template,
        "scale_words": conditioner.scale_words,
        "prompts": {c: {s: conditioner.prompt(c, s) for s in SCALES} for c in index.classes},
        "defaults": {**DEFAULT_SYNTHESIS, **base_meta.get("defaults", {}), **cfg.defaults},
        **({"class_defaults": cfg.class_defaults} if cfg.class_defaults else {}),
        "references": references,
        "holdout": {e.key: e.holdout.to_json() for e in index.images if e.holdout is not None},
        "training": training,
    }
    (staging / PATHUP_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    model_index = staging / "model_index.json"
    for entry in sorted(staging.iterdir()):
        if entry == model_index:
            continue
        target = out / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    os.replace(model_index, out / "model_index.json")
    shutil.rmtree(staging)
    return out


def _load_named(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    params = dict(module.named_parameters())
    missing = [k for k in tensors if k not in params]
    if missing:
        raise ModelLoadError(
            f"the trained {what} tensors do not fit the base {what}: {', '.join(missing[:3])}"
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(params[name].dtype))


# --------------------------------------------------------------------------------------------- run


def fine_tune(cfg: FineTuneConfig, log: Callable[[str], None] = print) -> Path:
    """Fine-tune ``cfg.base`` on ``cfg.data`` and write the pipeline folder ``cfg.out``; returns it."""
    with _threads(cfg.threads):
        return _fine_tune(cfg, log)


def _fine_tune(cfg: FineTuneConfig, log: Callable[[str], None]) -> Path:
    from napari_pathup import __version__
    from napari_pathup.engine.device import select_device
    from napari_pathup.models.load import model_hash
    from napari_pathup.training.settings import dataset_fingerprint

    processes = current_processes(cfg.device)
    say = log if processes.is_main else (lambda _: None)
    device = processes.device if processes.device is not None else select_device(cfg.device)
    index = discover(cfg.data, cfg.splits, cfg.holdout, cfg.max_images_per_class, cfg.seed)
    check_class_defaults(cfg.class_defaults, index.classes, "--set-class-default")
    base, model = load_base(cfg)
    cfg = resolve_config(cfg, model, processes)
    assert cfg.crop is not None and cfg.lr is not None and cfg.prompt_template is not None  # filled
    assert isinstance(model.conditioner, TextConditioner)  # load_base takes Stable Diffusion pipelines only
    dtype = autocast_dtype(cfg.mixed_precision, device)
    say(
        f"data: {cfg.data} ({index.layout}), classes {', '.join(index.classes)}; {len(index.images)} images; "
        f"base {cfg.base}; device {device} x {processes.world} process(es)"
    )
    arrays = load_images(index)
    data = build_sources(index, arrays, cfg.crop, cfg.min_tissue, cfg.reference_size)
    sampler = CropSampler(data, cfg.overview_fraction)
    current = {**cfg.to_json(), "base_hash": model_hash(base), "dataset": dataset_fingerprint(index)}
    resuming = check_resume(cfg, current)  # every check passed: only now is anything written
    processes.barrier()
    ckpt = cfg.out / "checkpoints"
    if processes.is_main:
        ckpt.mkdir(parents=True, exist_ok=True)
        write_text_atomic(ckpt / "config.json", json.dumps(current, indent=1) + "\n")
    processes.barrier()

    unet, text_encoder = model.modules["denoiser"], model.modules["text_encoder"]
    vae = model.modules["autoencoder"]
    weight_dtype = dtype or torch.float32  # frozen weights in the autocast dtype (memory, speed)
    _place(vae, device, weight_dtype)
    _place(text_encoder, device, torch.float32 if cfg.train_text_encoder else weight_dtype)
    if cfg.lora_rank:
        _place(unet, device, weight_dtype)
        add_lora(unet, cfg.lora_rank, cfg.seed)
        for p in unet.parameters():  # adapters train in float32
            if p.requires_grad:
                p.data = p.data.float()
    else:
        _place(unet, device, torch.float32).requires_grad_(True)
    text_encoder.requires_grad_(cfg.train_text_encoder)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if cfg.train_text_encoder:
            text_encoder.gradient_checkpointing_enable()
    trained = TrainableParameters({"unet": unet, "text_encoder": text_encoder})
    autoencoder = Autoencoder(vae)
    prompts = Prompts(
        TextConditioner(
            model.conditioner.tokenizer, text_encoder, cfg.prompt_template, model.conditioner.scale_words
        ),
        index.classes,
    )
    held = holdout_crops(index, arrays, cfg.crop, limit=8, min_tissue=cfg.min_tissue)
    eval_set = None
    if held:
        z = torch.cat([autoencoder.encode(crops_to_tensor([c])).float().cpu() for c, _ in held])
        eval_set = (z, torch.tensor([prompts.index(k, SCALES.index("native")) for _, k in held]))
    numpy_rng, torch_rng = seeded_generators(cfg.seed, 4)
    scaler_state = _restore_scaler_state(ckpt / PHASE) if resuming else {}
    phase = TextToImagePhase(
        PHASE,
        trained,
        torch.optim.AdamW(trained.parameters(), lr=cfg.lr, weight_decay=1e-2),
        make_ema(trained, cfg.ema_decay),
        numpy_rng,
        torch_rng,
        lr=cfg.lr,
        warmup=cfg.warmup,  # not tied to --iters, which may grow on resume
        device=device,
        unet=unet,
        text_encoder=text_encoder,
        train_text_encoder=cfg.train_text_encoder,
        autoencoder=autoencoder,
        sampler=sampler,
        prompts=prompts,
        scheduler=model.scheduler,
        batch_size=cfg.batch_size,
        processes=processes,
        label_dropout=cfg.label_dropout,
        snr_gamma=cfg.snr_gamma,
        autocast_dtype=dtype,
        eval_set=eval_set,
        scaler_state=scaler_state,
    )
    n = sum(p.numel() for p in trained.parameters())
    what = f"LoRA rank {cfg.lora_rank}" if cfg.lora_rank else "UNet"
    say(
        f"fine-tune: {what}{' + text encoder' if cfg.train_text_encoder else ''}, {n / 1e6:.2f} M trained "
        f"parameters, {cfg.iters} iterations of {cfg.batch_size} x {cfg.crop} px "
        f"({model.scheduler.config.prediction_type}, {dtype or torch.float32}); prompts like "
        f"{prompts.texts[next(k for k in prompts.keys if k)]!r}"
    )
    result = run_phase(
        phase,
        cfg.iters,
        ckpt / PHASE,
        cfg.checkpoint_every,
        cfg.eval_every,
        cfg.resume,
        cfg.progress and processes.is_main,
        extra_state=scaler_state,
        write=processes.is_main,
    )
    phase.ema.copy_to(trained.parameters())
    if processes.is_main:
        # a local base by folder name (its hash identifies it; a path of this machine would not travel),
        # a downloaded one by its hub id
        base_name = folder_label(base) if Path(cfg.base).exists() else cfg.base
        training = {
            "pathup_version": __version__,
            "base": base_name,
            "base_hash": current["base_hash"],
            "data": current["dataset"],
            "settings": {**cfg.recorded(), "base": base_name},
            "processes": processes.world,
            "class_contrastive_term": "absent",
            "unet": {"iterations": result.iteration, **result.metrics},
        }
        export_pipeline(cfg, base, trained, index, data, prompts, training)
        say(f"model: {cfg.out} (fine-tuned in {result.seconds / 60:.1f} min; {result.metrics})")
    processes.barrier()
    return cfg.out
