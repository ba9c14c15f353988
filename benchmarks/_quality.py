"""Helpers of ``bench_default_model.py``: real crops (hold-out and training areas), timed synthesis
runs, and the quality measures (PSNR, matched Fréchet distances, stain statistics, sharpness, nucleus
morphology, a linear probe), and the contact sheet.

Everything reads the hold-out rectangles through ``napari_pathup.datasets`` so that the
benchmark and training agree on which pixels are held out.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_pathup.datasets import DatasetIndex, tissue_mask, training_regions
from napari_pathup.engine.events import Finished, StageStarted, TileDecoded
from napari_pathup.engine.pipeline import SynthesisSettings, synthesize
from napari_pathup.models.base import Autoencoder, DenoiserFn, PathupModel

# ------------------------------------------------------------------------------------------ crops


@dataclass
class RealCrops:
    """Crops of real images: ``half`` splits them into two interleaved sets (0: A, 1: B)."""

    images: list[np.ndarray]
    labels: np.ndarray
    half: np.ndarray
    sources: list[str]

    def of(self, label: int, half: int | None = None) -> list[int]:
        ok = self.labels == label
        if half is not None:
            ok &= self.half == half
        return [int(i) for i in np.flatnonzero(ok)]


def holdout_crops(
    index: DatasetIndex, arrays: list[np.ndarray], size: int, stride: int, min_tissue: float
) -> RealCrops:
    """``size`` crops on a ``stride`` grid inside every hold-out rectangle, with at least ``min_tissue``
    tissue; crop (i, j) of the grid goes to half (i + j) % 2 (a checkerboard, so that both halves
    cover the same structures)."""
    images, labels, halves, sources = [], [], [], []
    for entry, rgb in zip(index.images, arrays, strict=True):
        r = entry.holdout
        if r is None:
            continue
        for i, y in enumerate(range(r.y0, r.y1 - size + 1, stride)):
            for j, x in enumerate(range(r.x0, r.x1 - size + 1, stride)):
                tile = rgb[y : y + size, x : x + size]
                if tissue_mask(tile).mean() >= min_tissue:
                    images.append(np.ascontiguousarray(tile))
                    labels.append(index.classes.index(entry.class_name))
                    halves.append((i + j) % 2)
                    sources.append(entry.key)
    return RealCrops(images, np.array(labels, int), np.array(halves, int), sources)


def training_crops(
    index: DatasetIndex,
    arrays: list[np.ndarray],
    size: int,
    stride: int,
    min_tissue: float,
    per_class: int,
    seed: int = 0,
) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Tissue crops on a ``stride`` grid inside the training bands (never touching a hold-out), at
    most ``per_class`` per class (a seeded subset); with their labels and their images' keys."""
    by_class: dict[int, list[tuple[np.ndarray, str]]] = {}
    for entry, rgb in zip(index.images, arrays, strict=True):
        label = index.classes.index(entry.class_name)
        seen: set[tuple[int, int]] = set()
        for band in training_regions(rgb.shape[0], rgb.shape[1], entry.holdout, min_side=size):
            for y in range(band.y0, band.y1 - size + 1, stride):
                for x in range(band.x0, band.x1 - size + 1, stride):
                    tile = rgb[y : y + size, x : x + size]
                    if (y, x) not in seen and tissue_mask(tile).mean() >= min_tissue:
                        seen.add((y, x))
                        by_class.setdefault(label, []).append((np.ascontiguousarray(tile), entry.key))
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    labels: list[int] = []
    sources: list[str] = []
    for label, tiles in sorted(by_class.items()):
        keep = sorted(rng.choice(len(tiles), min(per_class, len(tiles)), replace=False))
        images += [tiles[k][0] for k in keep]
        sources += [tiles[k][1] for k in keep]
        labels += [label] * len(keep)
    return images, np.array(labels, int), sources


def grid_tiles(image: np.ndarray, size: int, stride: int | None = None) -> list[np.ndarray]:
    """``size`` crops of an image on a ``stride`` grid (default ``size``: non-overlapping), raster order."""
    h, w = image.shape[:2]
    step = stride or size
    return [
        np.ascontiguousarray(image[y : y + size, x : x + size])
        for y in range(0, h - size + 1, step)
        for x in range(0, w - size + 1, step)
    ]


