"""What runs on a Dask worker: synthesise one item and commit it, with the model loaded once per process.

A worker process keeps the loaded model in :data:`_MODELS` (keyed by folder, checksum, device and
dtype), so it loads it on its first item only. An item is written with
:func:`~napari_pathup.io.ome_zarr.write_ome_zarr`, which writes a hidden ``.partial-`` sibling and
renames it to the final name when complete: that rename is the commit point of the item. Any error
becomes a ``failed`` result with its reason; an output that already exists (another worker got there
first) is reported as ``exists``, never written twice.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_pathup.augmentation.plan import AugmentItem
from napari_pathup.engine.plan import RunPlan
from napari_pathup.errors import ModelLoadError, OutputExistsError
from napari_pathup.io.images import MAX_IMAGE_PIXELS
from napari_pathup.io.ome_zarr import write_ome_zarr
from napari_pathup.io.sink import WORK_PREFIX, output_sink

AUGMENT_KEY = "augment"
__all__ = ["AUGMENT_KEY", "WORK_PREFIX", "ItemResult", "Job", "run_item"]

_MODELS: dict[tuple[str, str, str, str], Any] = {}
_LOCK = threading.Lock()
#: outputs this process is working on now (a new client asks before it cleans temporaries)
_ACTIVE: set[str] = set()
#: how many times this process has loaded a model (tests check: once per worker, not once per image)
_LOADS: list[str] = []


@dataclass(frozen=True)
class Job:
    """What every item of a run shares: the store, the model and each class's run plan (resolved once
    by the client, per class since a model's "class_defaults" may differ; each item takes its class's
    plan with its own seed, :meth:`RunPlan.with_seed`)."""

    store: str
    model_path: str
    model_checksum: str
    plans: dict[str, RunPlan]
    device: str = "auto"
    dtype: str = "auto"
    torch_threads: int | None = None
    max_pixels: int | None = MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class ItemResult:
    output: str
    status: str  # "done", "exists" or "failed"
    error: str = ""
    seconds: float | None = None
    model_error: bool = False  # the model itself could not be loaded: every item would fail alike
    pid: int = 0


def dask_setup(worker: Any) -> None:
    """Dask preload hook of the local cluster's workers: Ctrl-C in a terminal reaches every process
    of the group; the workers ignore it and the client stops them (no traceback from each worker)."""
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_model(job: Job) -> Any:
    """The job's model, loaded once per process; checks that its checksum is the one the client saw."""
    from napari_pathup.engine.device import select_device, select_dtype
    from napari_pathup.models.load import load_model, model_hash

    key = (job.model_path, job.model_checksum, job.device, job.dtype)
    with _LOCK:
        if key not in _MODELS:
            if job.torch_threads:
                import torch

                torch.set_num_threads(job.torch_threads)
            found = model_hash(job.model_path)
            if found != job.model_checksum:
                raise ModelLoadError(
                    f"the model folder {job.model_path} on this worker has checksum {found}, not the "
                    f"{job.model_checksum} the client planned with; give every worker the same model"
                )
            model = load_model(job.model_path)
            _LOADS.append(job.model_path)
            device = select_device(job.device)
            _MODELS[key] = model.to(device, select_dtype(job.dtype, device))
        return _MODELS[key]


def model_loads() -> int:
    """How many times this process has loaded a model (once per distinct model, device and dtype)."""
    return len(_LOADS)


def active_outputs() -> list[str]:
    """The outputs this process is synthesising or writing right now."""
    return sorted(_ACTIVE)


def item_attributes(
    model: Any, settings: dict[str, Any], item: AugmentItem, seconds: float
) -> dict[str, Any]:
    """The provenance written into the output: the run attributes plus where the item comes from."""
    import torch

    from napari_pathup.provenance import run_attributes

    attrs = run_attributes(model, settings, item.reference)
    attrs[AUGMENT_KEY] = {
        "torch_threads": torch.get_num_threads(),
        "output": item.output,
        "reference": item.key,
        "copy": item.copy,
        "seconds": round(seconds, 3),
    }
    return attrs


def run_item(job: Job, item: AugmentItem) -> ItemResult:
    """Synthesise ``item`` and commit it under its final name in the store (see the module docstring)."""
    final = Path(job.store) / item.output
    start = time.perf_counter()
    with _LOCK:
        _ACTIVE.add(item.output)
    try:
        if final.exists():
            return ItemResult(item.output, "exists", pid=os.getpid())
        try:
            model = worker_model(job)
        except Exception as exc:
            return ItemResult(
                item.output, "failed", f"{type(exc).__name__}: {exc}", model_error=True, pid=os.getpid()
            )
        write_item(model, job, item, final, start)
        return ItemResult(item.output, "done", seconds=time.perf_counter() - start, pid=os.getpid())
    except OutputExistsError:
        return ItemResult(item.output, "exists", pid=os.getpid())
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return ItemResult(item.output, "failed", reason, time.perf_counter() - start, pid=os.getpid())
    finally:
        with _LOCK:
            _ACTIVE.discard(item.output)


def write_item(model: Any, job: Job, item: AugmentItem, final: Path, start: float) -> None:
    """Run the engine on the item's reference and write the OME-Zarr (temporary name, then rename).

    Large outputs are assembled in a hidden zarr beside the output
    (:func:`~napari_pathup.io.sink.output_sink`).
    """
    from napari_pathup.engine.pipeline import run
    from napari_pathup.io.images import read_image

    reference = read_image(item.reference, max_pixels=job.max_pixels)
    plan = job.plans[item.class_name].with_seed(item.seed)
    with output_sink(final, plan.height, plan.width, plan.in_memory) as sink:
        finished = run(model, reference, plan, sink)
        attrs = item_attributes(model, finished.settings, item, time.perf_counter() - start)
        write_ome_zarr(final, finished.image, attrs=attrs)
