"""Load a model folder into a :class:`PathupModel`: safetensors only, no remote code, clear errors.

Every component is checked (config present and valid JSON, known class, safetensors weights; by
:func:`napari_pathup.models.folder.check_model_files`, which needs no torch) before anything is
loaded, so a broken folder fails with one message naming the file and nothing half-loads. The
network is touched only for a hub id with ``allow_download=True``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from napari_pathup.errors import ModelLoadError
from napari_pathup.models.base import Autoencoder, DenoiserFn, PathupModel
from napari_pathup.models.conditioning import (
    DEFAULT_PROMPT_TEMPLATE,
    DEFAULT_SCALE_WORDS,
    ClassConditioner,
    TextConditioner,
)
from napari_pathup.models.folder import (
    AUTOENCODER_CLASSES,
    SCHEDULER_CONFIG,
    ModelFiles,
    check_component,
    check_model_files,
    resolve_model_path,
)
from napari_pathup.models.schedulers import (
    ALLOWED_SCHEDULER_CLASSES,
    UNSEEDED,
    missing_backend,
    scheduler_class,
    unseeded,
)
from napari_pathup.models.spec import (
    AUTOENCODER_DIR,
    DENOISER_DIR,
    SCALES,
    SCHEDULER_DIR,
    WEAK_DENOISER_DIR,
    ModelSpec,
    autoencoder_scale_factor,
    denoiser_patch_multiple,
    native_sample_size,
)


def _from_pretrained(cls: Any, folder: Path, **kwargs: Any) -> Any:
    try:
        return cls.from_pretrained(folder, use_safetensors=True, local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot load {folder}: {exc}") from exc


def load_autoencoder_folder(folder: Path) -> Any:
    """The autoencoder of one component folder (config.json + safetensors), checked as a model's is."""
    class_name, _ = check_component(folder, "config.json", AUTOENCODER_CLASSES)
    return _from_pretrained(autoencoder_class(class_name), folder)


