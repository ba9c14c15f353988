"""From two image sets to a ``MetricsReport``: read, crop, resize, extract features, compare."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from napari_pathup.errors import InputError
from napari_pathup.metrics.distances import (
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    NEAREST_K,
    SEED,
    Ball,
    FDMethod,
    compute_feature_metrics,
)
from napari_pathup.metrics.features import FeatureExtractor, extract_features, get_extractor
from napari_pathup.metrics.images import (
    ImageSet,
    ImageSource,
    ResizeMethod,
    check_crop_size,
    image_set,
    tiles,
)
from napari_pathup.metrics.report import MetricsReport, SetSummary


def set_features(
    extractor: FeatureExtractor,
    images: ImageSet,
    *,
    crops: int | None = None,
    batch_size: int = 32,
    progress: bool = False,
    what: str = "images",
    on_image: Callable[[str, int, int], None] | None = None,
) -> tuple[np.ndarray, SetSummary]:
    """Features of every image (or every crop) of a set, with its summary.

    ``on_image(what, done, total)`` is called after each image's crops have been handed to the
    network (progress for GUIs); an exception it raises stops the computation (cancellation).
    """
    bar = tqdm(total=len(images), desc=f"{what} features", unit="img", disable=not progress, file=sys.stderr)

    def samples():
        for done, (name, image) in enumerate(images.images(), start=1):
            yield from tiles(image, crops, name)
            bar.update(1)
            if on_image is not None:
                on_image(what, done, len(images))

    try:
        feats = extract_features(extractor, samples(), batch_size=batch_size)
    finally:
        bar.close()
    return feats, SetSummary(source=images.source, n_images=len(images), n_samples=len(feats))


def compute_metrics(
    real: ImageSource,
    synth: ImageSource,
    *,
    extractor: str | FeatureExtractor = "auto",
    inception_weights: str | Path | None = None,
    weights: str | Path | None = None,
    crops: int | None = None,
    resize: ResizeMethod | None = None,
    batch_size: int = 32,
    k: int = NEAREST_K,
    ball: Ball = "closed",
    kid_subsets: int = KID_SUBSETS,
    kid_subset_size: int = KID_SUBSET_SIZE,
    seed: int = SEED,
    fd_method: FDMethod = "auto",
    device: str | None = None,
    progress: bool = False,
    on_image: Callable[[str, int, int], None] | None = None,
) -> MetricsReport:
    """Compare real and synthetic images (folders, file lists or RGB arrays) in one feature space.

    ``extractor`` is a name (``auto``, ``inception``, ``effnet-lite0``, ``timm:MODEL``) or a
    ``FeatureExtractor``; ``auto`` uses the FID Inception when its weights are given or named by
    ``$PATHUP_INCEPTION_WEIGHTS`` and EfficientNet-Lite0 otherwise. ``crops`` cuts every image into
    non-overlapping tiles of that size before resizing. Errors (missing weights, empty folder,
    unreadable image) raise ``InputError``; nothing falls back silently. ``on_image`` reports
    progress per image (see ``set_features``).
    """
    real_set = image_set(real, "real")
    synth_set = image_set(synth, "synthetic")
    check_crop_size(real_set, crops)
    check_crop_size(synth_set, crops)
    if isinstance(extractor, str):
        extractor = get_extractor(
            extractor,
            inception_weights=inception_weights,
            weights=weights,
            resize_method=resize,
            device=device,
        )
    elif resize is not None and resize != extractor.resize:
        raise InputError("pass resize to the FeatureExtractor when giving one, not to compute_metrics")
    opts: dict[str, Any] = {
        "crops": crops,
        "batch_size": batch_size,
        "progress": progress,
        "on_image": on_image,
    }
    real_feats, real_summary = set_features(extractor, real_set, what="real", **opts)
    synth_feats, synth_summary = set_features(extractor, synth_set, what="synthetic", **opts)
    result = compute_feature_metrics(
        real_feats,
        synth_feats,
        k=k,
        ball=ball,
        kid_subsets_count=kid_subsets,
        kid_subset_size_requested=kid_subset_size,
        seed=seed,
        fd_method=fd_method,
    )
    notes = []
    if result.kid.subset_size < kid_subset_size:
        notes.append(
            f"KID subsets shrunk from {kid_subset_size} to {result.kid.subset_size} samples (smaller sets); "
            "values are noisier and comparable only at the same subset size"
        )
    if min(result.n_real, result.n_synth) <= result.feature_dim:
        notes.append(
            f"fewer samples than feature dimensions ({result.feature_dim}): covariances are singular and "
            "the Fréchet distance is biased upwards; compare values only at equal sample counts"
        )
    return MetricsReport(
        extractor=extractor.provenance(),
        is_fid=extractor.is_fid,
        frechet_distance=result.frechet_distance,
        kid=result.kid,
        prdc=result.prdc,
        real=real_summary,
        synth=synth_summary,
        crops=crops,
        device=str(extractor.device),
        fd_method=result.fd_method,
        notes=notes,
    )
