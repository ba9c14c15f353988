"""scripts/device_train.sh, the prepared run for a lent GPU: its control flow on this machine, with a stand-in
for ``scripts/train_default_model.sh``. A mistake in it costs device time that cannot be had back (the first
run hung on its own logger until the tool's limit), so what each path leaves in ``$OUT`` is checked here:
the plain models of a first call, the legs a second call trains from them, a cut plain phase exported
from its latest checkpoint, a leg cut before its first checkpoint, and a request with nothing to train."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

# Stands in for scripts/train_default_model.sh: the same environment in, checkpoints and an exported model
# out, in a second or less. FAKE_PLAIN=cut writes one checkpoint and hangs; FAKE_LEG=hang hangs at once.
FAKE_TRAIN = """
import json, os, sys, time
from pathlib import Path

work, dest = Path(os.environ["WORK"]), Path(os.environ["DEST"])
iters, leg_end = int(os.environ["ITERS"]), int(os.environ.get("DGAN_ITERS", "0"))

def latest(phase):
    path = work / "checkpoints" / phase / "latest.json"
    return json.loads(path.read_text())["iteration"] if path.exists() else None

def checkpoint(phase, iteration):
    folder = work / "checkpoints" / phase
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest.json").write_text(json.dumps({"iteration": iteration}))
    with open(folder / "log.jsonl", "a") as log:
        log.write(json.dumps({"iteration": iteration, "val": 0.6}) + "\\n")

def export(iteration, how):
    for sub in ("denoiser", "scheduler"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    (dest / "denoiser" / "weights.bin").write_bytes(b"w" * 1000)
    (dest / "scheduler" / "scheduler_config.json").write_text("{}")
    record = {"iterations": iteration, "how": how, "batch": os.environ["BATCH"],
              "init": os.environ.get("INIT"), "seed": os.environ["SEED"]}
    (dest / "pathup.json").write_text(json.dumps({"training": {"denoiser": record}}))

if os.environ.get("EXPORT_ONLY"):
    reached = latest("denoiser_gan") or latest("denoiser")
    if reached is None:
        sys.exit("no checkpoint to export")
    export(reached, "export of the latest checkpoint")
elif leg_end == 0:
    if os.environ.get("FAKE_PLAIN") == "cut":
        checkpoint("denoiser", iters - 90)
        time.sleep(600)
    checkpoint("denoiser", iters)
    export(iters, "plain, finished")
else:
    if os.environ.get("FAKE_LEG") == "hang":
        time.sleep(600)
    checkpoint("denoiser_gan", leg_end)
    export(leg_end, "leg, finished")
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout holding the real device script and the stand-in trainer."""
    scripts = tmp_path / "repo" / "scripts"
    scripts.mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "device_train.sh", scripts / "device_train.sh")
    fake = scripts / "train_default_model.sh"
    fake.write_text(f"#!{sys.executable}\n{FAKE_TRAIN}")
    fake.chmod(0o755)
    # nvidia-smi -l never ends: the run must wait on its variants only (the first GPU run waited on this)
    logger = tmp_path / "bin" / "nvidia-smi"
    logger.parent.mkdir()
    logger.write_text("#!/bin/sh\nexec sleep 600\n")
    logger.chmod(0o755)
    return tmp_path / "repo"


@pytest.fixture
def init(tmp_path: Path) -> Path:
    """A warm start whose pathup.json records 7,500 iterations (what trained_iterations reads)."""
    model = tmp_path / "init"
    model.mkdir()
    (model / "pathup.json").write_text(json.dumps({"training": {"denoiser": {"iterations": 7500}}}))
    return model


def run(checkout: Path, scratch: Path, **env: str) -> subprocess.CompletedProcess[str]:
    settings = {
        "PYTHON": sys.executable,
        "SCRATCH": str(scratch),
        "OUT": str(scratch / "out"),
        "DEVICE": "cpu",
        "THREADS": "1",
        "FAIL_FAST": "0",  # its pkill -f would reach beyond this test
        "PATH": f"{checkout.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT / "src"),
        **env,
    }
    script = checkout / "scripts" / "device_train.sh"
    process = subprocess.Popen(
        ["bash", str(script)],
        env=settings,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a run that hangs is stopped with everything it started
    )
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("device_train.sh did not end within 120 s (does it wait on its own logger?)")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def returned_model(out: Path, name: str, into: Path) -> dict:
    """The model NAME as this machine gets it back (into a folder of its own): parts joined, sha256
    checked, unpacked; its training record."""
    into.mkdir(parents=True, exist_ok=True)
    joined = into / f"{name}.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(out.glob(f"{name}.tar.part*"))))
    sums = dict(line.split()[::-1] for line in (out / "models.sha256").read_text().splitlines())
    assert hashlib.sha256(joined.read_bytes()).hexdigest() == sums[f"{name}.tar"]
    with tarfile.open(joined) as tar:
        tar.extractall(into / "unpacked", filter="data")
    model = into / "unpacked" / name
    assert (model / "denoiser" / "weights.bin").exists() and (model / "sha256.txt").exists()
    return json.loads((model / "pathup.json").read_text())["training"]["denoiser"]


def status(scratch: Path, name: str) -> str:
    return (scratch / "logs" / f"{name}.status").read_text()


def test_plain_models_then_their_legs_in_a_second_call(checkout: Path, init: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    done = run(checkout, first, VARIANTS="a:0 b:3", INIT=str(init), BATCH="32", PLAIN="100", LEG="0")
    assert done.returncode == 0, done.stderr
    a = returned_model(first / "out", "a", tmp_path / "a")
    assert (a["iterations"], a["batch"], a["seed"]) == (7600, "32", "0")
    assert "DONE b" in status(first, "b")

    # the second call: the leg alone, at its own batch, from the plain model the first left behind
    second = tmp_path / "second"
    variants = f"aL:1:{first}/model-a"
    done = run(checkout, second, VARIANTS=variants, BATCH="8", PLAIN="0", LEG="50", BUDGET="200")
    assert done.returncode == 0, done.stderr
    leg = returned_model(second / "out", "aL", tmp_path / "aL")
    assert leg["iterations"] == 7650 and leg["batch"] == "8" and leg["seed"] == "1"
    assert leg["init"] == f"{first}/model-a" and leg["how"] == "leg, finished"
    assert f"from {first}/model-a at iteration 7600" in status(second, "aL")


def test_a_cut_plain_phase_returns_its_latest_checkpoint(checkout: Path, init: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "run"
    done = run(
        checkout,
        scratch,
        VARIANTS="c:0",
        INIT=str(init),
        PLAIN="100",
        LEG="0",
        PLAIN_SECONDS="3",
        FAKE_PLAIN="cut",
    )
    assert done.returncode == 0, done.stderr
    assert "plain phase: rc 124 at iteration 7510" in status(scratch, "c")
    model = returned_model(scratch / "out", "c", tmp_path / "c")
    assert (model["iterations"], model["how"]) == (7510, "export of the latest checkpoint")


def test_a_leg_cut_before_its_first_checkpoint_says_so(checkout: Path, init: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "run"
    done = run(
        checkout,
        scratch,
        VARIANTS="d:0",
        INIT=str(init),
        PLAIN="0",
        LEG="50",
        BUDGET="22",
        EXPORT_SECONDS="2",
        FAKE_LEG="hang",
    )
    assert done.returncode == 0, done.stderr
    assert status(scratch, "d").splitlines()[-1] == (
        "FAILED leg cut before its first checkpoint: nothing of it to export"
    )
    assert not list((scratch / "out").glob("d.tar*"))


def test_nothing_to_train_is_refused_before_anything_is_removed(checkout: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "kept"
    scratch.mkdir()
    (scratch / "model-a").mkdir()  # what a first call left: a refused second call must not remove it
    done = run(checkout, scratch, VARIANTS="a:0", PLAIN="0", LEG="0")
    assert done.returncode == 1
    assert "PLAIN=0 and LEG=0 leave nothing to train" in done.stderr
    assert (scratch / "model-a").is_dir()
