"""Pixel geometry shared by every part of the package: the one rectangle type and the one tiling helper.

:class:`Box` is a rectangle ``[y0, y1) x [x0, x1)`` in array order (rows first), in whatever pixel
space its user works in (latent pixels in the engine, level-0 pixels of a slide for a RoI, image
pixels for a hold-out region or an evaluation RoI). Files and the command line speak ``x, y, width,
height`` (``--region``, hold-out files, output attributes): :meth:`Box.from_xywh`, :meth:`Box.parse_xywh`,
:meth:`Box.xywh_text` and :meth:`Box.to_json` convert at that border.

:func:`window_starts` gives the starts of equal windows along one axis (patch grids, tiled
encode/decode, crops, RoIs, feature tiles); ``edge`` says how the end of the axis is met.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from napari_pathup.errors import InputError

#: how :func:`window_starts` meets the end of the axis
Edge = Literal["snap", "drop", "spread"]
EDGES: tuple[str, ...] = ("snap", "drop", "spread")


@dataclass(frozen=True, order=True)
class Box:
    """A pixel rectangle ``[y0, y1) x [x0, x1)`` (rows first, as numpy indexes)."""

    y0: int
    x0: int
    y1: int
    x1: int

    @classmethod
    def from_xywh(cls, x: int, y: int, width: int, height: int) -> Box:
        """The box whose left, top, width and height are given (the order of ``--region`` and files)."""
        return cls(y, x, y + height, x + width)

    @classmethod
    def parse_xywh(cls, text: str) -> Box:
        """``"X,Y,W,H"`` (``--region``, level-0 pixels); :class:`InputError` says what was expected."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            x, y, w, h = (int(p) for p in parts)
        except ValueError:
            raise InputError(
                f"region {text!r}: expected X,Y,W,H as four integers in level-0 pixels, "
                "e.g. 1000,2000,1024,1024"
            ) from None
        if w <= 0 or h <= 0:
            raise InputError(f"region {text!r}: width and height must be positive, got {w}x{h}")
        return cls.from_xywh(x, y, w, h)

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def xywh_text(self) -> str:
        """``"x,y,w,h"``, as ``--region`` takes it (for messages)."""
        return f"{self.x0},{self.y0},{self.width},{self.height}"

    def to_json(self) -> dict[str, int]:
        """``{"x", "y", "width", "height"}``, as hold-out files and output attributes record a rectangle."""
        return {"x": self.x0, "y": self.y0, "width": self.width, "height": self.height}

    def intersects(self, other: Box) -> bool:
        """True when the two boxes share at least one pixel."""
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def scaled(self, factor: int) -> Box:
        """The same box in a space ``factor`` times larger (latent → pixels)."""
        return Box(self.y0 * factor, self.x0 * factor, self.y1 * factor, self.x1 * factor)

    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) to index an array with."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


def jitter_range(size: int, overlap: int) -> tuple[int, int]:
    """The offsets ``[low, high]`` = ``-(stride // 2) .. min(overlap // 2, stride // 2)`` that
    ``window_starts(edge="snap")`` accepts.

    A positive offset shrinks the overlap between the first window and the next one by that much, so
    it is kept to half the overlap: every pair of neighbouring windows still blends over at least
    half the overlap (a larger offset would open a gap after the first window).
    """
    stride = size - overlap
    return -(stride // 2), min(overlap // 2, stride // 2)


def window_starts(
    length: int, size: int, overlap: int = 0, *, edge: Edge = "snap", offset: int = 0
) -> list[int]:
    """Starts of ``size``-long windows along an axis of ``length``, ``size - overlap`` apart.

    ``edge`` says how the end of the axis is met:

    - ``"snap"``: the last window is moved back to end at ``length``, so every position is covered
      and every window is whole (patch grids, tiled encode/decode); ``offset`` shifts the interior
      starts (jitter) and must lie in :func:`jitter_range`. ``size`` larger than ``length`` raises.
    - ``"drop"``: a window that would run past ``length`` is left out (crops and RoIs that never
      overlap the image's edge); none when ``size`` is larger than ``length``.
    - ``"spread"``: the fewest windows, overlapping by at least ``overlap``, that cover ``length``,
      spread evenly (feature tiles); one window at 0 when ``length`` is at most ``size``.

    Raises ValueError for a size that is not positive, an overlap outside ``[0, size)``, an unknown
    ``edge`` or an offset that ``edge`` does not allow.
    """
    if size <= 0:
        raise ValueError(f"window size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"window overlap must be in [0, {size}) for windows of {size}, got {overlap}")
    if edge not in EDGES:
        raise ValueError(f"edge {edge!r}: expected one of {', '.join(EDGES)}")
    if length <= 0:
        raise ValueError(f"axis length must be positive, got {length}")
    stride = size - overlap
    if edge == "spread":
        if offset:
            raise ValueError("an offset needs edge='snap'")
        if length <= size:
            return [0]
        n = -(-(length - overlap) // stride)
        return [round(i * (length - size) / (n - 1)) for i in range(n)]
    if edge == "drop":
        if offset:
            raise ValueError("an offset needs edge='snap'")
        return list(range(0, length - size + 1, stride))
    if size > length:
        raise ValueError(f"window size {size} is larger than the axis ({length})")
    low, high = jitter_range(size, overlap)
    if not low <= offset <= high:
        raise ValueError(f"grid offset {offset} outside [{low}, {high}] for patch {size}, overlap {overlap}")
    last = length - size
    starts = [0]
    k = 1
    while (start := k * stride + offset) < last:
        starts.append(start)
        k += 1
    if last > 0:
        starts.append(last)
    return starts
