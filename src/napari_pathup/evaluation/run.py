"""``pathup evaluate``: does augmenting the training folds with synthetic images help a classifier?

As in the PathUp paper's downstream evaluation: a frozen backbone gives features of every item
(resized whole, for a single-instance head; tile by tile, for gated attention MIL), folds are
stratified by class and grouped by source image (:mod:`~napari_pathup.evaluation.folds`), and each
classifier is trained per fold on the real training items alone, then on them plus the synthetic
images whose reference is not in that fold's validation. Validation is always real only.
Features are computed once per item and reused by every fold, setting and classifier.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_pathup.datasets import tissue_mask
from napari_pathup.errors import InputError
from napari_pathup.evaluation.data import EvaluationData, EvaluationItem
from napari_pathup.evaluation.folds import check_fold_count, make_folds
from napari_pathup.evaluation.mil import MILSettings, train_mil
from napari_pathup.evaluation.report import EvaluationReport, FoldResult
from napari_pathup.geometry import window_starts
from napari_pathup.io.atomic import replace_atomically
from napari_pathup.io.images import read_image
from napari_pathup.metrics.features import FeatureExtractor, extract_features

#: tiles with less tissue than this are left out of a MIL bag (the bag keeps at least its best tile)
TILE_MIN_TISSUE = 0.25
#: backbones whose input size is fixed by their weights (position embeddings, FID reference)
FIXED_INPUT_PREFIXES = ("timm:", "inception")


@dataclass
class EvaluateSettings:
    """Everything that shapes the result besides the data and the backbone."""

    folds: int = 5
    image_size: int = 512
    tile_size: int = 512
    seed: int = 0
    batch_size: int = 16
    mil: MILSettings = field(default_factory=MILSettings)
    logistic_c: float = 1.0


@dataclass
class ItemFeatures:
    """The whole-item feature (D,) and the tile features (K, D) of one item."""

    single: np.ndarray
    tiles: np.ndarray


def image_tiles(image: np.ndarray, tile: int) -> list[np.ndarray]:
    """``tile`` x ``tile`` tiles covering the image; a side shorter than ``tile`` is padded with white
    (glass), never resized, so tiles keep the image's magnification. Tiles with under
    :data:`TILE_MIN_TISSUE` tissue are dropped, but the tile with the most tissue is always kept."""
    h, w = image.shape[:2]
    if h < tile or w < tile:
        padded = np.full((max(h, tile), max(w, tile), 3), 255, np.uint8)
        padded[:h, :w] = image
        image, h, w = padded, max(h, tile), max(w, tile)
    ys, xs = window_starts(h, tile, edge="spread"), window_starts(w, tile, edge="spread")
    tiles = [image[y : y + tile, x : x + tile] for y in ys for x in xs]
    tissue = [float(tissue_mask(t).mean()) for t in tiles]
    keep = [t for t, f in zip(tiles, tissue, strict=True) if f >= TILE_MIN_TISSUE]
    return keep or [tiles[int(np.argmax(tissue))]]


def sized_extractors(
    extractor: FeatureExtractor, settings: EvaluateSettings
) -> tuple[FeatureExtractor, FeatureExtractor]:
    """(whole-item extractor, tile extractor). Convolutional backbones see the item resized to
    ``image_size`` and tiles at ``tile_size``; fixed-input backbones (timm, Inception) keep their own
    input size, to which both are resized."""
    if extractor.name.startswith(FIXED_INPUT_PREFIXES):
        return extractor, extractor
    single = dataclasses.replace(extractor, input_size=(settings.image_size, settings.image_size))
    tiles = dataclasses.replace(extractor, input_size=(settings.tile_size, settings.tile_size))
    return single, tiles


class FeatureCache:
    """Features per item, in memory and (with ``folder``) on disk as ``<key>.npz``.

    The key hashes the item (file, its size and modification time, RoI box), the backbone provenance
    (name, weights checksum, resize, input sizes) and the tile size, so a changed input recomputes.
    """

    def __init__(self, extractor: FeatureExtractor, settings: EvaluateSettings, folder: Path | None = None):
        self.single_extractor, self.tile_extractor = sized_extractors(extractor, settings)
        self.settings = settings
        self.folder = folder
        self.memory: dict[str, ItemFeatures] = {}
        self.computed = 0
        self._context = repr(
            (
                self.single_extractor.provenance(),
                self.tile_extractor.provenance(),
                settings.tile_size,
                TILE_MIN_TISSUE,
            )
        )

    def key(self, item: EvaluationItem) -> str:
        stat = item.path.stat()
        text = repr((str(item.path.resolve()), stat.st_size, stat.st_mtime_ns, item.box, self._context))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _load(self, key: str) -> ItemFeatures | None:
        if self.folder is None or not (self.folder / f"{key}.npz").is_file():
            return None
        with np.load(self.folder / f"{key}.npz") as f:
            return ItemFeatures(f["single"], f["tiles"])

    def _save(self, key: str, features: ItemFeatures) -> None:
        if self.folder is None:
            return
        replace_atomically(
            self.folder / f"{key}.npz", lambda t: np.savez(t, single=features.single, tiles=features.tiles)
        )

    def features(
        self, items: list[EvaluationItem], on_item: Callable[[], None] | None = None
    ) -> list[ItemFeatures]:
        """Features of ``items`` in order; each source image is read once for all its RoIs."""
        keys = [self.key(it) for it in items]
        for k in keys:
            if k not in self.memory and (cached := self._load(k)) is not None:
                self.memory[k] = cached
        todo: dict[Path, list[int]] = {}
        for i, (it, k) in enumerate(zip(items, keys, strict=True)):
            if k not in self.memory:
                todo.setdefault(it.path, []).append(i)
            elif on_item is not None:
                on_item()
        for path, indices in todo.items():
            image = read_image(path)
            for i in indices:
                if keys[i] in self.memory:  # the same RoI listed twice
                    continue
                pixels = items[i].pixels(image)
                single = self._embed(self.single_extractor, [pixels])[0]
                tiles = self._embed(self.tile_extractor, image_tiles(pixels, self.settings.tile_size))
                self.memory[keys[i]] = ItemFeatures(single, tiles)
                self._save(keys[i], self.memory[keys[i]])
                self.computed += 1
                if on_item is not None:
                    on_item()
        return [self.memory[k] for k in keys]

    def _embed(self, extractor: FeatureExtractor, images: Iterable[np.ndarray]) -> np.ndarray:
        return extract_features(extractor, images, batch_size=self.settings.batch_size)


# -------------------------------------------------------------------------------------- classifiers


def fit_predict_single(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, settings: EvaluateSettings
) -> np.ndarray:
    """Standardised features → multinomial logistic regression (balanced classes); predicted labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = make_pipeline(
        StandardScaler(),
        LogisticRegression(
            C=settings.logistic_c, max_iter=5000, class_weight="balanced", random_state=settings.seed
        ),
    )
    head.fit(train_x, train_y)
    return head.predict(val_x)


