"""The embedded default model (shipped inside the package) and the model's own reference images."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from napari_pathup.errors import InputError, ModelLoadError
from napari_pathup.models.base import PathupModel
from napari_pathup.models.layout import PATHUP_JSON


def default_model_path() -> Path | None:
    """The shipped default model folder, or None when this build ships none."""
    folder = Path(str(resources.files("napari_pathup"))) / "data" / "default_model"
    return folder if (folder / PATHUP_JSON).is_file() else None


def resolve_model_spec(spec: str | Path | None) -> str | Path:
    """The model the user named, else the embedded default; a clear error when there is neither."""
    if spec is not None:
        return spec
    default = default_model_path()
    if default is None:
        raise ModelLoadError("this installation ships no default model; name a model folder with --model DIR")
    return default


def reference_for_class(model: PathupModel, class_name: str) -> Path:
    """The real reference image a model folder names for ``class_name`` (``pathup.json`` "references")."""
    references = model.metadata.get("references", {})
    if class_name not in references:
        raise InputError(
            f"model {model.path} names no reference image for class {class_name!r}; "
            "give one with --reference IMAGE"
        )
    path = Path(model.path) / references[class_name]
    if not path.is_file():
        raise ModelLoadError(f"reference image {path} named in {Path(model.path) / PATHUP_JSON} is missing")
    return path
