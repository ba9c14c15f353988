"""Device (``auto``, ``cpu``, ``cuda:N``, ``mps``) and dtype (``auto``, ``float32``, ...) selection with
clear errors."""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from napari_pathup.engine.plan import DTYPE_CHOICES
from napari_pathup.errors import SettingsError

#: the dtypes ``--dtype`` names besides "auto" (:func:`auto_dtype`)
DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_CHOICES if name != "auto"}
#: /proc/cpuinfo flags of x86 CPUs that compute bfloat16 dot products in hardware
BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


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


def select_dtype(name: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """The dtype named ``name``, or for ``auto`` the fastest one that draws the same picture on
    ``device`` (the CPU when None): :func:`auto_dtype`."""
    if name == "auto":
        return auto_dtype(device if device is not None else torch.device("cpu"))
    if name not in DTYPES:
        raise SettingsError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPE_CHOICES)}")
    return DTYPES[name]


def auto_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a CPU that computes it in hardware (1.6x faster than float32 for the default model
    there, its pictures 48 dB apart: docs/performance.md), float32 everywhere else: without those
    instructions bfloat16 is computed in software, and CUDA and MPS are not measured here."""
    return torch.bfloat16 if device.type == "cpu" and cpu_computes_bfloat16() else torch.float32


def dtype_reason(name: str, device: torch.device) -> str:
    """Why a run on ``device`` computes in the dtype that ``--dtype name`` gives (``pathup info``)."""
    if name != "auto":
        return "as asked (--dtype)"
    if device.type != "cpu":
        return f"auto: half precision is not measured on {device.type}"
    if cpu_computes_bfloat16():
        return "auto: this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX)"
    return "auto: this CPU has no bfloat16 instructions (AVX512-BF16 or AMX); in software it is far slower"


def slow_half_precision(device: torch.device, dtype: torch.dtype) -> str | None:
    """A warning for half precision asked for on a CPU without bfloat16 instructions, or None.

    There oneDNN computes bfloat16 and float16 in software: one guided denoiser call of the default
    model took 59x and 58x as long as in float32 on a 2-core AVX2 CPU (``bench_memory_format.py
    --half``, docs/performance.md), so a README job would take about an hour."""
    if device.type != "cpu" or dtype not in (torch.bfloat16, torch.float16) or cpu_computes_bfloat16():
        return None
    name = str(dtype).removeprefix("torch.")
    return (
        f"{name} on this CPU is computed in software (it has no AVX512-BF16 or AMX): about 60x slower than "
        "float32, which --dtype auto computes here"
    )


def denoiser_memory_format(device: torch.device, dtype: torch.dtype) -> torch.memory_format:
    """How a denoiser's convolution weights are laid out for a run on ``device`` in ``dtype``.

    channels_last (NHWC) on the CPU in float32: oneDNN's convolutions then skip a layout conversion,
    0.87-0.93x the time per call of the default model's denoisers on a 2-core AVX2 CPU, the same values
    to float rounding (``benchmarks/bench_memory_format.py``, docs/performance.md). Contiguous (NCHW)
    everywhere else: bfloat16 CPUs, CUDA and MPS are not measured here. A Stable Diffusion pipeline's
    UNet is laid out alike (not timed here). The autoencoder is not (its encoder ran 1.3x slower).
    ``load_model`` and ``PathupModel.to`` apply it, so that every path of a run (library, command line,
    widgets, augmentation workers) computes the same bits."""
    if device.type == "cpu" and dtype == torch.float32:
        return torch.channels_last
    return torch.contiguous_format


@functools.cache
def cpu_computes_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (x86 AVX512-BF16 or AMX-BF16, as
    ``cpuinfo`` lists them; False where that file does not exist) and torch's oneDNN uses them."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}
    if not flags & BFLOAT16_CPU_FLAGS:
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[object]:
    """``torch.autocast`` on ``device`` in ``dtype``, or a context that does nothing when ``dtype`` is None
    (full precision)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
