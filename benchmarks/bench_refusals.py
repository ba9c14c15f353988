"""Bad input refused before the imports: how long a user waits for each refusal, one cold process per run.

Run: ``python benchmarks/bench_refusals.py [--rounds 3] [--cases NAME,NAME ...]``. Each case is a
``pathup`` command a user could mistype, run as they run it (a fresh ``python -m napari_pathup``
process) in a temporary folder holding what it needs: copies of the shipped model broken one way each,
a DATA folder with a class the model lacks, an output that exists. The ``imports`` row times
``import torch, diffusers`` alone, which is what a refusal before the imports saves; every row's
median is also given as a ratio of it. The last row is a refusal that needs diffusers (a scheduler
class diffusers lacks): it shows the cost the others avoid. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, markdown_table
from napari_pathup.models.default import default_model_path


def _broken_copy(root: Path, name: str, edit: Callable[[Path], None]) -> Path:
    shipped = default_model_path()
    if shipped is None:
        raise SystemExit("the shipped default model is missing from this install")
    folder = Path(shutil.copytree(shipped, root / name))
    edit(folder)
    return folder


def _pickle_weights(folder: Path) -> None:
    weights = folder / "denoiser" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))


def _config_edit(path: str, key: str, value: object) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        config = folder / path
        config.write_text(json.dumps({**json.loads(config.read_text()), key: value}))

    return edit


def _image(path: Path) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((256, 256, 3), 200, np.uint8)).save(path)


def cases(root: Path) -> dict[str, list[str]]:
    """Each case's ``pathup`` arguments, with its inputs written under ``root``."""
    pickled = _broken_copy(root, "pickled", _pickle_weights)
    foreign = _broken_copy(
        root, "foreign", _config_edit("denoiser/config.json", "_class_name", ["m", "Evil"])
    )
    classes = _broken_copy(root, "classes", _config_edit("pathup.json", "classes", ["a", "b"]))
    no_such = _broken_copy(
        root, "scheduler", _config_edit("scheduler/scheduler_config.json", "_class_name", "NoSuchScheduler")
    )
    for name in ("tumour", "lymphoma"):
        _image(root / "data" / name / "a.png")
    _image(root / "tumour-only" / "tumour" / "a.png")
    (root / "taken.png").write_bytes(b"the user's own file")
    out = ["--out", str(root / "new.png")]
    synth = ["synthesize", "--class", "tumour"]
    return {
        "NaN setting": [*synth, "--guidance", "nan", *out],
        "output exists": [*synth, "--out", str(root / "taken.png")],
        "misspelt class": ["synthesize", "--class", "tumor", *out],
        "missing model": [*synth, "--model", str(root / "nowhere"), *out],
        "pickle weights only": [*synth, "--model", str(pickled), *out],
        "config names foreign code": [*synth, "--model", str(foreign), *out],
        "denoiser does not fit classes": [*synth, "--model", str(classes), *out],
        "augment: DATA class not in model": ["augment", str(root / "data"), "--out", str(root / "store")],
        "augment: store named like an image": [
            "augment",
            str(root / "tumour-only"),
            "--out",
            str(root / "run.ome.zarr"),
        ],
        "scheduler diffusers lacks (after the imports)": [*synth, "--model", str(no_such), *out],
    }


def run(argv: list[str], cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return seconds, done.returncode, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per case (3); the table gives the median")
    parser.add_argument("--cases", type=lambda t: t.split(","), help="only these cases (comma-separated)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pathup-refusals-") as tmp:
        root = Path(tmp)
        commands = {"imports": [sys.executable, "-c", "import torch, diffusers"]}
        for name, argv in cases(root).items():
            if args.cases is None or name in args.cases:
                commands[name] = [sys.executable, "-m", "napari_pathup", *argv]
        base = None
        for name, argv in commands.items():
            runs = [run(argv, root) for _ in range(args.rounds)]
            median = statistics.median(s for s, _, _ in runs)
            base = median if name == "imports" else base
            _, code, message = runs[-1]
            ratio = f"{median / base:.2f}" if base else ""
            message = message.replace(str(root), "TMP")
            message = message if len(message) <= 90 else message[:87] + "..."
            rows.append(
                [name, code, " / ".join(f"{s:.2f}" for s, _, _ in runs), f"{median:.2f}", ratio, message]
            )
    print(machine_info())
    print(f"python -m napari_pathup per case, {args.rounds} cold processes each\n")
    print(markdown_table(["case", "exit", "runs (s)", "median (s)", "/ imports", "last stderr line"], rows))


if __name__ == "__main__":
    main()
