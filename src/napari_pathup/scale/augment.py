"""``pathup augment``: synthesise ``ratio`` images per real image of DATA on Dask, exactly once, resumably.

The store holds ``augment.json`` (the model checksum and settings every image shares),
``manifest.csv`` (see :mod:`napari_pathup.scale.manifest`) and one OME-Zarr per item under
``<class>/``. An item is done when its OME-Zarr exists under its final name: workers write a hidden
``.partial-`` sibling and rename it when complete (the commit point), so a crash, a killed worker or
Ctrl-C never leaves a half-written image under a final name. A rerun plans the same items with the
same seeds (:mod:`napari_pathup.scale.plan`), removes stale temporaries, skips the items on disk and
submits exactly the missing ones. The manifest is rebuilt from the disk at the start of every run
and rewritten (atomically) as items finish, so it never calls an image done that is not.

Nothing is written before the inputs, the model and the cluster have been checked.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_pathup.errors import InputError, PathupError
from napari_pathup.io.atomic import PARTIAL_MARKER
from napari_pathup.scale.cluster import LocalSize, local_size, open_client
from napari_pathup.scale.manifest import MANIFEST_NAME, ManifestRow, write_manifest
from napari_pathup.scale.plan import OUTPUT_SUFFIX, Item, plan_items
from napari_pathup.scale.worker import AUGMENT_KEY, WORK_PREFIX, ItemResult, Job, active_outputs, run_item

CONFIG_NAME = "augment.json"
CONFIG_FORMAT = "pathup-augment"
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


def check_references(items: Sequence[Item]) -> None:
    """Read every reference's header once, so an unreadable image fails before anything is written."""
    from napari_pathup.io.images import image_shape

    for key, path in {it.key: it.reference for it in items}.items():
        try:
            image_shape(path)
        except PathupError as exc:
            raise InputError(f"reference image {key} cannot be read: {exc}") from exc


def prepare_model(model: str | None, allow_download: bool) -> tuple[Path, str, Any]:
    """(folder, checksum, loaded model on the CPU) of ``--model`` or the embedded default."""
    from napari_pathup.models.default import resolve_model_spec
    from napari_pathup.models.load import load_model, model_hash, resolve_model_path

    path = resolve_model_path(resolve_model_spec(model), allow_download).resolve()
    return path, model_hash(path), load_model(path)


