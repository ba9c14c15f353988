"""napari-pathup: large multi-class H&E synthesis with latent diffusion (PathUp).

The public library API is what ``__all__`` lists: load a model, describe settings and resolve them into
a validated run plan, run the synthesis, read and write images, compare image sets, augment a data set,
evaluate it, train a model; and the typed errors (:class:`PathupError` for everything the user can
fix). Example (the README's "Library" section, run by the tests)::

    import napari_pathup as pathup

    model = pathup.load_model()  # the embedded default model, or a folder
    plan = pathup.SynthesisSettings("tumour", height=512, width=512, steps=10).resolve(model)
    reference = pathup.read_image(pathup.reference_for_class(model, "tumour"))
    image = pathup.run(model, reference, plan).image
    pathup.write_image("tumour.ome.zarr", image, attrs={"settings": plan.to_dict()})

The core packages (``engine``, ``models``, ``io``, ``metrics``, ``augmentation``, ``evaluation``) import
neither Qt nor napari; the napari widgets and the ``pathup`` command line are thin layers over them.
Entry points load lazily, so ``import napari_pathup`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from napari_pathup._triton_guard import block_triton_if_llvm_loaded
from napari_pathup.errors import (
    ImageTooLargeError,
    InputError,
    ModelLoadError,
    OutputError,
    OutputExistsError,
    PathupError,
    RunTooLargeError,
    SettingsError,
    SynthesisError,
)

__version__ = "0.1.0.dev0"

block_triton_if_llvm_loaded()  # before any module imports torch: see _triton_guard

#: public name -> the module that defines it (imported on first use)
_ENTRY_POINTS: dict[str, str] = {
    "load_model": "napari_pathup.models.load",
    "read_model_spec": "napari_pathup.models.load",
    "reference_for_class": "napari_pathup.models.default",
    "SynthesisSettings": "napari_pathup.engine.plan",
    "RunPlan": "napari_pathup.engine.plan",
    "synthesize": "napari_pathup.engine.pipeline",
    "run": "napari_pathup.engine.pipeline",
    "read_image": "napari_pathup.io.images",
    "write_image": "napari_pathup.io.writers",
    "compute_metrics": "napari_pathup.metrics.compute",
    "augment": "napari_pathup.augmentation.run",
    "evaluate": "napari_pathup.evaluation.run",
    "train": "napari_pathup.training.train",
    "TrainConfig": "napari_pathup.training.settings",
}

__all__ = [
    *_ENTRY_POINTS,
    "ImageTooLargeError",
    "InputError",
    "ModelLoadError",
    "OutputError",
    "OutputExistsError",
    "PathupError",
    "RunTooLargeError",
    "SettingsError",
    "SynthesisError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _ENTRY_POINTS:
        value = getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_pathup' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
