"""The embedded default model (shipped inside the package) and the model's own reference images."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from napari_pathup.errors import InputError, ModelLoadError
from napari_pathup.models.spec import PATHUP_JSON, ModelInfo


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


def class_references(model: ModelInfo, class_name: str) -> list[Path]:
    """The real reference images a model folder names for ``class_name`` (``pathup.json``
    "references": one path, or a list when the class spans slides that look different, e.g. dermis
    and epidermis); each checked to exist."""
    references = model.metadata.get("references", {})
    if not isinstance(references, dict) or class_name not in references:
        raise InputError(
            f"model {model.path} names no reference image for class {class_name!r}; "
            "give one with --reference IMAGE"
        )
    named = references[class_name]
    names = [named] if isinstance(named, str) else named
    where = Path(model.path) / PATHUP_JSON
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ModelLoadError(
            f'{where}: "references"[{class_name!r}] must be an image path or a non-empty list of them, '
            f"got {named!r}"
        )
    paths = [Path(model.path) / name for name in names]
    for path in paths:
        if not path.is_file():
            raise ModelLoadError(f"reference image {path} named in {where} is missing")
    return paths


def reference_for_class(model: ModelInfo, class_name: str, seed: int = 0) -> Path:
    """The reference a run of ``class_name`` with ``seed`` starts from when the user gives none: the
    class's references taken in turn (reference ``seed mod n``), so that a class's seeds cover all of
    its slides."""
    return take_reference(class_references(model, class_name), seed)


def take_reference(paths: Sequence[Path], seed: int) -> Path:
    """Reference ``seed mod n`` of a class's ``n`` references (:func:`class_references`): the rule
    :func:`reference_for_class` applies, for a caller that already holds the list."""
    return paths[seed % len(paths)]
