"""atomic_output/check_output/replace_atomically: a file appears whole under its final name or not at all."""

from pathlib import Path

import pytest

from napari_pathup.errors import InputError, OutputExistsError
from napari_pathup.io import atomic_output, check_output


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_check_output_resolves_and_accepts_a_new_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output("out.png", overwrite=False) == tmp_path.resolve() / "out.png"


def test_check_output_refuses_an_existing_path_without_overwrite(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--overwrite") as info:
        check_output(target, overwrite=False)
    assert str(target) in str(info.value)
    assert isinstance(info.value, FileExistsError)
    assert check_output(target, overwrite=True) == target.resolve()


def test_check_output_reports_a_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist") as info:
        check_output(tmp_path / "missing" / "out.png", overwrite=True)
    assert str(tmp_path / "missing") in str(info.value)


@pytest.mark.parametrize("name", ["out.ome.zarr", "out.tif", "OUT.OME.TIFF", "out.png", "noext"])
def test_temporary_is_a_hidden_sibling_keeping_the_extension(tmp_path, name):
    with atomic_output(tmp_path / name, overwrite=False) as temp:
        assert temp.parent == tmp_path.resolve()
        assert temp.name.startswith(".") and ".partial-" in temp.name
        stem, _, suffix = name.partition(".")
        assert temp.name.startswith(f".{stem}.partial-")
        assert temp.name.endswith(f".{suffix}" if suffix else "")
        assert not temp.exists()
        temp.write_text("data")
    assert (tmp_path / name).read_text() == "data"
    assert entries(tmp_path) == [name]


def test_directory_output_is_renamed_into_place(tmp_path):
    with atomic_output(tmp_path / "a.ome.zarr", overwrite=False) as temp:
        (temp / "0").mkdir(parents=True)
        (temp / "zarr.json").write_text("{}")
    assert entries(tmp_path / "a.ome.zarr") == ["0", "zarr.json"]
    assert entries(tmp_path) == ["a.ome.zarr"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
@pytest.mark.parametrize("as_directory", [False, True])
def test_an_exception_leaves_neither_output_nor_temporary(tmp_path, error, as_directory):
    with pytest.raises(type(error)), atomic_output(tmp_path / "out.ome.zarr", overwrite=False) as temp:
        if as_directory:
            (temp / "0" / "c").mkdir(parents=True)
            (temp / "0" / "c" / "0").write_bytes(b"half")
        else:
            temp.write_bytes(b"half")
        raise error
    assert entries(tmp_path) == []


def test_a_closed_generator_leaves_nothing(tmp_path):
    def producer():
        with atomic_output(tmp_path / "out.tif", overwrite=False) as temp:
            temp.write_bytes(b"half")
            yield

    gen = producer()
    next(gen)
    gen.close()  # raises GeneratorExit at the yield
    assert entries(tmp_path) == []


def test_an_exception_keeps_the_previous_output(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(ValueError), atomic_output(target, overwrite=True) as temp:
        temp.write_bytes(b"new")
        raise ValueError("writer failed")
    assert target.read_bytes() == b"old"
    assert entries(tmp_path) == ["out.png"]


def test_existing_output_is_not_touched_without_overwrite(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(OutputExistsError), atomic_output(target, overwrite=False):
        pytest.fail("the body must not run")
    assert target.read_bytes() == b"old"


def test_overwrite_replaces_a_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with atomic_output(target, overwrite=True) as temp:
        temp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert entries(tmp_path) == ["out.png"]


def test_overwrite_replaces_a_directory(tmp_path):
    target = tmp_path / "out.ome.zarr"
    (target / "old").mkdir(parents=True)
    with atomic_output(target, overwrite=True) as temp:
        (temp / "new").mkdir(parents=True)
    assert entries(target) == ["new"]
    assert entries(tmp_path) == ["out.ome.zarr"]


def test_a_failed_final_rename_puts_the_previous_output_back(tmp_path, monkeypatch):
    """Overwriting moves the previous output aside, then renames the new one in: when that second rename
    fails (a full or read-only disk, a network share), the previous output is put back, the new one
    removed, and the error is one clear line: nothing the user had is lost."""
    import os

    from napari_pathup.errors import OutputError

    target = tmp_path / "out.ome.zarr"
    (target / "old").mkdir(parents=True)
    real_rename = os.rename

    def rename(src: Path, dst: Path) -> None:
        if ".partial-" in Path(src).name:
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    refused = pytest.raises(OutputError, match="no space left on the device; nothing was written")
    with refused, atomic_output(target, overwrite=True) as temp:
        (temp / "new").mkdir(parents=True)
    assert entries(target) == ["old"]
    assert entries(tmp_path) == ["out.ome.zarr"]


def test_output_created_meanwhile_is_kept_without_overwrite(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(OutputExistsError), atomic_output(target, overwrite=False) as temp:
        temp.write_bytes(b"ours")
        target.write_bytes(b"theirs")
    assert target.read_bytes() == b"theirs"
    assert entries(tmp_path) == ["out.png"]


def test_writing_nothing_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="without creating"), atomic_output(tmp_path / "x.png", False):
        pass
    assert entries(tmp_path) == []


# ------------------------------------------------------------------------ operating-system errors


@pytest.mark.parametrize(
    ("code", "words"),
    [(28, "no space left on the device"), (13, "permission denied"), (30, "the file system is read-only")],
)
def test_an_os_error_while_writing_is_one_clear_line_and_leaves_nothing(tmp_path, code, words):
    import os

    from napari_pathup.errors import OutputError

    with (
        pytest.raises(OutputError, match=f"cannot write .*out.png: {words}.*; nothing was written"),
        atomic_output(tmp_path / "out.png", overwrite=False) as temp,
    ):
        temp.write_bytes(b"half")
        raise OSError(code, os.strerror(code))
    assert entries(tmp_path) == []


def test_check_output_probes_that_the_folder_is_writable(tmp_path, monkeypatch):
    import errno

    from napari_pathup.errors import OutputError

    check_output(tmp_path / "out.png", overwrite=False, probe=True)
    assert entries(tmp_path) == []  # the probe leaves nothing

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "touch", read_only)
    with pytest.raises(OutputError, match="the file system is read-only"):
        check_output(tmp_path / "out.png", overwrite=False, probe=True)


# -------------------------------------------------------------------- temporaries of killed runs


def dead_pid() -> int:
    """A process id that no process has now (a child that has exited and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_killed_runs_are_removed_when_the_same_output_is_written_again(tmp_path):
    from napari_pathup.io.atomic import owner_tag, remove_stale_temporaries
    from napari_pathup.io.sink import WORK_PREFIX

    host = owner_tag().split("-h")[1]
    dead, alive = dead_pid(), 1  # pid 1 always runs
    stale = [
        tmp_path / f".out.partial-p{dead}-h{host}-0123abcd.ome.zarr",
        tmp_path / f".out.old-p{dead}-h{host}-0123abcd.ome.zarr",
        tmp_path / f"{WORK_PREFIX}p{dead}-h{host}-xyz",
    ]
    kept = [
        tmp_path / f".out.partial-p{alive}-h{host}-0123abcd.ome.zarr",  # a live writer
        tmp_path / f".out.partial-p{dead}-h000000-0123abcd.ome.zarr",  # another machine's
        tmp_path / f".other.partial-p{dead}-h{host}-0123abcd.ome.zarr",  # another output's
        tmp_path / ".out.partial-0123abcd.ome.zarr",  # an old name without an owner: unknown
        tmp_path / f".out.partial-p{dead}-h{host}-0123abcd.png",  # another format of the name
    ]
    for path in stale + kept:
        path.mkdir()
        (path / "zarr.json").write_text("{")
    removed = remove_stale_temporaries(tmp_path / "out.ome.zarr", prefixes=(WORK_PREFIX,))
    assert sorted(removed) == sorted(p.resolve() for p in stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
    # a new write of the same output removes its own stale temporaries too (not the work folders)
    (tmp_path / f".out.partial-p{dead}-h{host}-99999999.ome.zarr").mkdir()
    with atomic_output(tmp_path / "out.ome.zarr", overwrite=False) as temp:
        temp.mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in kept), "out.ome.zarr"])


# -------------------------------------------------------------------- internal files


def test_replace_atomically_replaces_the_content_and_leaves_no_temporary(tmp_path):
    from napari_pathup.io.atomic import PARTIAL_MARKER, replace_atomically, write_text_atomic

    target = tmp_path / "latest.json"
    target.write_text("old\n")
    seen = []

    def write(temp: Path) -> None:
        seen.append(temp)
        temp.write_bytes(b"new\n")

    assert replace_atomically(target, write) == target
    assert target.read_bytes() == b"new\n"
    assert seen[0].parent == tmp_path and seen[0].name.startswith(f".latest{PARTIAL_MARKER}")
    assert seen[0].suffix == ".json"  # writers that add a missing extension (np.savez) keep the name
    assert write_text_atomic(tmp_path / "new.txt", "héllo\n").read_text(encoding="utf-8") == "héllo\n"
    assert entries(tmp_path) == ["latest.json", "new.txt"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, OSError])
@pytest.mark.parametrize("exists", [True, False])
def test_replace_atomically_keeps_the_target_when_the_writer_fails(tmp_path, error, exists):
    from napari_pathup.io.atomic import replace_atomically

    target = tmp_path / "state.json"
    if exists:
        target.write_text("previous\n")

    def write(temp: Path) -> None:
        temp.write_text("half")
        raise error("writer failed")

    with pytest.raises(error, match="writer failed"):  # propagated unchanged, not translated
        replace_atomically(target, write)
    assert entries(tmp_path) == (["state.json"] if exists else [])
    if exists:
        assert target.read_text() == "previous\n"


def test_replace_atomically_removes_temporaries_of_killed_runs(tmp_path):
    from napari_pathup.io.atomic import owner_tag, write_text_atomic

    host = owner_tag().split("-h")[1]
    stale = tmp_path / f".latest.partial-p{dead_pid()}-h{host}-0123abcd.json"
    stale.write_text("{")
    write_text_atomic(tmp_path / "latest.json", "{}\n")
    assert entries(tmp_path) == ["latest.json"]
