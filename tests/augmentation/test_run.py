"""`augment` on a real LocalCluster of two worker processes: every item once, a killed worker and an
interrupted client, a rerun that makes exactly the missing items bit for bit, and bad inputs."""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from PIL import Image

from helpers import rgb
from napari_pathup.augmentation.cluster import LOCAL_CLUSTER_CONFIG
from napari_pathup.augmentation.manifest import MANIFEST_NAME, read_manifest
from napari_pathup.augmentation.plan import plan_items
from napari_pathup.augmentation.run import (
    augment,
    check_computed_dtype,
    check_store_path,
    stale_temporaries,
    wait_for_active,
    worker_precision,
    workers_dtypes,
)
from napari_pathup.augmentation.worker import Job, model_loads
from napari_pathup.datasets import discover
from napari_pathup.errors import InputError
from napari_pathup.io.atomic import PARTIAL_MARKER
from napari_pathup.io.ome_zarr import ome_zarr_level_shapes, read_ome_zarr, read_ome_zarr_attrs

# the fault hooks below run inside the worker processes, which cannot import this test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SETTINGS = {"height": 64, "width": 64, "steps": 4, "reference_size": 64}
IMAGES = {"tumour": 3, "stroma": 2}
RATIO = 1.5  # tumour 3 + 2, stroma 2 + 1: 8 items, with fractional copies


def make_data(root: Path) -> Path:
    for class_name, n in IMAGES.items():
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = rgb(128, 160, seed=100 * len(class_name) + i)
            Image.fromarray(image).save(root / class_name / f"r{i}.png")
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("augment-data") / "data")


