"""The README's main job, timed as a user runs it: a cold ``pathup synthesize`` process per run.

Run: ``python benchmarks/bench_readme_job.py [--variant NAME=ARGS ...] [--executable NAME=PATH ...]
[--rounds 2]``. Each variant
is the README command (``pathup synthesize --class tumour --size 2048 --out OUT``) plus its extra
arguments (``shipped=`` for none, ``unguided-tail=--guidance-interval 0.4,1``, ``other=--model DIR``), run by
``--pathup`` or by its own ``--executable`` (another environment's ``pathup``, e.g. one installed as the
README says, without the development extras).
Variants run alternately, round after round, so that a machine that slows down mid-run slows every
variant alike; the table gives each run's wall seconds (imports, model load, both stages, the
OME-Zarr pyramid), the load average before it, and each variant's median as a ratio of the first's.
Time it on a quiet machine: the figures are only as good as the cores are free.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, markdown_table

README_JOB = ["synthesize", "--class", "tumour", "--size", "2048"]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=ARGS`` (ARGS split as a shell would) → (name, extra arguments)."""
    name, sep, args = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=ARGS (ARGS may be empty)")
    return name, shlex.split(args)


def timed_run(pathup: str, extra: list[str], out: Path) -> float:
    """Wall seconds of one cold README job; raises with its stderr if it fails."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([pathup, *README_JOB, "--out", str(out), *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(extra) or 'the README job'} failed: {done.stderr.strip()}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", type=parse_variant, action="append", help="NAME=ARGS (repeatable)")
    p.add_argument("--rounds", type=int, default=2, help="runs of every variant, alternating")
    p.add_argument("--pathup", default=shutil.which("pathup") or "pathup", help="the pathup executable")
    p.add_argument(
        "--executable", type=parse_variant, action="append", default=[], help="NAME=PATH: a variant's pathup"
    )
    args = p.parse_args(argv)
    variants = args.variant or [("shipped", [])]
    executables = {name: (path[0] if path else args.pathup) for name, path in args.executable}
    unknown = set(executables) - {name for name, _ in variants}
    if unknown:
        p.error(f"--executable names no variant: {', '.join(sorted(unknown))}")
    print(machine_info())
    print(f"README job: pathup {' '.join(README_JOB)} --out OUT [ARGS]; {args.rounds} rounds")
    for name, _ in variants:
        print(f"  {name}: {executables.get(name, args.pathup)}")
    print()
    seconds: dict[str, list[float]] = {name: [] for name, _ in variants}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.rounds + 1):
            for name, extra in variants:
                load = os.getloadavg()[0]
                s = timed_run(executables.get(name, args.pathup), extra, Path(tmp) / "job.ome.zarr")
                seconds[name].append(s)
                rows.append((round_, name, " ".join(extra) or "(none)", f"{s:.1f}", f"{load:.1f}"))
                print(f"round {round_} {name}: {s:.1f} s (load before {load:.1f})", flush=True)
    print()
    print(markdown_table(["round", "variant", "arguments", "wall s", "load before"], rows))
    first = statistics.median(seconds[variants[0][0]])
    print()
    print(
        markdown_table(
            ["variant", "median s", f"ratio to {variants[0][0]}"],
            [
                (n, f"{statistics.median(v):.1f}", f"{statistics.median(v) / first:.2f}")
                for n, v in seconds.items()
            ],
        )
    )


if __name__ == "__main__":
    main()
