"""``pathup augment``: synthesise ``ratio`` images per real image of DATA on Dask, exactly once, resumably.

The store holds ``augment.json`` (the model checksum and settings every image shares),
``manifest.csv`` (see :mod:`napari_pathup.augmentation.manifest`) and one OME-Zarr per item under
``<class>/``. An item is done when its OME-Zarr exists under its final name: workers write a hidden
``.partial-`` sibling and rename it when complete (the commit point), so a crash, a killed worker or
Ctrl-C never leaves a half-written image under a final name. A rerun plans the same items with the
same seeds (:mod:`napari_pathup.augmentation.plan`), removes stale temporaries, skips the items on disk and
submits exactly the missing ones. The manifest is rebuilt from the disk at the start of every run
and rewritten (atomically) as items finish, so it never calls an image done that is not.

Nothing is written before the inputs, the model and the cluster have been checked: the settings are
resolved against the model's configs (no weights load on the client), every reference's header is
read (pixel limit, smallest reference), the work per image is held to the budget, and a store
inside DATA is refused (its images would become a class folder of DATA).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_pathup.augmentation.cluster import ClusterWarning, LocalSize, local_size, open_client
from napari_pathup.augmentation.manifest import MANIFEST_NAME, ManifestRow, write_manifest
from napari_pathup.augmentation.plan import OUTPUT_SUFFIX, AugmentItem, plan_items
from napari_pathup.augmentation.worker import (
    AUGMENT_KEY,
    WORK_PREFIX,
    ItemResult,
    Job,
    active_outputs,
    run_item,
)
from napari_pathup.engine.plan import DTYPE_CHOICES, RunPlan, SynthesisSettings
from napari_pathup.errors import InputError, PathupError
from napari_pathup.io.atomic import OLD_MARKER, PARTIAL_MARKER, check_writable
from napari_pathup.io.images import MAX_IMAGE_PIXELS

CONFIG_NAME = "augment.json"
CONFIG_FORMAT = "pathup-augment"
#: the dtype the store's images were computed in (its first run's workers' resolution of --dtype)
COMPUTED_DTYPE = "computed_dtype"
LOCK_NAME = ".pathup-augment.lock"
#: the manifest is rewritten at most this often while items finish (and always at the end)
MANIFEST_EVERY_S = 2.0
#: how long a new run waits for items that workers of an earlier, interrupted client still write
ACTIVE_WAIT_S = 600.0


@dataclass
class Summary:
    """What a run did: items planned, made now, found done, failed (with reasons) and left pending."""

    store: Path
    planned: int
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending

    def lines(self) -> list[str]:
        rate = len(self.done) / self.seconds * 60 if self.seconds > 0 and self.done else 0.0
        out = [
            f"{self.planned} planned: {len(self.done)} made ({rate:.1f} images/min), "
            f"{len(self.skipped)} skipped (already done), {len(self.failed)} failed, "
            f"{len(self.pending)} pending; manifest {self.store / MANIFEST_NAME}"
        ]
        out += [f"failed {output}: {reason}" for output, reason in sorted(self.failed.items())]
        if self.pending:
            out.append("rerun the same command to make the pending items")
        return out


# ------------------------------------------------------------------------------------------ checks


def check_references(
    items: Sequence[AugmentItem], plans: dict[str, RunPlan], max_pixels: int | None = MAX_IMAGE_PIXELS
) -> None:
    """Read every reference's header once (never its pixels), so that an unreadable, oversized
    (a decompression bomb) or too small image (for its class's plan) fails before anything is written."""
    from napari_pathup.io.images import check_pixels, image_shape

    for key, (path, class_name) in {it.key: (it.reference, it.class_name) for it in items}.items():
        try:
            shape = image_shape(path)
            check_pixels(path, *shape, max_pixels)
            plans[class_name].check_reference(shape, f"reference {path}")
        except PathupError as exc:
            raise InputError(f"reference image {key} cannot be used: {exc}") from exc


def prepare_model(model: str | None, allow_download: bool) -> tuple[Path, str, Any]:
    """(folder, checksum, :class:`~napari_pathup.models.spec.ModelSpec`) of ``--model`` or the
    embedded default; the spec comes from the configs, so no weights load on the client."""
    from napari_pathup.models.default import resolve_model_spec
    from napari_pathup.models.folder import resolve_model_path
    from napari_pathup.models.load import model_hash, read_model_spec

    path = resolve_model_path(resolve_model_spec(model), allow_download).resolve()
    return path, model_hash(path), read_model_spec(path)


def resolve_settings(model: Any, settings: dict[str, Any], classes: Sequence[str]) -> dict[str, RunPlan]:
    """The run plan of every class, checked: each resolved on its own, since a model's
    "class_defaults" may give a class other settings (another sampler, strength or tiling)."""
    from napari_pathup.models.spec import check_data_classes

    check_data_classes(getattr(model, "classes", None) or [], classes, model.path)
    plans = {name: SynthesisSettings(**{**settings, "class_name": name}).resolve(model) for name in classes}
    assert plans  # discover() refuses data without classes
    return plans


def shared_settings(plans: dict[str, RunPlan]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The resolved settings of a store: those every class shares (all but the class and the seed),
    and per class those it has of its own (empty for a model without "class_defaults")."""
    resolved = {name: plan.to_dict() for name, plan in plans.items()}
    for values in resolved.values():
        values.pop("class_name", None)
        values.pop("seed", None)
    first = next(iter(resolved.values()))
    shared = {k: v for k, v in first.items() if all(r[k] == v for r in resolved.values())}
    own = {name: {k: v for k, v in r.items() if k not in shared} for name, r in resolved.items()}
    return shared, {name: values for name, values in own.items() if values}


def class_settings(config: dict[str, Any], class_name: str) -> dict[str, Any]:
    """The resolved settings of one class's images, from a store description (:func:`store_config`)."""
    return {**config["settings"], **config.get("class_settings", {}).get(class_name, {})}


def check_not_inside(data: Path, store: Path) -> None:
    """The store may not be DATA or lie inside it: its class folders would become DATA's classes."""
    data = data.expanduser().resolve()
    if store == data or data in store.parents:
        raise InputError(
            f"--out {store} is inside DATA {data}; its images would be read as real images of DATA by the "
            "next run and by pathup evaluate. Choose a store outside DATA"
        )


#: what a store written before ``dtype`` was recorded computed in (there was no other choice then)
OLD_STORE_DTYPE = "float32"
#: settings a store written before they existed ran with (classifier-free guidance at every step)
OLD_STORE_SETTINGS: dict[str, Any] = {"guidance_interval": [0.0, 1.0], "guidance_mode": "cfg"}


def store_config(
    checksum: str,
    settings: dict[str, Any],
    base_seed: int,
    dtype: str,
    per_class: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What every image of a store shares: the model, the base seed, the settings (``per_class``: a
    class's own, as "class_settings", present only when some class has any, so that stores of models
    without "class_defaults" read as before) and the requested dtype (a float32 image and a bfloat16
    one of the same seed differ slightly, so a store does not mix them; the device is left free, as
    float32 on two devices differs only by rounding). Its first run adds the dtype its workers
    computed in (:data:`COMPUTED_DTYPE`), as ``auto`` resolves per machine."""
    config = {
        "format": CONFIG_FORMAT,
        "version": 1,
        "model_checksum": checksum,
        "seed": base_seed,
        "dtype": dtype,
        "settings": json.loads(json.dumps(settings)),  # as read back: pairs are lists in JSON
    }
    if per_class:
        config["class_settings"] = json.loads(json.dumps(per_class))
    return config


def worker_precision(device: str, dtype: str) -> tuple[str, str | None]:
    """The dtype a worker computes in for ``device`` and ``dtype`` (run on the worker: ``auto`` resolves
    on its own hardware, bfloat16 on a CPU that computes it, else float32), and the warning for half
    precision that its CPU computes in software (``engine.device.slow_half_precision``: about 60x
    slower), or None."""
    from napari_pathup.engine.device import select_device, select_dtype, slow_half_precision

    chosen = select_device(device)
    computed = select_dtype(dtype, chosen)
    return str(computed).removeprefix("torch."), slow_half_precision(chosen, computed)


def workers_dtypes(client: Any, job: Job) -> set[str]:
    """The dtypes the cluster's workers would compute ``job`` in (empty without a client or workers).

    Workers that would compute half precision in software are named in one :class:`ClusterWarning`
    (the command line prints it before the run): ``--dtype bfloat16`` on such CPUs takes about an hour
    per image, which the user should hear before the run rather than from the progress bar."""
    if client is None:
        return set()
    try:
        answers = client.run(worker_precision, job.device, job.dtype)  # worker address -> (dtype, warning)
    except Exception as exc:  # the workers' error, whatever it is, as one line
        raise InputError(
            f"cannot ask the Dask workers which dtype they compute in ({type(exc).__name__}: {exc}); every "
            "worker needs napari-pathup and torch installed"
        ) from exc
    slow = sorted({warning for _, warning in answers.values() if warning is not None})
    if slow:
        count = sum(warning is not None for _, warning in answers.values())
        warnings.warn(
            f"{count} of {len(answers)} Dask workers: {'; '.join(slow)}", ClusterWarning, stacklevel=2
        )
    return {dtype for dtype, _ in answers.values()}


def check_computed_dtype(store: Path, recorded: str | None, computed: set[str], requested: str) -> str | None:
    """The one dtype the cluster's workers compute in (None when no worker answered), checked against the
    one the store was computed in (``recorded``; None for a new store or one from before it was
    recorded): a store holds one kind of image, also when ``--dtype auto`` meets other hardware."""
    if not computed:
        return None
    hint = " (--dtype auto resolves on each worker's hardware)" if requested == "auto" else ""
    if len(computed) > 1:
        raise InputError(
            f"the cluster's workers would compute in {' and '.join(sorted(computed))}{hint}; pass --dtype "
            "float32 or --dtype bfloat16 so that the store holds one kind of image"
        )
    (now,) = computed
    if recorded is not None and recorded != now:
        raise InputError(
            f"{store} was computed in {recorded}, and this run's workers would compute in {now}{hint}; "
            f"pass --dtype {recorded} to resume it, or write to a new --out"
        )
    return now


def image_like_suffix(name: str) -> str | None:
    """The extension of an image or of a Zarr store that ``name`` ends in, or None."""
    from napari_pathup.io.images import SUPPORTED_IMAGE_SUFFIXES

    lower = name.lower()
    return next((s for s in (*SUPPORTED_IMAGE_SUFFIXES, ".zarr") if lower.endswith(s)), None)


def file_type_of(name: str) -> tuple[str, str] | None:
    """(extension, media type) where ``name`` ends in the extension of a kind of file (``.txt``, ``.csv``,
    ``.json``, ...) or of compressed data (``.tar.gz``, ``.gz``, ``.xz``, ...) by Python's own table of
    media types, or None (``run.v2``: no type). The table is the standard library's built-in one, not
    the system's, so every machine decides alike."""
    import mimetypes

    path = Path(name)
    kind, encoding = mimetypes.MimeTypes().guess_type(name, strict=False)
    if encoding:  # compressed: the type is the inner name's (a.tar.gz), if it has one (a.gz: none)
        inner = Path(path.stem).suffix if kind else ""
        return inner + path.suffix, kind or f"{encoding}-compressed data"
    return (path.suffix, kind) if path.suffix and kind else None


def check_store_path(store: Path) -> None:
    """What the store's path alone decides: not a file, in a folder that exists, and a new store not
    named like one image or another kind of file. No model, settings or imports needed, so the command
    line checks it first."""
    if store.exists() and not store.is_dir():
        raise InputError(f"--out {store} is a file; expected a folder for the synthetic images")
    if not store.parent.is_dir():
        raise InputError(f"cannot write {store}: the folder {store.parent} does not exist")
    if store.exists():
        return  # an earlier store keeps its name, whatever it is
    layout = f"<class>/<name>_syn<k>{OUTPUT_SUFFIX} and {MANIFEST_NAME}"
    what = f"--out {store}: a store is a folder of images ({layout})"
    if suffix := image_like_suffix(store.name):
        raise InputError(
            f"{what}, but its name ends in {suffix}, which viewers and readers take for a single "
            f"image; name it without that extension (e.g. {store.name[: -len(suffix)] or 'store'})"
        )
    if found := file_type_of(store.name):
        suffix, kind = found
        raise InputError(
            f"{what}, but its name ends in {suffix}, the extension of a file ({kind}); name it without "
            f"that extension (e.g. {store.name[: -len(suffix)] or 'store'})"
        )


def check_store(store: Path, config: dict[str, Any]) -> None:
    """The store must be new, empty, or an earlier run of the same model, settings and seed."""
    check_store_path(store)
    if not store.is_dir() or not any(store.iterdir()):
        return
    path = store / CONFIG_NAME
    if not path.is_file():
        raise InputError(
            f"--out {store} holds other files but no {CONFIG_NAME}; expected a new or empty folder, or "
            "the store of an earlier pathup augment run"
        )
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(found, dict) or found.get("format") != CONFIG_FORMAT:
        raise InputError(f"{path} is not a pathup augment store description")
    differ = [k for k in ("model_checksum", "seed") if found.get(k) != config[k]]
    made_in = found.get("dtype", OLD_STORE_DTYPE)
    if made_in != config["dtype"] and found.get(COMPUTED_DTYPE) != config["dtype"]:
        differ.append(f"dtype ({made_in!r} there, {config['dtype']!r} now: pass --dtype {made_in})")
    old, new = {**OLD_STORE_SETTINGS, **found.get("settings", {})}, config["settings"]
    differ += [
        f"settings.{k} ({old.get(k)!r} there, {new.get(k)!r} now)" for k in new if old.get(k) != new[k]
    ]
    # a class's own settings (a store written before they were recorded ran every class with the
    # settings of the data's last class: it differs here for a model with "class_defaults")
    old_own, new_own = found.get("class_settings", {}), config.get("class_settings", {})
    for name in sorted(set(old_own) | set(new_own)):
        there, now = old_own.get(name, {}), new_own.get(name, {})
        differ += [
            f"class_settings.{name}.{k} ({there.get(k)!r} there, {now.get(k)!r} now)"
            for k in sorted(set(there) | set(now))
            if there.get(k) != now.get(k)
        ]
    if differ:
        raise InputError(
            f"{store} was made with another model, seed or settings ({', '.join(differ)}); rerun with "
            "the same ones to resume it, or write to a new --out"
        )


# ------------------------------------------------------------------------------------------- store


@contextlib.contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store (released when the process ends, even if it is killed)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one run at a time is then the user's rule
        yield
        return
    with open(store / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise InputError(f"another pathup augment is writing to {store}; wait for it to end") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stale_temporaries(store: Path) -> list[Path]:
    """Unfinished outputs and work folders left in the store's class folders by an interrupted run."""
    found = []
    for folder in (d for d in store.iterdir() if d.is_dir() and not d.name.startswith(".")):
        for entry in folder.iterdir():
            name = entry.name
            if name.startswith(".") and (PARTIAL_MARKER in name or OLD_MARKER in name or WORK_PREFIX in name):
                found.append(entry)
    return sorted(found)


def read_done(store: Path, output: str) -> dict[str, Any] | None:
    """The attributes of a committed output of this store, or None when the path holds none."""
    from napari_pathup.io.ome_zarr import read_ome_zarr_attrs

    path = store / output
    if not path.is_dir():
        return None
    try:
        attrs = read_ome_zarr_attrs(path)
    except PathupError:
        return None
    info = attrs.get(AUGMENT_KEY)
    return attrs if isinstance(info, dict) and info.get("output") == output else None


def committed_row(store: Path, output: str, item: AugmentItem | None, checksum: str) -> ManifestRow | None:
    """The ``done`` row of ``output`` when it is committed in the store (and, for a planned item, made
    with its seed and this model), else None."""
    attrs = read_done(store, output)
    if attrs is None:
        return None
    if item is not None and (
        attrs.get("seed") != item.seed or attrs.get("model", {}).get("hash") != checksum
    ):
        return None
    return ManifestRow(
        output=output,
        class_name=str(attrs.get("class", "")),
        reference=str(attrs[AUGMENT_KEY].get("reference", "")),
        seed=int(attrs.get("seed", 0)),
        settings=dict(attrs.get("settings", {})),
        model_checksum=str(attrs.get("model", {}).get("hash", "")),
        status="done",
        seconds=attrs[AUGMENT_KEY].get("seconds"),
    )


def scan_store(
    store: Path, items: Sequence[AugmentItem], checksum: str
) -> tuple[dict[str, ManifestRow], list[str]]:
    """Manifest rows of every committed output on disk (planned or not) and the planned outputs that
    are occupied by something else (a foreign folder, or an image with another seed or model)."""
    planned = {it.output: it for it in items}
    outputs = set(planned)
    for folder in (d for d in store.iterdir() if d.is_dir() and not d.name.startswith(".")):
        outputs |= {
            f"{folder.name}/{p.name}"
            for p in folder.iterdir()
            if p.name.endswith(OUTPUT_SUFFIX) and not p.name.startswith(".")
        }
    rows, blocked = {}, []
    for output in sorted(outputs):
        row = committed_row(store, output, planned.get(output), checksum)
        if row is not None:
            rows[output] = row
        elif output in planned and (store / output).exists():
            blocked.append(output)
    return rows, blocked


def planned_row(
    item: AugmentItem, settings: dict[str, Any], checksum: str, status: str, error: str = ""
) -> ManifestRow:
    return ManifestRow(
        output=item.output,
        class_name=item.class_name,
        reference=item.key,
        seed=item.seed,
        settings={**settings, "class_name": item.class_name, "seed": item.seed},
        model_checksum=checksum,
        status=status,
        error=error,
    )


def wait_for_active(client: Any, store: Path, timeout: float = ACTIVE_WAIT_S) -> None:
    """Wait until no worker still writes an item of an earlier client (whose temporaries we would
    otherwise delete under it); only existing clusters can hold such workers."""
    deadline = time.monotonic() + timeout
    while True:
        busy = sorted({o for outs in client.run(active_outputs).values() for o in outs})
        if not busy:
            return
        if time.monotonic() > deadline:
            raise InputError(
                f"workers of the cluster still write {len(busy)} item(s) of an earlier run into {store} "
                f"(e.g. {busy[0]}); wait for them or restart the workers, then rerun"
            )
        time.sleep(1.0)


def recount_from_disk(
    store: Path,
    summary: Summary,
    rows: dict[str, ManifestRow],
    by_output: dict[str, AugmentItem],
    checksum: str,
) -> None:
    """After an interruption: every pending item whose image is committed on disk is done.

    Workers may finish an item between the last result the client saw and the signal; the report and
    the manifest must say what is on disk at the time, not what the client last heard.
    """
    for output in list(summary.pending):
        row = committed_row(store, output, by_output.get(output), checksum)
        if row is not None:
            summary.pending.remove(output)
            summary.done.append(output)
            rows[output] = row


# --------------------------------------------------------------------------------------------- run


def augment(
    data: str | Path,
    store: str | Path,
    *,
    settings: dict[str, Any],
    ratio: float = 1.0,
    model: str | None = None,
    allow_download: bool = False,
    base_seed: int = 0,
    splits: Sequence[str] = ("train",),
    dask_address: str | None = None,
    client: Any = None,
    workers: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    torch_threads: int | None = None,
    connect_timeout: float = 10.0,
    progress: bool = True,
    on_result: Callable[[ItemResult, Summary], None] | None = None,
    max_pixels: int | None = MAX_IMAGE_PIXELS,
    allow_large: bool = False,
) -> Summary:
    """Make the missing synthetic images of DATA in ``store`` (see the module docstring).

    Args:
        data: the real images (class folders, or the BRACS layout with ``splits``).
        store: the output folder (new, empty, or an earlier run's store); not inside ``data``.
        settings: :class:`~napari_pathup.engine.plan.SynthesisSettings` fields (no class or seed).
        ratio: synthetic images per real image.
        model: a model folder (default: the embedded model).
        dask_address: a running Dask scheduler's address; else a LocalCluster sized by ``workers``.
        client: a distributed Client you hold (it is not closed); overrides ``dask_address``.
        on_result: called in the client after every finished item.
        max_pixels: references declaring more pixels are refused from their header.
        allow_large: start even when one image's work is above the budget.

    Returns:
        The :class:`Summary` of the run (made, skipped, failed, pending).

    Raises:
        InputError: bad inputs, settings or store, before anything is written.
        KeyboardInterrupt: after the manifest and the report were brought up to date from the disk.
    """
    from napari_pathup.datasets import discover
    from napari_pathup.engine.plan import available_memory

    SynthesisSettings(**{**settings, "class_name": "any"}).check()  # ranges first: milliseconds
    if dtype not in DTYPE_CHOICES:
        raise InputError(f"dtype: expected one of {', '.join(DTYPE_CHOICES)}, got {dtype!r}")
    store = Path(store).expanduser().resolve()
    check_not_inside(Path(data), store)
    model_path, checksum, spec = prepare_model(model, allow_download)
    index = discover(data, splits=splits, holdout="none")
    plans = resolve_settings(spec, settings, index.classes)
    memory = available_memory() if client is None and dask_address is None else None
    for plan in plans.values():
        plan.check_budget(allow_large, memory)
    items = plan_items(index, ratio, base_seed)
    check_references(items, plans, max_pixels)
    shared, per_class = shared_settings(plans)
    config = store_config(checksum, shared, base_seed, dtype, per_class)
    check_store(store, config)
    check_writable(store if store.is_dir() else store.parent, store)
    size: LocalSize | None = None
    if client is None and dask_address is None:
        size = local_size(workers, device, torch_threads)
    job = Job(
        store=str(store),
        model_path=str(model_path),
        model_checksum=checksum,
        plans=plans,
        device=device,
        dtype=dtype,
        torch_threads=torch_threads or (size.torch_threads if size else None),
        max_pixels=max_pixels,
    )
    done_before = scan_store(store, items, checksum)[0] if store.is_dir() else {}
    if client is not None or all(it.output in done_before for it in items):
        clients: Any = contextlib.nullcontext(client)  # nothing to make: no cluster to start
    else:
        clients = open_client(dask_address, size, connect_timeout)
    with clients as active_client:
        store.mkdir(exist_ok=True)
        with store_lock(store):
            if active_client is not None and size is None:
                wait_for_active(active_client, store)
            return _run(active_client, store, items, job, config, progress, on_result)


def _run(
    client: Any,
    store: Path,
    items: list[AugmentItem],
    job: Job,
    config: dict[str, Any],
    progress: bool,
    on_result: Callable[[ItemResult, Summary], None] | None,
) -> Summary:
    from distributed import as_completed
    from tqdm import tqdm

    from napari_pathup.io.atomic import atomic_output, remove_path

    config_path = store / CONFIG_NAME
    found = json.loads(config_path.read_text()) if config_path.is_file() else None
    recorded = found.get(COMPUTED_DTYPE) if found is not None else None
    now = check_computed_dtype(store, recorded, workers_dtypes(client, job), job.dtype)
    if found is None or (recorded is None and now is not None):
        # a new store, or one begun before the dtype was recorded: what it holds from now on is checked
        with atomic_output(config_path, overwrite=found is not None) as temp:
            base = config if found is None else found
            temp.write_text(json.dumps({**base, COMPUTED_DTYPE: now} if now else base, indent=2))
    for stale in stale_temporaries(store):
        remove_path(stale)  # a temporary that resists is tried again by the next run
    for class_name in sorted({it.class_name for it in items}):
        (store / class_name).mkdir(exist_ok=True)
    rows, blocked = scan_store(store, items, job.model_checksum)
    settings_of = {name: class_settings(config, name) for name in {it.class_name for it in items}}

    def planned(item: AugmentItem, status: str, error: str = "") -> ManifestRow:
        return planned_row(item, settings_of[item.class_name], job.model_checksum, status, error)

    summary = Summary(store, len(items))
    todo = []
    for item in items:
        if item.output in blocked:
            reason = f"{store / item.output} exists but is not this item's image; move it away and rerun"
            summary.failed[item.output] = reason
            rows[item.output] = planned(item, "failed", reason)
        elif item.output in rows:
            summary.skipped.append(item.output)
        else:
            todo.append(item)
            rows[item.output] = planned(item, "pending")
    manifest = store / MANIFEST_NAME
    write_manifest(manifest, rows.values())
    by_output = {it.output: it for it in todo}
    summary.pending = [it.output for it in todo]
    start = last_write = time.monotonic()
    if todo and client is None:
        raise InputError(f"{store} changed while this run started (outputs went missing); rerun")
    futures = [
        client.submit(run_item, job, it, key=f"pathup-augment-{it.seed:x}-{it.index}", pure=False)
        for it in todo
    ]
    bar = tqdm(
        total=len(items), initial=len(items) - len(todo), unit="image", disable=not progress, file=sys.stderr
    )
    try:
        for future in as_completed(futures) if futures else ():
            result: ItemResult = future.result()
            item = by_output[result.output]
            summary.pending.remove(result.output)
            if result.status == "failed":
                summary.failed[result.output] = result.error
                rows[result.output] = planned(item, "failed", result.error)
            else:
                row = committed_row(store, result.output, item, job.model_checksum)
                if row is None:  # the worker said done but the disk disagrees: never report it done
                    reason = "the worker reported the image written but it is not in the store"
                    summary.failed[result.output] = reason
                    row = planned(item, "failed", reason)
                else:
                    summary.done.append(result.output)
                rows[result.output] = row
            bar.update(1)
            if on_result is not None:
                on_result(result, summary)
            if result.model_error:
                client.cancel(futures)
                raise InputError(f"the workers cannot load the model: {result.error}")
            if time.monotonic() - last_write >= MANIFEST_EVERY_S:
                write_manifest(manifest, rows.values())
                last_write = time.monotonic()
    except KeyboardInterrupt:
        summary.interrupted = True
        client.cancel(futures)
        recount_from_disk(store, summary, rows, by_output, job.model_checksum)
        raise
    finally:
        bar.close()
        summary.seconds = time.monotonic() - start
        write_manifest(manifest, rows.values())
        if summary.interrupted:
            for line in summary.lines():
                print(line, file=sys.stderr)
            print("(interrupted; counts as found on disk now)", file=sys.stderr)
    return summary
