"""The docks' shared helpers (widgets/_base.py)."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import FileEdit

from napari_pathup.widgets._base import chosen_path


def test_an_empty_file_field_is_no_path_not_the_working_directory(tmp_path):
    """magicgui hands an empty FileEdit back as Path("."): the docks must read it as "not given"
    (the embedded model, no reference file, no output), never as the current directory."""
    edit = FileEdit(mode="d", value="")
    assert Path(edit.value) == Path(".")  # what magicgui does, and why the helper exists
    assert chosen_path(edit.value) is None
    assert chosen_path("") is None
    edit.value = tmp_path
    assert chosen_path(edit.value) == tmp_path
