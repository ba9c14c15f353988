"""The public API of ``napari_pathup`` and the README's library example, run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_public_api_lists_about_ten_entry_points_that_all_resolve():
    import napari_pathup

    expected = {"load_model", "SynthesisSettings", "RunPlan", "synthesize", "run", "read_image",
                "write_image", "compute_metrics", "augment", "evaluate", "train", "PathupError",
                "SettingsError"}  # fmt: skip
    assert expected <= set(napari_pathup.__all__)
    for name in napari_pathup.__all__:
        assert getattr(napari_pathup, name) is not None, name
    assert issubclass(napari_pathup.SettingsError, napari_pathup.PathupError)
    assert issubclass(napari_pathup.SettingsError, ValueError)  # callers that catch ValueError still do


def test_importing_the_package_loads_no_torch():
    code = "import sys, napari_pathup; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_readme_library_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text(encoding="utf-8")
    section = text.split("## Library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Library)", "exec"), {})
    assert (tmp_path / "tumour.png").is_file()
    assert "(256, 256, 3)" in capsys.readouterr().out


def test_the_command_line_parser_builds_without_torch():
    """``pathup --help`` must stay fast: the settings table and its checks import no torch or diffusers."""
    code = (
        "import sys; from napari_pathup.cli import build_parser; build_parser(); "
        "from napari_pathup.engine.plan import SynthesisSettings; SynthesisSettings('x').check(); "
        "heavy = [m for m in ('torch', 'diffusers') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
