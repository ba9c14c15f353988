"""The denoiser validation loss of an exported PathUp model folder, as its training measured it.

Training logs the EMA denoiser's loss on the hold-out crops of its data (``val`` in ``log.jsonl`` and
in the model's ``pathup.json``). This recomputes it from the folder alone, with the training's own
hold-out crops, autoencoder and :func:`~napari_pathup.training.denoiser.validation_loss`, so that a
figure quoted for a model (candidates' READMEs, the model card) can be checked on any machine, and so
that a half-precision export can be compared with the float32 one it was rounded from.
"""

from __future__ import annotations

import json
from pathlib import Path

from napari_pathup.datasets import discover
from napari_pathup.errors import InputError, ModelLoadError
from napari_pathup.models.spec import PATHUP_JSON
from napari_pathup.training.data import load_images
from napari_pathup.training.denoiser import holdout_latents, training_scheduler, validation_loss
from napari_pathup.training.settings import dataset_fingerprint
from napari_pathup.training.train import load_denoiser


def model_validation_loss(model: Path, data: Path) -> tuple[int, float]:
    """``(iterations, loss)`` of ``model``'s denoiser on the hold-out crops of ``data``, which must be
    the data it was trained on (same classes, images and hold-out regions)."""
    from napari_pathup.models.load import load_model

    meta_path = Path(model) / PATHUP_JSON
    try:
        training = json.loads(meta_path.read_text())["training"]
        settings = training["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{model}: expected a model folder trained by `pathup train` ({exc})") from exc
    index = discover(
        Path(data),
        tuple(settings.get("splits", ("train",))),
        settings.get("holdout"),
        settings.get("max_images_per_class"),
        settings.get("seed", 0),
    )  # as training found it
    if dataset_fingerprint(index) != training.get("data"):
        raise InputError(
            f"{data}: its classes, images or hold-out regions differ from those {model} was trained on; "
            "the validation loss is only comparable on the model's own data"
        )
    autoencoder = load_model(model).autoencoder
    eval_set = holdout_latents(
        index, load_images(index), settings["crop"], settings["min_tissue"], autoencoder
    )
    if eval_set is None:
        raise InputError(f"{data}: no hold-out crop of {settings['crop']} px to validate on")
    denoiser, iterations = load_denoiser(model)
    loss = validation_loss(denoiser.eval(), eval_set, training_scheduler(settings["prediction"]))
    return iterations, loss
