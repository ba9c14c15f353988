"""Write outputs under a temporary name and rename them into place, so a crash never leaves half a file.

Large syntheses take minutes to hours; if one is interrupted, the user must not find a truncated image
under the name they asked for (or lose the previous one). Writers therefore write to a hidden
``.NAME.partial-XXXX<suffixes>`` sibling and :func:`atomic_output` renames it when the writer succeeded.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from napari_pathup.errors import InputError, OutputExistsError

# Suffixes made of two parts, kept whole so that format detection by extension works on the temporary.
_COMPOUND_SUFFIXES = (".ome.zarr", ".ome.tiff", ".ome.tif")

#: Marker in the name of every temporary output; readers skip such names.
PARTIAL_MARKER = ".partial-"


def check_output(final: str | Path, overwrite: bool) -> Path:
    """Resolve ``final`` and check that it may be written.

    Raises :class:`OutputExistsError` if it exists and ``overwrite`` is False, and
    :class:`~napari_pathup.errors.InputError` if its parent folder does not exist.
    """
    path = Path(final).expanduser().resolve()
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
    return path


def split_suffixes(name: str) -> tuple[str, str]:
    """Split a file name into stem and extension, keeping compound ones like ``.ome.zarr`` whole."""
    lower = name.lower()
    for compound in _COMPOUND_SUFFIXES:
        if lower.endswith(compound) and len(name) > len(compound):
            return name[: -len(compound)], name[-len(compound) :]
    suffix = Path(name).suffix
    return (name[: -len(suffix)], suffix) if suffix else (name, "")


def _sibling(path: Path, tag: str) -> Path:
    stem, suffix = split_suffixes(path.name)
    return path.with_name(f".{stem}{tag}{secrets.token_hex(4)}{suffix}")


def _remove(path: Path) -> None:
    """Delete a file, link or directory tree if it exists; never raises for a missing path."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # a file appeared while deleting: try once more
            shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _replace(temp: Path, final: Path, overwrite: bool) -> None:
    """Move ``temp`` to ``final``; an existing ``final`` is moved aside first and deleted after."""
    if not (final.exists() or final.is_symlink()):
        os.rename(temp, final)
        return
    if not overwrite:  # appeared while we were writing
        raise OutputExistsError(f"{final} already exists; pass --overwrite (overwrite=True) to replace it")
    old = _sibling(final, ".old-")
    os.rename(final, old)
    try:
        os.rename(temp, final)
    except BaseException:
        os.rename(old, final)  # put the previous output back
        raise
    _remove(old)


@contextlib.contextmanager
def atomic_output(final: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds.

    The temporary does not exist yet: the caller creates it (a file or a directory). On any exception,
    including ``KeyboardInterrupt``, the temporary is removed and the exception propagates; ``final``
    is then untouched.
    """
    path = check_output(final, overwrite)
    temp = _sibling(path, PARTIAL_MARKER)
    try:
        yield temp
        if not (temp.exists() or temp.is_symlink()):
            raise RuntimeError(f"the writer returned without creating {temp.name} for {path}")
        _replace(temp, path, overwrite)
    except BaseException:
        _remove(temp)
        raise
