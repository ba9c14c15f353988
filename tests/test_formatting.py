"""Sizes and durations in messages: the units a reader expects, at the thresholds where they change."""

import pytest

from napari_pathup.formatting import format_bytes, format_seconds


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "? B"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (512 * 1024**2, "512.0 MB"),
        (1024**3 - 1, "1024.0 MB"),  # rounds in the unit it is below, never shows the next unit's 1.0
        (1024**3, "1.0 GB"),
        (1.3 * 1024**3, "1.3 GB"),
        (5 * 1024**4, "5.0 TB"),
        (3 * 1024**5, "3072.0 TB"),  # the largest unit keeps counting
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "? s"),
        (0.4, "0 s"),
        (95, "95 s"),
        (119.4, "119 s"),
        (120, "2.0 min"),
        (750, "12.5 min"),
        (7199, "120.0 min"),
        (7200, "2.0 h"),
        (7560, "2.1 h"),
    ],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text
