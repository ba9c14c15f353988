"""Compare's measure without Qt or napari: what a script gets from the same code the widget runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import rgb
from napari_pathup.engine.seams import seam_measure
from napari_pathup.measure.compare import measure_compare
from napari_pathup.measure.tasks import NoProgress, TaskCancelledError


def test_measure_compare_headless_equals_the_core_functions():
    real, synthetic = rgb(256, 256, seed=1), rgb(512, 512, seed=2)
    settings = {"patch_size": 16, "overlap": 4}
    result = measure_compare(
        NoProgress(),
        {"real": [("r", [real])], "synthetic": [("s", [synthetic])]},
        {"s": settings},
        5000,
        None,
    )
    assert set(result.stains) == {"real", "synthetic"}
    assert result.seams["s"].value == seam_measure(synthetic, 16, 4)
    assert result.plot is not None and result.plot.rgba.shape[-1] == 4


def test_cancel_stops_the_measure():
    class Cancelled(NoProgress):
        def progress(self, done, total, description):
            raise TaskCancelledError

    with pytest.raises(TaskCancelledError):
        measure_compare(Cancelled(), {"real": [("r", [rgb(64, 64)])]}, {}, 1000, None)


def test_the_measure_package_imports_no_qt():
    code = (
        "import sys, napari_pathup.measure.compare, napari_pathup.measure.quality; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt6', 'napari')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