@pytest.fixture(scope="module")
def client():
    import dask
    from distributed import Client, LocalCluster

    with (
        dask.config.set(LOCAL_CLUSTER_CONFIG),  # as augment's own cluster: no MALLOC_TRIM_THRESHOLD_
        LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def clean_store(client, data_dir, pathup_model_dir, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("clean") / "store"
    summary = run(client, data_dir, store, pathup_model_dir)
    assert summary.ok and len(summary.done) == 8 and not summary.skipped
    return store


def run(client, data, store, model, **kw):
    return augment(
        data, store, settings=SETTINGS, ratio=RATIO, model=str(model), client=client, progress=False, **kw
    )


def outputs_on_disk(store: Path) -> list[str]:
    """Every entry of the class folders, as store-relative paths (temporaries included)."""
    return sorted(
        f"{d.name}/{p.name}"
        for d in store.iterdir()
        if d.is_dir() and not d.name.startswith(".")
        for p in d.iterdir()
    )


# ------------------------------------------------------------------------------------- worker faults


def install_faults(crash: str, hang: str, marks: str) -> None:
    """In a worker process: the first worker to write ``crash`` dies half-way through writing it; the
    first to write ``hang`` stops half-way until the file ``marks/release`` appears, then fails.
    Marker files make each fault happen once."""
    from napari_pathup.augmentation import worker
    from napari_pathup.io.atomic import atomic_output

    real = worker.write_ome_zarr

    def faulty(path, image, **kwargs):
        for output, fault in ((crash, "crash"), (hang, "hang")):
            if str(path).endswith(output):
                try:
                    open(Path(marks) / fault, "x").close()
                except FileExistsError:
                    break
                with atomic_output(path, overwrite=False) as temp:
                    temp.mkdir()
                    (temp / "zarr.json").write_text("{")  # half-written
                    if fault == "crash":
                        os._exit(1)
                    while not (Path(marks) / "release").exists():
                        time.sleep(0.1)
                    raise RuntimeError("released")
        return real(path, image, **kwargs)

    worker.write_ome_zarr = faulty


def test_every_item_is_made_once_with_its_seed_and_the_model_loaded_once_per_worker(
    client, clean_store, data_dir
):
    items = plan_items(discover(data_dir, holdout="none"), RATIO)
    assert outputs_on_disk(clean_store) == sorted(it.output for it in items)
    rows = {r.output: r for r in read_manifest(clean_store / MANIFEST_NAME)}
    assert set(rows) == {it.output for it in items}
    for it in items:
        row, attrs = rows[it.output], read_ome_zarr_attrs(clean_store / it.output)
        assert row.status == "done" and row.seed == it.seed == attrs["seed"]
        assert row.reference == it.key and row.class_name == it.class_name == attrs["class"]
        assert row.settings == attrs["settings"] and row.settings["height"] == 64
        assert row.model_checksum == attrs["model"]["hash"] and row.seconds > 0
        assert ome_zarr_level_shapes(clean_store / it.output) == [(64, 64)]
    assert len({it.seed for it in items}) == len(items)
    assert sum(client.run(model_loads).values()) <= 2  # 8 images, 2 worker processes


def test_a_rerun_of_a_finished_store_changes_nothing(client, clean_store, data_dir, pathup_model_dir):
    before = {o: (clean_store / o / "zarr.json").stat().st_mtime_ns for o in outputs_on_disk(clean_store)}
    summary = run(client, data_dir, clean_store, pathup_model_dir)
    assert summary.ok and not summary.done and len(summary.skipped) == 8
    after = {o: (clean_store / o / "zarr.json").stat().st_mtime_ns for o in outputs_on_disk(clean_store)}
    assert after == before


def test_killed_worker_and_interrupted_client_then_rerun_makes_exactly_the_missing_items(
    client, clean_store, data_dir, pathup_model_dir, tmp_path
):
    items = plan_items(discover(data_dir, holdout="none"), RATIO)
    hang, crash = items[0].output, items[1].output  # submitted first: both start at once
    store, marks = tmp_path / "store", tmp_path / "marks"
    marks.mkdir()
    client.run(install_faults, crash, hang, str(marks))

    def interrupt(result, summary):
        if (marks / "crash").exists() and (marks / "hang").exists():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(client, data_dir, store, pathup_model_dir, on_result=interrupt)

    # the crash left a half-written temporary and the worker died; the hanging item is not done
    assert (marks / "crash").exists() and (marks / "hang").exists()
    left = outputs_on_disk(store)
    temporaries = [o for o in left if PARTIAL_MARKER in o]
    crash_stem = Path(crash).name.removesuffix(".ome.zarr")
    assert any(Path(t).name.startswith(f".{crash_stem}{PARTIAL_MARKER}") for t in temporaries)
    assert hang not in left
    finished = [o for o in left if PARTIAL_MARKER not in o]
    assert len(finished) < len(items)
    # the manifest never calls an image done that is not on disk
    rows = read_manifest(store / MANIFEST_NAME)
    assert {r.output for r in rows if r.status == "done"} <= set(finished)
    assert {r.output for r in rows} == {it.output for it in items}
    # a new client must not clean up under a worker that still writes an item: it waits
    with pytest.raises(InputError, match="still write"):
        wait_for_active(client, store, timeout=0.5)
    (marks / "release").touch()
    wait_for_active(client, store, timeout=120)
    finished = sorted(o for o in outputs_on_disk(store) if PARTIAL_MARKER not in o)

    summary = run(client, data_dir, store, pathup_model_dir)
    assert summary.ok and hang in summary.done
    assert sorted(summary.skipped) == finished
    assert sorted(summary.done) == sorted({it.output for it in items} - set(finished))
    assert outputs_on_disk(store) == outputs_on_disk(clean_store)  # each once, no temporary left
    assert not stale_temporaries(store)
    for it in items:
        np.testing.assert_array_equal(
            read_ome_zarr(store / it.output), read_ome_zarr(clean_store / it.output)
        )
        assert read_ome_zarr_attrs(store / it.output)["seed"] == it.seed
    assert all(r.status == "done" for r in read_manifest(store / MANIFEST_NAME))


# -------------------------------------------------------------------------------------- bad inputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_fails_fast_and_writes_nothing(data_dir, pathup_model_dir, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        augment(
            data_dir,
            tmp_path / "store",
            settings=SETTINGS,
            model=str(pathup_model_dir),
            dask_address=address,
            connect_timeout=1,
            progress=False,
        )
    assert time.monotonic() - start < 60
    assert not (tmp_path / "store").exists()


def loose_images(root: Path) -> None:
    root.mkdir()
    Image.fromarray(rgb(8, 8)).save(root / "loose.png")


def garbage_png(root: Path) -> Path:
    make_data(root)
    (root / "stroma" / "broken.png").write_bytes(b"not a png at all")
    return root


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), "holds no class folders"),
        (
            lambda root: Image.fromarray(rgb(8, 8)).save(root.mkdir() or root / "loose.png"),
            "no class folders",
        ),
        (lambda root: (root / "tumour").mkdir(parents=True), "holds no images"),
        (garbage_png, "broken.png cannot be used"),
        (lambda root: None, "no such folder"),
    ],
    ids=["empty", "loose-images", "empty-class", "unreadable-image", "missing"],
)
def test_bad_data_gives_a_clear_error_and_writes_nothing(make, message, pathup_model_dir, tmp_path):
    data = tmp_path / "data"
    make(data)
    with pytest.raises(InputError, match=message):
        augment(data, tmp_path / "store", settings=SETTINGS, model=str(pathup_model_dir), progress=False)
    assert not (tmp_path / "store").exists()


