"""The model-selection rule of ``benchmarks/bench_select_model.py``: which candidate it chooses, and
which reports it refuses to rank together (the rule decides which trained leg is benchmarked)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def select() -> ModuleType:
    saved = list(sys.path)  # the module puts its own folder on the path too
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(
            "bench_select_model", BENCHMARKS / "bench_select_model.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclass resolves annotations through sys.modules
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def test_lowest_rank_sum_wins_among_eligible(select: ModuleType) -> None:
    rows = {
        "a": {"fd": 10.0, "sharpness": 0.60, "fidelity": 0.95},  # FD rank 1, sharpness rank 3
        "b": {"fd": 11.0, "sharpness": 0.80, "fidelity": 0.92},  # 2 + 1: chosen
        "c": {"fd": 12.0, "sharpness": 0.70, "fidelity": 0.99},  # 3 + 2
        "d": {"fd": 5.0, "sharpness": 0.99, "fidelity": 0.50},  # best on both, but not eligible
    }
    chosen, ranks = select.choose(rows, min_fidelity=0.9)
    assert chosen == "b"
    assert set(ranks) == {"a", "b", "c"}
    assert ranks["b"] == {"fd": 2, "sharpness": 1}


def test_tie_goes_to_the_lower_distance(select: ModuleType) -> None:
    rows = {
        "sharp": {"fd": 20.0, "sharpness": 0.9, "fidelity": 0.9},  # 2 + 1
        "close": {"fd": 15.0, "sharpness": 0.8, "fidelity": 0.9},  # 1 + 2
    }
    assert select.choose(rows, min_fidelity=0.9)[0] == "close"


def test_nothing_eligible_chooses_none(select: ModuleType) -> None:
    rows = {
        "low": {"fd": 1.0, "sharpness": 1.0, "fidelity": 0.89},
        "unmeasured": {"fd": math.nan, "sharpness": 1.0, "fidelity": 1.0},
    }
    assert select.choose(rows, min_fidelity=0.9) == (None, {})


def _report(path: Path, candidates: dict[str, dict[str, Any]], **settings: object) -> Path:
    keys = ("feature_network", "probe", "selection_crops", "seeds", "size")
    shared: dict[str, object] = dict.fromkeys(keys, 1)
    shared.update(fd_crops=64, draws=5, dtype="float32")
    shared.update(settings)
    path.write_text(json.dumps({**shared, "candidates": candidates}))
    return path


def test_merge_joins_reports_of_the_same_settings(select: ModuleType, tmp_path: Path) -> None:
    one = _report(tmp_path / "1.json", {"a": {"fd": 1.0}})
    two = _report(tmp_path / "2.json", {"b": {"fd": 2.0}})
    report = select.merged([one, two])
    assert set(report["candidates"]) == {"a", "b"}
    assert report["fd_crops"] == 64


def test_merge_keeps_the_training_areas_nucleus_figures(
    select: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The merged table prints the real tissue's nucleus areas beside the candidates', as one report does."""
    nuclei = {"normal": {"threshold_h": 0.3, "median_area_px": 76.0}}
    row = {"fd": 1.0, "sharpness": 1.0, "fidelity": 1.0}
    per_class = {"normal": {"fd": 1.0, "sharpness_ratio": 1.0, "fidelity": 1.0, "nucleus_area_px": 40.0}}
    one = _report(tmp_path / "1.json", {"a": {**row, "per_class": per_class}}, selection_nuclei=nuclei)
    two = _report(tmp_path / "2.json", {"b": {**row, "per_class": per_class}}, selection_nuclei=nuclei)
    report = select.merged([one, two])
    select.decide(report, select.parse_args(["--merge", str(one), str(two)]))
    assert "training areas: 76)" in capsys.readouterr().out
    other = _report(tmp_path / "3.json", {"c": row}, selection_nuclei={"normal": {"median_area_px": 70.0}})
    with pytest.raises(SystemExit, match="other selection_nuclei"):
        select.merged([one, other])


def test_merge_refuses_other_settings_or_a_candidate_twice(select: ModuleType, tmp_path: Path) -> None:
    one = _report(tmp_path / "1.json", {"a": {"fd": 1.0}})
    other = _report(tmp_path / "2.json", {"b": {"fd": 2.0}}, draws=3)
    with pytest.raises(SystemExit, match="other draws"):
        select.merged([one, other])
    again = _report(tmp_path / "3.json", {"a": {"fd": 1.5}})
    with pytest.raises(SystemExit, match="a measured in more than one report"):
        select.merged([one, again])


