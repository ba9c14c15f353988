"""Shared helpers for the engine benchmarks: a random-weight model, machine info, markdown tables."""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import numpy as np

#: the model every benchmark uses: random weights, so timing and memory only, never image quality
MODEL_SPEC: dict[str, Any] = {"preset": "small", "sample_size": 64, "autoencoder": "kl"}
CLASSES: tuple[str, ...] = ("tumour", "stroma", "normal")
NOTE = (
    "Model: random-weight PathUp model (denoiser preset 'small', native latent size 64, "
    "AutoencoderKL width 8) built into a temp folder. These numbers measure the engine's time and "
    "memory, not image quality."
)

T = TypeVar("T")


def build_model_folder(folder: str | Path) -> Path:
    """Write the benchmark model (random weights, seed 0) into ``folder``."""
    from napari_pathup.models.build import build_random_pathup_model

    return build_random_pathup_model(folder, CLASSES, **MODEL_SPEC)


def load_small_model(folder: str | Path) -> Any:
    """Build (if needed) and load the benchmark model from ``folder``."""
    from napari_pathup.models.load import load_model

    folder = Path(folder)
    if not (folder / "pathup.json").is_file():
        build_model_folder(folder)
    return load_model(folder)


def reference_image(size: int = 512, seed: int = 0) -> np.ndarray:
    """A deterministic H&E-coloured noise image (size, size, 3) uint8 to use as the reference."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = np.array([200, 120, 170], dtype=np.float64)
    image = base + rng.normal(0, 30, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name and its widest vector instructions (AVX2, AVX-512, AMX), as far as
    ``cpuinfo`` says, so that figures of hosts with and without bfloat16 in hardware are told apart
    (``--dtype auto`` computes float32 on the latter)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), ""
    )
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}
    vector = [
        label
        for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("amx_tile", "AMX"))
        if flag in flags
    ]
    bf16 = "bfloat16 in hardware" if flags & {"avx512_bf16", "amx_bf16"} else "no bfloat16 in hardware"
    return f"{name or platform.processor() or 'unknown CPU'} ({', '.join(vector) or 'no AVX2'}; {bf16})"


def machine_info() -> str:
    """One line: date, CPUs (model, vector instructions) and load average, torch version and threads,
    device."""
    import torch

    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{now}; {os.cpu_count()} CPU cores ({platform.machine()}, {cpu_model()}), {gpu}; load average "
        f"{os.getloadavg()[0]:.1f} (other jobs share the cores); Python "
        f"{platform.python_version()}, torch {torch.__version__} with {torch.get_num_threads()} threads"
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats are printed as given (format them before)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def drain(generator: Generator[Any, None, T], on_event: Callable[[Any], None] | None = None) -> T:
    """Consume a generator (without rendering previews) and return its return value."""
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)


class Stopwatch:
    """``with Stopwatch() as s: ...`` then ``s.seconds``."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