def test_classes_the_model_does_not_know_are_refused(pathup_model_dir, tmp_path):
    data = tmp_path / "data"
    (data / "lymphoma").mkdir(parents=True)
    Image.fromarray(rgb(128, 128)).save(data / "lymphoma" / "a.png")
    with pytest.raises(InputError, match="lymphoma of DATA are not classes of the model"):
        augment(data, tmp_path / "store", settings=SETTINGS, model=str(pathup_model_dir), progress=False)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"settings": {**SETTINGS, "steps": 5}}, r"settings.steps \(4 there, 5 now\)"),
        (
            {"settings": {**SETTINGS, "guidance_interval": (0.5, 1.0)}},
            r"settings.guidance_interval \(\[0.0, 1.0\] there, \[0.5, 1.0\] now\)",
        ),
        # clean_store was made in the default dtype (auto): the dtype its workers did not compute in
        # (bfloat16 or float32, by this machine's CPU) would mix two kinds of images
        ({"dtype": "OTHER"}, r"dtype \('auto' there, 'OTHER' now: pass --dtype auto\)"),
    ],
    ids=["settings", "guidance-interval", "dtype"],
)
def test_a_store_of_other_settings_or_dtype_is_not_resumed(
    change, message, clean_store, data_dir, pathup_model_dir
):
    import json

    computed = json.loads((clean_store / "augment.json").read_text())["computed_dtype"]
    other = {"bfloat16": "float32", "float32": "bfloat16"}[computed]
    change = {k: other if v == "OTHER" else v for k, v in change.items()}
    message = message.replace("OTHER", other)
    before = outputs_on_disk(clean_store)
    kwargs = {"settings": SETTINGS, **change}
    with pytest.raises(InputError, match=message):
        augment(data_dir, clean_store, ratio=RATIO, model=str(pathup_model_dir), progress=False, **kwargs)
    assert outputs_on_disk(clean_store) == before


