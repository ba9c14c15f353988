"""``pathup evaluate --preset paper``: the PathUp paper's downstream protocol, with end-to-end fine-tuning.

The paper fine-tunes a ViT-L on the RoIs resized to 512x512 (learning rate 0.001) and trains ADMIL
(learning rate 0.0001), 100 epochs each, 5 folds, with and without a 1:1 synthetic share. Here:

- **ViT, fine-tuned end to end**: a timm ViT-family architecture created for the preset's input size
  (``img_size``), its weights read from a local ``.safetensors`` file only (never downloaded; the
  position embeddings resampled to the new grid by timm's own checkpoint filter, the checkpoint's
  classifier replaced by a new one for the data's classes), trained per fold and per training setting
  from those same weights: SGD with momentum 0.9 (the paper gives the learning rate, not the optimiser;
  0.001 is an SGD-scale rate for ViT fine-tuning), a cosine learning-rate decay over the epochs,
  class-balanced cross-entropy, random flips and right-angle rotations, gradient norm clipped to 1.
- **ADMIL**: the gated attention MIL head of :mod:`~napari_pathup.evaluation.mil` with Adam at the
  MIL learning rate, on the tiles' features from the same pretrained ViT, frozen (computed once and
  reused by every fold, as in the fast mode; the paper does not say which features its ADMIL used).

CUDA with autocast (bf16 where supported, else fp16 with a gradient scaler) when available, plain fp32
on CPU. Several processes (``accelerate launch -m napari_pathup evaluate ...``, or ``torchrun``): every
process draws the same seeded batches and trains on its own slice of each, gradients are averaged across
processes (as ``pathup train --base`` does), so all hold the same weights; the main process alone writes
checkpoints and outputs.

Checkpoints (``checkpoints`` folder): ``run.json`` fingerprints the run (architecture, weights checksum,
data, settings); ``fold<k>-<setting>/state.json`` says which epoch finished, beside the weights and
optimiser state of that epoch in one ``.safetensors``; both are written under a temporary name and
renamed, ``state.json`` last (the commit). A finished fold keeps its predictions in ``state.json`` and
drops its weights. A killed run started again with the same checkpoints folder resumes at the first
unfinished epoch of the first unfinished fold; the epoch's shuffling and augmentation come from a seed
of (seed, fold, setting, epoch), so a resumed run trains on what an uninterrupted one would.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from napari_pathup.checksum import sha256_of
from napari_pathup.engine.device import autocast
from napari_pathup.errors import InputError
from napari_pathup.evaluation.data import EvaluationData, EvaluationItem
from napari_pathup.evaluation.folds import check_fold_count, make_folds
from napari_pathup.evaluation.mil import MILSettings
from napari_pathup.evaluation.report import EvaluationReport, FoldResult
from napari_pathup.evaluation.run import EvaluateSettings, FeatureCache, fit_predict_mil, scores
from napari_pathup.io.atomic import replace_atomically, write_text_atomic
from napari_pathup.io.images import read_image
from napari_pathup.io.optimizer_state import load_optimizer, optimizer_tensors
from napari_pathup.metrics.features import module_extractor
from napari_pathup.metrics.images import resize, to_tensor

#: the classifier name of the fine-tuned ViT in reports
VIT_CLASSIFIER = "ViT (fine-tuned)"
MIL_CLASSIFIER = "MIL (gated attention)"
RUN_JSON = "run.json"
STATE_JSON = "state.json"


@dataclass(frozen=True)
class Preset:
    """A named downstream protocol: the architecture, its input size, learning rates, epochs, folds."""

    name: str
    architecture: str
    image_size: int
    lr: float
    mil_lr: float
    epochs: int
    folds: int
    description: str


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        architecture="vit_large_patch16_224",
        image_size=512,
        lr=1e-3,
        mil_lr=1e-4,
        epochs=100,
        folds=5,
        description="the PathUp paper's downstream protocol: ViT-L fine-tuned at 512x512 (lr 0.001) and "
        "ADMIL (lr 0.0001), 100 epochs, 5 folds grouped by slide, 1:1 synthetic",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; :class:`InputError` naming the known ones otherwise."""
    if name not in PRESETS:
        raise InputError(f"unknown --preset {name!r}; expected one of: {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass
class FineTuneSettings:
    """How the ViT is fine-tuned and the MIL head trained in a preset run."""

    architecture: str
    weights: Path
    image_size: int = 512
    lr: float = 1e-3
    mil_lr: float = 1e-4
    epochs: int = 100
    batch_size: int = 16
    momentum: float = 0.9
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    mixed_precision: str = "auto"
    device: str = "auto"
    preset: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must share with the run that resumes it (the weights by checksum)."""
        d = asdict(self)
        d.pop("device")
        d["weights"] = sha256_of(Path(self.weights))
        return d


# --------------------------------------------------------------------------------------- the model


def _timm():
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is a dependency of [dev] and [timm]
        raise InputError("--preset needs the timm package: pip install 'napari-pathup[timm]'") from exc
    return timm


def check_architecture(architecture: str) -> None:
    """:class:`InputError` unless timm knows ``architecture`` (with the closest names it knows)."""
    timm = _timm()
    if timm.is_model(architecture):
        return
    close = difflib.get_close_matches(architecture, timm.list_models(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise InputError(
        f"unknown timm architecture {architecture!r}: expected a name from timm.list_models(), "
        f"e.g. vit_large_patch16_224{hint}"
    )


def check_weights_file(path: Path) -> None:
    """The weights must be an existing local ``.safetensors`` file (pickles are never loaded)."""
    if path.suffix != ".safetensors":
        raise InputError(
            f"--backbone-weights {path}: expected a .safetensors file (pickles are never loaded)"
        )
    if not path.is_file():
        raise InputError(f"--backbone-weights {path}: no such file")


def create_model(architecture: str, image_size: int, n_classes: int) -> nn.Module:
    """A randomly initialised timm ``architecture`` for ``image_size`` inputs and ``n_classes`` outputs."""
    check_architecture(architecture)
    try:
        return _timm().create_model(
            architecture, pretrained=False, img_size=image_size, num_classes=n_classes
        )
    except TypeError as exc:
        raise InputError(
            f"timm architecture {architecture} does not take an input size (img_size): the preset fine-tunes "
            f"ViT-family models at {image_size}x{image_size}, e.g. vit_large_patch16_224"
        ) from exc
    except Exception as exc:
        raise InputError(
            f"timm cannot build {architecture} for {image_size}x{image_size} input: {exc}"
        ) from exc


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the model's classifier (replaced for the data's classes, never loaded)."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier", "head")
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{n}." for n in names)


def load_pretrained(model: nn.Module, path: Path, architecture: str) -> dict[str, list[str]]:
    """Load the backbone weights of the safetensors file ``path`` into ``model`` (classifier left as it
    is); the position embeddings are resampled to the model's grid by timm's checkpoint filter.

    Raises :class:`InputError` naming the file and the architecture when the file cannot be read, or
    when its keys or shapes do not fit (a key the model lacks, a backbone key the file lacks).
    Returns the keys that were not loaded (the classifier's).
    """
    from safetensors.torch import load_file

    check_weights_file(path)
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError, ...
        raise InputError(f"--backbone-weights {path}: cannot read it as safetensors: {exc}") from exc
    skip = classifier_prefixes(model)
    state = {k: v for k, v in state.items() if not k.startswith(skip)}
    expected = f"the weights of timm {architecture} (as timm.create_model('{architecture}') names them)"
    module = __import__(type(model).__module__, fromlist=["checkpoint_filter_fn"])
    adapt = getattr(module, "checkpoint_filter_fn", None)
    try:
        if adapt is not None:
            state = adapt(state, model)
        missing, unexpected = model.load_state_dict(state, strict=False)
    except Exception as exc:
        raise InputError(f"--backbone-weights {path} does not fit {expected}: {exc}") from exc
    missing = [k for k in missing if not k.startswith(skip)]
    if missing or unexpected:
        detail = "; ".join(
            f"{what} {len(keys)} key(s), e.g. {', '.join(keys[:3])}"
            for what, keys in (("the file lacks", missing), ("the model has no", unexpected))
            if keys
        )
        raise InputError(f"--backbone-weights {path} does not fit {expected}: {detail}")
    return {"classifier": sorted(k for k in model.state_dict() if k.startswith(skip))}


def normalisation(model: nn.Module) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The model's input mean and std per RGB channel (0..1 scale; timm's pretrained config, ImageNet by
    default)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    (r, g, b), (sr, sg, sb) = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
    return (float(r), float(g), float(b)), (float(sr), float(sg), float(sb))


# ------------------------------------------------------------------------------------------ images


def load_resized(
    items: list[EvaluationItem], size: int, on_item: Callable[[], None] | None = None
) -> np.ndarray:
    """(N, size, size, 3) uint8: every item resized whole (antialiased bilinear, as the feature extractors
    resize); each source image is read once for all its RoIs."""
    out = np.zeros((len(items), size, size, 3), np.uint8)
    by_path: dict[Path, list[int]] = {}
    for i, item in enumerate(items):
        by_path.setdefault(item.path, []).append(i)
    for path, indices in by_path.items():
        image = read_image(path)
        for i in indices:
            pixels = to_tensor(items[i].pixels(image), torch.device("cpu"))
            resized = resize(pixels, (size, size), "bilinear-antialias")[0]
            out[i] = resized.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
            if on_item is not None:
                on_item()
    return out


def dihedral(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each (3, H, W) image of ``batch`` flipped and rotated by one of the 8 symmetries of a square
    (tissue has no orientation)."""
    choices = torch.randint(0, 8, (len(batch),), generator=generator).tolist()
    out = []
    for image, c in zip(batch, choices, strict=True):
        image = torch.rot90(image, c % 4, dims=(1, 2))
        out.append(torch.flip(image, dims=(2,)) if c >= 4 else image)
    return torch.stack(out)


# ------------------------------------------------------------------------------------- checkpoints


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def _join_state(state: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A nested optimiser state of the fold checkpoints' first layout (tensors named by their path in it
    through ``{"__tensor__": key}`` markers), with its tensors put back."""
    if isinstance(state, dict):
        if set(state) == {"__tensor__"}:
            return tensors[state["__tensor__"]]
        return {k: _join_state(v, tensors) for k, v in state.items()}
    if isinstance(state, list):
        return [_join_state(v, tensors) for v in state]
    return state


def _load_optimizer(
    optimizer: torch.optim.Optimizer, saved: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    """Restore the optimiser of a fold checkpoint: the shared layout (``io.optimizer_state``, tensors
    ``optimizer.state.*``), or the first one, so that a run interrupted before the change resumes."""
    if "scalars" in saved:
        prefix = "optimizer."
        own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        load_optimizer(optimizer, own, saved)
        return
    joined = _join_state(saved, tensors)
    state = {int(k): v for k, v in joined["state"].items()}  # parameter indices are ints again
    optimizer.load_state_dict({"state": state, "param_groups": joined["param_groups"]})


class FoldCheckpoint:
    """The checkpoint folder of one (fold, training setting): ``state.json`` and the latest epoch's
    ``epoch-<n>.safetensors`` (model weights ``model.*`` and optimiser tensors ``optimizer.*``)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def state(self) -> dict[str, Any] | None:
        path = self.folder / STATE_JSON
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def save_epoch(
        self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, extra: dict[str, Any]
    ) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        opt_tensors, opt = optimizer_tensors(optimizer)
        tensors |= {f"optimizer.{k}": v.detach().cpu().contiguous() for k, v in opt_tensors.items()}
        name = f"epoch-{epoch}.safetensors"
        replace_atomically(self.folder / name, lambda t: save_file(tensors, str(t)))
        _write_json(
            self.folder / STATE_JSON, {"done": False, "epoch": epoch, "file": name, "optimizer": opt, **extra}
        )
        self._remove_weights(keep=name)

    def load_epoch(self, state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(self.folder / state["file"]))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer(optimizer, state["optimizer"], tensors)

    def finish(self, result: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_json(self.folder / STATE_JSON, {"done": True, **result})
        self._remove_weights(keep=None)

    def _remove_weights(self, keep: str | None) -> None:
        for path in self.folder.glob("epoch-*.safetensors"):
            if path.name != keep:
                path.unlink(missing_ok=True)


def check_checkpoints(folder: Path, fingerprint: dict[str, Any]) -> bool:
    """True when ``folder`` holds checkpoints of this very run (to resume); :class:`InputError` when it
    holds another run's (nothing is changed)."""
    path = folder / RUN_JSON
    if not path.is_file():
        if folder.exists() and any(p for p in folder.iterdir() if not p.name.startswith(".")):
            raise InputError(
                f"--checkpoints {folder}: not empty and not a checkpoints folder of pathup evaluate"
            )
        return False
    saved = _flat(json.loads(path.read_text(encoding="utf-8")))
    current = _flat(json.loads(json.dumps(fingerprint)))
    changed = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {_short(saved.get(k))} → {_short(current.get(k))}" for k in changed)
        raise InputError(
            f"--checkpoints {folder} holds a run with other settings or data ({detail}); "
            "use another folder, or the same settings to resume it"
        )
    return True


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------- training


@dataclass
class FineTuner:
    """Fine-tunes copies of one pretrained model per fold; holds the device, precision and processes."""

    model: nn.Module
    settings: FineTuneSettings
    n_classes: int
    processes: Any  # napari_pathup.training.text_to_image.Processes
    device: torch.device
    autocast_dtype: torch.dtype | None

    def __post_init__(self) -> None:
        mean, std = normalisation(self.model)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 → the model's normalised float input on the device."""
        return (images.to(self.device).float() - self.mean) / self.std

    def _fresh(self, run_seed: int) -> nn.Module:
        """A copy of the pretrained model (``self.model`` itself is never trained) with a new classifier
        drawn from ``run_seed`` (the global random state is left as it was)."""
        model = copy.deepcopy(self.model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run_seed)
            cast(Any, model).reset_classifier(self.n_classes)  # a timm model's
        return model.to(self.device)

    def train_and_predict(
        self,
        train_x: np.ndarray,
        train_y: np.ndarray,
        val_x: np.ndarray,
        run_seed: int,
        checkpoint: FoldCheckpoint | None,
        bar: Callable[[str, int], Any] | None = None,
        label: str = "",
    ) -> tuple[np.ndarray, list[float]]:
        """Fine-tune on (train_x, train_y) for the set epochs, resuming from ``checkpoint``; returns the
        predicted labels of ``val_x`` and the mean training loss of every epoch."""
        s = self.settings
        model = self._fresh(run_seed)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
        )
        scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        counts = np.bincount(train_y, minlength=self.n_classes).astype(np.float64)
        weights = torch.tensor(
            np.where(counts > 0, len(train_y) / (self.n_classes * np.maximum(counts, 1)), 0.0),
            dtype=torch.float32,
            device=self.device,
        )
        losses: list[float] = []
        start = 0
        state = checkpoint.state() if checkpoint is not None else None
        if checkpoint is not None and state is not None and not state["done"]:
            checkpoint.load_epoch(state, model, optimizer)
            if scaler is not None and state.get("grad_scaler"):
                scaler.load_state_dict(state["grad_scaler"])
            start, losses = state["epoch"], list(state["losses"])
        labels = torch.as_tensor(train_y, dtype=torch.long)
        rank, world = self.processes.rank, self.processes.world
        for epoch in range(start, s.epochs):
            for group in optimizer.param_groups:
                group["lr"] = s.lr * 0.5 * (1 + math.cos(math.pi * epoch / s.epochs))
            generator = torch.Generator().manual_seed(run_seed * 1_000_003 + epoch)
            order = torch.randperm(len(train_x), generator=generator)
            batches = [order[i : i + s.batch_size] for i in range(0, len(order), s.batch_size)]
            batches = [b for b in batches if len(b) >= world]  # every process needs a share
            progress = bar(f"{label} epoch {epoch + 1}/{s.epochs}", len(batches)) if bar else None
            model.train()
            total, seen = 0.0, 0
            for batch in batches:
                images = dihedral(torch.from_numpy(train_x[batch.numpy()]).permute(0, 3, 1, 2), generator)
                share = np.array_split(np.arange(len(batch)), world)[rank]
                x = self._normalise(images[share])
                batch_labels = labels[batch].to(self.device)
                y = batch_labels[share]
                with autocast(self.device, self.autocast_dtype):
                    per_item = nn.functional.cross_entropy(model(x).float(), y, reduction="none")
                # the class-weighted mean over the whole batch, of which this process holds a share: the
                # mean of the processes' gradients is then that of one process training on the batch
                loss = (per_item * weights[y]).sum() * world / weights[batch_labels].sum()
                optimizer.zero_grad(set_to_none=True)
                (scaler.scale(loss) if scaler is not None else loss).backward()
                if scaler is not None:
                    scaler.unscale_(optimizer)
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                self.processes.mean(grads)
                nn.utils.clip_grad_norm_(model.parameters(), s.clip_norm)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                logged = loss.detach().clone()
                self.processes.mean([logged])
                total += logged.item() * len(batch)
                seen += len(batch)
                if progress is not None:
                    progress.set_postfix(loss=f"{logged.item():.3f}")
                    progress.update(1)
            if progress is not None:
                progress.close()
            losses.append(total / max(seen, 1))
            if not math.isfinite(losses[-1]):
                raise InputError(
                    f"{label}: the training loss became {losses[-1]} in epoch {epoch + 1}; "
                    "lower --lr or use --mixed-precision no"
                )
            if checkpoint is not None:
                if self.processes.is_main:
                    extra: dict[str, Any] = {"losses": losses}
                    if scaler is not None:
                        extra["grad_scaler"] = scaler.state_dict()
                    checkpoint.save_epoch(epoch + 1, model, optimizer, extra)
                self.processes.barrier()
        return self.predict(model, val_x), losses

    @torch.inference_mode()
    def predict(self, model: nn.Module, images: np.ndarray) -> np.ndarray:
        model.eval()
        out = []
        for start in range(0, len(images), self.settings.batch_size):
            with autocast(self.device, self.autocast_dtype):
                chunk = torch.from_numpy(images[start : start + self.settings.batch_size]).permute(0, 3, 1, 2)
                logits = model(self._normalise(chunk))
            out.append(logits.float().argmax(1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.int64)


# ----------------------------------------------------------------------------------------- the run


def prepare_model(ft: FineTuneSettings, n_classes: int) -> nn.Module:
    """Create the architecture and load the local weights (all checks before anything is written)."""
    model = create_model(ft.architecture, ft.image_size, n_classes)
    load_pretrained(model, Path(ft.weights), ft.architecture)
    return model


def frozen_extractor(model: nn.Module, ft: FineTuneSettings, device: torch.device):
    """The pretrained model without its classifier, frozen, as the MIL tiles' feature extractor."""
    backbone = copy.deepcopy(model)
    cast(Any, backbone).reset_classifier(0)  # a timm model's
    mean, std = normalisation(model)
    extractor = module_extractor(
        backbone,
        name=f"timm:{ft.architecture}",
        input_size=ft.image_size,
        mean=mean,
        std=std,
        label=f"timm {ft.architecture} at {ft.image_size} px",
        weights_path=ft.weights,
    )
    extractor.extra["timm_version"] = _timm().__version__
    return extractor.to(device)


def data_fingerprint(data: EvaluationData) -> str:
    """A checksum of the items (name, group, label, box) that a checkpoint was made on."""
    rows = [
        (it.name, it.group, it.class_index, repr(it.box), it.synthetic) for it in data.real + data.synthetic
    ]
    return hashlib.sha256(repr((data.classes, rows)).encode()).hexdigest()[:32]


def evaluate_finetune(
    data: EvaluationData,
    settings: EvaluateSettings,
    ft: FineTuneSettings,
    *,
    checkpoints: Path | None = None,
    cache_folder: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> EvaluationReport:
    """Cross-validate the fine-tuned ViT and the ADMIL head, trained on the real training items alone and
    (when ``data`` has synthetic items) on them plus the allowed synthetic ones; see the module.

    ``settings`` gives folds, seed, tile size and batch size; ``settings.mil`` the MIL head (its ``lr``
    and ``epochs``). Every check (architecture, weights, folds, checkpoints folder) runs before anything
    is written. Returns the :class:`EvaluationReport`; only the main process writes checkpoints.
    """
    from napari_pathup.training.text_to_image import autocast_dtype, current_processes

    s = settings
    labels = [it.class_index for it in data.real]
    groups = [it.group for it in data.real]
    check_fold_count(labels, groups, data.classes, s.folds, data.group_kind)
    folds = make_folds(
        labels, groups, s.folds, seed=s.seed, synthetic_groups=[it.group for it in data.synthetic]
    )
    model = prepare_model(ft, len(data.classes))
    fingerprint = {
        "finetune": ft.fingerprint(),
        "folds": s.folds,
        "seed": s.seed,
        "tile_size": s.tile_size,
        "mil": asdict(s.mil),
        "data": data_fingerprint(data),
    }
    resuming = check_checkpoints(checkpoints, fingerprint) if checkpoints is not None else False
    processes = current_processes(ft.device)
    if ft.device == "auto":
        device = processes.device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(ft.device)
    dtype = autocast_dtype(ft.mixed_precision, device)
    main = processes.is_main
    say = log if main else (lambda _: None)
    if checkpoints is not None and main:
        checkpoints.mkdir(parents=True, exist_ok=True)
        _write_json(checkpoints / RUN_JSON, fingerprint)
        if resuming:
            say(f"pathup evaluate: resuming the run in {checkpoints}")
    show = progress and main
    ratio = len(data.synthetic) / len(data.real)
    if data.synthetic and ft.preset == "paper" and abs(ratio - 1) > 0.05:
        say(
            f"pathup evaluate: note: {len(data.synthetic)} synthetic for {len(data.real)} real items "
            f"({ratio:.2f}:1); the paper's protocol is 1:1 (pathup augment --ratio 1)"
        )
    if cache_folder is not None:
        cache_folder.mkdir(parents=True, exist_ok=True)

    def bar(desc: str, total: int, unit: str = "batch"):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not show)

    everything = data.real + data.synthetic
    with bar(f"images at {ft.image_size} px", len(everything), "image") as loading:
        pixels = load_resized(everything, ft.image_size, lambda: loading.update(1))
    real_x, synth_x = pixels[: len(data.real)], pixels[len(data.real) :]
    y = np.asarray(labels, dtype=np.int64)
    y_synth = np.asarray([it.class_index for it in data.synthetic], dtype=np.int64)

    extractor = frozen_extractor(model, ft, device)
    cache = FeatureCache(extractor, s, cache_folder)
    with bar("MIL tile features", len(everything), "image") as featuring:
        feats = cache.features(everything, lambda: featuring.update(1))
    extractor.to("cpu")  # frees the device for fine-tuning (the cache keeps the extractor)
    real_f, synth_f = feats[: len(data.real)], feats[len(data.real) :]

    tuner = FineTuner(model, ft, len(data.classes), processes, device, dtype)
    settings_names = ["real"] + (["real + synthetic"] if data.synthetic else [])
    runs = [(fold, setting) for fold in folds for setting in settings_names]
    results: list[FoldResult] = []
    losses: dict[str, list[float]] = {}
    from tqdm import tqdm

    with tqdm(total=len(runs), desc="folds", unit="fold", disable=not show) as fold_bar:
        for fold, setting in runs:
            name = f"fold {fold.index + 1}/{s.folds} {setting}"
            slug = f"fold{fold.index + 1}-{'real-synthetic' if setting != 'real' else 'real'}"
            ckpt = FoldCheckpoint(checkpoints / slug) if checkpoints is not None else None
            saved = ckpt.state() if ckpt is not None else None
            use = fold.synthetic if setting != "real" else np.zeros(0, np.int64)
            train_y = np.concatenate([y[fold.train], y_synth[use]])
            run_seed = s.seed * 1000 + fold.index * 2 + (setting != "real")
            if saved is not None and saved["done"]:
                predictions = {k: np.asarray(v) for k, v in saved["predictions"].items()}
                losses[slug] = saved["losses"]
            else:
                train_x = np.concatenate([real_x[fold.train], synth_x[use]])
                vit, losses[slug] = tuner.train_and_predict(
                    train_x, train_y, real_x[fold.val], run_seed, ckpt, bar, name
                )
                bags = [real_f[i].tiles for i in fold.train] + [synth_f[i].tiles for i in use]
                mil = fit_predict_mil(
                    bags, train_y, [real_f[i].tiles for i in fold.val], len(data.classes), run_seed, s
                )
                predictions = {VIT_CLASSIFIER: vit, MIL_CLASSIFIER: mil}
                if ckpt is not None and main:
                    ckpt.finish(
                        {
                            "predictions": {k: v.tolist() for k, v in predictions.items()},
                            "losses": losses[slug],
                        }
                    )
                processes.barrier()
            counts = (len(fold.train), len(use), len(fold.val), fold.val_groups)
            for clf, pred in predictions.items():
                accuracy, f1, confusion = scores(y[fold.val], pred, len(data.classes))
                results.append(FoldResult(clf, setting, fold.index, accuracy, f1, *counts, confusion))
            say(f"pathup evaluate: {name}: ViT loss {losses[slug][0]:.3f} → {losses[slug][-1]:.3f}")
            fold_bar.update(1)

    tiles = [len(f.tiles) for f in real_f]
    provenance = cache.single_extractor.provenance()
    protocol = {
        "preset": ft.preset,
        "architecture": ft.architecture,
        "input_size": [ft.image_size, ft.image_size],
        "weights_path": str(ft.weights),
        "weights_sha256": provenance["weights_sha256"],
        "timm_version": provenance.get("timm_version"),
        "vit": {
            "training": "end to end, a new classifier per fold and training setting",
            "optimizer": f"SGD, momentum {ft.momentum}, weight decay {ft.weight_decay}",
            "lr": ft.lr,
            "lr_schedule": "cosine over the epochs",
            "epochs": ft.epochs,
            "batch_size": ft.batch_size,
            "loss": "class-balanced cross-entropy",
            "augmentation": "random flips and right-angle rotations",
            "clip_norm": ft.clip_norm,
        },
        "mil": {
            "features": "tiles through the pretrained model, frozen",
            "lr": s.mil.lr,
            "epochs": s.mil.epochs,
        },
        "device": str(device),
        "autocast": str(dtype).removeprefix("torch.") if dtype is not None else "none (fp32)",
        "processes": processes.world,
        "synthetic_per_real": round(ratio, 4),
        "train_loss_per_epoch": losses,
        "checkpoints": str(checkpoints) if checkpoints is not None else None,
    }
    return EvaluationReport(
        data=data,
        extractor=provenance,
        tile_extractor=cache.tile_extractor.provenance(),
        settings=s,
        results=results,
        tiles_per_item=(min(tiles), float(np.mean(tiles)), max(tiles)),
        features_computed=cache.computed,
        protocol=protocol,
    )


def mil_settings(ft: FineTuneSettings, epochs: int | None) -> MILSettings:
    """The MIL head of a preset run: the preset's MIL learning rate, ``epochs`` (default: the ViT's)."""
    return MILSettings(epochs=epochs or ft.epochs, lr=ft.mil_lr)
