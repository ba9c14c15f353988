"""``pathup evaluate`` on small real H&E crops of the demo data: folds, synthetic placement, table, JSON,
plot, feature cache, the default extractor, and clear errors that write nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from helpers import DEMO, demo_crops, synthetic_store
from napari_pathup.augmentation.manifest import MANIFEST_NAME
from napari_pathup.cli import main
from napari_pathup.datasets import read_synthetic_records
from napari_pathup.errors import InputError
from napari_pathup.evaluation.data import add_synthetic, collect_real, roi_boxes
from napari_pathup.evaluation.mil import MILSettings
from napari_pathup.evaluation.run import EvaluateSettings, evaluate, image_tiles
from napari_pathup.geometry import Box
from napari_pathup.io.images import read_image
from napari_pathup.metrics.features import EXTRACTORS, module_extractor

#: (class, demo image, top-left corners of 96x96 tissue crops); each crop is one "source image"
CROPS = {
    "normal": [
        ("normal/skin.tif", [(200, 800), (800, 400)]),
        ("normal/cmu_small_region.svs", [(700, 1100), (2000, 1000)]),
    ],
    "stroma": [("stroma/hgsc_stroma.jpg", [(0, 100), (800, 600), (800, 800), (1400, 1200)])],
    "tumour": [
        ("tumour/hgsc_tumour_nest.jpg", [(600, 1300), (1400, 1300)]),
        ("tumour/carcinoma_tia_target.png", [(500, 0), (900, 800)]),
    ],
}


@pytest.fixture(scope="module")
def real_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class folders of 96x96 real H&E crops, four source images per class."""
    return demo_crops(tmp_path_factory.mktemp("evaluate") / "data", CROPS, 96)


def make_store(data: Path, store: Path, *, failed: bool = True) -> Path:
    return synthetic_store(data, store, failed=failed)