def tissue_selection(crops: list[np.ndarray], min_tissue: float) -> tuple[np.ndarray, float]:
    """Indices of the crops with at least ``min_tissue`` tissue (the rule the real crops pass) and the
    kept fraction; all indices when none pass (so that a washed-out result is still measured, not hidden)."""
    passed = np.flatnonzero([tissue_mask(c).mean() >= min_tissue for c in crops])
    return (passed if len(passed) else np.arange(len(crops))), len(passed) / max(len(crops), 1)


def with_tissue(crops: list[np.ndarray], min_tissue: float) -> tuple[list[np.ndarray], float]:
    """The crops ``tissue_selection`` keeps, and the kept fraction."""
    index, fraction = tissue_selection(crops, min_tissue)
    return [crops[i] for i in index], fraction


def colour_noise(crops: list[np.ndarray], count: int, size: int, seed: int) -> list[np.ndarray]:
    """Gaussian noise crops with the mean colour and the RGB covariance of ``crops``."""
    pixels = np.concatenate([c.reshape(-1, 3) for c in crops]).astype(np.float64)
    mean, cov = pixels.mean(0), np.cov(pixels, rowvar=False)
    rng = np.random.default_rng(seed)
    out = rng.multivariate_normal(mean, cov, size=(count, size, size), method="cholesky")
    return list(np.clip(out.round(), 0, 255).astype(np.uint8))


def upsample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize (PIL) of an (H, W, 3) uint8 image."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


# ------------------------------------------------------------------------------------------- runs


class CountingDenoiser:
    """Wraps ``model.denoiser``; counts patch evaluations (batch rows, so guidance counts twice)."""

    def __init__(self, denoiser: DenoiserFn) -> None:
        self.denoiser = denoiser
        self.evaluations = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.evaluations += x.shape[0]
        return self.denoiser(x, t, cond)


@dataclass
class TimedRun:
    """A finished synthesis with wall times per stage (seconds) and denoiser patch evaluations."""

    image: np.ndarray
    stage_one: np.ndarray
    settings: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    evaluations: dict[str, int] = field(default_factory=dict)


def timed_run(model: PathupModel, reference: np.ndarray, settings: SynthesisSettings) -> TimedRun:
    """Run Algorithm 1, timing its parts from the events.

    stage 1 = start to the last stage-1 decoded tile (reference encode, sampling and decode at 512);
    encode = that to StageStarted(2) (resize to the output size and tiled encode); decode = the
    stage-2 tiles (the first one counted as an average tile); stage 2 sampling = StageStarted(2) to
    the first stage-2 tile, less one average tile.
    """
    counter = CountingDenoiser(model.denoiser)
    model.denoiser, original = counter, model.denoiser
    marks: dict[str, float] = {}
    stage_one_evaluations, tiles2, finished = 0, 0, None
    start = time.perf_counter()
    try:
        for event in synthesize(model, reference, settings):
            now = time.perf_counter()
            if isinstance(event, StageStarted) and event.stage == 2:
                marks["start2"], stage_one_evaluations = now, counter.evaluations
            elif isinstance(event, TileDecoded) and event.stage == 1:
                marks["decoded1"] = now
            elif isinstance(event, TileDecoded):
                marks.setdefault("first2", now)
                marks["decoded2"], tiles2 = now, event.tiles
            elif isinstance(event, Finished):
                finished = event
        end = time.perf_counter()
    finally:
        model.denoiser = original
    assert finished is not None
    tile = (marks["decoded2"] - marks["first2"]) / (tiles2 - 1) if tiles2 > 1 else 0.0
    seconds = {
        "stage 1": marks["decoded1"] - start,
        "encode": marks["start2"] - marks["decoded1"],
        "stage 2 sampling": marks["first2"] - marks["start2"] - tile,
        "decode": marks["decoded2"] - marks["first2"] + tile,
        "total": end - start,
    }
    evaluations = {
        "stage 1": stage_one_evaluations,
        "stage 2": counter.evaluations - stage_one_evaluations,
        "total": counter.evaluations,
    }
    return TimedRun(
        np.asarray(finished.image),
        finished.reference,
        finished.settings,
        seconds,
        evaluations,
    )


