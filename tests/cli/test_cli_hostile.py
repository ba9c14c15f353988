"""Hostile input to the command line (issue 11): refused before any model loads, one line, exit 2, nothing
created; and bugs are no longer disguised as input errors."""

from __future__ import annotations

import errno
import struct
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import rgb, synthesize_argv
from napari_pathup.cli import build_parser, main


def bomb_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A small valid PNG header declaring ``width`` x ``height`` RGB pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail loudly (a bug, with traceback) if anything loads weights: refusals must come first."""
    import napari_pathup.models.load as load

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was refused")

    monkeypatch.setattr(load, "load_model", refuse)


def refused(argv, capsys, out_dir: Path, message: str) -> str:
    """Run ``argv``; assert exit 2, one error line holding ``message``, no traceback, nothing created."""
    before = sorted(p.name for p in out_dir.iterdir())
    start = time.perf_counter()
    assert main(argv) == 2
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "deprecated" not in line]
    assert len(lines) == 1 and "error:" in lines[0] and message in lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in out_dir.iterdir()) == before
    assert seconds < 5, f"refused only after {seconds:.1f} s"
    return lines[0]


@pytest.mark.usefixtures("no_model_load")
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # 2: non-finite and negative floats
        (["--guidance", "nan"], "guidance (--guidance) must be a finite number"),
        (["--guidance", "inf"], "guidance (--guidance) must be a finite number"),
        (["--guidance", "-2"], "guidance (--guidance) must be >= 0"),
        (["--sigma", "nan", "--weights", "gaussian"], "sigma (--sigma) must be a finite number"),
        # 11: the message names the flag that was given
        (["--upscale-strength", "nan"], "upscale_strength (--upscale-strength) must be a finite number"),
        # 5: patches the denoiser cannot take (the tiny model halves once: multiples of 2)
        (["--patch", "1"], "patch_size (--patch) must be a multiple of 2"),
        (["--patch", "3"], "patch_size (--patch) must be a multiple of 2"),
        # 11: sizes refused before the model loads
        (["--size", "0"], "height (--size) must be between 1 and"),
        (["--size", "2049"], "height (--size) must be a multiple of 8"),
        # 3: a run that cannot finish
        (["--size", "100000"], "run needs an estimated"),
        (["--seed", "-1"], "seed (--seed) must be between 0 and"),
        (["--guidance-interval", "0.5,0.2"], "guidance_interval (--guidance-interval) must be a pair"),
        (["--guidance-interval", "nan,1"], "guidance_interval (--guidance-interval) must be a pair"),
        (["--sampler", "magic"], "unknown scheduler 'magic'"),
    ],
)
def test_bad_settings_are_refused_before_the_model_loads(
    pathup_model_dir, reference_file, tmp_path, capsys, extra, message
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    line = refused(
        synthesize_argv(pathup_model_dir, reference_file, out_dir / "o.png", *extra), capsys, out_dir, message
    )
    if "estimated" in line:
        assert "--allow-large-run" in line and "patch evaluations" in line


@pytest.mark.usefixtures("no_model_load")
def test_a_decompression_bomb_reference_is_refused_from_its_header(pathup_model_dir, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 10_000
    line = refused(
        synthesize_argv(pathup_model_dir, bomb, out_dir / "o.png"),
        capsys,
        out_dir,
        "declares 30000x30000 = 900,000,000",
    )
    assert "--max-image-pixels" in line


@pytest.mark.usefixtures("no_model_load")
def test_a_tiny_reference_is_refused_naming_the_minimum(pathup_model_dir, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    tiny = tmp_path / "tiny.png"
    Image.fromarray(rgb(1, 1)).save(tiny)
    refused(
        synthesize_argv(pathup_model_dir, tiny, out_dir / "o.png"),
        capsys,
        out_dir,
        "is 1x1 px; this model needs a reference of at least 128 px on its shorter side",
    )


@pytest.mark.usefixtures("no_model_load")
@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_an_unwritable_output_folder_is_one_line_before_the_model_loads(
    pathup_model_dir, reference_file, tmp_path, capsys, monkeypatch, code
):
    """As root the permission bits do not bite, so the operating system's refusal is simulated."""
    import os

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    real_touch = Path.touch

    def touch(self, *args, **kwargs):
        if self.parent == out_dir:
            raise OSError(code, os.strerror(code), str(self))
        return real_touch(self, *args, **kwargs)

    monkeypatch.setattr(Path, "touch", touch)
    reason = "permission denied" if code == errno.EACCES else "read-only"
    refused(
        synthesize_argv(pathup_model_dir, reference_file, out_dir / "o.ome.zarr"), capsys, out_dir, reason
    )


