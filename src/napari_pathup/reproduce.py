"""The PathUp chain in one place: ``prepare`` (cut a data set into fixed-size images) and a rehearsal of
prepare → train → augment 1:1 → evaluate (``pathup rehearse``) with tiny models on a CPU.

``prepare_tiles`` is the first step of the chain (docs/reproduce_pathup.md): the paper cuts BRACS RoIs into
2048x2048 images; here every image of DATA is cut into non-overlapping SIZE x SIZE tiles with enough
tissue (an image smaller than SIZE stays whole), written as class folders with ``groups.csv``, the source
image (or BRACS slide) of every tile, which ``pathup evaluate --groups`` uses so that tiles of one source
never straddle training and validation.

``rehearse`` runs the same ``pathup`` commands as the BRACS chain, on ``data/demo`` with stand-ins for the
large models (a random tiny Stable Diffusion pipeline instead of SD 1.5, a random ``vit_tiny`` instead of
ViT-L weights), so every step and every file format of the chain is exercised in a few minutes on a CPU;
its scores mean nothing. It writes ``rehearsal.md`` (commands, timings, the evaluation table) and
``rehearsal.json`` in its output folder.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import InputError

GROUPS_CSV = "groups.csv"


@dataclass
class PrepareSummary:
    """What :func:`prepare_tiles` wrote: tiles per class, source images per class, skipped images."""

    out: Path
    tiles: dict[str, int]
    sources: dict[str, int]
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        per_class = ", ".join(f"{c} {n} (from {self.sources[c]})" for c, n in self.tiles.items())
        lines = [f"pathup prepare: wrote {sum(self.tiles.values())} tiles to {self.out}: {per_class}"]
        if self.skipped:
            lines.append(f"pathup prepare: no tile with enough tissue in {', '.join(self.skipped)}")
        return lines


def _spread(items: list[Any], n: int | None) -> list[Any]:
    """At most ``n`` of ``items``, evenly spread over the list (all of them without ``n``)."""
    if n is None or len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / max(n - 1, 1))] for i in range(n)]


def prepare_tiles(
    data: str | Path,
    out: str | Path,
    *,
    size: int,
    classes: Sequence[str] | None = None,
    per_image: int | None = None,
    min_tissue: float = 0.5,
    splits: Sequence[str] = ("train",),
) -> PrepareSummary:
    """Cut every image of DATA into ``size`` tiles as ``out/<class>/<name>_y<Y>_x<X>.png`` plus
    ``out/groups.csv``; ``per_image`` keeps that many tiles per image, evenly spread. ``out`` must not
    exist; it is built under a temporary name and renamed when complete."""
    from PIL import Image

    from napari_pathup.datasets import discover, select_classes
    from napari_pathup.evaluation.data import BRACS_SLIDE, roi_boxes
    from napari_pathup.io.images import read_image

    out = Path(out).expanduser()
    if out.exists():
        raise InputError(f"--out {out} exists; prepare writes a new folder")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: the folder {out.parent} does not exist")
    if size < 16:
        raise InputError(f"--size must be at least 16 pixels, got {size}")
    index = discover(data, splits=splits, holdout="none")
    names = select_classes(data, index.classes, classes)
    temp = out.with_name(f".{out.name}.partial-p{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    tiles = dict.fromkeys(names, 0)
    sources = dict.fromkeys(names, 0)
    skipped = []
    rows = []
    try:
        for entry in index.images:
            if entry.class_name not in names:
                continue
            image = read_image(entry.path)
            boxes = _spread(roi_boxes(image, size, min_tissue), per_image)
            if not boxes:
                skipped.append(entry.key)
                continue
            slide = BRACS_SLIDE.match(entry.path.name)
            group = slide.group(1) if slide else entry.key
            folder = temp / entry.class_name
            folder.mkdir(parents=True, exist_ok=True)
            stem = Path(entry.key).stem
            for box in boxes:
                name = f"{stem}_y{box.y0}_x{box.x0}.png"
                Image.fromarray(np.ascontiguousarray(image[box.slices()])).save(folder / name)
                rows.append((f"{entry.class_name}/{name}", group))
            tiles[entry.class_name] += len(boxes)
            sources[entry.class_name] += 1
        empty = [c for c in names if not tiles[c]]
        if empty:
            raise InputError(f"class(es) {', '.join(empty)}: no {size} px tile with {min_tissue:.0%} tissue")
        with (temp / GROUPS_CSV).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "group"])
            writer.writerows(rows)
        os.replace(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return PrepareSummary(out, tiles, sources, skipped)


# ---------------------------------------------------------------------------------------- rehearsal


@dataclass
class Step:
    """One step of the rehearsal: its name, the command (as a shell line) and how long it took."""

    name: str
    command: str
    seconds: float
    code: int


def _tiny_vit(path: Path, architecture: str) -> None:
    """Random weights of ``architecture`` at its published input size, as a safetensors file."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(architecture, pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


#: the rehearsal's sizes: tiny enough for a CPU in a few minutes, through every step of the chain
REHEARSAL: dict[str, Any] = {
    "classes": "normal,tumour",  # stroma has one demo image: no grouped folds for it
    "tile": 64,
    "per_image": 3,
    "iters": 4,
    "steps": 4,
    "vit": "vit_tiny_patch16_224",
    "vit_size": 32,
    "epochs": 1,
}


