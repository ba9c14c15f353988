"""Image sets, crops and the ``pathup metrics`` command on real H&E crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_pathup.cli import main
from napari_pathup.errors import InputError
from napari_pathup.metrics import (
    compute_feature_metrics,
    get_extractor,
    image_set,
    set_features,
)
from napari_pathup.metrics.images import tiles

_ROOT = Path(__file__).resolve().parents[2]
# shared/ sits inside or beside the checkout (CI lays a copy beside its clone)
_CANDIDATES = [_ROOT / "shared" / "data" / "he", _ROOT.parent / "shared" / "data" / "he"]
HE = next((path for path in _CANDIDATES if path.is_dir()), _CANDIDATES[-1])
needs_he = pytest.mark.skipif(not HE.is_dir(), reason="real H&E images (shared/data/he) not available")


def he(name: str) -> np.ndarray:
    return np.asarray(Image.open(HE / name).convert("RGB"))


@pytest.fixture(scope="module")
def effnet():
    return get_extractor("effnet-lite0", device="cpu")


# ---------------------------------------------------------------------------------------------- images


def test_tiles_cover_the_image_in_full_crops_only():
    image = np.arange(2048 * 2048 * 3, dtype=np.uint32).astype(np.uint8).reshape(2048, 2048, 3)
    crops = list(tiles(image, 512))
    assert len(crops) == 16
    np.testing.assert_array_equal(crops[5], image[512:1024, 512:1024])
    assert len(list(tiles(np.zeros((700, 1100, 3), np.uint8), 512))) == 2  # partial tiles dropped
    with pytest.raises(InputError, match="smaller than the 512x512 crops"):
        list(tiles(np.zeros((300, 600, 3), np.uint8), 512, "small.png"))


def test_empty_and_missing_folders_are_errors(tmp_path):
    with pytest.raises(InputError, match="holds no images") as info:
        image_set(tmp_path, "real")
    assert ".scn" in str(info.value) and ".ome.zarr" in str(info.value)  # every format the readers take
    with pytest.raises(InputError, match="no such"):
        image_set(tmp_path / "missing", "real")
    with pytest.raises(InputError, match="uint8"):
        image_set([np.zeros((4, 4, 3), np.float32)], "synthetic")


# ------------------------------------------------------------------------------------------ real H&E


@pytest.fixture(scope="module")
def he_folders(tmp_path_factory) -> dict[str, Path]:
    """Folders of 256x256 H&E fields: two tumour regions, stroma; one field also as OME-Zarr."""
    from napari_pathup.io import write_ome_zarr

    nest, stroma = he("hgsc_tumour_nest.jpg"), he("hgsc_stroma.jpg")
    fields = {
        "tumour_a": [nest[0:256, 0:256], nest[0:256, 256:512]],
        "tumour_b": [nest[768:1024, 0:256], nest[768:1024, 256:512]],
        "stroma": [stroma[0:256, 0:256], stroma[768:1024, 256:512]],
    }
    root = tmp_path_factory.mktemp("he")
    out = {}
    for name, images in fields.items():
        folder = root / name
        folder.mkdir()
        Image.fromarray(images[0]).save(folder / "field0.png")
        if name == "tumour_a":
            write_ome_zarr(folder / "field1.ome.zarr", images[1])
        else:
            Image.fromarray(images[1]).save(folder / "field1.jpg", quality=95)
        out[name] = folder
    return out


@pytest.fixture(scope="module")
def he_features(he_folders, effnet) -> dict[str, np.ndarray]:
    """EfficientNet-Lite0 features of 128x128 crops of each folder (4 crops per 256x256 field)."""
    return {
        name: set_features(effnet, image_set(folder, name), crops=128)[0]
        for name, folder in he_folders.items()
    }


@needs_he
def test_identical_he_sets_give_zero_distance_and_full_precision_recall(he_features):
    feats = he_features["tumour_a"]
    assert feats.shape == (8, 1280)
    result = compute_feature_metrics(feats, feats.copy(), kid_subsets_count=5, kid_subset_size_requested=8)
    assert result.fd_method == "low-rank"  # 8 samples in 1280 dimensions
    assert abs(result.frechet_distance) < 1e-9
    assert result.prdc.precision == result.prdc.recall == result.prdc.coverage == 1.0


@needs_he
def test_he_features_rank_another_tumour_region_closer_than_stroma(he_features):
    opts = {"kid_subsets_count": 10, "kid_subset_size_requested": 8}
    tumour = compute_feature_metrics(he_features["tumour_a"], he_features["tumour_b"], **opts)
    stroma = compute_feature_metrics(he_features["tumour_a"], he_features["stroma"], **opts)
    assert tumour.frechet_distance < stroma.frechet_distance
    assert tumour.kid.mean < stroma.kid.mean
    assert tumour.prdc.precision > stroma.prdc.precision


@needs_he
def test_cli_writes_labelled_values_and_provenance(he_folders, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    real, synth = str(he_folders["tumour_a"]), str(he_folders["stroma"])
    args = ["metrics", real, synth, "--crops", "256", "-k", "1", "--kid-subsets", "5", "--json", str(out)]
    code = main([*args, "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    assert "FD (EfficientNet-Lite0)" in captured.out
    assert "FID" not in captured.out
    assert "not comparable with published FID" in captured.err
    assert "warning: KID subset size 1000 is larger than the feature sets" in captured.err
    report = json.loads(out.read_text())
    metrics, prov = report["metrics"], report["provenance"]
    assert set(metrics) == {"fd", "kd_mean", "kd_std", "precision", "recall", "density", "coverage"}
    assert report["labels"]["fd"] == "FD (EfficientNet-Lite0)"
    assert metrics["fd"] > 0
    assert prov["extractor"]["name"] == "effnet-lite0"
    assert prov["extractor"]["weights_sha256"].startswith("57934424")
    assert prov["resize"] == {"method": "bilinear-antialias", "size": [224, 224]}
    assert prov["crops"]["size"] == 256
    assert prov["real"]["n_images"] == prov["real"]["n_samples"] == 2  # a PNG and an OME-Zarr store
    assert prov["synthetic"]["n_samples"] == 2
    assert prov["kid"]["subsets"] == 5
    assert (prov["kid"]["subset_size"], prov["kid"]["requested_subset_size"]) == (2, 1000)
    assert prov["prdc"]["k"] == 1 and prov["prdc"]["ball"] == "closed"
    assert prov["frechet"]["trace_sqrt_method"] == "low-rank"
    assert {"torch", "numpy", "napari-pathup"} <= set(prov["versions"])


# --------------------------------------------------------------------------------------------- errors


def test_cli_reports_an_empty_folder(tmp_path, capsys):
    (tmp_path / "real").mkdir()
    (tmp_path / "synth").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "synth" / "a.png")
    assert main(["metrics", str(tmp_path / "real"), str(tmp_path / "synth")]) == 2
    assert "pathup metrics: error:" in capsys.readouterr().err


def test_cli_reports_an_unreadable_image(tmp_path, capsys):
    for name in ("real", "synth"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / name / "a.png")
    (tmp_path / "synth" / "broken.png").write_bytes(b"not a png")
    code = main(["metrics", str(tmp_path / "real"), str(tmp_path / "synth"), "--quiet", "-k", "1"])
    assert code == 2
    assert "broken.png" in capsys.readouterr().err


def test_cli_refuses_crops_larger_than_an_image_before_extracting(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((600, 600, 3), np.uint8)).save(folder / "big.png")
    Image.fromarray(np.zeros((300, 500, 3), np.uint8)).save(folder / "small.png")
    assert main(["metrics", str(folder), str(folder), "--crops", "512", "--extractor", "nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "small.png is 500x300 pixels, smaller than the 512x512 crops" in err  # found before the network


def test_cli_reports_missing_inception_weights(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "a.png")
    missing = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    code = main(["metrics", str(folder), str(folder), "--inception-weights", str(missing)])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
