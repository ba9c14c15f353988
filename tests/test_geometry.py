"""The one rectangle type (its x,y,w,h converters at the file and CLI border) and the one tiling helper."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_pathup.errors import InputError
from napari_pathup.geometry import Box, window_starts


def test_a_box_converts_to_and_from_x_y_width_height():
    box = Box.from_xywh(100, 2000, 640, 512)
    assert box == Box(y0=2000, x0=100, y1=2512, x1=740)
    assert (box.height, box.width) == (512, 640)
    assert box.to_json() == {"x": 100, "y": 2000, "width": 640, "height": 512}
    assert box.xywh_text() == "100,2000,640,512"
    assert Box.parse_xywh(" 100, 2000 ,640,512") == box
    assert box.scaled(2) == Box(4000, 200, 5024, 1480)
    assert box.slices() == (slice(2000, 2512), slice(100, 740))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3", "expected X,Y,W,H as four integers"),
        ("1,2,3,4,5", "expected X,Y,W,H as four integers"),
        ("0,0,10,-1", "width and height must be positive"),
    ],
)
def test_a_bad_region_text_is_one_clear_error(text, message):
    with pytest.raises(InputError, match=message):
        Box.parse_xywh(text)


def test_boxes_intersect_only_when_they_share_a_pixel():
    a = Box(0, 0, 10, 10)
    assert a.intersects(Box(9, 9, 20, 20))
    assert not a.intersects(Box(10, 0, 20, 10)) and not a.intersects(Box(0, 10, 10, 20))


def test_snap_covers_the_axis_with_whole_windows():
    assert window_starts(256, 64, 16) == [0, 48, 96, 144, 192]
    assert window_starts(100, 64, 16) == [0, 36]
    assert window_starts(64, 64, 16) == [0]
    assert window_starts(256, 64, 16, offset=-10) == [0, 38, 86, 134, 182, 192]
    with pytest.raises(ValueError, match="larger than the axis"):
        window_starts(32, 64)
    with pytest.raises(ValueError, match="outside"):
        window_starts(256, 64, 16, offset=9)


def test_drop_leaves_out_a_window_that_would_pass_the_edge():
    assert window_starts(100, 32, edge="drop") == [0, 32, 64]
    assert window_starts(96, 32, edge="drop") == [0, 32, 64]
    assert window_starts(20, 32, edge="drop") == []


def test_spread_takes_the_fewest_windows_spread_evenly():
    assert window_starts(96, 32, edge="spread") == [0, 32, 64]
    assert window_starts(100, 32, edge="spread") == [0, 23, 45, 68]
    assert window_starts(20, 32, edge="spread") == [0]


@given(st.integers(1, 300), st.integers(1, 64), st.data())
def test_every_edge_keeps_windows_inside_the_axis(length, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    for edge in ("drop", "spread") + (("snap",) if size <= length else ()):
        starts = window_starts(length, size, overlap, edge=edge)
        assert starts == sorted(set(starts))
        assert all(s >= 0 and (s + size <= length or edge == "spread") for s in starts)
        if edge != "drop":  # snap and spread cover every position
            assert starts[0] == 0 and starts[-1] + size >= length
            assert all(b - a <= size - overlap for a, b in pairwise(starts))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((10, 0), {}, "window size must be positive"),
        ((10, 4, 4), {}, "overlap"),
        ((10, 4), {"edge": "wrap"}, "expected one of snap, drop, spread"),
        ((0, 4), {}, "axis length must be positive"),
        ((10, 4), {"edge": "drop", "offset": 1}, "offset needs edge='snap'"),
    ],
)
def test_impossible_windows_are_clear_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        window_starts(*args, **kwargs)