def autoencoder_class(class_name: str) -> type:
    """The class of an autoencoder config's ``_class_name`` (one of :data:`AUTOENCODER_CLASSES`)."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    from napari_pathup.models.patch_autoencoder import PatchAutoencoder

    classes = {
        "AutoencoderKL": AutoencoderKL,
        "AutoencoderTiny": AutoencoderTiny,
        "PatchAutoencoder": PatchAutoencoder,
    }
    if class_name not in classes:
        raise ModelLoadError(
            f"autoencoder class {class_name!r}; expected one of {', '.join(AUTOENCODER_CLASSES)}"
        )
    return classes[class_name]


def _native_size(config: Any) -> int:
    size = config.sample_size
    return int(size[0] if isinstance(size, list | tuple) else size)


def load_model(spec: str | Path | None = None, allow_download: bool = False) -> PathupModel:
    """Load a PathUp or Stable Diffusion model folder (on the CPU, float32, the denoisers' weights laid out
    channels_last; move it with ``.to``).

    Args:
        spec: a model folder, a hub id (with ``allow_download``), or None for the embedded default model.
        allow_download: allow ``spec`` to name a hub model and download it (safetensors only).

    Returns:
        The :class:`~napari_pathup.models.base.PathupModel`.

    Raises:
        ModelLoadError: the folder is missing, malformed, names an unknown class or holds only pickles;
            every component is checked before any weights load.
    """
    from napari_pathup.models.default import resolve_model_spec

    files = check_model_files(resolve_model_path(resolve_model_spec(spec), allow_download))
    model = _load_pathup(files) if files.layout == "pathup" else _load_stable_diffusion(files)
    for module in model.modules.values():
        module.eval().requires_grad_(False)
    return model.to("cpu")  # the denoisers laid out as the CPU runs them fastest, as ``.to`` lays them out


def _load_scheduler(folder: Path):
    class_name, _ = check_component(folder, SCHEDULER_CONFIG, ALLOWED_SCHEDULER_CLASSES)
    if class_name in UNSEEDED:
        raise ModelLoadError(f"cannot load {folder}: {class_name} is not supported: {unseeded(class_name)}")
    try:
        return scheduler_class(class_name).from_pretrained(folder, local_files_only=True)
    except ImportError as exc:  # a diffusers scheduler whose optional package is missing
        raise ModelLoadError(f"cannot load {folder}: {class_name} {missing_backend(exc)}") from exc
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"cannot load {folder}: {exc}") from exc


def _pathup_spec(files: ModelFiles) -> ModelSpec:
    """A checked PathUp folder described from its configs (the scheduler as a config object)."""
    path, (unet_class, unet_config) = files.path, files.configs[DENOISER_DIR]
    vae_class, vae_config = files.configs[AUTOENCODER_DIR]
    return ModelSpec(
        kind="pathup",
        path=str(path),
        classes=files.classes,
        scales=list(files.metadata.get("scales", SCALES)),
        native_size=native_sample_size(unet_config),
        scale_factor=autoencoder_scale_factor(vae_class, vae_config),
        latent_channels=int(unet_config.get("in_channels", 4)),
        patch_multiple=denoiser_patch_multiple(unet_class, unet_config),
        scheduler=_load_scheduler(path / SCHEDULER_DIR),
        metadata=files.metadata,
        has_weak_denoiser=WEAK_DENOISER_DIR in files.configs,
    )


def _load_pathup(files: ModelFiles) -> PathupModel:
    from diffusers import UNet2DModel

    path, spec = files.path, _pathup_spec(files)
    meta, classes, scales, scheduler = spec.metadata, spec.classes, spec.scales, spec.scheduler
    unet = _from_pretrained(UNet2DModel, path / DENOISER_DIR)
    vae = _from_pretrained(autoencoder_class(files.configs[AUTOENCODER_DIR][0]), path / AUTOENCODER_DIR)
    modules = {"denoiser": unet, "autoencoder": vae}
    if spec.has_weak_denoiser:
        modules["weak_denoiser"] = _from_pretrained(UNet2DModel, path / WEAK_DENOISER_DIR)

    def run_unet(name: str) -> DenoiserFn:
        def denoiser(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            return modules[name](x, t, class_labels=cond.to(x.device)).sample

        return denoiser

    return PathupModel(
        kind="pathup",
        path=str(path),
        denoiser=run_unet("denoiser"),
        weak_denoiser=run_unet("weak_denoiser") if spec.has_weak_denoiser else None,
        modules=modules,
        autoencoder=Autoencoder(vae),
        scheduler=scheduler,
        conditioner=ClassConditioner(classes, scales),
        classes=list(classes),
        scales=list(scales),
        native_size=_native_size(unet.config),
        latent_channels=int(unet.config.in_channels),
        metadata=meta,
        patch_multiple=spec.patch_multiple,
    )


def _stable_diffusion_spec(files: ModelFiles) -> ModelSpec:
    """A checked Stable Diffusion folder described from its configs."""
    (unet_class, unet_config), (vae_class, vae_config) = files.configs["unet"], files.configs["vae"]
    return ModelSpec(
        kind="stable-diffusion",
        path=str(files.path),
        classes=files.classes,
        scales=list(SCALES),
        native_size=native_sample_size(unet_config),
        scale_factor=autoencoder_scale_factor(vae_class, vae_config),
        latent_channels=int(unet_config.get("in_channels", 4)),
        patch_multiple=denoiser_patch_multiple(unet_class, unet_config),
        scheduler=_load_scheduler(files.path / "scheduler"),
        metadata=files.metadata,
    )


def _load_stable_diffusion(files: ModelFiles) -> PathupModel:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path, spec = files.path, _stable_diffusion_spec(files)
    meta, scheduler, tokenizer_dir = spec.metadata, spec.scheduler, path / "tokenizer"
    unet = _from_pretrained(UNet2DConditionModel, path / "unet")
    vae = _from_pretrained(autoencoder_class(files.configs["vae"][0]), path / "vae")
    text_encoder = _from_pretrained(CLIPTextModel, path / "text_encoder")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {tokenizer_dir}: {exc}") from exc

    def denoiser(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return unet(x, t, encoder_hidden_states=cond.to(x.device, x.dtype)).sample

    conditioner = TextConditioner(
        tokenizer,
        text_encoder,
        template=meta.get("prompt_template", DEFAULT_PROMPT_TEMPLATE),
        scale_words=meta.get("scale_words", DEFAULT_SCALE_WORDS),
    )
    return PathupModel(
        kind="stable-diffusion",
        path=str(path),
        denoiser=denoiser,
        modules={"denoiser": unet, "autoencoder": vae, "text_encoder": text_encoder},
        autoencoder=Autoencoder(vae),
        scheduler=scheduler,
        conditioner=conditioner,
        classes=list(meta.get("classes", [])),
        scales=list(SCALES),
        native_size=_native_size(unet.config),
        latent_channels=int(unet.config.in_channels),
        metadata=meta,
        patch_multiple=spec.patch_multiple,
    )


def read_model_spec(spec: str | Path | None = None, allow_download: bool = False) -> ModelSpec:
    """Check a model folder and describe it from its configs alone (no weights load).

    Args:
        spec: as for :func:`load_model` (None: the embedded default model).
        allow_download: as for :func:`load_model`.

    Returns:
        The :class:`~napari_pathup.models.spec.ModelSpec`, which
        :meth:`~napari_pathup.engine.plan.SynthesisSettings.resolve` accepts like a loaded model.

    Raises:
        ModelLoadError: the same problems :func:`load_model` finds before loading weights.
    """
    from napari_pathup.models.default import resolve_model_spec

    files = check_model_files(resolve_model_path(resolve_model_spec(spec), allow_download))
    return _pathup_spec(files) if files.layout == "pathup" else _stable_diffusion_spec(files)


def model_hash(path: str | Path, *, documentation: bool = True) -> str:
    """sha256 over the folder's files (relative names and contents): identifies the exact weights.
    ``documentation=False`` leaves out Markdown files (a candidate's README.md, the references'
    SOURCES.md), so that editing what a folder says about itself does not make it another model."""
    path = Path(path)
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".") and (documentation or p.suffix.lower() != ".md")
    )
    stamp = tuple((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_files(str(path), stamp)


@lru_cache(maxsize=16)
def _hash_files(root: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        digest.update(name.encode() + b"\0")
        with open(Path(root) / name, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()
