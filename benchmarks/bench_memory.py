"""Peak resident memory of a full ``synthesize`` run writing into a zarr sink on disk, per output size.

Run: ``python benchmarks/bench_memory.py [--sizes 2048 4096 8192]``. Each size runs in a fresh
child process, which reports ``ru_maxrss`` (peak RSS) after imports + model load (baseline) and at
the end of the run. The parent imports nothing heavy: on Linux a child's ``ru_maxrss`` starts at the
RSS of the process that spawned it, so a light parent keeps that floor at a few MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import NOTE, markdown_table

#: few steps so that 8192² fits in minutes on two cores; memory does not depend on the step count
RUN: dict[str, Any] = {
    "steps": 4,
    "strength": 0.5,
    "upscale_strength": 0.25,
    "batch_size": 8,
    "guidance": 3.0,
}
CHUNKS = (512, 512, 3)
TARGET_8192 = 3 * 1024**3
MB = 1024**2


def _maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def child(size: int, model_dir: str, work_dir: str) -> dict[str, Any]:
    """One full run in this process; returns what the parent tables."""
    start = time.perf_counter()
    import zarr

    from _common import load_small_model, machine_info, reference_image
    from napari_pathup.engine.events import Finished, StageStarted, TileDecoded
    from napari_pathup.engine.pipeline import SynthesisSettings, synthesize

    model = load_small_model(model_dir)
    reference = reference_image(512)
    baseline, baseline_now = _maxrss(), _rss_now()
    sink = zarr.create_array(
        store=str(Path(work_dir) / f"out{size}.zarr"), shape=(size, size, 3), chunks=CHUNKS, dtype="uint8"
    )
    settings = SynthesisSettings("tumour", height=size, width=size, **RUN)
    marks: dict[str, float] = {}
    peaks: dict[str, int] = {}
    stages: dict[int, tuple[int, int]] = {}
    run_start = time.perf_counter()
    for event in synthesize(model, reference, settings, sink):
        key = None
        if isinstance(event, StageStarted):
            stages[event.stage] = (event.steps, event.patches_per_step)
            key = f"stage {event.stage} start"
        elif isinstance(event, TileDecoded) and event.stage == 2 and event.tile_index == 0:
            key = "decode start"
        elif isinstance(event, Finished):
            key = "finished"
        if key:
            marks[key] = time.perf_counter() - run_start
            peaks[key] = _maxrss()
    wall = time.perf_counter() - run_start
    corner = sink[:64, :64]
    return {
        "size": size,
        "stages": stages,
        "baseline_maxrss": baseline,
        "baseline_rss": baseline_now,
        "peak": _maxrss(),
        "wall": wall,
        "startup": run_start - start,
        "marks": marks,
        "peaks": peaks,
        "nonzero_output": bool(np.asarray(corner).any()),
        "disk_bytes": sum(
            p.stat().st_size for p in (Path(work_dir) / f"out{size}.zarr").rglob("*") if p.is_file()
        ),
        "machine": machine_info(),
        "settings": settings.resolve(model).to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.build:
        from _common import build_model_folder

        build_model_folder(args.model)
        return
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.model, args.work)))
        return

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "model")
        subprocess.run([sys.executable, __file__, "--build", "--model", model_dir], check=True)
        for size in args.sizes:
            work = os.path.join(tmp, str(size))
            os.makedirs(work)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(size), "--model", model_dir, "--work", work],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            results.append(result)
            print(f"[{size}² done in {result['wall']:.0f} s]", file=sys.stderr, flush=True)

    rows = []
    for r in results:
        size, peak, base = r["size"], r["peak"], r["baseline_maxrss"]
        output = size * size * 3
        m = r["marks"]
        phases = (
            f"{m['stage 2 start']:.0f} / {m['decode start'] - m['stage 2 start']:.0f} / "
            f"{m['finished'] - m['decode start']:.0f}"
        )
        rows.append(
            [
                f"{size}²",
                r["stages"]["2"][1],
                f"{output / MB:.0f}",
                f"{base / MB:.0f}",
                f"{peak / MB:.0f}",
                f"{(peak - base) / MB:.0f}",
                f"{(peak - base) / output:.3f}",
                f"{r['disk_bytes'] / MB:.1f}",
                f"{r['wall']:.0f}",
                phases,
            ]
        )
    s = results[0]["settings"]
    one, two = results[0]["stages"]["1"], results[0]["stages"]["2"]
    print("# Peak memory of a full run")
    print()
    print(f"Machine: {results[0]['machine']}")
    print(NOTE)
    print(
        f"Settings: synthesize() with a zarr sink on disk (chunks {CHUNKS}, default compressor), reference "
        f"512x512 noise, steps={s['steps']}, strength={s['strength']} ({one[0]} stage-1 steps x {one[1]} "
        f"patch), upscale_strength={s['upscale_strength']} ({two[0]} stage-2 step(s)), guidance="
        f"{s['guidance']}, patch={s['patch_size']}, "
        f"overlap={s['overlap']}, weights={s['weights']}, batch_size={s['batch_size']}, decode/encode tile "
        f"{s['decode_tile']} overlap {s['decode_overlap']} (latent px); one fresh process per size; "
        f"peak = ru_maxrss at the end of the child, baseline = ru_maxrss after imports + model load."
    )
    print()
    print(
        markdown_table(
            [
                "output",
                "stage-2 patches/step",
                "output MiB (HxWx3)",
                "baseline MiB",
                "peak MiB",
                "peak - baseline MiB",
                "growth / output bytes",
                "zarr on disk MiB",
                "wall s",
                "stage 1+encode / stage 2 / decode s",
            ],
            rows,
        )
    )
    print()
    big = next((r for r in results if r["size"] == 8192), None)
    if big is not None:
        ok = big["peak"] < TARGET_8192
        print(f"8192² peak {big['peak'] / MB:.0f} MiB: target (< 3 GiB) {'met' if ok else 'NOT met'}.")
    if not all(r["nonzero_output"] for r in results):
        print("WARNING: an output's first 64x64 pixels are all zero.")
    for r in results:
        peaks = ", ".join(f"{k} {v / MB:.0f}" for k, v in r["peaks"].items())
        print(f"- {r['size']}² ru_maxrss (MiB) at: {peaks}; baseline VmRSS {r['baseline_rss'] / MB:.0f} MiB.")


if __name__ == "__main__":
    main()
