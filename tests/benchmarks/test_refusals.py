"""``benchmarks/bench_refusals.py`` times refusals, so each of its cases must be one: every command it
builds is refused (exit 2) in a fresh process, and the early ones before torch is imported."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
#: the cases that, by design, are refused only once diffusers is imported
AFTER_IMPORTS = ("scheduler diffusers lacks (after the imports)",)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    saved = list(sys.path)  # the module puts its own folder on the path too
    try:
        spec = importlib.util.spec_from_file_location("bench_refusals", BENCHMARKS / "bench_refusals.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def test_every_case_is_a_refusal_and_the_early_ones_import_no_torch(bench, tmp_path):
    cases = bench.cases(tmp_path)
    assert set(AFTER_IMPORTS) < set(cases)
    runner = (
        "import sys; from napari_pathup.cli import main; rc = main(sys.argv[1:]); "
        "heavy = [m for m in ('torch', 'diffusers') if m in sys.modules]; "
        "print('heavy', heavy, file=sys.stderr); sys.exit(rc)"
    )
    for name, argv in cases.items():
        done = subprocess.run(
            [sys.executable, "-c", runner, *argv], capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 2, (name, done.stderr)
        assert "error:" in done.stderr and "Traceback" not in done.stderr, (name, done.stderr)
        early = "heavy []" in done.stderr
        assert early == (name not in AFTER_IMPORTS), (name, done.stderr)
    assert not (tmp_path / "new.png").exists() and not (tmp_path / "store").exists()
    assert (tmp_path / "taken.png").read_bytes() == b"the user's own file"