# --------------------------------------------------------------------------------------- measures


def to_unit(crops: list[np.ndarray]) -> torch.Tensor:
    """(N, H, W, 3) uint8 → (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1


def reconstruct(autoencoder: Autoencoder, crops: list[np.ndarray], batch: int = 8) -> list[np.ndarray]:
    """decode(encode(crop)) of every crop, as uint8 (the autoencoder alone, untiled)."""
    out: list[np.ndarray] = []
    for i in range(0, len(crops), batch):
        x = to_unit(crops[i : i + batch])
        y = autoencoder.decode(autoencoder.encode(x)).float().cpu()
        out += list(((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return out


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """PSNR (dB, 8-bit) of the pooled squared error of two crop lists (training's definition)."""
    mse = np.mean(
        [np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2) for x, y in zip(a, b, strict=True)]
    )
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def matched_fd(
    reference: np.ndarray, pools: list[np.ndarray], sizes: list[int], draws: int, seed: int
) -> float:
    """Fréchet distance of ``reference`` to a set of ``sizes[k]`` rows from each of ``pools``: the
    mean over ``draws`` seeded subsets (one draw when no pool is larger than its size), so that every
    set is compared at the same sample count (the Fréchet distance grows as the count shrinks)."""
    from napari_pathup.metrics import frechet_distance

    if len(reference) < 2 or sum(min(n, len(p)) for p, n in zip(pools, sizes, strict=True)) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    draws = draws if any(len(p) > n for p, n in zip(pools, sizes, strict=True)) else 1
    values = []
    for _ in range(draws):
        parts = [
            p if len(p) <= n else p[rng.choice(len(p), n, replace=False)]
            for p, n in zip(pools, sizes, strict=True)
        ]
        values.append(frechet_distance(reference, np.concatenate(parts)))
    return float(np.mean(values))


def hed_stats(crops: list[np.ndarray]) -> dict[str, float]:
    """Mean and standard deviation over all pixels of the haematoxylin and eosin optical densities
    (colour deconvolution: ``napari_pathup.metrics.stain.rgb_to_hed``, equal to skimage's ``rgb2hed``)."""
    from napari_pathup.metrics.stain import rgb_to_hed

    total, square, count = np.zeros(3), np.zeros(3), 0
    for crop in crops:
        hed = rgb_to_hed(crop).reshape(-1, 3)
        total += hed.sum(0)
        square += (hed**2).sum(0)
        count += len(hed)
    mean = total / count
    std = np.sqrt(np.maximum(square / count - mean**2, 0))
    return {"H mean": mean[0], "H std": std[0], "E mean": mean[1], "E std": std[1]}


@dataclass
class Morphology:
    """Per-crop summaries of the haematoxylin-dense components (``metrics.nuclei``) of a crop set:
    components per crop, and the median area (px) and median solidity of each crop with components."""

    count: np.ndarray
    area: np.ndarray
    solidity: np.ndarray

    @classmethod
    def of(cls, crops: list[np.ndarray], threshold: float) -> Morphology:
        from napari_pathup.metrics.nuclei import haematoxylin_components

        stats = [haematoxylin_components(c, threshold) for c in crops]
        found = [s for s in stats if s.count]
        return cls(
            np.array([s.count for s in stats], float),
            np.array([s.median_area for s in found], float),
            np.array([s.median_solidity for s in found], float),
        )

    @classmethod
    def joined(cls, parts: list[Morphology]) -> Morphology:
        """The crop sets of ``parts`` as one, in order: what ``of`` gives for their crops concatenated."""
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("count", "area", "solidity")))

    @property
    def median_area(self) -> float:
        """The median over crops of each crop's median component area (NaN when no crop has one)."""
        return float(np.median(self.area)) if len(self.area) else math.nan

    @property
    def median_solidity(self) -> float:
        """The median over crops of each crop's median solidity (NaN when no crop has one)."""
        return float(np.median(self.solidity)) if len(self.solidity) else math.nan


