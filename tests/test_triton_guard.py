"""Opening the plugin's sample data or docking a widget after napari opened its OpenGL canvas must
not crash the process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from napari_pathup._triton_guard import block_triton_if_llvm_loaded


def test_triton_is_blocked_only_when_llvm_is_mapped(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # undone at the end: restores whatever was there
    monkeypatch.delitem(sys.modules, "triton")
    without, with_llvm = tmp_path / "maps", tmp_path / "maps-llvm"
    without.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n")
    with_llvm.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1\n")
    assert not block_triton_if_llvm_loaded(without) and "triton" not in sys.modules
    if not sys.platform.startswith("linux"):
        pytest.skip("the guard acts on Linux only")
    assert block_triton_if_llvm_loaded(with_llvm) and sys.modules["triton"] is None
    with pytest.raises(ImportError):
        import triton  # noqa: F401


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X server (run under xvfb-run)")
def test_the_plugin_loads_after_the_canvas_exists():
    code = (
        "import napari; viewer = napari.Viewer(show=False); "
        "viewer.open_sample('napari-pathup', 'tumour'); "
        "viewer.window.add_plugin_dock_widget('napari-pathup', 'Synthesize'); viewer.close(); print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X server (run under xvfb-run)")
def test_a_widget_made_after_the_canvas_keeps_triton_out():
    """A script that imports the widget module first (the package guard sees no LLVM yet), opens a
    viewer, then builds the widget: later imports of torch's compiler stack must not crash."""
    code = (
        "import napari_pathup.widgets.compare as c; import napari; viewer = napari.Viewer(show=False); "
        "widget = c.CompareWidget(viewer); import diffusers, torch._dynamo; viewer.close(); print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
