"""``augment`` throughput: images per minute with 1 and 2 local worker processes, beside a plain loop.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_augment.py [--size 256] [--ratio 2] [--data data/demo]``.

Every row makes the same items (``--ratio`` synthetic images per real image of ``--data``, the
shipped demo H&E by default) at ``--size`` with the model's default settings, from the shipped
default model (copied to a temp folder first, so its checksum cannot change under the run):

- **plain loop**: one process, the model loaded once, then for every item read the reference, run
  the engine (``engine.pipeline.run``) and write the OME-Zarr, with 1 torch thread;
- **augment**: :func:`napari_pathup.augmentation.run.augment` on a new LocalCluster of N worker
  processes with T torch threads each, into a new store. "wall" includes starting the cluster and
  checking the inputs and the model; "run" is from submitting the items to the last one done
  (each worker imports torch and loads the model on its first item inside it).

Images/min uses "run". "median s/image" is the median time of one image (the loop's own, or the
manifest's ``seconds``: from the task starting on its worker to its image committed; a worker's first
image also imports torch and loads the model, hence the median).
Overhead per item = (run x workers x threads - loop) / items, i.e. the core
time augment spends per image beyond the plain loop's. Every augment image is compared with the
loop's image of the same item, pixel for pixel (equal with 1 torch thread; CPU kernels sum in a
thread-dependent order, so other thread counts change the last bits). Load averages are printed
beside every row: other jobs share this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, markdown_table
from napari_pathup.augmentation.manifest import MANIFEST_NAME, read_manifest
from napari_pathup.augmentation.plan import plan_items
from napari_pathup.augmentation.run import augment
from napari_pathup.datasets import discover
from napari_pathup.engine.device import select_dtype
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.io.images import read_image
from napari_pathup.io.ome_zarr import read_ome_zarr, write_ome_zarr
from napari_pathup.models.default import default_model_path
from napari_pathup.models.load import load_model


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def plain_loop(model_dir: Path, data: Path, ratio: float, size: int, out: Path) -> tuple[float, list[float]]:
    """Seconds for the loop over every item (model already loaded), and the seconds of each item."""
    import torch

    torch.set_num_threads(1)
    model = load_model(model_dir).to("cpu", select_dtype("auto"))  # augment's default dtype
    items = plan_items(discover(data, holdout="none"), ratio)
    start = time.perf_counter()
    each = []
    for it in items:
        item_start = time.perf_counter()
        settings = SynthesisSettings(it.class_name, height=size, width=size, seed=it.seed)
        finished = run(model, read_image(it.reference), settings)
        write_ome_zarr(out / it.output.replace("/", "_"), finished.image)
        each.append(time.perf_counter() - item_start)
    return time.perf_counter() - start, each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ratio", type=float, default=2.0)
    parser.add_argument("--configs", default="1x1,2x1,1x2", help="WORKERSxTHREADS,... for the augment rows")
    args = parser.parse_args()
    source = default_model_path()
    if source is None:
        raise SystemExit("this installation ships no default model")
    print(machine_info())
    rows = []
    with tempfile.TemporaryDirectory() as work:
        model_dir = Path(work) / "model"
        shutil.copytree(source, model_dir)
        before = load()
        loop_s, loop_each = plain_loop(model_dir, args.data, args.ratio, args.size, Path(work))
        n, loop_median = len(loop_each), statistics.median(loop_each)
        loop_rate = n / loop_s * 60
        after = load()
        loads = f"{before}/{after}"
        rows.append(
            [
                "plain loop",
                1,
                1,
                n,
                "",
                f"{loop_s:.1f}",
                f"{loop_rate:.2f}",
                "",
                f"{loop_median:.2f}",
                "",
                "",
                loads,
            ]
        )
        print(f"plain loop: {n} items in {loop_s:.1f} s", flush=True)
        one_worker_rate = None
        for config in args.configs.split(","):
            workers, threads = (int(v) for v in config.split("x"))
            store = Path(work) / f"store-{config}"
            before = load()
            start = time.perf_counter()
            summary = augment(
                args.data,
                store,
                settings={"height": args.size, "width": args.size},
                ratio=args.ratio,
                model=str(model_dir),
                workers=workers,
                torch_threads=threads,
                device="cpu",
                progress=False,
            )
            wall = time.perf_counter() - start
            if not summary.ok or len(summary.done) != n:
                raise SystemExit(f"augment {config}: {summary.lines()}")
            equal = 0  # same engine, same seeds: equal bits when the torch thread count is the same
            for it in plan_items(discover(args.data, holdout="none"), args.ratio):
                looped = read_ome_zarr(Path(work) / it.output.replace("/", "_"))
                equal += bool((read_ome_zarr(store / it.output) == looped).all())
            rate = n / summary.seconds * 60
            if workers == 1 and threads == 1:
                one_worker_rate = rate
            scaling = f"{rate / one_worker_rate:.2f}" if one_worker_rate else ""
            overhead = (summary.seconds * workers * threads - loop_s) / n
            item_median = statistics.median(
                r.seconds for r in read_manifest(store / MANIFEST_NAME) if r.seconds is not None
            )
            rows.append(
                [
                    "augment",
                    workers,
                    threads,
                    n,
                    f"{wall:.1f}",
                    f"{summary.seconds:.1f}",
                    f"{rate:.2f}",
                    scaling,
                    f"{item_median:.2f}",
                    f"{overhead:+.2f}",
                    f"{equal}/{n}",
                    f"{before}/{load()}",
                ]
            )
            print(f"augment {config}: wall {wall:.1f} s, run {summary.seconds:.1f} s", flush=True)
    print()
    print(
        f"Items: {n} ({args.ratio:g} per real image of {args.data}), {args.size}x{args.size}, shipped "
        f"default model, its default settings; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(
        markdown_table(
            [
                "mode",
                "workers",
                "torch threads/worker",
                "images",
                "wall s (with cluster start)",
                "run s",
                "images/min",
                "vs 1 worker",
                "median s/image on a worker",
                "overhead s/image (core time vs loop)",
                "images equal to the loop's",
                "load avg before/after",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
