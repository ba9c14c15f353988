"""The package is a valid npe2 plugin from the start (the widgets arrive with the plugin issue)."""

from importlib import resources

import pytest


def test_manifest_validates_and_is_registered():
    npe2 = pytest.importorskip("npe2")
    path = resources.files("napari_pathup") / "napari.yaml"
    manifest = npe2.PluginManifest.from_file(str(path))
    assert manifest.name == "napari-pathup"
    # the entry point napari uses to discover the plugin points at the same file
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="napari.manifest") if e.name == "napari-pathup"]
    assert entry.value == "napari_pathup:napari.yaml"


def test_manifest_slide_patterns_are_the_suffixes_the_slide_reader_takes():
    """napari offers the slide reader exactly the files it reads: a suffix added to the reader but not to
    the manifest (or the other way round) would leave those slides to other readers, or to none."""
    npe2 = pytest.importorskip("npe2")
    from napari_pathup.io.images import SLIDE_SUFFIXES, SUPPORTED_IMAGE_SUFFIXES

    manifest = npe2.PluginManifest.from_file(str(resources.files("napari_pathup") / "napari.yaml"))
    (slide_reader,) = [r for r in manifest.contributions.readers if r.command.endswith("get_slide_reader")]
    assert sorted(slide_reader.filename_patterns) == sorted(f"*{s}" for s in SLIDE_SUFFIXES)
    assert set(SLIDE_SUFFIXES) <= set(SUPPORTED_IMAGE_SUFFIXES)  # a slide is a reference wherever one is read


def test_core_packages_import_no_qt():
    import subprocess
    import sys

    code = (
        "import sys, napari_pathup.engine.pipeline, napari_pathup.models.load, napari_pathup.io, "
        "napari_pathup.cli, napari_pathup.evaluation.run, napari_pathup.evaluation.report, "
        "napari_pathup.augmentation.run, napari_pathup.engine.plan, "
        "napari_pathup.io.slide, napari_pathup.io.live_zarr, napari_pathup.measure.compare, "
        "napari_pathup.measure.quality, napari_pathup.datasets, napari_pathup.geometry, "
        "napari_pathup.training.data, napari_pathup._writer, napari_pathup.formatting, "
        "napari_pathup.widgets._run; "
        "import matplotlib.backends.backend_agg; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari')]; print(bad); assert not bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