def test_a_store_from_before_dtype_was_recorded_resumes_as_float32(
    client, clean_store, data_dir, pathup_model_dir, tmp_path
):
    import json
    import shutil

    store = tmp_path / "store"
    shutil.copytree(clean_store, store)
    config = json.loads((store / "augment.json").read_text())
    del config["dtype"], config["computed_dtype"]  # as written before either was recorded (float32 then)
    (store / "augment.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"dtype \('float32' there, 'auto' now"):
        run(client, data_dir, store, pathup_model_dir)
    summary = run(client, data_dir, store, pathup_model_dir, dtype="float32")
    assert summary.ok and not summary.done and len(summary.skipped) == 8


def test_a_store_from_before_the_guidance_interval_resumes_as_guided_at_every_step(
    client, clean_store, data_dir, pathup_model_dir, tmp_path
):
    import json
    import shutil

    store = tmp_path / "store"
    shutil.copytree(clean_store, store)
    config = json.loads((store / "augment.json").read_text())
    assert config["settings"].pop("guidance_interval") == [0.0, 1.0]  # as written before it existed
    assert config["settings"].pop("guidance_mode") == "cfg"  # likewise
    (store / "augment.json").write_text(json.dumps(config))
    summary = run(client, data_dir, store, pathup_model_dir)
    assert summary.ok and not summary.done and len(summary.skipped) == 8


def test_a_store_begun_before_its_computed_dtype_was_recorded_records_it_when_resumed(
    client, clean_store, data_dir, pathup_model_dir, tmp_path
):
    """A store of --dtype auto from before the workers' dtype was recorded: resuming it records what the
    workers compute in, so that a later resume on other hardware is checked (not mixed unseen)."""
    import json
    import shutil

    store = tmp_path / "store"
    shutil.copytree(clean_store, store)
    config = json.loads((store / "augment.json").read_text())
    computed = config.pop("computed_dtype")
    (store / "augment.json").write_text(json.dumps(config))
    summary = run(client, data_dir, store, pathup_model_dir)
    assert summary.ok and len(summary.skipped) == 8
    assert json.loads((store / "augment.json").read_text()) == {**config, "computed_dtype": computed}


def test_a_store_computed_in_another_dtype_by_auto_is_not_resumed_and_the_hint_works(
    client, clean_store, data_dir, pathup_model_dir, tmp_path
):
    """--dtype auto is bfloat16 on a CPU that computes it and float32 elsewhere: a store begun on one
    machine and resumed on the other would mix two kinds of image. The store records what its workers
    computed in; the hint (pass that dtype) resumes it."""
    import json
    import shutil

    store = tmp_path / "store"
    shutil.copytree(clean_store, store)
    config = json.loads((store / "augment.json").read_text())
    here = {dtype for dtype, _ in client.run(worker_precision, "auto", "auto").values()}
    assert config["dtype"] == "auto" and {config["computed_dtype"]} == here
    other = "float32" if here == {"bfloat16"} else "bfloat16"
    config["computed_dtype"] = other  # as if the first run had been on the other kind of machine
    (store / "augment.json").write_text(json.dumps(config))
    before = outputs_on_disk(store)
    with pytest.raises(InputError, match=f"computed in {other}, and this run's workers would compute in"):
        augment(  # more items than are done: the workers are asked
            data_dir,
            store,
            settings=SETTINGS,
            ratio=2.0,
            model=str(pathup_model_dir),
            client=client,
            progress=False,
        )
    assert outputs_on_disk(store) == before
    summary = run(client, data_dir, store, pathup_model_dir, dtype=other)  # the hint: accepted as the store's
    assert summary.ok and not summary.done and len(summary.skipped) == 8


def test_workers_that_cannot_say_their_dtype_are_one_clear_error():
    class Unreachable:  # a client whose workers fail on any call, e.g. without napari-pathup installed
        def run(self, *args, **kwargs):
            raise ModuleNotFoundError("No module named 'napari_pathup'")

    job = Job(store="s", model_path="m", model_checksum="c", plans={})
    with pytest.raises(InputError, match=r"cannot ask the Dask workers which dtype .*\(ModuleNotFoundError"):
        workers_dtypes(Unreachable(), job)
    assert workers_dtypes(None, job) == set()


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_workers_that_would_compute_half_precision_in_software_are_warned_of(client, dtype):
    """--dtype bfloat16 on a CPU without bfloat16 instructions is computed in software, about 60x
    slower: the workers say so before the run (as ``pathup synthesize`` does); float32 never warns."""
    import torch

    from napari_pathup.augmentation.cluster import ClusterWarning
    from napari_pathup.engine.device import slow_half_precision

    job = Job(store="s", model_path="m", model_checksum="c", plans={}, device="cpu", dtype=dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert workers_dtypes(client, job) == {dtype}
    said = [str(w.message) for w in caught if issubclass(w.category, ClusterWarning)]
    expected = slow_half_precision(torch.device("cpu"), getattr(torch, dtype))  # the workers share this CPU
    if expected is None:
        assert said == []
    else:
        assert said == [f"2 of 2 Dask workers: {expected}"]


def test_half_precision_in_software_on_some_workers_is_counted():
    class Mixed:  # a cluster of one bfloat16 CPU and one without bfloat16 instructions
        def run(self, function, *args):
            return {"tcp://a": ("bfloat16", None), "tcp://b": ("bfloat16", "bfloat16 on this CPU is slow")}

    from napari_pathup.augmentation.cluster import ClusterWarning

    job = Job(store="s", model_path="m", model_checksum="c", plans={}, dtype="bfloat16")
    with pytest.warns(ClusterWarning, match=r"^1 of 2 Dask workers: bfloat16 on this CPU is slow$"):
        assert workers_dtypes(Mixed(), job) == {"bfloat16"}


def test_workers_that_would_compute_in_two_dtypes_are_refused(tmp_path):
    assert check_computed_dtype(tmp_path, None, set(), "auto") is None  # no worker yet: nothing to check
    assert check_computed_dtype(tmp_path, None, {"bfloat16"}, "auto") == "bfloat16"
    assert check_computed_dtype(tmp_path, "float32", {"float32"}, "auto") == "float32"
    with pytest.raises(InputError, match=r"would compute in bfloat16 and float32 .* pass --dtype float32"):
        check_computed_dtype(tmp_path, None, {"float32", "bfloat16"}, "auto")


def test_an_unknown_dtype_is_refused_before_anything_is_read(pathup_model_dir, tmp_path):
    with pytest.raises(InputError, match="dtype: expected one of auto, float32"):
        augment(tmp_path / "none", tmp_path / "store", settings=SETTINGS, dtype="float8", progress=False)
    assert not (tmp_path / "store").exists()


def test_a_store_made_with_another_model_is_not_resumed(clean_store, data_dir, pathup_model_dir, tmp_path):
    from napari_pathup.models.build import build_random_pathup_model

    other = build_random_pathup_model(tmp_path / "other", classes=("tumour", "stroma", "normal"), seed=1)
    before = outputs_on_disk(clean_store)
    with pytest.raises(InputError, match=r"was made with another model.*model_checksum"):
        augment(data_dir, clean_store, settings=SETTINGS, ratio=RATIO, model=str(other), progress=False)
    assert outputs_on_disk(clean_store) == before


def test_a_folder_of_other_files_is_not_used_as_a_store(data_dir, pathup_model_dir, tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds other files"):
        augment(data_dir, tmp_path / "store", settings=SETTINGS, model=str(pathup_model_dir), progress=False)
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("synthetic.ome.zarr", "viewers and readers take for a single image"),
        ("aug.zarr", "viewers and readers take for a single image"),
        ("out.PNG", "viewers and readers take for a single image"),
        ("x.tif", "viewers and readers take for a single image"),
        ("bad.txt", r"the extension of a file \(text/plain\)"),
        ("results.CSV", r"the extension of a file \(text/csv\)"),
        ("run.json", r"the extension of a file \(application/json\)"),
        ("backup.tar.gz", r"ends in \.tar\.gz, the extension of a file \(application/x-tar\)"),
        ("logs.gz", r"ends in \.gz, the extension of a file \(gzip-compressed data\)"),
        ("run.2026.xz", r"ends in \.xz, the extension of a file \(xz-compressed data\)"),
    ],
)
def test_a_new_store_named_like_one_image_or_a_file_is_refused(
    data_dir, pathup_model_dir, tmp_path, name, why
):
    """``--out run.ome.zarr`` would make a folder of many images that viewers and readers open as one
    image (and fail), ``--out results.csv`` a folder that looks like a table: refused before anything is
    written, saying what a store is."""
    with pytest.raises(
        InputError, match=rf"a store is a folder of images .*{why}; name it without that extension"
    ):
        augment(data_dir, tmp_path / name, settings=SETTINGS, model=str(pathup_model_dir), progress=False)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("name", ["store", "run.v2", "synthetic_2026.12", ".hidden"])
def test_store_names_of_no_file_type_are_accepted(tmp_path, name):
    """Only extensions of a kind of file are refused: a version or date after a dot is a name."""
    check_store_path(tmp_path / name)


def test_an_earlier_store_keeps_its_name(tmp_path):
    """The name check is for new stores: a folder that exists (an earlier run's store) is not refused
    for its name, so that it can still be resumed."""
    for name in ("bad.txt", "aug.zarr"):
        (tmp_path / name).mkdir()
        check_store_path(tmp_path / name)


def test_a_foreign_folder_under_an_output_name_is_a_failure_and_is_left_alone(
    client, clean_store, data_dir, pathup_model_dir, tmp_path
):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(clean_store, store)
    victim = outputs_on_disk(store)[0]
    shutil.rmtree(store / victim)
    (store / victim).mkdir()
    (store / victim / "mine.txt").write_text("not an image")
    summary = run(client, data_dir, store, pathup_model_dir)
    assert not summary.ok and list(summary.failed) == [victim] and len(summary.skipped) == 7
    assert "is not this item's image" in summary.failed[victim]
    assert (store / victim / "mine.txt").read_text() == "not an image"
    rows = {r.output: r for r in read_manifest(store / MANIFEST_NAME)}
    assert rows[victim].status == "failed" and sum(r.status == "done" for r in rows.values()) == 7


@pytest.mark.parametrize("inside", ["synthetic", ".", "tumour/more"])
def test_a_store_inside_data_is_refused(inside, pathup_model_dir, tmp_path):
    data = make_data(tmp_path / "data")
    before = sorted(p.relative_to(data).as_posix() for p in data.rglob("*"))
    with pytest.raises(InputError, match=r"is inside DATA .* Choose a store outside DATA"):
        augment(data, data / inside, settings=SETTINGS, model=str(pathup_model_dir), progress=False)
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == before


def test_references_are_checked_from_their_headers_for_size_before_anything_is_written(
    pathup_model_dir, tmp_path
):
    import struct
    import zlib

    data = make_data(tmp_path / "data")
    Image.fromarray(rgb(4, 4)).save(data / "tumour" / "tiny.png")
    with pytest.raises(
        InputError, match=r"tiny.png cannot be used: .* 4x4 px; this model needs a reference of at least 128"
    ):
        augment(data, tmp_path / "store", settings=SETTINGS, model=str(pathup_model_dir), progress=False)
    (data / "tumour" / "tiny.png").unlink()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    (data / "tumour" / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )
    with pytest.raises(
        InputError, match=r"bomb.png cannot be used: .*900,000,000 pixels.*--max-image-pixels"
    ):
        augment(data, tmp_path / "store", settings=SETTINGS, model=str(pathup_model_dir), progress=False)
    assert not (tmp_path / "store").exists()


def test_non_finite_settings_are_refused_before_the_model_or_the_data_is_read(pathup_model_dir, tmp_path):
    with pytest.raises(InputError, match=r"guidance \(--guidance\) must be a finite number"):
        augment(tmp_path / "nowhere", tmp_path / "store", settings={**SETTINGS, "guidance": float("nan")})
    assert not (tmp_path / "store").exists()


def test_an_interruption_report_counts_what_is_on_disk(clean_store, data_dir):
    """Issue 11, finding 6: an item a worker committed after the client's last result is done, not pending."""
    from napari_pathup.augmentation.run import Summary, planned_row, recount_from_disk, scan_store

    items = plan_items(discover(data_dir, holdout="none"), RATIO)
    checksum = read_ome_zarr_attrs(clean_store / items[0].output)["model"]["hash"]
    summary = Summary(clean_store, len(items), pending=[it.output for it in items[:3]], interrupted=True)
    rows = {it.output: planned_row(it, {}, checksum, "pending") for it in items[:3]}
    by_output = {it.output: it for it in items}
    recount_from_disk(clean_store, summary, rows, by_output, checksum)
    assert summary.pending == [] and sorted(summary.done) == sorted(it.output for it in items[:3])
    assert all(r.status == "done" for r in rows.values())
    assert "3 made" in summary.lines()[0] and "0 pending" in summary.lines()[0]
    assert set(scan_store(clean_store, items, checksum)[0]) >= set(summary.done)


def test_a_store_on_a_read_only_file_system_is_one_line_before_the_cluster_starts(
    data_dir, pathup_model_dir, tmp_path, monkeypatch
):
    import errno

    from napari_pathup.errors import OutputError

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "touch", read_only)
    with pytest.raises(OutputError, match="the file system is read-only"):
        augment(data_dir, tmp_path / "store", settings=SETTINGS, model=str(pathup_model_dir), progress=False)
    assert not (tmp_path / "store").exists()


def test_each_class_is_drawn_with_its_own_class_defaults_and_the_store_records_them(
    client, data_dir, edited_model, tmp_path
):
    """A model's "class_defaults" hold in augment as in synthesize: every class resolved on its own
    (not every item with the data's last class's settings), recorded per class in augment.json."""
    import json

    own = {"guidance": 1.5, "upscale_strength": 0.5}
    model = edited_model("model", class_defaults={"stroma": own})
    store = tmp_path / "store"
    summary = run(client, data_dir, store, model)
    assert summary.ok and len(summary.done) == 8
    config = json.loads((store / "augment.json").read_text())
    assert config["class_settings"] == {"stroma": own, "tumour": {"guidance": 3.0, "upscale_strength": 0.45}}
    assert "guidance" not in config["settings"] and config["settings"]["steps"] == SETTINGS["steps"]
    rows = {r.output: r for r in read_manifest(store / MANIFEST_NAME)}
    for output, row in rows.items():
        attrs = read_ome_zarr_attrs(store / output)
        expected = own if row.class_name == "stroma" else {"guidance": 3.0, "upscale_strength": 0.45}
        assert {k: attrs["settings"][k] for k in own} == expected, output
        assert row.settings == attrs["settings"]
    # a store of this model from before a class's own settings were recorded drew every class with the
    # last class's: it is not resumed as if it held these images
    del config["class_settings"]
    config["settings"].update({"guidance": 3.0, "upscale_strength": 0.45})
    (store / "augment.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"class_settings\.stroma\.guidance \(None there, 1\.5 now\)"):
        run(client, data_dir, store, model)
