"""``pathup train-decoder``: a decoder leg from the command line writes a model that synthesises, and bad
input is refused in one line (exit 2) before any training, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import tiny_patch_model
from napari_pathup.cli import main
from napari_pathup.models.load import load_model


@pytest.fixture
def patch_model(tiny_dataset: Path, tmp_path: Path) -> Path:
    return tiny_patch_model(tiny_dataset, tmp_path / "model")


def test_writes_a_model_that_loads_with_the_leg_recorded(
    patch_model: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sharper"
    argv = ["train-decoder", str(patch_model), str(tiny_dataset), "--out", str(out), "--iters", "2",
            "--glass", "0.25", "--decoder-width", "12", "--batch-size", "2", "--crop", "64",
            "--device", "cpu", "--threads", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    model = load_model(out)
    assert model.modules["autoencoder"].config.decoder_width == 12
    assert model.classes == load_model(patch_model).classes
    (leg,) = json.loads((out / "pathup.json").read_text())["training"]["decoder"]["legs"]
    assert (leg["iterations"], leg["weights"]["glass"], leg["batch"]) == (2, 0.25, [2, 64])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--glass", "-1"], "argument --glass: '-1': expected a finite number >= 0"),
        (["--crop", "60"], "crop 60: expected a multiple of 8"),
        (["--decoder-width", "4"], "--decoder-width 4: expected more than the decoder's current 8"),
        (["--iters", "0"], "--iters"),
    ],
)
def test_refuses_bad_settings_in_one_line_writing_nothing(
    patch_model: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "sharper"
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["train-decoder", str(patch_model), str(tiny_dataset), "--out", str(out), "--quiet", *extra]
    code: int | str | None
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusal of a flag's type
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no OUT, no work folder


def test_refuses_a_folder_that_is_not_a_model(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sharper"
    assert main(["train-decoder", str(tiny_dataset), str(tiny_dataset), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "expected a PathUp model folder" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