class CountingTiny(nn.Module):
    """A seeded random conv feature network that counts the images it embeds."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return torch.cat([self.net(x), x.mean(dim=(2, 3))], dim=1)


def tiny_extractor(**_: object):
    return module_extractor(CountingTiny(), name="tiny-test", input_size=32)


FAST = EvaluateSettings(
    folds=2, image_size=48, tile_size=32, mil=MILSettings(epochs=8, hidden=16, attention=8)
)


def test_table_for_both_settings_and_synthetic_only_in_training(real_data: Path, tmp_path: Path):
    data = add_synthetic(
        collect_real(real_data, roi_size=48), make_store(real_data, tmp_path / "store"), roi_size=48
    )
    assert len(data.real) == 48 and len(data.synthetic) == 48  # 12 crops x 4 RoIs; the failed row is ignored
    report = evaluate(data, tiny_extractor(), FAST)
    rows = report.summary()
    assert [(r["classifier"], r["training_data"]) for r in rows] == [
        ("single-instance", "real"),
        ("single-instance", "real + synthetic"),
        ("MIL (gated attention)", "real"),
        ("MIL (gated attention)", "real + synthetic"),
    ]
    for r in rows:
        assert 0 <= r["accuracy_mean"] <= 1 and 0 <= r["weighted_f1_mean"] <= 1 and r["folds"] == 2
    groups = {it.name: it.group for it in data.real}
    for result in report.results:
        val = set(result.val_groups)
        assert result.n_val == sum(g in val for g in groups.values())
        assert result.n_train_real == len(data.real) - result.n_val
        expected = sum(it.group not in val for it in data.synthetic) if result.setting != "real" else 0
        assert result.n_train_synthetic == expected > 0 or result.setting == "real"
        confusion = np.array(result.confusion)
        assert confusion.shape == (3, 3) and confusion.sum() == result.n_val
        assert np.trace(confusion) == round(result.accuracy * result.n_val)
    table = report.format_table()
    assert "feature extractor: tiny-test" in table and "real + synthetic" in table
    assert "grouped by source image" in table
    per_fold = [r.n_train_synthetic for r in report.results if r.setting != "real"][::2]
    assert f"synthetic RoIs in training, per fold: {per_fold[0]}, {per_fold[1]} (of 48;" in table


def test_features_are_computed_once_and_reused_from_the_cache(real_data: Path, tmp_path: Path):
    data = collect_real(real_data)
    extractor = tiny_extractor()
    evaluate(data, extractor, FAST, cache_folder=tmp_path)
    module = extractor.module
    # each image: one whole-image embedding and its tiles (96 px → 3x3 covering 32 px tiles, tissue only)
    tiles = sum(len(image_tiles(read_image(it.path), 32)) for it in data.real)
    assert module.seen == len(data.real) + tiles
    again = tiny_extractor()
    report = evaluate(data, again, FAST, cache_folder=tmp_path)
    assert again.module.seen == 0 and report.features_computed == 0
    assert len(list(tmp_path.glob("*.npz"))) == len(data.real)


def test_cli_writes_table_json_and_plot(real_data: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(EXTRACTORS, "tiny-test", tiny_extractor)
    store = make_store(real_data, tmp_path / "store")
    code = main(
        ["evaluate", str(real_data), "--synthetic", str(store), "--folds", "2", "--backbone", "tiny-test",
         "--image-size", "48", "--tile-size", "32", "--mil-epochs", "5", "--quiet",
         "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "tiny-test" in out and len(re.findall(r"\d\.\d{3} ± \d\.\d{3}", out)) == 8
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["feature_extractor"]["name"] == "tiny-test"
    assert len(result["summary"]) == 4 and len(result["folds"]) == 8
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_extractor_on_small_real_images(real_data: Path, tmp_path: Path, capsys):
    code = main(
        ["evaluate", str(real_data), "--folds", "2", "--image-size", "64", "--tile-size", "64",
         "--mil-epochs", "3", "--quiet", "--json", str(tmp_path / "r.json")]
    )  # fmt: skip
    assert code == 0
    assert "feature extractor: EfficientNet-Lite0" in capsys.readouterr().out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["feature_extractor"]["weights_sha256"].startswith("579344")
    assert result["feature_extractor"]["input_size"] == [64, 64]


def test_demo_data_refuses_grouped_folds_with_a_single_stroma_image(capsys):
    assert main(["evaluate", str(DEMO), "--folds", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "stroma (1)" in err and "--classes" in err


def test_tiles_cover_the_image_and_pad_small_images_with_white():
    rng = np.random.default_rng(0)
    small = rng.integers(100, 200, (20, 40, 3), dtype=np.uint8)  # tissue-coloured noise
    tiles = image_tiles(small, 32)
    assert len(tiles) == 2 and all(t.shape == (32, 32, 3) for t in tiles)
    assert np.all(tiles[0][20:] == 255) and np.array_equal(tiles[0][:20], small[:, :32])
    glass = np.full((64, 64, 3), 240, np.uint8)
    assert len(image_tiles(glass, 32)) == 1  # no tissue anywhere: the bag keeps its best tile


def test_rois_skip_glass_and_group_with_their_source(real_data: Path):
    image = np.full((100, 100, 3), 245, np.uint8)
    image[:50, :50] = (150, 60, 120)
    assert roi_boxes(image, 50, 0.5) == [Box(0, 0, 50, 50)]
    data = collect_real(real_data, roi_size=48)
    by_group: dict[str, list[str]] = {}
    for it in data.real:
        by_group.setdefault(it.group, []).append(it.name)
    assert len(by_group) == 12 and all(len(v) == 4 for v in by_group.values())


def test_bracs_names_group_by_slide(tmp_path: Path):
    from PIL import Image

    tissue = np.full((32, 32, 3), (150, 60, 120), np.uint8)
    for cls, slide, n in [("0_N", 1, 1), ("0_N", 1, 2), ("0_N", 2, 1), ("1_PB", 3, 1), ("1_PB", 4, 1)]:
        folder = tmp_path / "train" / cls
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tissue).save(folder / f"BRACS_{slide}_{cls[2:]}_{n}.png")
    data = collect_real(tmp_path)
    assert data.layout == "bracs" and data.group_kind == "slide" and data.classes == ("N", "PB")
    assert [it.group for it in data.real] == ["BRACS_1", "BRACS_1", "BRACS_2", "BRACS_3", "BRACS_4"]
    assert {it.group for it in collect_real(tmp_path, groups="image").real} == {
        it.path.relative_to(tmp_path).as_posix() for it in data.real
    }


def test_manifest_contract_keeps_done_rows_only(real_data: Path, tmp_path: Path):
    store = make_store(real_data, tmp_path / "store")
    records = read_synthetic_records(store)
    assert len(records) == 12 and all(r.output.exists() for r in records)
    assert {r.class_name for r in records} == {"normal", "stroma", "tumour"}
    text = (store / MANIFEST_NAME).read_text()
    (store / MANIFEST_NAME).write_text(text.replace(",failed,", ",done,"))
    with pytest.raises(InputError, match=r"tumour/never\.ome\.zarr is marked done but does not exist"):
        read_synthetic_records(store)
    (store / MANIFEST_NAME).write_text(text.replace(",done,", ",pending,"))
    with pytest.raises(InputError, match="lists no finished"):
        read_synthetic_records(store)


# ------------------------------------------------------------------------------------------- errors


def _fails(args: list[str], capsys, *expected: str, out: Path) -> None:
    code = main(["evaluate", *args, "--json", str(out / "r.json"), "--plot", str(out / "r.png"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    for text in expected:
        assert text in err, err
    assert not list(out.iterdir()), "nothing may be written on a bad input"


def test_bad_inputs_give_clear_errors_and_write_nothing(real_data: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails([str(empty)], capsys, "holds no class folders", out=out)
    _fails([str(tmp_path / "missing")], capsys, "no such folder", out=out)
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "a.png").write_bytes(sorted((real_data / "normal").iterdir())[0].read_bytes())
    _fails([str(loose)], capsys, "holds images but no class folders", out=out)
    broken = tmp_path / "broken"
    for cls in ("a", "b"):
        (broken / cls).mkdir(parents=True)
        (broken / cls / "x.png").write_bytes(b"not a png")
    _fails([str(broken)], capsys, "x.png", out=out)
    no_manifest = tmp_path / "store"
    no_manifest.mkdir()
    _fails(
        [str(real_data), "--folds", "2", "--synthetic", str(no_manifest)], capsys, "has no manifest", out=out
    )
    (no_manifest / "manifest.csv").write_text("output,class\nx.ome.zarr,normal\n")
    _fails(
        [str(real_data), "--folds", "2", "--synthetic", str(no_manifest)],
        capsys,
        "missing column(s) reference, status",
        out=out,
    )
    _fails([str(real_data), "--folds", "5"], capsys, "largest --folds this data allows is 4", out=out)
    _fails([str(real_data), "--backbone", "timm:resnet18"], capsys, "needs --backbone-weights", out=out)
    _fails(
        [str(real_data), "--backbone", "timm:resnet18", "--backbone-weights", str(tmp_path / "w.pth")],
        capsys,
        ".safetensors",
        out=out,
    )


def test_synthetic_reference_outside_data_is_refused(real_data: Path, tmp_path: Path):
    store = make_store(real_data, tmp_path / "store", failed=False)
    text = (store / "manifest.csv").read_text().replace("normal/skin_200_800.png", "elsewhere/x.png")
    (store / "manifest.csv").write_text(text)
    with pytest.raises(InputError, match=r"elsewhere/x\.png is not an image of"):
        add_synthetic(collect_real(real_data), store)


def test_groups_csv_puts_images_of_one_patient_together(real_data: Path, tmp_path: Path):
    keys = sorted(p.relative_to(real_data).as_posix() for p in real_data.glob("*/*.png"))
    table = tmp_path / "patients.csv"
    table.write_text("image,group\n" + "".join(f"{k},patient{i // 2}\n" for i, k in enumerate(keys)))
    data = collect_real(real_data, groups=str(table), roi_size=48)
    assert data.group_kind == "group" and len({it.group for it in data.real}) == 6
    with pytest.raises(InputError, match="largest --folds this data allows is 2"):
        evaluate(data, tiny_extractor(), EvaluateSettings(folds=3))
    table.write_text("image,group\n" + f"{keys[0]},p0\n")
    with pytest.raises(InputError, match="names no group for"):
        collect_real(real_data, groups=str(table))


def test_timm_backbone_from_local_safetensors(real_data: Path, tmp_path: Path, capsys):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False)
    weights = tmp_path / "test_vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    code = main(
        ["evaluate", str(real_data), "--folds", "2", "--backbone", "timm:test_vit",
         "--backbone-weights", str(weights), "--mil-epochs", "2", "--tile-size", "48", "--quiet",
         "--json", str(tmp_path / "r.json")]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "r.json").read_text())
    size = model.pretrained_cfg["input_size"][-1]
    # a fixed-input backbone sees whole images and tiles at its own input size
    assert result["feature_extractor"]["input_size"] == [size, size]
    assert result["tile_feature_extractor"]["input_size"] == [size, size]
    assert result["feature_extractor"]["weights_sha256"] and "timm test_vit" in capsys.readouterr().out


def test_single_class_data_is_refused_before_any_feature_is_computed(
    real_data: Path, tmp_path: Path, monkeypatch, capsys
):
    """Issue 11, finding 8: scikit-learn's "only one class" after all features is now a refusal first."""
    import shutil

    import napari_pathup.metrics.features as features

    one = tmp_path / "one"
    shutil.copytree(real_data / "stroma", one / "stroma")

    def no_features(*args, **kwargs):
        raise AssertionError("features were computed before the data was checked")

    monkeypatch.setattr(features, "get_extractor", no_features)
    assert main(["evaluate", str(one), "--folds", "2"]) == 2
    err = capsys.readouterr().err
    assert "needs images of at least two classes; the data holds one class (stroma)" in err
    assert "Traceback" not in err
