"""Give classes of a PathUp model folder one reference per training slide.

A model names one reference per class (``pathup.json`` "references"): the window with the most tissue
in the class's training areas, which comes from one slide. Where a class spans slides that look
different (the demo data's ``normal``: 20x dermis and 10x skin), a run without a reference of its own
then only ever starts from one of them. This script adds, for each class named, the window with the
most tissue of every other training image of the class (never a hold-out pixel; the same rule as
training's, ``training.export.image_window``), after the model's own, so that seed 0 keeps the
reference it had and seed s starts from reference s mod n (``models.default.reference_for_class``).

    python scripts/slide_references.py MODEL_DIR --data data/demo --classes normal
    python scripts/slide_references.py MODEL_DIR --classes normal tumour --skip tumour/tumour_stardist.jpg

``--skip`` leaves out slides by their key (class folder/file name): a slide whose training area is too
small to stand in for a whole output (the demo data's StarDist field keeps a 256x296 window).
``pathup.json`` is rewritten through a temporary file; the images are written before it names them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from napari_pathup.datasets import discover
from napari_pathup.io.atomic import write_text_atomic
from napari_pathup.io.images import read_image
from napari_pathup.models.default import class_references
from napari_pathup.models.load import read_model_spec
from napari_pathup.models.spec import PATHUP_JSON
from napari_pathup.training.data import load_images
from napari_pathup.training.export import REFERENCE_DIR, image_references


def slide_windows(data: Path, class_name: str) -> list[tuple[str, np.ndarray]]:
    """(image key, its window with the most tissue in its training areas) per training image."""
    index = discover(data, ("train",), None, None, 0)
    if index.holdout_file is None:
        raise SystemExit(f"{data}: no holdout.json; without it a window could hold evaluation pixels")
    index = dataclasses.replace(index, images=tuple(e for e in index.images if e.class_name == class_name))
    if not index.images:
        raise SystemExit(f"{data}: no training image of class {class_name!r}")
    return [(entry.key, window) for entry, window in image_references(index, load_images(index))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="PathUp model folder to change")
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="its training data")
    parser.add_argument("--classes", nargs="+", required=True, help="classes to give one reference per slide")
    parser.add_argument(
        "--skip", nargs="+", default=[], metavar="KEY", help="slides to leave out, e.g. tumour/x.jpg"
    )
    args = parser.parse_args(argv)
    windows = {class_name: slide_windows(args.data, class_name) for class_name in args.classes}
    if unknown := sorted(set(args.skip) - {key for found in windows.values() for key, _ in found}):
        raise SystemExit(
            f"--skip {' '.join(unknown)}: no training slide of {', '.join(args.classes)} has that key"
        )
    from PIL import Image

    spec = read_model_spec(args.model)
    meta = json.loads((args.model / PATHUP_JSON).read_text())
    for class_name in args.classes:
        own = class_references(spec, class_name)
        kept = [read_image(p)[..., :3] for p in own]
        names = [str(p.relative_to(args.model)) for p in own]
        for key, window in windows[class_name]:
            if key in args.skip:
                continue
            if any(k.shape == window.shape and np.array_equal(k, window) for k in kept):
                continue
            stem = Path(key).stem.replace(".", "_")
            relative = f"{REFERENCE_DIR}/{class_name}-{stem}.png"
            Image.fromarray(window).save(args.model / relative, optimize=True)
            kept.append(window)
            names.append(relative)
            print(f"{class_name}: + {relative} ({window.shape[1]}x{window.shape[0]} from {key})")
        meta["references"][class_name] = names if len(names) > 1 else names[0]
    write_text_atomic(args.model / PATHUP_JSON, json.dumps(meta, indent=2) + "\n")
    print(f"{args.model / PATHUP_JSON}: references {json.dumps(meta['references'])}")


if __name__ == "__main__":
    main()
