"""`pathup augment` from the command line: a local cluster run with one failing item, exit codes, errors."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from helpers import rgb
from napari_pathup.augmentation.manifest import MANIFEST_NAME, read_manifest
from napari_pathup.cli import main


def args(data, store, model, *extra):
    return [
        "augment",
        str(data),
        "--out",
        str(store),
        "--model",
        str(model),
        "--size",
        "64",
        "--steps",
        "4",
        "--reference-size",
        "64",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def test_a_local_run_reports_done_and_failed_items_and_exits_nonzero(pathup_model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "tumour").mkdir(parents=True)
    Image.fromarray(rgb(128, 160)).save(data / "tumour" / "good.png")
    buffer = io.BytesIO()
    Image.fromarray(rgb(128, 160, seed=1)).save(buffer, format="PNG")
    (data / "tumour" / "cut.png").write_bytes(buffer.getvalue()[:200])  # header fine, pixels missing
    store = tmp_path / "store"

    assert main(args(data, store, pathup_model_dir, "--workers", "1")) == 1
    out, err = capsys.readouterr()
    assert "2 planned: 1 made" in out and "1 failed" in out
    assert "failed tumour/cut_syn0.ome.zarr: InputError" in err
    rows = {r.output: r for r in read_manifest(store / MANIFEST_NAME)}
    assert rows["tumour/good_syn0.ome.zarr"].status == "done"
    assert (
        rows["tumour/cut_syn0.ome.zarr"].status == "failed"
        and "cut.png" in rows["tumour/cut_syn0.ome.zarr"].error
    )
    assert not (store / "tumour" / "cut_syn0.ome.zarr").exists()

    # with the broken reference removed, the store is complete: a rerun starts no cluster and skips
    (data / "tumour" / "cut.png").unlink()
    assert main(args(data, store, pathup_model_dir)) == 0
    assert "1 planned: 0 made" in capsys.readouterr().out
    # the manifest follows the plan and the disk: one done row
    assert [r.status for r in read_manifest(store / MANIFEST_NAME)] == ["done"]


def test_an_unreachable_scheduler_is_a_clear_error(pathup_model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "tumour").mkdir(parents=True)
    Image.fromarray(rgb(128, 128)).save(data / "tumour" / "a.png")
    code = main(
        args(
            data,
            tmp_path / "store",
            pathup_model_dir,
            "--dask-address",
            "tcp://127.0.0.1:1",
            "--connect-timeout",
            "1",
        )
    )
    assert code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ratio", "0"], "expected a finite number > 0"),
        (["--ratio", "x"], "expected a finite number > 0"),
        (["--ratio", "inf"], "expected a finite number > 0"),
        (["--workers", "0"], "expected a whole number of at least 1"),
        (["--seed", "-1"], "expected a whole number of at least 0"),
    ],
)
def test_bad_options_are_refused_by_the_parser(pathup_model_dir, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(args(tmp_path, tmp_path / "store", pathup_model_dir, *extra))
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_workers_and_a_dask_address_together_are_refused(pathup_model_dir, tmp_path, capsys):
    code = main(
        args(tmp_path, tmp_path / "store", pathup_model_dir, "--dask-address", "tcp://x:1", "--workers", "2")
    )
    assert code == 2 and "--workers sizes a local cluster" in capsys.readouterr().err


def test_the_old_scheduler_flag_still_names_the_dask_address_with_a_deprecation(
    pathup_model_dir, tmp_path, capsys
):
    code = main(
        args(tmp_path, tmp_path / "store", pathup_model_dir, "--scheduler", "tcp://x:1", "--workers", "2")
    )
    err = capsys.readouterr().err
    assert code == 2 and "--workers sizes a local cluster" in err
    assert "--scheduler is deprecated" in err and "--dask-address" in err


def test_a_cluster_with_dasks_trim_setting_gets_one_warning_and_the_run_goes_on(
    pathup_model_dir, tmp_path, capsys, monkeypatch
):
    from distributed import LocalCluster

    data = tmp_path / "data"
    (data / "tumour").mkdir(parents=True)
    Image.fromarray(rgb(128, 128)).save(data / "tumour" / "a.png")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # restored (unset) after the test
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        code = main(
            args(data, tmp_path / "store", pathup_model_dir, "--dask-address", cluster.scheduler_address)
        )
    out, err = capsys.readouterr()
    assert code == 0 and "1 planned: 1 made" in out
    warning = "pathup augment: warning: 1 of 1 Dask workers run with MALLOC_TRIM_THRESHOLD_=65536"
    assert err.count(warning) == 1
    assert "pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null" in err