def fit_predict_mil(
    train_bags: list[np.ndarray],
    train_y: np.ndarray,
    val_bags: list[np.ndarray],
    n_classes: int,
    seed: int,
    settings: EvaluateSettings,
) -> np.ndarray:
    """Train a gated attention MIL head on the training bags; predicted labels of the validation bags."""
    clf = train_mil(train_bags, train_y.tolist(), n_classes, seed=seed, settings=settings.mil)
    return clf.predict(val_bags)


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[float, float, tuple]:
    """(accuracy, weighted F1 (the BRACS convention), confusion matrix rows=true, columns=predicted)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    accuracy = float(accuracy_score(y_true, y_pred))
    f1 = float(f1_score(y_true, y_pred, average="weighted", zero_division=0))
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))
    return accuracy, f1, tuple(tuple(int(v) for v in row) for row in matrix)


# ---------------------------------------------------------------------------------------- the loop


def evaluate(
    data: EvaluationData,
    extractor: FeatureExtractor,
    settings: EvaluateSettings | None = None,
    *,
    cache_folder: Path | None = None,
    progress: Callable[[int], Callable[[], None]] | None = None,
) -> EvaluationReport:
    """Cross-validate both classifiers with real training data and, when ``data`` has synthetic items,
    with real plus synthetic (nothing is written here).

    Args:
        data: from :func:`~napari_pathup.evaluation.data.collect_real` (and
            :func:`~napari_pathup.evaluation.data.add_synthetic`).
        extractor: the frozen backbone (:func:`~napari_pathup.metrics.features.get_extractor`).
        settings: folds, image and tile sizes, seed, MIL settings.
        cache_folder: where features are cached between runs (None: no cache).
        progress: ``progress(total)`` may return a callback called once per item whose features are ready.

    Returns:
        The :class:`~napari_pathup.evaluation.report.EvaluationReport` (per fold and summary scores).

    Raises:
        InputError: fewer than two classes, or fewer groups per class than folds (checked before any
            feature is computed).
    """
    s = settings or EvaluateSettings()
    labels = [it.class_index for it in data.real]
    groups = [it.group for it in data.real]
    check_fold_count(labels, groups, data.classes, s.folds, data.group_kind)
    folds = make_folds(
        labels, groups, s.folds, seed=s.seed, synthetic_groups=[it.group for it in data.synthetic]
    )

    cache = FeatureCache(extractor, s, cache_folder)
    everything = data.real + data.synthetic
    tick = progress(len(everything)) if progress is not None else None
    feats = cache.features(everything, tick)
    real_f, synth_f = feats[: len(data.real)], feats[len(data.real) :]
    y = np.asarray(labels)
    y_synth = np.asarray([it.class_index for it in data.synthetic], dtype=np.int64)
    single = np.stack([f.single for f in real_f])
    single_synth = np.stack([f.single for f in synth_f]) if synth_f else np.zeros((0, single.shape[1]))

    settings_names = ["real"] + (["real + synthetic"] if data.synthetic else [])
    results: list[FoldResult] = []
    for fold in folds:
        for setting in settings_names:
            use = fold.synthetic if setting != "real" else np.zeros(0, np.int64)
            train_y = np.concatenate([y[fold.train], y_synth[use]])
            counts = (len(fold.train), len(use), len(fold.val), fold.val_groups)
            train_x = np.concatenate([single[fold.train], single_synth[use]])
            bags = [real_f[i].tiles for i in fold.train] + [synth_f[i].tiles for i in use]
            val_bags = [real_f[i].tiles for i in fold.val]
            predictions = {
                "single-instance": fit_predict_single(train_x, train_y, single[fold.val], s),
                "MIL (gated attention)": fit_predict_mil(
                    bags, train_y, val_bags, len(data.classes), s.seed * 1000 + fold.index, s
                ),
            }
            for name, pred in predictions.items():
                accuracy, f1, confusion = scores(y[fold.val], pred, len(data.classes))
                results.append(FoldResult(name, setting, fold.index, accuracy, f1, *counts, confusion))
    tiles = [len(f.tiles) for f in real_f]
    return EvaluationReport(
        data=data,
        extractor=cache.single_extractor.provenance(),
        tile_extractor=cache.tile_extractor.provenance(),
        settings=s,
        results=results,
        tiles_per_item=(min(tiles), float(np.mean(tiles)), max(tiles)),
        features_computed=cache.computed,
    )


def check_backbone_weights(backbone: str, weights: Path | None) -> None:
    """timm backbones take local ``.safetensors`` weights only (nothing is downloaded, no pickle)."""
    if backbone == "timm:":
        raise InputError("--backbone timm:NAME needs a model name, e.g. timm:vit_large_patch16_224")
    if not backbone.startswith("timm:"):
        if weights is not None:
            raise InputError("--backbone-weights is for --backbone timm:NAME only")
        return
    if weights is None:
        raise InputError(
            f"--backbone {backbone} needs --backbone-weights FILE.safetensors; nothing is downloaded"
        )
    if weights.suffix != ".safetensors":
        raise InputError(
            f"--backbone-weights {weights}: expected a .safetensors file (pickles are never loaded)"
        )
    if not weights.is_file():
        raise InputError(f"--backbone-weights {weights}: no such file")
