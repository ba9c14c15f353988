"""Benchmark the metrics on 10,000 real and 10,000 synthetic 2048-d features, beside the reference libraries.

Every implementation runs in its own subprocess on the same float32 arrays (as an Inception
extractor produces them), so its wall time and peak resident memory (``ru_maxrss``: interpreter,
imports, data and work arrays) are its own. Prints two markdown tables: time and memory, and the
values each implementation returned (they must agree).

    python benchmarks/bench_metrics.py                 # 10,000 x 2048, all implementations
    python benchmarks/bench_metrics.py --n 2000 --impl pathup torch-fidelity

The ``baseline`` row only imports torch and loads the arrays: subtract its memory to see what each
metric implementation itself needs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

IMPLEMENTATIONS = ("baseline", "pathup", "torch-fidelity", "prdc")


def make_features(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative, correlated features like Inception pool3 outputs; the synthetic set is slightly off."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(64, dim)) / 8.0

    def draw(shift: float, scale: float) -> np.ndarray:
        latent = rng.normal(loc=shift, scale=scale, size=(n, 64))
        return np.abs(latent @ mixing + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)

    return draw(0.0, 1.0), draw(0.1, 1.1)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_pathup(real: np.ndarray, synth: np.ndarray) -> tuple[dict, dict]:
    from napari_pathup.metrics import distances as D

    def everything():
        return D.compute_feature_metrics(
            real, synth, k=3, kid_subsets_count=100, kid_subset_size_requested=1000
        )

    # Fréchet distance alone, to split the time; the full call below recomputes it
    _, t_fd = _timed(lambda: D.frechet_distance(real, synth))
    result, t_all = _timed(everything)
    values = {
        "fd": result.frechet_distance,
        "kid": result.kid.mean,
        "precision": result.prdc.precision,
        "recall": result.prdc.recall,
        "density": result.prdc.density,
        "coverage": result.prdc.coverage,
    }
    return values, {"FID": t_fd, "KID+PRDC": t_all - t_fd, "total": t_all}


def run_torch_fidelity(real: np.ndarray, synth: np.ndarray) -> tuple[dict, dict]:
    import torch
    from torch_fidelity import metric_fid, metric_kid, metric_prc

    r, s = torch.from_numpy(real), torch.from_numpy(synth)  # input 1 = generated, input 2 = real

    def fid():
        stats = metric_fid.fid_features_to_statistics
        return metric_fid.fid_statistics_to_metric(stats(s), stats(r), False)["frechet_inception_distance"]

    def kid():
        out = metric_kid.kid_features_to_metric(s, r, kid_subsets=100, kid_subset_size=1000, verbose=False)
        return out["kernel_inception_distance_mean"]

    def prc():
        return metric_prc.prc_features_to_metric(
            s, r, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False, verbose=False
        )

    fd, t_fd = _timed(fid)
    kd, t_kid = _timed(kid)
    pr, t_prc = _timed(prc)
    values = {"fd": fd, "kid": kd, "precision": pr["precision"], "recall": pr["recall"]}
    return values, {"FID": t_fd, "KID": t_kid, "PRC": t_prc, "total": t_fd + t_kid + t_prc}


def run_prdc(real: np.ndarray, synth: np.ndarray) -> tuple[dict, dict]:
    import contextlib
    import io

    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):
        out, t = _timed(lambda: compute_prdc(real_features=real, fake_features=synth, nearest_k=3))
    return {key: float(value) for key, value in out.items()}, {"PRDC": t, "total": t}


def run_baseline(real: np.ndarray, synth: np.ndarray) -> tuple[dict, dict]:
    """Only import torch and hold the arrays: the memory every torch-based row starts from."""
    import torch

    _ = torch.from_numpy(real), torch.from_numpy(synth)
    return {}, {"total": 0.0}


RUNNERS = {
    "baseline": run_baseline,
    "pathup": run_pathup,
    "torch-fidelity": run_torch_fidelity,
    "prdc": run_prdc,
}


def child(impl: str, data: Path) -> None:
    real, synth = np.load(data / "real.npy"), np.load(data / "synth.npy")
    values, times = RUNNERS[impl](real, synth)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"impl": impl, "values": values, "times": times, "peak_mib": peak_mib}))


def version_of(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="samples per set (10000)")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimensions (2048)")
    parser.add_argument("--impl", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--child", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data)
        return

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        real, synth = make_features(args.n, args.dim)
        np.save(Path(tmp) / "real.npy", real)
        np.save(Path(tmp) / "synth.npy", synth)
        del real, synth
        for impl in args.impl:
            load = os.getloadavg()[0]
            cmd = [sys.executable, __file__, "--child", impl, "--data", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(f"{impl} failed:\n{proc.stderr}", file=sys.stderr)
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["load_before"] = load
            results.append(result)
            print(f"done: {impl} in {result['times']['total']:.1f} s", file=sys.stderr)

    versions = {
        name: version_of(name) for name in ("napari-pathup", "torch", "numpy", "torch-fidelity", "prdc")
    }
    print(
        f"{args.n:,} real + {args.n:,} synthetic features of dimension {args.dim} (float32), "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    print()
    print(
        "| implementation | computes | stage times (s) | wall time (s) | peak RSS (MiB) | load avg before |"
    )
    print("|---|---|---|---:|---:|---:|")
    for r in results:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["times"].items() if k != "total")
        computes = ", ".join(r["values"])
        print(
            f"| {r['impl']} | {computes} | {stages} | {r['times']['total']:.1f} | {r['peak_mib']:.0f} "
            f"| {r['load_before']:.1f} |"
        )
    print()
    keys = ["fd", "kid", "precision", "recall", "density", "coverage"]
    print("| implementation | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for r in results:
        cells = [f"{r['values'][k]:.8g}" if k in r["values"] else "-" for k in keys]
        print(f"| {r['impl']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