def test_without_a_ranked_class_the_lower_distance_wins(select: ModuleType) -> None:
    """``--classes stroma`` measures no sharpness-ranked class: the rule falls back to the distance."""
    rows = {
        "far": {"fd": 30.0, "sharpness": math.nan, "fidelity": 1.0},
        "near": {"fd": 20.0, "sharpness": math.nan, "fidelity": 1.0},
    }
    chosen, ranks = select.choose(rows, min_fidelity=0.9)
    assert chosen == "near"
    assert ranks["far"]["sharpness"] == ranks["near"]["sharpness"] == 1


def _candidate(fd: float, area: float | None) -> dict[str, object]:
    per_class = {"fd": fd, "sharpness_ratio": 1.0, "fidelity": 1.0}
    if area is not None:
        per_class["nucleus_area_px"] = area
    return {"fd": fd, "sharpness": 1.0, "fidelity": 1.0, "per_class": {"stroma": per_class}}


def test_table_shows_nucleus_area_beside_the_tissue_s(
    select: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    report = {
        "candidates": {"a": _candidate(10.0, 57.0)},
        "selection_nuclei": {"stroma": {"threshold_h": 0.3, "median_area_px": 66.0}},
    }
    args = select.parse_args(["some/model"])
    select.decide(report, args)
    out = capsys.readouterr().out
    assert "nucleus area px, stroma (training areas: 66)" in out
    assert "| 57 |" in out
    assert report["chosen"] == "a"


def test_table_reads_reports_measured_before_nuclei_were(
    select: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    report = {"candidates": {"old": _candidate(10.0, None)}}  # an earlier session's selection.json
    select.decide(report, select.parse_args(["some/model"]))
    out = capsys.readouterr().out
    assert "(training areas: -)" in out
    assert "| nan |" in out


def test_median_area_is_the_median_over_crops(select: ModuleType) -> None:
    import numpy as np

    morphology = select.Morphology(np.ones(3), np.array([40.0, 70.0, 90.0]), np.array([0.9, 0.7, 0.8]))
    assert morphology.median_area == 70.0
    assert morphology.median_solidity == 0.8
    assert math.isnan(select.Morphology(np.zeros(2), np.zeros(0), np.zeros(0)).median_area)


def test_a_class_s_own_tissue_scores_as_the_tissue(select: ModuleType, tmp_path: Path) -> None:
    """Scoring a class's real training-area crops as if synthetic gives the tissue's own figures: the
    same nucleus area, a sharpness ratio of 1, the probe's class, and an FD far below another class's."""
    from PIL import Image

    data = Path(__file__).resolve().parents[2] / "data" / "demo"
    for name, source, box in (
        ("normal", "normal/skin.tif", (0, 0, 768, 768)),
        ("stroma", "stroma/hgsc_stroma.jpg", (0, 0, 768, 768)),
    ):
        (tmp_path / name).mkdir()
        with Image.open(data / source) as image:
            image.convert("RGB").crop(box).save(tmp_path / name / "field.png")
    index = select.discover(tmp_path)
    extractor = select.get_extractor("effnet-lite0", device="cpu")
    tissue = select.SelectionTissue.of(index, extractor, 128, 12, ["stroma"])
    assert set(tissue.nuclei) == {"stroma"}  # the measured class only
    crops, labels, _ = select.training_crops(
        index, select.load_images(index), select.CROP, 128, select.MIN_TISSUE, 12
    )
    own = [c for c, k in zip(crops, labels, strict=True) if k == 1]
    other = [c for c, k in zip(crops, labels, strict=True) if k == 0]
    assert len(own) >= 8 and len(other) >= 8
    score = tissue.score(own, "stroma", 8, 2)
    assert score["tiles"] == len(own)
    assert score["nucleus_area_px"] == tissue.nuclei["stroma"]["median_area_px"]
    assert score["sharpness_ratio"] == pytest.approx(1.0)
    assert score["fidelity"] == 1.0
    assert score["fd"] < tissue.score(other, "stroma", 8, 2)["fd"]
    assert math.isnan(tissue.score(own[:4], "stroma", 8, 2)["fd"])  # too few tiles
