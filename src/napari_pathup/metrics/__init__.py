"""Quality metrics for synthetic H&E images: FID/FD, KID/KD, improved precision/recall, density, coverage,
and two that need no feature network: sharpness (high-frequency power share) and nucleus morphology.

No Qt or napari here. ``compute_metrics`` compares two image sets end to end; the functions of
:mod:`~napari_pathup.metrics.distances` work from feature arrays. Only the FID Inception-v3 with
its published weights yields FID/KID; other feature spaces are labelled FD/KD with their name.
Nothing is downloaded: weights come from local files or from installed packages.
"""

from napari_pathup.metrics.compute import compute_metrics, set_features
from napari_pathup.metrics.distances import (
    FeatureMetrics,
    GaussianStats,
    KIDResult,
    MetricsWarning,
    PRDCResult,
    compute_feature_metrics,
    frechet_distance,
    gaussian_stats,
    kid,
    prdc,
)
from napari_pathup.metrics.features import (
    EXTRACTORS,
    INCEPTION_ENV,
    FeatureExtractor,
    effnet_lite0_extractor,
    extract_features,
    get_extractor,
    inception_extractor,
    module_extractor,
    register_extractor,
    timm_extractor,
)
from napari_pathup.metrics.images import RESIZE_METHODS, image_set
from napari_pathup.metrics.nuclei import (
    NucleusStats,
    haematoxylin_components,
    haematoxylin_threshold,
    otsu_threshold,
)
from napari_pathup.metrics.report import MetricsReport, SetSummary
from napari_pathup.metrics.sharpness import edge_contrast, high_frequency_share, sharpness_ratio

__all__ = [
    "EXTRACTORS",
    "INCEPTION_ENV",
    "RESIZE_METHODS",
    "FeatureExtractor",
    "FeatureMetrics",
    "GaussianStats",
    "KIDResult",
    "MetricsReport",
    "MetricsWarning",
    "NucleusStats",
    "PRDCResult",
    "SetSummary",
    "compute_feature_metrics",
    "compute_metrics",
    "edge_contrast",
    "effnet_lite0_extractor",
    "extract_features",
    "frechet_distance",
    "gaussian_stats",
    "get_extractor",
    "haematoxylin_components",
    "haematoxylin_threshold",
    "high_frequency_share",
    "image_set",
    "inception_extractor",
    "kid",
    "module_extractor",
    "otsu_threshold",
    "prdc",
    "register_extractor",
    "set_features",
    "sharpness_ratio",
    "timm_extractor",
]
