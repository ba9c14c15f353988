"""The output sink: in memory, or a hidden zarr beside the output that never outlives the run."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from napari_pathup.errors import OutputError
from napari_pathup.io.sink import WORK_PREFIX, output_sink


def test_small_outputs_are_numpy_and_large_ones_a_zarr_in_a_hidden_work_folder(tmp_path):
    with output_sink(tmp_path / "o.png", 4, 6, in_memory=True) as sink:
        assert isinstance(sink, np.ndarray) and sink.shape == (4, 6, 3)
    with output_sink(tmp_path / "o.png", 40, 60, in_memory=False) as sink:
        assert not isinstance(sink, np.ndarray) and sink.shape == (40, 60, 3)
        (work,) = tmp_path.iterdir()
        assert work.name.startswith(WORK_PREFIX) and f"p{os.getpid()}-" in work.name
        sink[:] = 7
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_in_the_sink_is_one_line_and_leaves_no_work_folder(tmp_path):
    with (
        pytest.raises(OutputError, match="no space left on the device"),
        output_sink(tmp_path / "o.ome.zarr", 40, 60, in_memory=False),
    ):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []
