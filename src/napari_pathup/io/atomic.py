"""Write outputs under a temporary name and rename them into place, so a crash never leaves half a file.

Large syntheses take minutes to hours; if one is interrupted, the user must not find a truncated image
under the name they asked for (or lose the previous one). Writers therefore write to a hidden
``.NAME.partial-p<pid>-h<host>-XXXX<suffixes>`` sibling and :func:`atomic_output` renames it when the
writer succeeded. A process killed outright (SIGKILL, power loss) cannot remove its temporary; the
process id and host in the name let the next attempt at the same output remove it once that process
is gone (:func:`remove_stale_temporaries`), and never one that a live process still writes.
Internal files (checkpoints, caches, manifests, configs) use :func:`replace_atomically` and
:func:`write_text_atomic`: the same temporary naming, replaced with no overwrite check.
An operating-system error while writing (permissions, read-only file system, full disk) becomes one
:class:`~napari_pathup.errors.OutputError` line, with nothing left behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from napari_pathup.errors import InputError, OutputError, OutputExistsError, PathupError

# Suffixes made of two parts, kept whole so that format detection by extension works on the temporary.
_COMPOUND_SUFFIXES = (".ome.zarr", ".ome.tiff", ".ome.tif")

#: Marker in the name of every temporary output; readers skip such names.
PARTIAL_MARKER = ".partial-"
#: Marker of a previous output moved aside during an overwrite.
OLD_MARKER = ".old-"
_OWNER = re.compile(r"^p(\d+)-h([0-9a-f]{6})-")


def owner_tag() -> str:
    """``p<pid>-h<host hash>``: which process on which machine made a temporary (see the module)."""
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
    return f"p{os.getpid()}-h{host}"


def _is_stale(rest: str) -> bool:
    """True when ``rest`` starts with an owner tag of this machine whose process no longer runs."""
    match = _OWNER.match(rest)
    if match is None or f"p{match.group(1)}-h{match.group(2)}" == owner_tag():
        return False
    if match.group(2) != owner_tag().split("-h")[1]:
        return False  # another machine's process (a shared file system): we cannot tell
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False  # alive under another user, or not a process id
    return False


def remove_stale_temporaries(final: str | Path, prefixes: tuple[str, ...] = ()) -> list[Path]:
    """Remove what killed runs left beside ``final``: its ``.partial-``/``.old-`` siblings and the
    hidden work folders named with ``prefixes``, only where the name's process is gone on this machine.

    Returns the paths removed. Temporaries of live processes, of other machines and of other
    outputs are never touched.
    """
    path = Path(final).expanduser().resolve()
    stem, suffix = split_suffixes(path.name)
    removed: list[Path] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        rest = None
        for marker in (PARTIAL_MARKER, OLD_MARKER):
            head = f".{stem}{marker}"
            if name.startswith(head):
                tail = name[len(head) :]
                match = _OWNER.match(tail)
                if match and tail[match.end() + 8 :].lower().startswith(suffix.lower()):
                    rest = tail
        for prefix in prefixes:
            if name.startswith(prefix):
                rest = name[len(prefix) :]
        if rest is not None and _is_stale(rest):
            remove_path(entry)
            removed.append(entry)
    return removed


def os_error_message(path: str | Path, exc: OSError) -> str:
    """One line for an operating-system error on an output, naming the cause in words."""
    reason = {
        errno.EACCES: "permission denied (the folder is not writable for this user)",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "the file system is read-only",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
    }.get(exc.errno or -1, exc.strerror or str(exc))
    return f"cannot write {path}: {reason}; nothing was written under that name"


#: what an "already exists" refusal tells the user to do, where the caller can overwrite
OVERWRITE_HINT = "pass --overwrite (overwrite=True) to replace it"


def check_output(final: str | Path, overwrite: bool, probe: bool = False, hint: str = OVERWRITE_HINT) -> Path:
    """Resolve ``final`` and check that it may be written; cheap, so call it before long work.

    Raises :class:`OutputExistsError` (ending in ``hint``: a caller without an overwrite switch says
    what to do instead) if it exists and ``overwrite`` is False,
    :class:`~napari_pathup.errors.InputError` if its parent folder does not exist, and (with
    ``probe``) :class:`~napari_pathup.errors.OutputError` if the folder is not writable (a hidden
    probe file is created and removed). Free space is part of the run's budget
    (:meth:`~napari_pathup.engine.plan.RunPlan.check_budget` with :func:`free_bytes`).
    """
    path = Path(final).expanduser().resolve()
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{path} already exists; {hint}")
    if probe:
        check_writable(path.parent, path)
    return path


def check_writable(folder: str | Path, output: str | Path) -> None:
    """Create and remove a hidden probe file in ``folder``; an OS refusal (permissions, read-only file
    system, full disk) becomes an :class:`~napari_pathup.errors.OutputError` naming ``output``."""
    probe_path = Path(folder) / f".pathup-probe-{owner_tag()}-{secrets.token_hex(4)}"
    try:
        probe_path.touch(exist_ok=False)
        probe_path.unlink()
    except OSError as exc:
        raise OutputError(os_error_message(output, exc)) from exc


def free_bytes(folder: str | Path) -> int | None:
    """Free bytes for this user in ``folder`` (None where the system cannot tell)."""
    try:
        return int(shutil.disk_usage(folder).free)
    except OSError:
        return None


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
    return path.with_name(f".{stem}{tag}{owner_tag()}-{secrets.token_hex(4)}{suffix}")


def remove_path(path: Path) -> None:
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
        raise OutputExistsError(f"{final} already exists; {OVERWRITE_HINT}")
    old = _sibling(final, OLD_MARKER)
    os.rename(final, old)
    try:
        os.rename(temp, final)
    except BaseException:
        os.rename(old, final)  # put the previous output back
        raise
    remove_path(old)


@contextlib.contextmanager
def atomic_output(final: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds.

    The temporary does not exist yet: the caller creates it (a file or a directory). On any exception,
    including ``KeyboardInterrupt``, the temporary is removed and the exception propagates; ``final``
    is then untouched. An ``OSError`` (permissions, read-only or full disk) becomes an
    :class:`~napari_pathup.errors.OutputError` with one clear line. Temporaries that killed runs left
    for the same output are removed first (:func:`remove_stale_temporaries`).
    """
    path = check_output(final, overwrite)
    remove_stale_temporaries(path)
    temp = _sibling(path, PARTIAL_MARKER)
    try:
        yield temp
        if not (temp.exists() or temp.is_symlink()):
            raise RuntimeError(f"the writer returned without creating {temp.name} for {path}")
        _replace(temp, path, overwrite)
    except OSError as exc:
        remove_path(temp)
        if isinstance(exc, PathupError):
            raise
        raise OutputError(os_error_message(path, exc)) from exc
    except BaseException:
        remove_path(temp)
        raise


def replace_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Replace the internal file ``path`` with what ``write`` writes to a temporary sibling.

    ``write`` receives the temporary path (hidden, in the same folder, keeping the extension) and
    creates the file; it is then renamed over ``path`` with :func:`os.replace`. On any exception the
    temporary is removed, ``path`` keeps its previous content and the exception propagates unchanged.
    Unlike :func:`atomic_output` (user outputs) an existing ``path`` is always replaced and an
    ``OSError`` is not translated. Temporaries that killed runs left for ``path`` are removed first.
    Returns ``path``.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    temp = _sibling(path, PARTIAL_MARKER)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        remove_path(temp)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Replace the internal file ``path`` with ``text`` (UTF-8) via :func:`replace_atomically`."""
    return replace_atomically(path, lambda temp: temp.write_text(text, encoding="utf-8"))