def sharpness_values(crops: list[np.ndarray]) -> np.ndarray:
    """``high_frequency_share`` of every crop."""
    from napari_pathup.metrics.sharpness import high_frequency_share

    return np.array([high_frequency_share(c) for c in crops], float)


def edge_values(crops: list[np.ndarray]) -> np.ndarray:
    """``edge_contrast`` of every crop (the steepness of its strongest edges; grain hardly moves it)."""
    from napari_pathup.metrics.sharpness import edge_contrast

    return np.array([edge_contrast(c) for c in crops], float)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, seed: int = 0) -> tuple[str, Any]:
    """A standardised multinomial logistic regression: (description, predict function)."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return "torch softmax regression (sklearn not installed)", _torch_probe(train_x, train_y, seed)
    clf = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced", random_state=seed)
    )
    clf.fit(train_x, train_y)
    return "sklearn LogisticRegression (standardised, balanced class weights, C=1)", clf.predict


def _torch_probe(x: np.ndarray, y: np.ndarray, seed: int, steps: int = 500) -> Any:
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt, yt = torch.from_numpy((x - mean) / std).float(), torch.from_numpy(y).long()
    weight = torch.bincount(yt).float().reciprocal()
    layer = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    optimizer = torch.optim.LBFGS(layer.parameters(), max_iter=steps)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (
            torch.nn.functional.cross_entropy(layer(xt), yt, weight=weight)
            + 1e-3 * layer.weight.square().sum()
        )
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return lambda z: layer(torch.from_numpy((z - mean) / std).float()).argmax(1).numpy()


# ---------------------------------------------------------------------------------- contact sheet


def contact_sheet(
    classes: list[str],
    groups: list[tuple[str, dict[str, list[np.ndarray]]]],
    wholes: list[tuple[str, dict[str, np.ndarray]]],
    crop: int = 256,
) -> Any:
    """A PIL image, one row per class: each group of crops (e.g. real held-out, then each model's
    synthetic crops) as a 2-column grid at 1:1 (crops are pasted, never resized; crops of another size
    are centre-cropped or padded to ``crop``), then each whole image downscaled to fit the row height."""
    from PIL import Image, ImageDraw

    gap, label_w, head = 6, 70, 34
    per_group = max((len(g[1].get(c, [])) for g in groups for c in classes), default=1)
    rows_per = max(1, -(-per_group // 2))
    row_h = rows_per * crop + (rows_per - 1) * gap
    group_w = 2 * crop + gap
    x = label_w
    xs_group = []
    for _ in groups:
        xs_group.append(x)
        x += group_w + 4 * gap
    xs_whole = []
    for _ in wholes:
        xs_whole.append(x)
        x += row_h + 4 * gap
    sheet = Image.new("RGB", (x, head + len(classes) * (row_h + 4 * gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for (title, _), x0 in zip(groups, xs_group, strict=True):
        draw.text((x0, 4), f"{title}\n({crop}-px crops, 1:1)", fill="black")
    for (title, _), x0 in zip(wholes, xs_whole, strict=True):
        draw.text((x0, 4), f"{title}\n(whole image, downscaled)", fill="black")

    def fit(tile: np.ndarray) -> Image.Image:
        canvas = Image.new("RGB", (crop, crop), "white")
        h, w = tile.shape[:2]
        y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        canvas.paste(Image.fromarray(np.ascontiguousarray(tile[y0 : y0 + crop, x0 : x0 + crop, :3])))
        return canvas

    for r, name in enumerate(classes):
        y = head + r * (row_h + 4 * gap)
        draw.text((4, y + row_h // 2 - 6), name, fill="black")
        for (_, crops), x0 in zip(groups, xs_group, strict=True):
            for k, tile in enumerate(crops.get(name, [])):
                row, col = divmod(k, 2)
                sheet.paste(fit(tile), (x0 + col * (crop + gap), y + row * (crop + gap)))
        for (_, images), x0 in zip(wholes, xs_whole, strict=True):
            if name in images:
                small = Image.fromarray(images[name]).resize((row_h, row_h), Image.Resampling.LANCZOS)
                sheet.paste(small, (x0, y))
    return sheet
