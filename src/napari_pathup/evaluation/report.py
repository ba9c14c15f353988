"""The result of ``pathup evaluate``: per-fold scores, a table, JSON and a plot, naming the backbone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari_pathup.evaluation.data import EvaluationData
    from napari_pathup.evaluation.run import EvaluateSettings

CLASSIFIERS = ("single-instance", "MIL (gated attention)")


@dataclass(frozen=True)
class FoldResult:
    """Scores of one classifier, trained in one setting, on one validation fold."""

    classifier: str
    setting: str
    fold: int
    accuracy: float
    weighted_f1: float
    n_train_real: int
    n_train_synthetic: int
    n_val: int
    val_groups: tuple[str, ...]
    #: rows: true class, columns: predicted class (label order of the data's classes)
    confusion: tuple[tuple[int, ...], ...] = ()


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


@dataclass
class EvaluationReport:
    data: EvaluationData
    extractor: dict[str, Any]
    tile_extractor: dict[str, Any]
    settings: EvaluateSettings
    results: list[FoldResult]
    tiles_per_item: tuple[int, float, int]
    features_computed: int
    #: a preset run's protocol (architecture, input size, weights, learning rates, epochs, precision);
    #: None in the frozen-feature mode
    protocol: dict[str, Any] | None = None

    @property
    def backbone_label(self) -> str:
        return str(self.extractor["label"])

    def settings_names(self) -> list[str]:
        return list(dict.fromkeys(r.setting for r in self.results))

    def classifiers(self) -> list[str]:
        """The classifiers of the results, in order (:data:`CLASSIFIERS` in the frozen-feature mode)."""
        return list(dict.fromkeys(r.classifier for r in self.results))

    def summary(self) -> list[dict[str, Any]]:
        """One row per (classifier, setting): mean and std of accuracy and weighted F1 over the folds."""
        rows = []
        for clf in self.classifiers():
            for setting in self.settings_names():
                rs = [r for r in self.results if r.classifier == clf and r.setting == setting]
                acc, f1 = mean_std([r.accuracy for r in rs]), mean_std([r.weighted_f1 for r in rs])
                rows.append(
                    {
                        "classifier": clf,
                        "training_data": setting,
                        "accuracy_mean": acc[0],
                        "accuracy_std": acc[1],
                        "weighted_f1_mean": f1[0],
                        "weighted_f1_std": f1[1],
                        "folds": len(rs),
                        "synthetic_per_fold": [r.n_train_synthetic for r in rs],
                        "real_train_per_fold": [r.n_train_real for r in rs],
                    }
                )
        return rows

    def unit(self) -> str:
        return "RoIs" if any(it.box is not None for it in self.data.real) else "images"

    def describe_data(self) -> str:
        d = self.data
        n_real = len(d.real)
        unit = self.unit()
        counts = ", ".join(
            f"{c} {sum(it.class_index == i for it in d.real)}" for i, c in enumerate(d.classes)
        )
        text = f"{n_real} real {unit} ({counts}) from {d.n_sources} source images, {d.layout} layout"
        if d.store is not None:
            text += f"; {len(d.synthetic)} synthetic {unit} from {d.store}"
        return text

    def format_table(self) -> str:
        """The printed table, with the feature extractor, folds and grouping above it."""
        s = self.settings
        lo, mean_tiles, hi = self.tiles_per_item
        lines = [
            f"pathup evaluate: {self.data.root}",
            f"data: {self.describe_data()}",
            f"folds: {s.folds}, stratified by class, grouped by {self.data.group_kind}; synthetic images "
            "only in training folds, never with a reference in the validation fold",
        ]
        if self.protocol is not None:
            p = self.protocol
            lines += [
                f"preset {p['preset'] or '(none)'}: {p['architecture']} at {p['input_size'][0]}x"
                f"{p['input_size'][1]} px fine-tuned end to end (lr {p['vit']['lr']:g}, {p['vit']['epochs']} "
                f"epochs, batch {p['vit']['batch_size']}) from {p['weights_path']}; on {p['device']}, "
                f"autocast {p['autocast']}, {p['processes']} process(es)",
                f"MIL (gated attention): lr {p['mil']['lr']:g}, {p['mil']['epochs']} epochs, on "
                f"{s.tile_size} px tiles through the frozen pretrained model "
                f"({lo}-{hi} per item, mean {mean_tiles:.1f})",
            ]
        else:
            lines.append(
                f"feature extractor: {self.backbone_label} (frozen), whole item at "
                f"{self.extractor['input_size'][0]} px; MIL tiles of {s.tile_size} px at "
                f"{self.tile_extractor['input_size'][0]} px ({lo}-{hi} per item, mean {mean_tiles:.1f})"
            )
        synthetic = [
            r.n_train_synthetic
            for r in self.results
            if r.setting != "real" and r.classifier == self.classifiers()[0]
        ]
        if synthetic:
            lines.append(
                f"synthetic {self.unit()} in training, per fold: {', '.join(map(str, synthetic))} "
                f"(of {len(self.data.synthetic)}; those whose reference is validated are left out)"
            )
        lines += [
            "",
            f"{'classifier':<24}{'training data':<19}{'accuracy':<18}weighted F1",
        ]
        for row in self.summary():
            lines.append(
                f"{row['classifier']:<24}{row['training_data']:<19}"
                f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}    "
                f"{row['weighted_f1_mean']:.3f} ± {row['weighted_f1_std']:.3f}"
            )
        source = (
            f"features: {self.backbone_label}" if self.protocol is None else self.protocol["architecture"]
        )
        lines.append(f"(mean ± sample std over {s.folds} folds; {source})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = self.data
        s = self.settings
        return {
            "feature_extractor": self.extractor,
            "tile_feature_extractor": self.tile_extractor,
            "data": {
                "root": str(d.root),
                "layout": d.layout,
                "classes": list(d.classes),
                "real_items": len(d.real),
                "source_images": d.n_sources,
                "groups": len({it.group for it in d.real}),
                "grouped_by": d.group_kind,
                "images_without_tissue_rois": d.dropped,
                "synthetic_store": str(d.store) if d.store else None,
                "manifest": str(d.manifest) if d.manifest else None,
                "synthetic_items": len(d.synthetic),
            },
            "settings": {
                "folds": s.folds,
                "image_size": s.image_size,
                "tile_size": s.tile_size,
                "seed": s.seed,
                "single_instance_head": f"standardised features, logistic regression (C={s.logistic_c}, "
                "balanced class weights)"
                if self.protocol is None
                else f"{self.protocol['architecture']} fine-tuned end to end (see protocol)",
                "mil": {"model": "gated attention (Ilse et al. 2018)", **vars(s.mil)},
                "std": "sample standard deviation over folds (ddof=1)",
            },
            "protocol": self.protocol,
            "summary": self.summary(),
            "folds": [
                vars(r) | {"val_groups": list(r.val_groups), "confusion": [list(c) for c in r.confusion]}
                for r in self.results
            ],
        }

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_dict` under a temporary name, then rename it (OS errors: one ``OutputError``)."""
        from napari_pathup.io.atomic import atomic_output

        with atomic_output(path, overwrite=True) as temp:
            temp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def write_plot(self, path: Path) -> None:
        """Bars of accuracy and weighted F1 (mean ± std) per classifier and training data, as PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        rows = self.summary()
        settings = self.settings_names()
        fig = Figure(figsize=(8, 3.6), dpi=120)
        FigureCanvasAgg(fig)  # the Agg canvas: no display, no global backend switch
        axes = fig.subplots(1, 2, sharey=True)
        width = 0.8 / len(settings)
        for ax, metric, title in zip(
            axes, ("accuracy", "weighted_f1"), ("accuracy", "weighted F1"), strict=True
        ):
            for j, setting in enumerate(settings):
                rs = [r for r in rows if r["training_data"] == setting]
                x = np.arange(len(rs)) + (j - (len(settings) - 1) / 2) * width
                ax.bar(
                    x,
                    [r[f"{metric}_mean"] for r in rs],
                    width,
                    yerr=[r[f"{metric}_std"] for r in rs],
                    capsize=3,
                    label=setting,
                )
            names = self.classifiers()
            ax.set_xticks(np.arange(len(names)), [n.split(" (")[0] for n in names])
            ax.set_title(title)
            ax.set_ylim(0, 1.2)
            ax.set_yticks(np.linspace(0, 1, 6))
        axes[0].legend(loc="upper left", ncol=len(settings), fontsize=8, frameon=False)
        fig.suptitle(
            f"{self.settings.folds}-fold CV, grouped by {self.data.group_kind}; "
            + (
                f"features: {self.backbone_label}" if self.protocol is None else self.protocol["architecture"]
            ),
            fontsize=9,
        )
        fig.tight_layout()
        from napari_pathup.io.atomic import atomic_output

        with atomic_output(path, overwrite=True) as temp:
            fig.savefig(temp, format="png")