@pytest.mark.parametrize("suffix", [".png", ".tif", ".ome.zarr"])
def test_a_full_disk_while_writing_is_one_line_and_leaves_nothing(
    pathup_model_dir, reference_file, tmp_path, capsys, monkeypatch, suffix
):
    import os

    import tifffile

    import napari_pathup.io.ome_zarr as ome_zarr

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    target = {
        ".png": (Image.Image, "save"),
        ".tif": (tifffile.TiffWriter, "write"),
        ".ome.zarr": (ome_zarr, "store_chunkwise"),
    }[suffix]
    monkeypatch.setattr(*target, full)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(synthesize_argv(pathup_model_dir, reference_file, out_dir / f"o{suffix}")) == 2
    err = capsys.readouterr().err
    assert "no space left on the device; nothing was written" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_the_budget_can_be_confirmed(pathup_model_dir, reference_file, tmp_path, capsys, monkeypatch):
    import napari_pathup.engine.plan as plan

    monkeypatch.setattr(plan, "WORK_BUDGET", 2)
    out = tmp_path / "o.png"
    assert main(synthesize_argv(pathup_model_dir, reference_file, out)) == 2
    assert "budget 2)" in capsys.readouterr().err and not out.exists()
    assert main(synthesize_argv(pathup_model_dir, reference_file, out, "--allow-large-run")) == 0
    assert out.is_file()


def test_a_bug_shows_its_traceback_instead_of_an_input_error(
    pathup_model_dir, reference_file, tmp_path, monkeypatch
):
    """The CLI catches only PathupError: a ValueError from a bug is not dressed up as bad input."""
    import napari_pathup.engine.pipeline as pipeline

    def broken(*args, **kwargs):
        raise ValueError("a bug in the engine")

    monkeypatch.setattr(pipeline, "decode_tiled", broken)
    with pytest.raises(ValueError, match="a bug in the engine"):
        main(synthesize_argv(pathup_model_dir, reference_file, tmp_path / "o.png"))
    assert not (tmp_path / "o.png").exists()


def test_the_old_scheduler_flag_of_synthesize_still_works_with_a_deprecation(
    pathup_model_dir, reference_file, tmp_path, capsys
):
    out = tmp_path / "o.png"
    assert main(synthesize_argv(pathup_model_dir, reference_file, out, "--scheduler", "euler")) == 0
    assert "--scheduler is deprecated" in capsys.readouterr().err
    from napari_pathup.io import read_attrs

    assert read_attrs(out)["settings"]["scheduler"] == "euler"


# ----------------------------------------------------------------------- property tests, every command

HOSTILE = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "-0.5", "1e400", "-1e9", "0x10", "", " ", "1,5"]),
    st.floats(max_value=-1e-9).map(repr),
    st.integers(max_value=-1).map(str),
)

#: (command argv before the flag, flag, extra argv after) for every numeric flag of every command
NUMERIC_FLAGS = {
    "synthesize": [
        "--steps",
        "--strength",
        "--upscale-strength",
        "--guidance",
        "--guidance-interval",
        "--patch",
        "--overlap",
        "--sigma",
        "--batch-size",
        "--reference-size",
        "--seed",
        "--max-image-pixels",
    ],
    "info": [
        "--steps",
        "--strength",
        "--upscale-strength",
        "--guidance",
        "--patch",
        "--sigma",
        "--batch-size",
    ],
    "augment": [
        "--ratio",
        "--steps",
        "--guidance",
        "--sigma",
        "--upscale-strength",
        "--patch",
        "--seed",
        "--workers",
        "--threads",
        "--connect-timeout",
        "--max-image-pixels",
    ],
    "metrics": [
        "--crops",
        "--nearest-k",
        "--kid-subsets",
        "--kid-subset-size",
        "--seed",
        "--batch-size",
        "--input-size",
    ],
    "evaluate": ["--folds", "--min-tissue", "--seed", "--mil-epochs", "--batch-size"],
    "train": [
        "--min-tissue",
        "--ae-iters",
        "--ae-batch-size",
        "--ae-crop",
        "--ae-lr",
        "--latent-channels",
        "--iters",
        "--batch-size",
        "--crop",
        "--lr",
        "--label-dropout",
        "--overview-fraction",
        "--checkpoint-every",
        "--eval-every",
        "--seed",
        "--threads",
        "--reference-size",
        "--max-images-per-class",
    ],
}


def command_argv(command: str, model: Path, folder: Path) -> list[str]:
    out = folder / "out"
    return {
        "synthesize": synthesize_argv(model, folder / "missing-ref.png", out / "o.png"),
        "info": ["info", "--model", str(model), "--device", "cpu", "--no-calibrate"],
        "augment": ["augment", str(folder / "data"), "--out", str(out / "store"), "--model", str(model)],
        "metrics": ["metrics", str(folder / "data"), str(folder / "data")],
        "evaluate": ["evaluate", str(folder / "data")],
        "train": ["train", str(folder / "data"), "--out", str(out / "model")],
    }[command]


