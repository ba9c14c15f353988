"""How much of a class's FD on the training areas is colour: the selection draw, raw and colour-matched.

Run: ``python scripts/experiments/colour_fix.py MODEL [--class normal] [--data data/demo]``

Synthesises the selection benchmark's draw for one class (``benchmarks/bench_select_model.py``:
seeds 100-101, 2048x2048, the model's defaults) and scores its 256-px tiles against the class's
training-area crops with that benchmark's ``SelectionTissue`` (FD on EfficientNet-Lite0 features,
sharpness ratio, the linear probe's class fidelity, nucleus area), three times: raw, and after a
global per-channel mean/std match in CIELAB (Reinhard) of each output to (a) its reference, (b) its
stage-1 result, the colour fix of diffusion upscalers (StableSR); then twice more after a Macenko
stain match to its reference (``stain_match.py`` beside this script), the output's own stains estimated on
(c) the output, (d) its stage-1 result (forty-eighth session). The raw row reproduces the
benchmark's figures (thirty-first session: `normal` 196.3 on version 4.3; matched 197.4 and 199.1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from skimage.color import lab2rgb, rgb2lab

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from stain_match import StainMatch, fit  # noqa: E402  (beside this script)

import bench_select_model as select  # noqa: E402
from _quality import grid_tiles  # noqa: E402
from napari_pathup.datasets import discover  # noqa: E402
from napari_pathup.engine.device import select_dtype  # noqa: E402
from napari_pathup.engine.events import Finished, TileDecoded  # noqa: E402
from napari_pathup.engine.pipeline import SynthesisSettings, synthesize  # noqa: E402
from napari_pathup.io.images import read_image  # noqa: E402
from napari_pathup.metrics import get_extractor  # noqa: E402
from napari_pathup.models.default import reference_for_class  # noqa: E402
from napari_pathup.models.load import load_model  # noqa: E402

SEEDS = (100, 101)
SIZE = 2048


def reinhard(image: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``image`` with the per-channel CIELAB mean and standard deviation of ``target`` (whole images)."""
    a, t = rgb2lab(image), rgb2lab(target)
    matched = (a - a.mean((0, 1))) / (a.std((0, 1)) + 1e-6) * t.std((0, 1)) + t.mean((0, 1))
    return (np.clip(lab2rgb(matched), 0, 1) * 255).round().astype(np.uint8)


def run(model, reference: np.ndarray, class_name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the output, its stage-1 result assembled from the stage-1 tiles)."""
    tiles, image = [], None
    for event in synthesize(
        model, reference, SynthesisSettings(class_name, height=SIZE, width=SIZE, seed=seed)
    ):
        if isinstance(event, TileDecoded) and event.stage == 1:
            tiles.append(event)
        elif isinstance(event, Finished):
            image = np.asarray(event.image)
    assert image is not None and tiles
    stage1 = np.zeros((max(t.box.y1 for t in tiles), max(t.box.x1 for t in tiles), 3), np.uint8)
    for t in tiles:
        stage1[t.box.y0 : t.box.y1, t.box.x0 : t.box.x1] = t.rgb
    return image, stage1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--class", dest="class_name", default="normal")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "demo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    index = discover(args.data)
    if args.class_name not in index.classes:
        raise SystemExit(f"--class {args.class_name}: not a class of {args.data} ({list(index.classes)})")
    extractor = get_extractor("effnet-lite0", device="cpu")
    tissue = select.SelectionTissue.of(index, extractor, 128, 200, [args.class_name])
    model = load_model(args.model).to("cpu", select_dtype("auto", torch.device("cpu")))
    sets: dict[str, list[np.ndarray]] = {
        "raw": [],
        "matched to its reference": [],
        "matched to its stage 1": [],
        "Macenko to its reference, fitted on the output": [],
        "Macenko to its reference, fitted on stage 1": [],
    }
    for seed in SEEDS:
        reference = read_image(reference_for_class(model, args.class_name, seed))
        image, stage1 = run(model, reference, args.class_name, seed)
        sets["raw"] += grid_tiles(image, select.CROP)
        sets["matched to its reference"] += grid_tiles(reinhard(image, reference), select.CROP)
        sets["matched to its stage 1"] += grid_tiles(reinhard(image, stage1), select.CROP)
        target = fit(reference, name="reference")
        for fitted_on, source in (("the output", image), ("stage 1", stage1)):
            matched = StainMatch(fit(source), target)(image)
            sets[f"Macenko to its reference, fitted on {fitted_on}"] += grid_tiles(matched, select.CROP)
    print(f"{args.model}, {args.class_name}, seeds {SEEDS[0]}-{SEEDS[-1]}, {SIZE}x{SIZE} (training areas)")
    for name, tiles in sets.items():
        score = tissue.score(tiles, args.class_name, 64, 5)
        print(
            f"  {name}: {score['tiles']} tiles, FD {score['fd']:.1f}, sharpness "
            f"{score['sharpness_ratio']:.2f}, class fidelity {score['fidelity']:.2f}, nucleus area "
            f"{score['nucleus_area_px']:.0f} px"
        )


if __name__ == "__main__":
    main()
