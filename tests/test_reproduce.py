"""``pathup prepare`` (tiles with their groups) and ``pathup rehearse`` (the whole chain on data/demo)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_pathup.augmentation.manifest import MANIFEST_NAME
from napari_pathup.cli import main
from napari_pathup.evaluation.data import collect_real
from napari_pathup.reproduce import REHEARSAL, prepare_tiles

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
TISSUE = (150, 60, 120)


def _bracs(root: Path) -> Path:
    """BRACS layout: two slides of class N (an 80x48 RoI, glass right of x=36; a 20x20 RoI), one of PB."""
    folder = root / "train" / "0_N"
    folder.mkdir(parents=True)
    image = np.full((48, 80, 3), 245, np.uint8)
    image[:, :36] = TISSUE
    Image.fromarray(image).save(folder / "BRACS_7_N_1.png")
    Image.fromarray(np.full((20, 20, 3), TISSUE, np.uint8)).save(folder / "BRACS_9_N_1.png")
    (root / "train" / "1_PB").mkdir()
    Image.fromarray(np.full((32, 32, 3), TISSUE, np.uint8)).save(root / "train" / "1_PB" / "BRACS_8_PB_1.png")
    return root


def test_prepare_cuts_tissue_tiles_and_groups_them_by_slide(tmp_path: Path, capsys):
    data = _bracs(tmp_path / "bracs")
    out = tmp_path / "tiles"
    assert main(["prepare", str(data), "--out", str(out), "--size", "16"]) == 0
    assert "wrote 11 tiles" in capsys.readouterr().out
    with (out / "groups.csv").open() as f:
        groups = {row["image"]: row["group"] for row in csv.DictReader(f)}
    # 80x48 → 3x5 tiles of 16; only the two left columns have 50% tissue: 3x2
    n = sorted(k for k in groups if k.startswith("N/BRACS_7"))
    assert n == sorted(f"N/BRACS_7_N_1_y{y}_x{x}.png" for y in (0, 16, 32) for x in (0, 16))
    assert {groups[k] for k in n} == {"BRACS_7"} and groups["N/BRACS_9_N_1_y0_x0.png"] == "BRACS_9"
    assert Image.open(out / n[0]).size == (16, 16)
    # pathup evaluate reads the tiles as class folders, grouped by slide through groups.csv
    tiles = collect_real(out, groups=str(out / "groups.csv"))
    assert tiles.classes == ("N", "PB") and {it.group for it in tiles.real} == {
        "BRACS_7",
        "BRACS_8",
        "BRACS_9",
    }


def test_prepare_refuses_bad_input_and_leaves_nothing(tmp_path: Path, capsys):
    data = _bracs(tmp_path / "bracs")
    out = tmp_path / "tiles"
    out.mkdir()
    assert main(["prepare", str(data), "--out", str(out), "--size", "16"]) == 2
    assert "exists" in capsys.readouterr().err
    out.rmdir()
    glass = data / "train" / "2_G"
    glass.mkdir()
    Image.fromarray(np.full((32, 32, 3), 245, np.uint8)).save(glass / "BRACS_5_G_1.png")
    assert main(["prepare", str(data), "--out", str(out), "--size", "16"]) == 2
    assert "class(es) G: no 16 px tile with 50% tissue" in capsys.readouterr().err
    assert main(["prepare", str(data), "--out", str(out), "--size", "16", "--classes", "X"]) == 2
    assert "--classes names X" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [data]  # neither the output nor a temporary


def test_prepare_keeps_evenly_spread_tiles_per_image(tmp_path: Path):
    summary = prepare_tiles(_bracs(tmp_path / "bracs"), tmp_path / "t", size=16, per_image=2)
    assert summary.tiles == {"N": 3, "PB": 2} and summary.sources == {"N": 2, "PB": 1}
    assert sorted(p.name for p in (tmp_path / "t" / "N").iterdir())[:2] == [
        "BRACS_7_N_1_y0_x0.png",
        "BRACS_7_N_1_y32_x16.png",
    ]


@pytest.mark.slow
def test_rehearsal_runs_the_whole_chain_on_the_demo_data(tmp_path: Path, capsys):
    """prepare → train (tiny SD) → augment 1:1 → evaluate --preset paper (tiny ViT), end to end.
    About 20 s of CPU; 1-2 min wall on the shared 2-core development machine (a Dask worker starts)."""
    out = tmp_path / "rehearsal"
    assert main(["rehearse", str(DEMO), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "rehearsal.json").read_text())
    assert [s["code"] for s in record["steps"]] == [0] * 6
    assert [s["name"].split(" (")[0] for s in record["steps"]] == [
        "prepare", "base pipeline", "train", "augment 1:1", "ViT weights", "evaluate --preset paper"
    ]  # fmt: skip
    # 1:1: one synthetic image per real tile, every one done, from the fine-tuned pipeline
    real = sorted(p.relative_to(out / "data").as_posix() for p in (out / "data").glob("*/*.png"))
    assert len(real) == 15  # normal 2 images x 3 tiles, tumour 3 x 3
    with (out / "store" / MANIFEST_NAME).open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["reference"] for r in rows) == real and {r["status"] for r in rows} == {"done"}
    assert json.loads((out / "model" / "pathup.json").read_text())["training"]["unet"]["iterations"] == 4
    result = json.loads((out / "evaluate.json").read_text())
    assert result["protocol"]["preset"] == "paper" and result["protocol"]["architecture"] == REHEARSAL["vit"]
    assert result["data"]["grouped_by"] == "group" and result["data"]["synthetic_items"] == 15
    assert len(result["summary"]) == 4
    assert "| ViT (fine-tuned) | real + synthetic |" in printed and "| **total** |" in printed
    assert main(["rehearse", str(DEMO), "--out", str(out)]) == 2  # an earlier rehearsal is never overwritten
