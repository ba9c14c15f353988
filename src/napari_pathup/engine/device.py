"""Device (``auto``, ``cpu``, ``cuda:N``, ``mps``) and dtype selection with clear errors."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from napari_pathup.errors import SettingsError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise SettingsError(f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(f"device {name!r} asked for, but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingsError(
                f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise SettingsError("device 'mps' asked for, but MPS is not available on this machine")
    elif device.type != "cpu":
        raise SettingsError(f"unsupported device {name!r}; expected auto, cpu, cuda, cuda:N or mps")
    return device


def select_dtype(name: str = "float32") -> torch.dtype:
    if name not in DTYPES:
        raise SettingsError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[object]:
    """``torch.autocast`` on ``device`` in ``dtype``, or a context that does nothing when ``dtype`` is None
    (full precision)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