@pytest.mark.usefixtures("no_model_load")
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flag=st.sampled_from([(c, f) for c, flags in NUMERIC_FLAGS.items() for f in flags]),
    value=HOSTILE,
)
def test_every_numeric_flag_refuses_hostile_values_with_one_line_before_any_work(
    pathup_model_dir, tmp_path_factory, capsys, flag, value
):
    command, name = flag
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "out").mkdir()
    argv = [*command_argv(command, pathup_model_dir, folder), f"{name}={value}"]
    start = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage line + one error line
        code = exc.code
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "Traceback" not in err and "error:" in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and (name in errors[0] or name.lstrip("-").replace("-", "_") in errors[0]), err
    assert list((folder / "out").iterdir()) == []
    assert seconds < 5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--plot", "{out}/folds.jpg"], "--plot {out}/folds.jpg: expected a .png file"),
        (["--json", "{out}/missing/r.json"], "the folder {out}/missing does not exist"),
        (["--plot", "{out}/missing/p.png"], "the folder {out}/missing does not exist"),
    ],
    ids=["plot-not-png", "json-folder-missing", "plot-folder-missing"],
)
def test_evaluate_refuses_a_report_path_it_cannot_write_before_any_feature(tmp_path, capsys, extra, message):
    """``--plot``/``--json`` are checked before DATA is read or a network loaded: a mistyped report path
    costs one line, not a cross-validation run that fails at its end."""
    out = tmp_path / "out"
    out.mkdir()
    argv = ["evaluate", str(tmp_path / "data"), *[e.format(out=out) for e in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(out=out) in err and "Traceback" not in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("out_name", "extra", "message"),
    [
        ("o.png", ["--guidance", "nan"], "guidance (--guidance) must be a finite number"),
        ("o.zarr", [], "unsupported output extension"),
        ("taken.png", [], "already exists; pass --overwrite"),
        ("o.png", ["--class", "tumor"], "unknown class 'tumor' (--class) for model"),
        ("o.png", ["--model", "no-such-folder"], "no-such-folder does not exist"),
        ("o.png", ["--model", "org/name"], "allow it explicitly (--allow-download)"),
        ("o.png", ["--model", "."], "is not a model folder: expected pathup.json"),
    ],
    ids=[
        "nan-setting",
        "output-extension",
        "existing-output",
        "misspelt-class",
        "missing-model",
        "hub-id",
        "not-a-model",
    ],
)
def test_bad_input_is_refused_before_torch_is_even_imported(tmp_path, out_name, extra, message):
    """NaN settings, an output format we cannot write, an output that exists, a class the (shipped)
    model does not have and a --model that is no model folder are refused in a fraction of a second,
    before the seconds of torch and diffusers imports; nothing is written."""
    import subprocess
    import sys

    (tmp_path / "taken.png").write_bytes(b"the user's own file")
    code = (
        "import sys; from napari_pathup.cli import main; "
        f"rc = main(['synthesize', '--class', 'tumour', '--out', {str(tmp_path / out_name)!r}, *{extra!r}]); "
        "assert rc == 2, rc; heavy = [m for m in ('torch', 'diffusers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run(  # in tmp_path: "." is a folder that holds no model
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.png"]
    assert (tmp_path / "taken.png").read_bytes() == b"the user's own file"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "--class", "tumor"], "unknown class 'tumor' (--class) for model"),
        (["info", "--model", "no-such-folder"], "no-such-folder does not exist"),
        (["augment", "data", "--out", "store", "--model", "no-such-folder"], "no-such-folder does not exist"),
    ],
    ids=["info-class", "info-model", "augment-model"],
)
def test_info_and_augment_refuse_a_wrong_model_or_class_before_torch_is_even_imported(
    tmp_path, argv, message
):
    import subprocess
    import sys

    code = (
        f"import sys; from napari_pathup.cli import main; rc = main({argv!r}); "
        "assert rc == 2, rc; heavy = [m for m in ('torch', 'diffusers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("classes", "store", "message"),
    [
        (("tumour", "lymphoma"), "store", "class(es) lymphoma of DATA are not classes of the model"),
        (("tumour",), "run.ome.zarr", "a store is a folder of images"),
        (("tumour",), "results.csv", "the extension of a file (text/csv)"),
    ],
    ids=["data-class", "store-name", "store-file-name"],
)
def test_augment_refuses_data_classes_and_a_store_name_before_torch_is_even_imported(
    tmp_path, classes, store, message
):
    """DATA's class folders are read (names only) and the store's path checked before the imports: a
    class the model cannot draw, or a new store named like one image, is one line in a fraction of a
    second, with the library's own message, and no store is made."""
    import subprocess
    import sys

    for name in classes:
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.fromarray(rgb(64, 64)).save(tmp_path / "data" / name / "a.png")
    code = (
        "import sys; from napari_pathup.cli import main; "
        f"rc = main(['augment', 'data', '--out', {store!r}]); assert rc == 2, rc; "
        "heavy = [m for m in ('torch', 'diffusers', 'distributed') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize("how", ["pickle-only", "remote-code-class", "wrong-class-count", "weak-mismatch"])
def test_a_broken_model_folder_is_refused_before_torch_is_even_imported(pathup_model_dir, tmp_path, how):
    """A model folder whose configs or weight files are wrong (pickle weights only, a config naming
    foreign code, a denoiser that does not fit the classes, a weak denoiser that does not fit the
    denoiser): the same message as loading it gives, in a fresh process that never imports torch."""
    import re
    import subprocess
    import sys

    from helpers import BROKEN_MODELS, broken_model

    model = broken_model(pathup_model_dir, tmp_path, how)
    out = tmp_path / "out.png"
    code = (
        "import sys; from napari_pathup.cli import main; "
        f"rc = main(['synthesize', '--model', {str(model)!r}, '--class', 'tumour', '--out', {str(out)!r}]); "
        "assert rc == 2, rc; heavy = [m for m in ('torch', 'diffusers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert re.search(BROKEN_MODELS[how], result.stderr), result.stderr
    assert not out.exists()


def test_a_misspelt_synthesis_default_for_training_is_refused_before_any_work(
    pathup_model_dir, tmp_path, capsys
):
    """``pathup train --set-default guidence=4`` would train for hours and write a default nothing
    reads; it is refused at once, naming the flag and the key."""
    (tmp_path / "out").mkdir()
    argv = [*command_argv("train", pathup_model_dir, tmp_path), "--set-default", "guidence=4"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert exc.value.code == 2 and len(errors) == 1, err
    assert "--set-default" in errors[0] and "guidence" in errors[0] and "guidance" in errors[0], err
    assert list((tmp_path / "out").iterdir()) == []
    parsed = build_parser().parse_args([*argv[:-1], "guidance=4"])
    assert parsed.defaults == [("guidance", 4)]


@pytest.mark.parametrize(
    ("flag", "named"),
    [("tumour:guidence=4", "guidence"), ("upscale_strength=0.9", "CLASS:KEY=VALUE"), (":steps=9", "CLASS")],
)
def test_a_malformed_class_default_for_training_is_refused_before_any_work(
    pathup_model_dir, tmp_path, capsys, flag, named
):
    """``--set-class-default`` takes CLASS:KEY=VALUE; a missing class or a misspelt key is refused at
    once, naming the flag, not after hours of training."""
    (tmp_path / "out").mkdir()
    argv = [*command_argv("train", pathup_model_dir, tmp_path), "--set-class-default", flag]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert exc.value.code == 2 and len(errors) == 1 and "--set-class-default" in errors[0], errors
    assert named in errors[0], errors
    assert list((tmp_path / "out").iterdir()) == []
    parsed = build_parser().parse_args([*argv[:-1], "tumour:guidance=4"])
    assert parsed.class_defaults == [("tumour", "guidance", 4)]


@pytest.mark.parametrize("command", ["augment", "evaluate", "train"])
@pytest.mark.parametrize("value", [",", " , ", ""])
def test_a_split_list_without_a_name_is_refused_naming_the_flag(
    pathup_model_dir, tmp_path, capsys, command, value
):
    (tmp_path / "out").mkdir()
    argv = [*command_argv(command, pathup_model_dir, tmp_path), f"--split={value}"]
    with pytest.raises(SystemExit) as exc:  # argparse: usage line + one error line
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--split" in errors[0] and "split folder names" in errors[0], err
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("command", ["augment", "evaluate", "train", "prepare"])
def test_split_names_are_read_the_same_by_every_command(pathup_model_dir, tmp_path, command):
    from napari_pathup.cli import build_parser

    argv = {"prepare": ["prepare", str(tmp_path / "data"), "--out", str(tmp_path / "tiles")]}.get(
        command
    ) or command_argv(command, pathup_model_dir, tmp_path)
    parser = build_parser()
    assert parser.parse_args(argv).split == ("train",)
    assert parser.parse_args([*argv, "--split", " train, val ,"]).split == ("train", "val")


#: what diffusers raises for a scheduler whose optional package is missing (several lines)
MISSING_SCIPY = (
    "\nLMSDiscreteScheduler requires the scipy library but it was not found in your environment. "
    "You can install it with pip: `pip install scipy`\n"
)


def test_a_sampler_whose_package_is_missing_is_refused_in_one_line(
    pathup_model_dir, reference_file, tmp_path, capsys, monkeypatch
):
    """A listed sampler whose optional package is absent: one line naming the sampler and the package."""
    from napari_pathup.models import schedulers

    class NeedsScipy:
        @classmethod
        def from_config(cls, config):
            raise ImportError(MISSING_SCIPY)

    monkeypatch.setattr(schedulers, "scheduler_class", lambda class_name: NeedsScipy)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = synthesize_argv(pathup_model_dir, reference_file, out_dir / "o.png", "--sampler", "lms")
    line = refused(argv, capsys, out_dir, "scheduler 'lms' (--sampler) cannot be used here")
    assert "requires the scipy library" in line and "pip install scipy" in line


def test_a_sampler_that_ignores_the_seed_is_refused(pathup_model_dir, reference_file, tmp_path, capsys):
    """dpm++-sde seeds its noise from torch's global generator: a run could not be repeated from its seed."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = synthesize_argv(pathup_model_dir, reference_file, out_dir / "o.png", "--sampler", "dpm++-sde")
    line = refused(argv, capsys, out_dir, "scheduler 'dpm++-sde' (--sampler) is not supported")
    assert "could not be repeated from its seed" in line and "euler-a" in line
