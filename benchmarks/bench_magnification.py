"""How the output size relative to the reference field changes what a synthesis looks like.

PathUp treats the reference as the output's field: a reference smaller than the output is enlarged,
so its tissue appears magnified. The default model's references are at most 1024 px (its tumour
fields are smaller still), so the README's 2048x2048 job magnifies them 2-3x. This benchmark takes
a centred square of each class's reference (side n), synthesises it at n (1:1) and at 2n (2x), and
reports the sharpness (share of spectral power above a quarter of Nyquist) of 256-px tiles over the
field's own, and writes a figure of 512-px crops at 1:1 (field, 1:1 output, 2x output, outpainted
output). The outpainted run (``reference_fit="outpaint"``) makes the 2n x 2n output with the field
1:1 in its centre and the rest drawn around it: sharpness inside the field and outside it, and the
eosin / haematoxylin optical-density ratio outside over the field's (colour drift of the drawn tissue).

    python benchmarks/bench_magnification.py [MODEL] [--classes tumour] [--side 632] [--out docs/img]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, markdown_table
from _quality import grid_tiles, hed_stats, holdout_crops, sharpness_values
from napari_pathup.datasets import discover
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.io.images import read_image
from napari_pathup.models.default import reference_for_class
from napari_pathup.models.load import load_model
from napari_pathup.training.data import load_images


def sharpness(image: np.ndarray) -> float:
    return float(sharpness_values(grid_tiles(image, 256)).mean())


def eosin_over_haematoxylin(crops: list[np.ndarray]) -> float:
    stats = hed_stats(crops)
    return stats["E mean"] / stats["H mean"]


def outside_tiles(image: np.ndarray, inner: int, size: int = 256) -> list[np.ndarray]:
    """``size`` tiles of ``image`` (side 2n) that lie wholly outside its centred n x n square."""
    side = image.shape[0]
    lo, hi = (side - inner) // 2, (side + inner) // 2
    tiles = []
    for y in range(0, side - size + 1, size):
        for x in range(0, side - size + 1, size):
            if y + size <= lo or y >= hi or x + size <= lo or x >= hi:
                tiles.append(image[y : y + size, x : x + size])
    return tiles


def centre_square(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    y, x = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(image[y : y + side, x : x + side])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", default=None, help="PathUp model folder (default: the shipped one)")
    p.add_argument("--classes", nargs="+", default=None, help="classes (all)")
    p.add_argument("--side", type=int, default=None, help="field side in px (the reference's shorter side)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("--out", type=Path, default=None, help="folder for the figure (JPEG)")
    p.add_argument("--data", type=Path, default=Path("data/demo"), help="data with holdout.json (data/demo)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = load_model(args.model)
    held: dict[str, float] = {}
    if (args.data / "holdout.json").is_file():  # how detailed the class's held-out real crops are
        index = discover(args.data)
        real = holdout_crops(index, load_images(index), 256, 128, 0.5)
        for k, name in enumerate(index.classes):
            held[name] = float(sharpness_values([real.images[i] for i in real.of(k)]).mean())
    rows, panels = [], []
    for class_name in args.classes or model.classes:
        reference = read_image(reference_for_class(model, class_name))[..., :3]
        side = args.side or min(reference.shape[:2])
        side -= side % 8
        field = centre_square(reference, side)
        base = sharpness(field)
        row = [class_name, f"{reference.shape[1]}x{reference.shape[0]}", f"{side}x{side}"]
        row.append(f"{base / held[class_name]:.2f}" if class_name in held else "n/a")
        crops = [field[:512, :512]]
        for scale, fit in ((1, "stretch"), (2, "stretch"), (2, "outpaint")):
            settings = SynthesisSettings(
                class_name=class_name,
                height=side * scale,
                width=side * scale,
                seed=args.seed,
                reference_fit=fit,
            )
            image = run(model, field, settings).image
            if fit == "stretch":
                row.append(f"{sharpness(image) / base:.2f}")
                crops.append(image[:512, :512])
                continue
            inside = centre_square(image, side)
            outside = outside_tiles(image, side)
            row.append(f"{sharpness(inside) / base:.2f}")
            row.append(f"{float(sharpness_values(outside).mean()) / base:.2f}")
            row.append(f"{eosin_over_haematoxylin(outside) / eosin_over_haematoxylin([field]):.2f}")
            crops.append(image[:512, :512])  # a corner: drawn around the field
        rows.append(row)
        panels.append(np.concatenate(crops, axis=1))
        print(f"  {class_name}: done", file=sys.stderr, flush=True)
    given = " ".join(sys.argv[1:] if argv is None else argv)
    print("# Output size vs reference field\n")
    print(f"Command: `python benchmarks/{Path(__file__).name} {given}`  ")
    print(
        f"Machine: {machine_info()}; {args.threads} torch thread(s); model {model.path}; seed {args.seed}  "
    )
    print(
        "A centred square of each class's reference (side n) synthesised at n x n (1:1: the output's "
        "pixels are the field's) and at 2n x 2n (the field enlarged 2x, as a reference smaller than the "
        "output is). Sharpness of 256-px tiles over the field's own (1.0: as detailed as the real field); "
        "'field / held-out': the field's own over that of the class's held-out real crops of the data "
        "(which bench_default_model.py compares syntheses with). 'outpaint': the 2n x 2n output with "
        "the field 1:1 in its centre (--reference-fit outpaint): sharpness inside the field and of the "
        "256-px tiles wholly outside it over the field's, and E/H (mean optical densities) outside over "
        "the field's.\n"
    )
    header = [
        "class",
        "reference",
        "field",
        "field / held-out",
        "1:1 / field",
        "2x / field",
        "outpaint: inside / field",
        "outpaint: outside / field",
        "outpaint: outside E/H / field's",
    ]
    print(markdown_table(header, rows))
    print(f"\nRun time: {time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "magnification.jpg"
        Image.fromarray(np.concatenate(panels, axis=0)).save(path, quality=90)
        print(f"Figure (per class: field, 1:1, 2x, outpainted corner; 512-px crops at 1:1): {path}")


if __name__ == "__main__":
    main()
