"""Fixtures of the CLI tests."""

from __future__ import annotations

import pytest
from PIL import Image


@pytest.fixture
def reference_file(tmp_path, reference):
    """The shared reference image as a PNG in its own folder (tmp_path/in/reference.png)."""
    path = tmp_path / "in" / "reference.png"
    path.parent.mkdir()
    Image.fromarray(reference).save(path)
    return path
