"""Time ``pathup evaluate``'s parts on the shipped demo data: planning, features, heads, a cached rerun.

The setting of docs/evaluate.md: normal against tumour, 256-pixel RoIs embedded whole at 256 px
and as 128-pixel tiles by the bundled EfficientNet-Lite0, 2 folds grouped by source image. Prints
the machine, then a markdown table of wall and CPU seconds (CPU: this process, all threads) per
part; ``--store`` adds a synthetic store (the --out folder of pathup augment).

    python benchmarks/bench_evaluate.py
    python benchmarks/bench_evaluate.py --store store/
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import machine_info, markdown_table
from napari_pathup.evaluation.data import add_synthetic, collect_real
from napari_pathup.evaluation.folds import make_folds
from napari_pathup.evaluation.mil import train_mil
from napari_pathup.evaluation.run import EvaluateSettings, FeatureCache, evaluate, fit_predict_single
from napari_pathup.metrics import get_extractor

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


class Clock:
    """``with Clock() as c: ...`` then ``c.wall`` and ``c.cpu`` (seconds)."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, help="synthetic store to add (pathup augment --out)")
    args = parser.parse_args()
    settings = EvaluateSettings(folds=2, image_size=256, tile_size=128)
    print(machine_info())
    rows = []

    with Clock() as c:
        data = collect_real(DEMO, classes=["normal", "tumour"], roi_size=256)
        if args.store is not None:
            add_synthetic(data, args.store, roi_size=256)
    items = data.real + data.synthetic
    rows.append(["read images, cut tissue RoIs", len(items), f"{c.wall:.1f}", f"{c.cpu:.1f}", ""])

    extractor = get_extractor("effnet-lite0", device="cpu")
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = FeatureCache(extractor, settings, Path(cache_dir))
        with Clock() as c:
            feats = cache.features(items)
        tiles = sum(len(f.tiles) for f in feats)
        rows.append(
            [
                f"features, EfficientNet-Lite0 ({len(items)} RoIs at 256 px + {tiles} tiles at 128 px)",
                len(items),
                f"{c.wall:.1f}",
                f"{c.cpu:.1f}",
                f"{1000 * c.wall / len(items):.0f} ms/RoI",
            ]
        )
        real = feats[: len(data.real)]
        y = np.array([it.class_index for it in data.real])
        single = np.stack([f.single for f in real])
        folds = make_folds(y.tolist(), [it.group for it in data.real], settings.folds, seed=0)
        with Clock() as c:
            for fold in folds:
                fit_predict_single(single[fold.train], y[fold.train], single[fold.val], settings)
        rows.append(
            ["single-instance head, all folds (real)", len(folds), f"{c.wall:.1f}", f"{c.cpu:.1f}", ""]
        )
        with Clock() as c:
            for fold in folds:
                train_mil(
                    [real[i].tiles for i in fold.train], y[fold.train].tolist(), 2, settings=settings.mil
                )
        rows.append(
            [f"MIL head ({settings.mil.epochs} epochs), all folds (real)", len(folds), f"{c.wall:.1f}",
             f"{c.cpu:.1f}", ""]
        )  # fmt: skip
        with Clock() as c:
            report = evaluate(data, extractor, settings, cache_folder=Path(cache_dir))
        rows.append(
            [f"whole evaluate() again, features from --cache ({report.features_computed} embedded)",
             len(items), f"{c.wall:.1f}", f"{c.cpu:.1f}", ""]
        )  # fmt: skip
    print(markdown_table(["part", "items", "wall s", "CPU s", "rate"], rows))


if __name__ == "__main__":
    main()
