"""npe2 sample data: the real H&E reference RoIs shipped with the default model, one per class."""

from __future__ import annotations

from typing import Any

from napari_pathup.errors import ModelLoadError
from napari_pathup.io import read_image
from napari_pathup.models.default import default_model_path

ATTRIBUTION = "real H&E from openly licensed packages; see SOURCES.md in the model's references folder"


def _reference(class_name: str) -> list[tuple[Any, dict[str, Any], str]]:
    import json

    folder = default_model_path()
    if folder is None:
        raise ModelLoadError("this installation ships no default model, so it has no sample references")
    references = json.loads((folder / "pathup.json").read_text()).get("references", {})
    if class_name not in references:
        raise ModelLoadError(f"the default model has no reference image for class {class_name!r}")
    path = folder / references[class_name]
    meta = {
        "rgb": True,
        "name": f"{class_name} reference (real H&E)",
        "metadata": {"pathup": {"class": class_name, "reference": str(path), "attribution": ATTRIBUTION}},
    }
    return [(read_image(path), meta, "image")]


def tumour_reference() -> list[tuple[Any, dict[str, Any], str]]:
    return _reference("tumour")


def stroma_reference() -> list[tuple[Any, dict[str, Any], str]]:
    return _reference("stroma")


def normal_reference() -> list[tuple[Any, dict[str, Any], str]]:
    return _reference("normal")
