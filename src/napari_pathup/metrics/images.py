"""Image sets for the metrics: folders (or lists) of images, optional full-resolution crops, resizing.

As in the PathUp evaluation, each whole image is resized to the feature network's input; with
``crop_size`` set, every image is first cut into non-overlapping crop_size x crop_size tiles (a
2048x2048 image gives 16 tiles of 512x512), so the network also sees full-resolution detail.
Tiles start at the top-left corner; a partial row or column of tiles at the right/bottom edge is
left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from napari_pathup.errors import InputError
from napari_pathup.geometry import window_starts
from napari_pathup.io.images import SUPPORTED_IMAGE_SUFFIXES, image_shape, list_images, read_image
from napari_pathup.metrics.inception import resize_bilinear_tf1

ResizeMethod = Literal["tf1-bilinear", "bilinear-antialias"]
RESIZE_METHODS: tuple[str, ...] = ("tf1-bilinear", "bilinear-antialias")
RESIZE_HELP = {
    "tf1-bilinear": "bilinear without antialiasing, TensorFlow 1.x sampling (the FID reference resize)",
    "bilinear-antialias": "bilinear with antialiasing (torch.nn.functional.interpolate(antialias=True))",
}

ImageSource = str | Path | Sequence[str | Path] | Sequence[np.ndarray] | np.ndarray


@dataclass(frozen=True)
class ImageSet:
    """Images to compare: file paths, or in-memory (H, W, 3) uint8 arrays; ``source`` names them."""

    source: str
    paths: tuple[Path, ...] = ()
    arrays: tuple[np.ndarray, ...] = ()

    def __len__(self) -> int:
        return len(self.paths) or len(self.arrays)

    def images(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (name, (H, W, 3) uint8 image) in order; a file that cannot be read raises ``InputError``."""
        if self.paths:
            for path in self.paths:
                yield str(path), read_image(path)
        else:
            for i, array in enumerate(self.arrays):
                yield f"{self.source}[{i}]", array


def _check_array(array: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    return arr


def image_set(source: ImageSource, what: str = "images") -> ImageSet:
    """Resolve a folder, an image file, a list of files or a list/stack of RGB arrays into an ``ImageSet``.

    Raises ``InputError`` for a missing folder or file and for an empty set.
    """
    if isinstance(source, np.ndarray) and source.ndim == 4:
        source = list(source)
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if path.is_dir() and not path.name.lower().endswith(".ome.zarr"):
            paths = list_images(path)
            if not paths:
                raise InputError(
                    f"{path}: folder holds no images for the {what} set "
                    f"(expected {', '.join(SUPPORTED_IMAGE_SUFFIXES)} images)"
                )
            return ImageSet(source=str(path), paths=tuple(paths))
        if not path.exists():
            raise InputError(f"{path}: no such folder or image for the {what} set")
        return ImageSet(source=str(path), paths=(path,))
    items = list(source)
    if not items:
        raise InputError(f"the {what} set is empty")
    if all(isinstance(item, str | Path) for item in items):
        files = tuple(Path(item).expanduser() for item in items)
        missing = [str(p) for p in files if not p.exists()]
        if missing:
            raise InputError(f"{what}: no such image: {', '.join(missing[:5])}")
        return ImageSet(source=f"{len(files)} {what} files", paths=files)
    arrays = tuple(_check_array(item, f"{what}[{i}]") for i, item in enumerate(items))
    return ImageSet(source=f"{len(arrays)} {what} arrays", arrays=arrays)


def check_crop_size(images: ImageSet, crop_size: int | None) -> None:
    """Fail before any feature is computed when an image is smaller than the crops (headers only)."""
    if crop_size is None:
        return
    if crop_size < 1:
        raise InputError(f"crop size must be positive, got {crop_size}")
    shapes = (
        ((str(p), image_shape(p)) for p in images.paths)
        if images.paths
        else ((f"{images.source}[{i}]", a.shape[:2]) for i, a in enumerate(images.arrays))
    )
    for name, (h, w) in shapes:
        if h < crop_size or w < crop_size:
            raise InputError(
                f"{name} is {w}x{h} pixels, smaller than the {crop_size}x{crop_size} crops asked for"
            )


def tiles(image: np.ndarray, crop_size: int | None, name: str = "image") -> Iterator[np.ndarray]:
    """Yield the whole image, or its non-overlapping ``crop_size`` tiles in row-major order."""
    if crop_size is None:
        yield image
        return
    if crop_size < 1:
        raise InputError(f"crop size must be positive, got {crop_size}")
    h, w = image.shape[:2]
    if h < crop_size or w < crop_size:
        raise InputError(
            f"{name} is {w}x{h} pixels, smaller than the {crop_size}x{crop_size} crops asked for"
        )
    for y in window_starts(h, crop_size, edge="drop"):
        for x in window_starts(w, crop_size, edge="drop"):
            yield image[y : y + crop_size, x : x + crop_size]


def resize(image: torch.Tensor, size: tuple[int, int], method: ResizeMethod) -> torch.Tensor:
    """Resize a float (N, 3, H, W) batch to ``size`` (H, W) with the named method (identity when equal)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if method == "tf1-bilinear":
        return resize_bilinear_tf1(image, size)
    if method == "bilinear-antialias":
        return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    raise InputError(f"unknown resize method {method!r}; choose one of {', '.join(RESIZE_METHODS)}")


def to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 array -> float32 (1, 3, H, W) tensor on ``device``, values still 0..255."""
    array = np.ascontiguousarray(image)
    if not array.flags.writeable:  # torch.from_numpy warns on read-only buffers (e.g. decoded files)
        array = array.copy()
    tensor = torch.from_numpy(array).to(device)
    return tensor.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
