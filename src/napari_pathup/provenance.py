"""What a synthetic image records about how it was made, so that it can be reproduced.

The CLI writes these attributes into every output file; the napari widget puts the same dictionary
in the layer's metadata (under "pathup"), where the OME-Zarr writer finds it. :func:`synthesize_command`
turns them back into the ``pathup synthesize`` command that makes the image again (``pathup slide IMAGE``
prints it); nothing here imports torch until a run's attributes are recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_pathup import __version__
from napari_pathup.checksum import tagged_sha256

if TYPE_CHECKING:
    from napari_pathup.models.base import PathupModel

#: the stand-in for a reference the attributes cannot name (a napari layer held in memory)
REFERENCE_PLACEHOLDER = "REFERENCE"


def file_sha256(path: str | Path) -> str:
    """sha256 of a file ("" for a folder such as an OME-Zarr store)."""
    path = Path(path)
    return "" if path.is_dir() else tagged_sha256(path)


def run_attributes(
    model: PathupModel, settings: dict[str, Any], reference: str | Path | None
) -> dict[str, Any]:
    """Settings, seed, model hash and reference of a finished run (``settings`` as resolved)."""
    import torch

    from napari_pathup.models.load import model_hash

    return {
        "generator": f"napari-pathup {__version__}",
        "method": "PathUp (two-stage latent diffusion with patch-wise timestep tracking)",
        "class": settings["class_name"],
        "seed": settings["seed"],
        "settings": settings,
        "model": {"path": str(model.path), "kind": model.kind, "hash": model_hash(model.path)},
        "reference": (
            {"path": str(reference), "sha256": file_sha256(reference)}
            if reference
            else {"path": "", "sha256": ""}
        ),
        "device": str(model.device),
        "dtype": str(model.dtype).replace("torch.", ""),
        "torch": torch.__version__,
    }


#: the settings a run record must hold for :func:`synthesize_command` to rebuild its command
RECORD_SETTINGS = ("class_name", "seed", "height", "width")


def is_run_record(attrs: dict[str, Any]) -> bool:
    """Whether ``attrs`` (an image's napari-pathup attributes) record a synthesis run: the generator, the
    model's path and the settings a command needs (a file edited by hand may lack them)."""
    settings, model = attrs.get("settings"), attrs.get("model")
    return (
        str(attrs.get("generator", "")).startswith("napari-pathup")
        and isinstance(settings, dict)
        and all(key in settings for key in RECORD_SETTINGS)
        and isinstance(model, dict)
        and bool(model.get("path"))
    )


def synthesize_command(attrs: dict[str, Any], out: str = "again.ome.zarr") -> tuple[list[str], list[str]]:
    """The ``pathup synthesize`` argv (without ``pathup``) that makes the image these attributes describe
    again, writing ``out``, and notes on what it cannot carry over (a reference held only in napari,
    library-only settings, another version of napari-pathup or torch, which may draw other bits).

    Every recorded sampling setting is passed explicitly, so the command does not depend on the model's
    or the library's defaults of the day."""
    from napari_pathup.engine.plan import SAMPLING_FIELDS, SETTINGS, SynthesisSettings

    settings = attrs["settings"]
    notes: list[str] = []
    argv = ["synthesize", "--model", str(attrs["model"]["path"])]
    reference = str((attrs.get("reference") or {}).get("path") or "")
    if not reference:
        reference = REFERENCE_PLACEHOLDER
        notes.append(
            f"the reference was an image held in napari, not a file: replace {reference} with its file"
        )
    argv += ["--reference", reference]
    region = attrs.get("reference_region")
    if isinstance(region, dict) and all(k in region for k in ("x", "y", "width", "height", "level")):
        argv += ["--region", f"{region['x']},{region['y']},{region['width']},{region['height']}"]
        argv += ["--level", str(region["level"])]
        if region.get("scan_region") is not None:
            argv += ["--scan-region", str(region["scan_region"])]
    argv += ["--class", str(settings["class_name"]), "--seed", str(settings["seed"])]
    argv += ["--size", f"{settings['width']}x{settings['height']}"]
    for setting in SETTINGS:
        value = settings.get(setting.field)
        if setting.flag is None or setting.field not in SAMPLING_FIELDS or value is None:
            continue
        if isinstance(value, bool):
            argv += [setting.flag] if value else []
        elif isinstance(value, list | tuple):
            argv += [setting.flag, ",".join(repr(float(v)) for v in value)]
        else:
            argv += [setting.flag, repr(value) if isinstance(value, float) else str(value)]
    argv += ["--device", str(attrs.get("device", "auto")), "--dtype", str(attrs.get("dtype", "auto"))]
    argv += ["--out", out]
    defaults = SynthesisSettings("x")
    for setting in SETTINGS:
        if setting.flag is None and settings.get(setting.field, getattr(defaults, setting.field)) != getattr(
            defaults, setting.field
        ):
            notes.append(f"{setting.field} was {settings[setting.field]} (set from Python; no flag sets it)")
    made_by, this = str(attrs.get("generator", "")), f"napari-pathup {__version__}"
    if made_by != this:
        notes.append(f"made by {made_by}; this is {this}: its pictures may differ")
    torch_then, torch_now = str(attrs.get("torch", "")), _installed_version("torch")
    if torch_then and torch_now and torch_then.split("+")[0] != torch_now.split("+")[0]:  # not the build tag
        notes.append(f"made with torch {torch_then}; this is torch {torch_now}: float rounding may differ")
    return argv, notes


def _installed_version(package: str) -> str:
    """An installed distribution's version, without importing it ("" when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return ""
