"""npe2 sample data: the real H&E reference RoIs shipped with the default model, one per class."""

from __future__ import annotations

from typing import Any

from napari_pathup.errors import InputError, ModelLoadError
from napari_pathup.io import read_image
from napari_pathup.models.default import default_model_path

ATTRIBUTION = "real H&E from openly licensed packages; see SOURCES.md in the model's references folder"


def _reference(class_name: str) -> list[tuple[Any, dict[str, Any], str]]:
    """One image layer per reference the default model names for ``class_name``."""
    from napari_pathup.models.default import class_references
    from napari_pathup.models.load import read_model_spec

    folder = default_model_path()
    if folder is None:
        raise ModelLoadError("this installation ships no default model, so it has no sample references")
    try:
        paths = class_references(read_model_spec(folder), class_name)
    except InputError as exc:
        raise ModelLoadError(f"the default model has no reference image for class {class_name!r}") from exc
    layers = []
    for k, path in enumerate(paths):
        name = f"{class_name} reference (real H&E)" + (f" {k + 1}" if len(paths) > 1 else "")
        meta = {
            "rgb": True,
            "name": name,
            "metadata": {"pathup": {"class": class_name, "reference": str(path), "attribution": ATTRIBUTION}},
        }
        layers.append((read_image(path), meta, "image"))
    return layers


def tumour_reference() -> list[tuple[Any, dict[str, Any], str]]:
    return _reference("tumour")


def stroma_reference() -> list[tuple[Any, dict[str, Any], str]]:
    return _reference("stroma")


def normal_reference() -> list[tuple[Any, dict[str, Any], str]]:
    return _reference("normal")
