"""The Quality dock widget in a real napari viewer, on crops of real H&E images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import napari_pathup.widgets._base as base_module
from helpers import menu_command_ids
from napari_pathup.io import read_image
from napari_pathup.metrics import compute_metrics, get_extractor
from napari_pathup.widgets.quality import QualityWidget

TIMEOUT_MS = 120_000
DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"
OPTIONS = {"kid_subsets": 10, "k": 3}


@pytest.fixture(scope="module")
def fields() -> dict[str, list[np.ndarray]]:
    """Two 256x256 fields of a tumour nest and two of stroma (4 crops of 128 each)."""
    nest = read_image(DEMO / "tumour" / "hgsc_tumour_nest.jpg")
    stroma = read_image(DEMO / "stroma" / "hgsc_stroma.jpg")
    return {
        "real": [nest[:256, :256], nest[:256, 256:512]],
        "synthetic": [stroma[:256, :256], stroma[768:1024, 256:512]],
    }


@pytest.fixture(scope="module")
def effnet():
    return get_extractor("effnet-lite0", device="cpu")


@pytest.fixture
def messages(monkeypatch) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"error": [], "info": [], "warning": []}
    monkeypatch.setattr(base_module, "show_error", found["error"].append)
    monkeypatch.setattr(base_module, "show_warning", found["warning"].append)
    monkeypatch.setattr(base_module, "show_info", found["info"].append)
    return found


@pytest.fixture
def widget(make_napari_viewer, fields):
    viewer = make_napari_viewer()
    for i, image in enumerate(fields["real"]):
        viewer.add_image(image, rgb=True, name=f"real {i}")
    for i, image in enumerate(fields["synthetic"]):
        viewer.add_image(image, rgb=True, name=f"synthetic {i}", metadata={"pathup": {"settings": {}}})
    w = QualityWidget(viewer)
    w.crops.value, w.extractor.value, w.device.value = 128, "effnet-lite0", "cpu"
    w.kid_subsets.value = OPTIONS["kid_subsets"]
    return w


def wait(widget, qtbot) -> None:
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)


def test_layers_give_the_numbers_of_the_metrics_api_and_name_the_extractor(
    widget, fields, effnet, qtbot, messages
):
    assert [layer.name for layer in widget.real_layers.value] == ["real 0", "real 1"]
    assert [layer.name for layer in widget.synth_layers.value] == ["synthetic 0", "synthetic 1"]
    assert widget.compute() is not None
    wait(widget, qtbot)
    assert not messages["error"]
    expected = compute_metrics(
        fields["real"], fields["synthetic"], extractor=effnet, crops=128, kid_subsets=OPTIONS["kid_subsets"]
    )
    got = widget.report
    assert got.real.n_samples == got.synth.n_samples == 8
    for key, value in expected.values().items():
        assert got.values()[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    cells = {
        widget.table.item(r, 0).text(): widget.table.item(r, 1).text() for r in range(widget.table.rowCount())
    }
    assert cells["feature extractor"] == "EfficientNet-Lite0 [effnet-lite0]"
    assert "FD (EfficientNet-Lite0)" in cells and "FID" not in " ".join(cells)
    assert float(cells["Improved recall (k=3)"]) == pytest.approx(expected.prdc.recall, rel=1e-5)
    (ax,) = widget.plot_view.figure.axes
    assert "EfficientNet-Lite0" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["precision", "recall", "density", "coverage"]
    assert [bar.get_height() for bar in ax.patches] == pytest.approx(
        [expected.prdc.precision, expected.prdc.recall, expected.prdc.density, expected.prdc.coverage]
    )
    assert "note:" in widget.summary.value  # 8 samples in 1280 dimensions
    assert any("KID subset size 1000 is larger" in m for m in messages["warning"])


def test_a_folder_gives_the_same_numbers_as_its_images_as_layers(widget, fields, qtbot, tmp_path, messages):
    for i, image in enumerate(fields["synthetic"]):
        Image.fromarray(image).save(tmp_path / f"field{i}.png")
    widget.compute()
    wait(widget, qtbot)
    from_layers = widget.report.values()
    widget.synth_folder.value = str(tmp_path)
    widget.synth_layers.value = []
    widget.compute()
    wait(widget, qtbot)
    assert not messages["error"]
    assert widget.report.synth.source == str(tmp_path)
    assert widget.report.values() == pytest.approx(from_layers)


def test_too_few_crops_and_bad_layers_become_notifications_and_the_widget_stays_usable(
    widget, qtbot, messages
):
    widget.crops.value = 256  # one crop per field: 2 samples per set, k=3 needs more
    widget.compute()
    wait(widget, qtbot)
    assert any("need more than 3 samples" in m for m in messages["error"])
    assert widget.report is None and widget.compute_button.enabled

    widget.crops.value = 512  # larger than the fields
    widget.compute()
    wait(widget, qtbot)
    assert any("smaller than the 512x512 crops" in m for m in messages["error"])

    grey = widget.viewer.add_image(np.zeros((256, 256), np.uint8), name="grey")
    widget.real_layers.value = [grey]
    assert widget.compute() is None  # refused before any work starts
    assert any("'grey' is not an RGB image" in m for m in messages["error"])

    widget.real_layers.value = []
    assert widget.compute() is None
    assert any("choose real layers or a real folder" in m for m in messages["error"])

    widget.real_layers.value = [widget.viewer.layers["real 0"], widget.viewer.layers["real 1"]]
    widget.crops.value = 128
    widget.compute()
    wait(widget, qtbot)
    assert widget.report is not None and widget.report.real.n_samples == 8


def test_cancel_stops_the_run_without_a_result(widget, qtbot, messages):
    widget.extractor.value = "auto"  # a new extractor to load: the run cannot finish before Cancel
    worker = widget.compute()
    widget.cancel()
    wait(widget, qtbot)
    assert worker is not None
    assert messages["info"] == ["PathUp Quality: cancelled"] and not messages["error"]
    assert widget.report is None and widget.compute_button.enabled and not widget.cancel_button.enabled


def test_the_manifest_docks_the_widget_and_puts_it_in_the_layers_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Quality")
    assert isinstance(widget, QualityWidget)
    assert "napari-pathup.quality" in menu_command_ids("napari/layers/measure")
