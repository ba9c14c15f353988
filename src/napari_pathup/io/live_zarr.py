"""An OME-Zarr pyramid on disk that fills in while a run streams: the napari widget's output layer.

The engine decodes its final tiles straight into level 0 (through :class:`ChannelsLast`, an (H, W, 3)
view of the NGFF (3, H, W) array); :meth:`LiveOmeZarr.update_pyramid` then averages the touched region
down the pyramid with the same 2x2 mean as :func:`~napari_pathup.io.ome_zarr.write_ome_zarr`, so the
finished store is bit for bit what the writer would produce. Previews (latent resolution) are pasted
only into the levels small enough for them (:data:`PREVIEW_PIXELS`), so memory and disk traffic per
event stay bounded whatever the output size.

The preview levels of at most :data:`PREVIEW_PIXELS` (so at most 16 MiB together, whatever the output
size) are also kept in memory, written together with the store: napari draws them from RAM, so a redraw
on the GUI thread while the run streams never reads or decompresses chunks from disk (a refresh of a
2048x2048 level read from disk stalled the viewer for a third of a second). Only the levels larger than
that are read from disk, and only the region in view when the user zooms in to them. Zarr writes each
chunk under a temporary name, so a reader of the disk levels sees a chunk either before or after a
write, never half; a redraw of an in-memory level during a write may show a block half pasted, which the
next redraw completes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.geometry import Box
from napari_pathup.io.arrays import ATTRS_KEY, attrs_json, mean_2x2, pyramid_shapes
from napari_pathup.io.atomic import atomic_output, split_suffixes

#: previews are pasted into pyramid levels of at most this many pixels (2048^2: 12 MiB per level)
PREVIEW_PIXELS = 2048 * 2048


class ChannelsLast:
    """An (H, W, 3) view of a (3, H, W) zarr array: what napari and the engine's sink expect.

    With a ``mirror`` (an (H, W, 3) numpy array holding the same pixels), writes go to both and reads
    come from the mirror, without touching the disk.
    """

    def __init__(self, array: Any, mirror: np.ndarray | None = None) -> None:
        self.array = array
        self.mirror = mirror
        c, h, w = array.shape
        self.shape = (int(h), int(w), int(c))
        self.dtype = np.dtype(array.dtype)
        self.ndim = 3
        self.size = h * w * c

    def _key(self, key: Any) -> tuple[Any, Any, Any]:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (3 - len(key))
        if len(key) != 3:
            raise IndexError(f"too many indices for an array of shape {self.shape}: {key}")
        return key

    def __getitem__(self, key: Any) -> np.ndarray:
        ky, kx, kc = self._key(key)
        if self.mirror is not None:
            return self.mirror[ky, kx, kc].copy()
        block = np.asarray(self.array[kc, ky, kx])
        if isinstance(kc, int | np.integer):
            return block
        return np.moveaxis(block, 0, -1)

    def __setitem__(self, key: Any, value: Any) -> None:
        ky, kx, kc = self._key(key)
        value = np.asarray(value)
        if self.mirror is not None:
            self.mirror[ky, kx, kc] = value
        if not isinstance(kc, int | np.integer) and value.ndim >= 1:
            value = np.moveaxis(value, -1, 0) if value.ndim == 3 else value
        self.array[kc, ky, kx] = value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[:, :, :]
        return data if dtype is None else data.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def scaled_block(
    rgb: np.ndarray,
    box: Box,
    source_shape: tuple[int, int],
    target_shape: tuple[int, int],
) -> tuple[slice, slice, np.ndarray]:
    """``rgb`` (covering ``box`` of a ``source_shape`` image) scaled by nearest
    neighbour to a ``target_shape`` image: the target rows, columns and the block to write there."""
    height, width = target_shape
    sh, sw = source_shape
    y0, x0, y1, x1 = box.y0, box.x0, box.y1, box.x1
    ty0, ty1 = -(-y0 * height // sh), -(-y1 * height // sh)
    tx0, tx1 = -(-x0 * width // sw), -(-x1 * width // sw)
    ky, kx = height // sh, width // sw
    if ky and kx and height == ky * sh and width == kx * sw and rgb.shape[:2] == (y1 - y0, x1 - x0):
        block = np.repeat(np.repeat(rgb, ky, axis=0), kx, axis=1)
    else:
        rows = np.clip(np.arange(ty0, ty1) * sh // height - y0, 0, rgb.shape[0] - 1)
        cols = np.clip(np.arange(tx0, tx1) * sw // width - x0, 0, rgb.shape[1] - 1)
        block = rgb[rows[:, None], cols[None, :]]
    return slice(ty0, ty1), slice(tx0, tx1), block


class LiveOmeZarr:
    """An RGB OME-Zarr pyramid of a fixed size, valid NGFF from the start, written region by region."""

    def __init__(
        self,
        path: str | Path,
        height: int,
        width: int,
        *,
        pixel_size: float | None = None,
        chunk: int = 512,
        min_level_size: int = 256,
        preview_pixels: int = PREVIEW_PIXELS,
    ) -> None:
        from napari_pathup.io.ome_zarr import create_pyramid_group

        self.path = Path(path)
        self.owned_folder: Path | None = None  # set by temporary(): removed with the store
        self.pixel_size = pixel_size
        self.shapes = pyramid_shapes(height, width, min_level_size)
        name = split_suffixes(self.path.name)[0]
        self.root = create_pyramid_group(self.path, self.shapes, chunk, pixel_size, name)
        self.arrays = [self.root[str(i)] for i in range(len(self.shapes))]
        # at least the smallest level takes previews, however large the output
        self.preview_levels = [i for i, (h, w) in enumerate(self.shapes) if h * w <= preview_pixels] or [
            len(self.shapes) - 1
        ]
        #: the preview levels of at most ``preview_pixels`` in memory (zeros like the new store): what napari
        #: draws them from (a very elongated output's one small-enough level is not, and stays on disk only)
        self.memory = {
            i: np.zeros((h, w, 3), np.uint8)
            for i in self.preview_levels
            for h, w in [self.shapes[i]]
            if h * w <= preview_pixels
        }
        self.views = [ChannelsLast(array, self.memory.get(i)) for i, array in enumerate(self.arrays)]

    @classmethod
    def temporary(cls, height: int, width: int, **kwargs: Any) -> LiveOmeZarr:
        """A store in a new temporary folder (the system's), which :meth:`remove` deletes with it."""
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="pathup-live-"))
        try:
            store = cls(folder / "output.ome.zarr", height, width, **kwargs)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        store.owned_folder = folder
        return store

    @property
    def sink(self) -> ChannelsLast:
        """Level 0 as an (H, W, 3) array: the engine's decode writes its final tiles here."""
        return self.views[0]

    def layer_data(self) -> list[Any] | Any:
        """What a napari image layer shows: the pyramid (largest first), or the one level; the preview
        levels as their in-memory arrays, the larger ones as (H, W, 3) views of the store."""
        levels = [self.memory.get(i, view) for i, view in enumerate(self.views)]
        return levels if len(levels) > 1 else levels[0]

    def paste_preview(self, rgb: np.ndarray, box: Box, source_shape: tuple[int, int]) -> list[int]:
        """Paste a preview (or a stage-1 tile) into the preview levels; returns the levels written."""
        for level in self.preview_levels:
            rows, cols, block = scaled_block(rgb, box, source_shape, self.shapes[level])
            self.views[level][rows, cols] = block
        return self.preview_levels

    def update_pyramid(self, box: Box) -> None:
        """Recompute the region ``box`` of level 0 in every smaller level (2x2 means)."""
        y0, x0, y1, x1 = box.y0, box.x0, box.y1, box.x1
        for level in range(1, len(self.shapes)):
            h, w = self.shapes[level]
            y0, x0 = y0 // 2, x0 // 2
            y1, x1 = min(h, -(-y1 // 2)), min(w, -(-x1 // 2))
            if y0 >= y1 or x0 >= x1:
                return
            above = self.views[level - 1][2 * y0 : 2 * y1, 2 * x0 : 2 * x1]
            self.views[level][y0:y1, x0:x1] = mean_2x2(above)

    def set_attrs(self, attrs: dict[str, Any]) -> None:
        """Record the run's attributes (settings, seed, model hash) under "pathup", as the writer does."""
        import json

        self.root.attrs[ATTRS_KEY] = json.loads(attrs_json(attrs, self.path))

    def export(self, final: str | Path, overwrite: bool = False) -> Path:
        """Copy the store file by file to ``final`` (temporary name, then rename): never loaded into RAM."""
        with atomic_output(final, overwrite) as temp:
            shutil.copytree(self.path, temp)
        return Path(final).expanduser().resolve()

    def remove(self) -> None:
        """Delete the store, and its temporary folder if it has one (the layer showing it must be gone)."""
        shutil.rmtree(self.owned_folder or self.path, ignore_errors=True)