def resolve_settings(model: Any, settings: dict[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """Settings as the engine resolves them, checked for every class (class and seed left out)."""
    from napari_pathup.engine.pipeline import SynthesisSettings

    known = getattr(model, "classes", None)
    missing = [c for c in classes if known and c not in known]
    if missing:
        raise InputError(
            f"class(es) {', '.join(missing)} of DATA are not classes of the model {model.path} "
            f"({', '.join(known)}); train a model on these classes (pathup train) or pass --model"
        )
    resolved: dict[str, Any] = {}
    for name in classes:
        resolved = SynthesisSettings(**{**settings, "class_name": name}).resolve(model).to_dict()
    resolved.pop("class_name", None)
    resolved.pop("seed", None)
    return resolved


def store_config(checksum: str, settings: dict[str, Any], base_seed: int) -> dict[str, Any]:
    return {
        "format": CONFIG_FORMAT,
        "version": 1,
        "model_checksum": checksum,
        "seed": base_seed,
        "settings": settings,
    }


def check_store(store: Path, config: dict[str, Any]) -> None:
    """The store must be new, empty, or an earlier run of the same model, settings and seed."""
    if store.exists() and not store.is_dir():
        raise InputError(f"--out {store} is a file; expected a folder for the synthetic images")
    if not store.parent.is_dir():
        raise InputError(f"cannot write {store}: the folder {store.parent} does not exist")
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
    old, new = found.get("settings", {}), config["settings"]
    differ += [
        f"settings.{k} ({old.get(k)!r} there, {new.get(k)!r} now)" for k in new if old.get(k) != new[k]
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
            if name.startswith(".") and (PARTIAL_MARKER in name or ".old-" in name or WORK_PREFIX in name):
                found.append(entry)
    return sorted(found)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


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


def committed_row(store: Path, output: str, item: Item | None, checksum: str) -> ManifestRow | None:
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


def scan_store(store: Path, items: Sequence[Item], checksum: str) -> tuple[dict[str, ManifestRow], list[str]]:
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
    item: Item, settings: dict[str, Any], checksum: str, status: str, error: str = ""
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
    scheduler: str | None = None,
    client: Any = None,
    workers: int | None = None,
    device: str = "auto",
    dtype: str = "float32",
    torch_threads: int | None = None,
    connect_timeout: float = 10.0,
    progress: bool = True,
    on_result: Callable[[ItemResult, Summary], None] | None = None,
) -> Summary:
    """Make the missing synthetic images of DATA in ``store`` (see the module docstring).

    ``settings`` are :class:`~napari_pathup.engine.pipeline.SynthesisSettings` fields (no class or
    seed). Pass ``client`` to run on a Client you hold (it is not closed), else ``scheduler`` (an
    address) or neither for a LocalCluster sized by ``workers``. ``on_result`` is called in the
    client after every finished item. Raises :class:`InputError` for bad inputs before writing
    anything; ``KeyboardInterrupt`` propagates after the manifest has been written.
    """
    from napari_pathup.training.data import discover

    store = Path(store).expanduser().resolve()
    index = discover(data, splits=splits, holdout="none")
    items = plan_items(index, ratio, base_seed)
    check_references(items)
    model_path, checksum, loaded = prepare_model(model, allow_download)
    resolved = resolve_settings(loaded, settings, index.classes)
    del loaded
    config = store_config(checksum, resolved, base_seed)
    check_store(store, config)
    size: LocalSize | None = None
    if client is None and scheduler is None:
        size = local_size(workers, device, torch_threads)
    job = Job(
        store=str(store),
        model_path=str(model_path),
        model_checksum=checksum,
        settings=resolved,
        device=device,
        dtype=dtype,
        torch_threads=torch_threads or (size.torch_threads if size else None),
    )
    done_before = scan_store(store, items, checksum)[0] if store.is_dir() else {}
    if client is not None or all(it.output in done_before for it in items):
        clients: Any = contextlib.nullcontext(client)  # nothing to make: no cluster to start
    else:
        clients = open_client(scheduler, size, connect_timeout)
    with clients as active_client:
        store.mkdir(exist_ok=True)
        with store_lock(store):
            if active_client is not None and size is None:
                wait_for_active(active_client, store)
            return _run(active_client, store, items, job, config, progress, on_result)


def _run(
    client: Any,
    store: Path,
    items: list[Item],
    job: Job,
    config: dict[str, Any],
    progress: bool,
    on_result: Callable[[ItemResult, Summary], None] | None,
) -> Summary:
    from distributed import as_completed
    from tqdm import tqdm

    from napari_pathup.io.atomic import atomic_output

    config_path = store / CONFIG_NAME
    if not config_path.is_file():
        with atomic_output(config_path, overwrite=False) as temp:
            temp.write_text(json.dumps(config, indent=2))
    for stale in stale_temporaries(store):
        remove(stale)
    for class_name in sorted({it.class_name for it in items}):
        (store / class_name).mkdir(exist_ok=True)
    rows, blocked = scan_store(store, items, job.model_checksum)
    summary = Summary(store, len(items))
    todo = []
    for item in items:
        if item.output in blocked:
            reason = f"{store / item.output} exists but is not this item's image; move it away and rerun"
            summary.failed[item.output] = reason
            rows[item.output] = planned_row(item, job.settings, job.model_checksum, "failed", reason)
        elif item.output in rows:
            summary.skipped.append(item.output)
        else:
            todo.append(item)
            rows[item.output] = planned_row(item, job.settings, job.model_checksum, "pending")
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
                rows[result.output] = planned_row(
                    item, job.settings, job.model_checksum, "failed", result.error
                )
            else:
                row = committed_row(store, result.output, item, job.model_checksum)
                if row is None:  # the worker said done but the disk disagrees: never report it done
                    reason = "the worker reported the image written but it is not in the store"
                    summary.failed[result.output] = reason
                    row = planned_row(item, job.settings, job.model_checksum, "failed", reason)
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
        raise
    finally:
        bar.close()
        summary.seconds = time.monotonic() - start
        write_manifest(manifest, rows.values())
        if summary.interrupted:
            for line in summary.lines():
                print(line, file=sys.stderr)
    return summary