def rehearse(
    data: str | Path,
    out: str | Path,
    *,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> list[Step]:
    """Run prepare → train → augment 1:1 → evaluate (--preset paper) on ``data`` into ``out`` (new).

    Every step is the ``pathup`` command a user would type, run in this process; a failing step stops
    the rehearsal with :class:`InputError` naming it. Writes ``out/rehearsal.md`` and ``rehearsal.json``.
    """
    from napari_pathup.cli import main
    from napari_pathup.models.build import build_random_stable_diffusion

    data, out = Path(data).expanduser(), Path(out).expanduser()
    if not data.is_dir():
        raise InputError(f"rehearsal data {data}: no such folder (the repository's data/demo)")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out} is not empty; the rehearsal writes a new folder")
    out.mkdir(parents=True, exist_ok=True)
    r = REHEARSAL
    quiet = [] if progress else ["--quiet"]
    steps: list[Step] = []

    def run(
        name: str, argv: list[str] | None, call: Callable[[], Any] | None = None, shown: str = ""
    ) -> None:
        start = time.perf_counter()
        if argv is not None:
            code = main(argv)
        else:
            assert call is not None  # a step is a command or a call
            call()
            code = 0
        seconds = time.perf_counter() - start
        steps.append(Step(name, shown or "pathup " + shlex.join(argv or []), seconds, code))
        log(f"pathup rehearse: {name}: {seconds:.1f} s")
        if code != 0:
            raise InputError(f"rehearsal step {name} failed (exit status {code}); see the messages above")

    tiles, base, model = out / "data", out / "base-sd", out / "model"
    store, vit = out / "store", out / f"{r['vit']}.safetensors"
    run("prepare", ["prepare", str(data), "--out", str(tiles), "--size", str(r["tile"]),
                    "--classes", r["classes"], "--per-image", str(r["per_image"])])  # fmt: skip
    run("base pipeline (random tiny SD, stands in for SD 1.5)", None,
        lambda: build_random_stable_diffusion(base),
        "python -c \"from napari_pathup.models.build import build_random_stable_diffusion as b; "
        f"b('{base}')\"")  # fmt: skip
    run("train (fine-tune the pipeline)", ["train", str(tiles), "--out", str(model), "--base", str(base),
        "--iters", str(r["iters"]), "--batch-size", "2", "--crop", str(r["tile"]), "--reference-size",
        str(r["tile"]), "--checkpoint-every", str(r["iters"]), "--eval-every", str(r["iters"]),
        "--threads", "1", *quiet])  # fmt: skip
    run("augment 1:1", ["augment", str(tiles), "--out", str(store), "--model", str(model), "--ratio", "1",
        "--size", str(r["tile"]), "--steps", str(r["steps"]), "--workers", "1", "--threads", "1",
        *quiet])  # fmt: skip
    run(f"ViT weights (random {r['vit']}, stand in for ViT-L)", None, lambda: _tiny_vit(vit, r["vit"]),
        "python -c \"import timm, torch; from safetensors.torch import save_file; torch.manual_seed(0); "
        f"m = timm.create_model('{r['vit']}'); save_file({{k: v.contiguous() for k, v in "
        f"m.state_dict().items()}}, '{vit}')\"")  # fmt: skip
    run("evaluate --preset paper", ["evaluate", str(tiles), "--synthetic", str(store), "--groups",
        str(tiles / GROUPS_CSV), "--preset", "paper", "--backbone", f"timm:{r['vit']}",
        "--backbone-weights", str(vit), "--image-size", str(r["vit_size"]), "--tile-size", str(r["vit_size"]),
        "--folds", "2", "--epochs", str(r["epochs"]), "--batch-size", "4", "--checkpoints",
        str(out / "evaluate-checkpoints"), "--json", str(out / "evaluate.json"), *quiet])  # fmt: skip
    _write_record(out, data, steps)
    return steps


def _write_record(out: Path, data: Path, steps: list[Step]) -> None:
    import torch

    from napari_pathup import __version__

    result = json.loads((out / "evaluate.json").read_text(encoding="utf-8"))
    total = sum(s.seconds for s in steps)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, threads " + str(
        torch.get_num_threads()
    )
    if torch.cuda.is_available():  # train, augment and evaluate use it by default
        machine += f", CUDA device {torch.cuda.get_device_name(0)}"
    lines = [
        f"# PathUp rehearsal on {data}",
        "",
        f"napari-pathup {__version__}; {machine}; Python {sys.version.split()[0]}. Tiny random stand-ins for "
        "SD 1.5 and ViT-L: the scores mean nothing, the chain and its files are what is rehearsed.",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {s.name} | {s.seconds:.1f} |" for s in steps],
        f"| **total** | **{total:.1f}** |",
        "",
        "| classifier | training data | accuracy | weighted F1 |",
        "|---|---|---|---|",
    ]
    for row in result["summary"]:
        lines.append(
            f"| {row['classifier']} | {row['training_data']} | {row['accuracy_mean']:.3f} ± "
            f"{row['accuracy_std']:.3f} | {row['weighted_f1_mean']:.3f} ± {row['weighted_f1_std']:.3f} |"
        )
    lines += ["", "Commands:", "", "```bash", *[s.command for s in steps], "```", ""]
    (out / "rehearsal.md").write_text("\n".join(lines), encoding="utf-8")
    record = {
        "data": str(data),
        "settings": REHEARSAL,
        "steps": [vars(s) for s in steps],
        "total_seconds": total,
        "summary": result["summary"],
    }
    (out / "rehearsal.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
