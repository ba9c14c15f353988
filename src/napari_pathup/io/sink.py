"""Where a synthesis assembles its output: in memory, or in a hidden zarr beside the output when large.

One helper for every caller (``pathup synthesize``, the augment workers): the decision follows the
run plan (:attr:`~napari_pathup.engine.plan.RunPlan.in_memory`), and the work folder is named with
the process and machine (``.pathup-work-p<pid>-h<host>-XXXX``) so that a later run can remove the
folders of killed runs (:func:`~napari_pathup.io.atomic.remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import OutputError
from napari_pathup.io.atomic import os_error_message, owner_tag, remove_stale_temporaries

#: hidden folders where large outputs are assembled before they are written
WORK_PREFIX = ".pathup-work-"


@contextlib.contextmanager
def output_sink(final: str | Path, height: int, width: int, in_memory: bool) -> Iterator[Any]:
    """Yield an (H, W, 3) uint8 array for the engine to fill: numpy, or a zarr array in a hidden work
    folder beside ``final`` (removed on exit). Work folders of killed runs there are removed first."""
    final = Path(final).expanduser().resolve()
    if in_memory:
        yield np.zeros((height, width, 3), np.uint8)
        return
    import zarr

    remove_stale_temporaries(final, prefixes=(WORK_PREFIX,))
    try:
        work = tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{owner_tag()}-", dir=final.parent)
    except OSError as exc:
        raise OutputError(os_error_message(final, exc)) from exc
    with work as folder:
        try:
            sink = zarr.create_array(
                store=str(Path(folder) / "image.zarr"),
                shape=(height, width, 3),
                chunks=(512, 512, 3),
                dtype="uint8",
            )
        except OSError as exc:
            raise OutputError(os_error_message(final, exc)) from exc
        try:
            yield sink
        except OSError as exc:  # e.g. the disk filled up while tiles were decoded into the sink
            if isinstance(exc, OutputError):
                raise
            raise OutputError(os_error_message(final, exc)) from exc
