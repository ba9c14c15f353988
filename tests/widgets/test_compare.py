"""The Compare dock widget in a real napari viewer, on crops of real H&E images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import napari_pathup.widgets._base as base_module
from helpers import menu_command_ids
from napari_pathup.engine.seams import seam_grid, seam_measure
from napari_pathup.io import read_image
from napari_pathup.metrics.stain import sample_pixels, stain_distribution
from napari_pathup.widgets.compare import CompareWidget

TIMEOUT_MS = 60_000
DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"
SETTINGS = {"patch_size": 16, "overlap": 4, "height": 256, "width": 256, "class_name": "stroma"}


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    nest = read_image(DEMO / "tumour" / "hgsc_tumour_nest.jpg")
    stroma = read_image(DEMO / "stroma" / "hgsc_stroma.jpg")
    return {"real": nest[:256, :256], "synthetic": stroma[:256, :256], "large": stroma[:512, :512]}


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    found: list[str] = []
    monkeypatch.setattr(base_module, "show_error", found.append)
    return found


@pytest.fixture
def widget(make_napari_viewer, crops):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="mask")
    viewer.add_image(crops["real"], rgb=True, name="real RoI")
    viewer.add_image(
        crops["synthetic"],
        rgb=True,
        name="PathUp stroma",
        metadata={"pathup": {"status": "finished", "settings": SETTINGS}},
    )
    return CompareWidget(viewer)


def wait(widget, qtbot) -> None:
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)


def test_choices_default_to_real_and_synthetic_by_metadata(widget):
    assert [layer.name for layer in widget.real.value] == ["real RoI"]
    assert [layer.name for layer in widget.synthetic.value] == ["PathUp stroma"]
    names = [name for name, _ in widget.image_choices()]
    assert names == ["mask", "real RoI", "PathUp stroma"]


def test_side_by_side_shows_only_the_chosen_layers_in_a_grid_and_restores(widget):
    viewer = widget.viewer
    viewer.layers.move(viewer.layers.index("real RoI"), len(viewer.layers))  # real on top
    order = [layer.name for layer in viewer.layers]
    viewer.layers["PathUp stroma"].visible = False
    widget.side_by_side.setChecked(True)
    grid = viewer.canvas.grid
    assert grid.enabled and grid.shape == (1, 2)
    visible = [layer.name for layer in viewer.layers if layer.visible]
    assert visible == ["real RoI", "PathUp stroma"]  # real first: the top-left cell
    assert grid.position(viewer.layers.index("real RoI"), viewer.layers) == (0, 0)
    assert grid.position(viewer.layers.index("PathUp stroma"), viewer.layers) == (0, 1)
    assert grid.position(viewer.layers.index("mask"), viewer.layers) == (-1, -1)

    widget.side_by_side.setChecked(False)
    assert not grid.enabled and grid.shape == (-1, -1)
    assert [layer.name for layer in viewer.layers] == order
    assert not viewer.layers["PathUp stroma"].visible and viewer.layers["mask"].visible


def test_plot_and_seams_equal_the_core_functions(widget, crops, qtbot, errors, monkeypatch):
    import threading

    import napari_pathup.measure.compare as compare_module

    threads = []
    render = compare_module.render

    def recorded(*args, **kwargs):
        threads.append(threading.current_thread())
        return render(*args, **kwargs)

    monkeypatch.setattr(compare_module, "render", recorded)
    widget.n_pixels.value = 20_000
    assert widget.measure() is not None
    wait(widget, qtbot)
    assert not errors
    result = widget.result
    for group in ("real", "synthetic"):
        expected = stain_distribution(sample_pixels(crops[group], 20_000, seed=0 if group == "real" else 1))
        got = result.stains[group]
        assert got.mean == pytest.approx(expected.mean) and got.std == pytest.approx(expected.std)
        assert got.n_pixels == expected.n_pixels <= 20_000
    assert threads and threads[0] is not threading.main_thread()  # drawn in the worker
    assert not widget.plot_view.pixmap().isNull()
    axes = widget.plot_view.figure.axes
    assert [ax.get_title().split()[0] for ax in axes] == ["Haematoxylin", "Eosin"]
    for ax in axes:
        labels = [line.get_label().split(":")[0] for line in ax.get_lines()]
        assert labels == ["real", "synthetic"]
        assert all(np.isfinite(line.get_ydata()).all() for line in ax.get_lines())
    seam = result.seams["PathUp stroma"]
    assert seam.value == seam_measure(crops["synthetic"], 16, 4)
    assert widget.seam_table.item(0, 1).text() == f"{seam.value:.3f}"
    assert widget.seam_table.item(0, 2).text() == "16 / 4"
    assert "from recorded settings" in widget.seam_table.item(0, 2).toolTip()
    assert widget.measure_button.enabled and not widget.cancel_button.enabled


def test_seams_without_metadata_use_the_default_model_grid_or_say_not_applicable(widget, crops, qtbot):
    viewer = widget.viewer
    large = viewer.add_image(crops["large"], rgb=True, name="no metadata 512")
    small = viewer.add_image(crops["real"], rgb=True, name="no metadata 256")
    widget.synthetic.value = [large, small]
    widget.measure()
    wait(widget, qtbot)
    grid = seam_grid(512, 512)
    assert grid.source.startswith("defaults of model")
    assert widget.result.seams[large.name].value == seam_measure(
        crops["large"], grid.patch_size, grid.overlap
    )
    single = widget.result.seams[small.name]  # 256 px = one native 32-latent patch: nothing to measure
    assert math.isnan(single.value) and single.text().startswith("not applicable")
    assert widget.seam_table.item(1, 1).text().startswith("not applicable")


def test_large_and_multiscale_layers_are_subsampled(widget, qtbot, errors):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    big = rng.integers(0, 200, (2048, 2048, 3), dtype=np.uint8)
    levels = [da.from_array(big, chunks=(512, 512, 3)), big[::2, ::2], big[::4, ::4]]
    widget.viewer.add_image(levels, rgb=True, multiscale=True, name="pyramid")
    widget.real.value = [widget.viewer.layers["pyramid"]]
    widget.synthetic.value = [widget.viewer.layers["PathUp stroma"]]
    widget.n_pixels.value = 50_000
    widget.measure()
    wait(widget, qtbot)
    assert not errors
    assert widget.result.stains["real"].n_pixels == 50_000


def test_bad_choices_become_notifications_and_the_widget_stays_usable(widget, qtbot, errors):
    widget.real.value = [widget.viewer.layers["mask"]]
    assert widget.measure() is None
    assert any("'mask' is not an RGB image" in message for message in errors)
    widget.real.value, widget.synthetic.value = [], []
    assert widget.measure() is None
    widget.side_by_side.setChecked(True)
    assert not widget.side_by_side.isChecked() and not widget.viewer.canvas.grid.enabled
    assert len(errors) == 3
    widget.real.value = [widget.viewer.layers["real RoI"]]
    assert widget.measure() is not None
    wait(widget, qtbot)
    assert widget.result is not None and len(errors) == 3


def test_a_failure_inside_the_worker_is_a_notification(widget, qtbot, errors, monkeypatch):
    import napari_pathup.measure.compare as compare_module

    def broken(*args, **kwargs):
        raise RuntimeError("deconvolution exploded")  # superqt would swallow a raised RuntimeError

    monkeypatch.setattr(compare_module, "stain_distribution", broken)
    widget.measure()
    wait(widget, qtbot)
    assert errors == ["PathUp Compare: RuntimeError: deconvolution exploded"]
    assert widget.result is None and widget.measure_button.enabled


def test_the_manifest_docks_the_widget_and_puts_it_in_the_layers_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Compare")
    assert isinstance(widget, CompareWidget)
    assert "napari-pathup.compare" in menu_command_ids("napari/layers/visualize")


def test_a_rectangle_limits_the_real_layers_to_that_roi(widget, crops, qtbot, errors):
    rectangle = np.array([[64, 32], [64, 160], [192, 160], [192, 32]], float)  # rows 64:192, cols 32:160
    widget.viewer.add_shapes([rectangle], shape_type="rectangle", name="RoI")
    widget.roi.value = "RoI"
    widget.n_pixels.value = 5_000
    assert widget.measure() is not None
    wait(widget, qtbot)
    assert not errors
    expected = stain_distribution(sample_pixels(crops["real"][64:192, 32:160], 5_000, seed=0))
    got = widget.result.stains["real"]
    assert got.mean == pytest.approx(expected.mean) and got.n_pixels == expected.n_pixels
    widget.viewer.layers["RoI"].data = [rectangle + 200]  # now outside the 256x256 real layer
    assert widget.measure() is None
    assert "not inside the image" in errors[-1]
