"""What a run plan needs to know about a model, read from its config files before any weights load.

Loading a model takes seconds to minutes; checking a run's settings against it must not. A
:class:`ModelSpec` holds the classes, the denoiser's native sample size and input rule, the
autoencoder's down-sampling factor, the latent channels, the "defaults" of ``pathup.json`` and the
scheduler (a config object, no weights). :class:`~napari_pathup.models.base.PathupModel` carries
the same attributes, so :meth:`~napari_pathup.engine.plan.SynthesisSettings.resolve` accepts either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

#: a PathUp model folder's metadata file and the "format" it declares (``models.layout``)
PATHUP_JSON = "pathup.json"
PATHUP_FORMAT = "pathup"
#: how the denoiser's class embeddings are laid out (:func:`napari_pathup.models.conditioning.class_label`)
LABEL_LAYOUT = "scale-major-with-null"
#: a PathUp folder's component folders
DENOISER_DIR = "denoiser"
AUTOENCODER_DIR = "autoencoder"
SCHEDULER_DIR = "scheduler"
#: optional: a weaker denoiser with the same inputs and outputs (the same line trained shorter, or a
#: smaller network), which autoguidance guides away from (``guidance_mode`` "auto"; Karras et al. 2024)
WEAK_DENOISER_DIR = "weak_denoiser"
#: PathUp conditions on the magnification: stage 1 sees shrunk whole images, stage 2 native crops
SCALES: tuple[str, ...] = ("overview", "native")


def num_class_embeds(n_classes: int, n_scales: int) -> int:
    """The class embeddings a PathUp denoiser needs: each scale's classes and its null label."""
    return n_scales * (n_classes + 1)


class ModelInfo(Protocol):
    """The attributes of a model that a run plan uses (a :class:`ModelSpec` or a loaded model)."""

    path: str
    classes: list[str]
    native_size: int
    latent_channels: int
    patch_multiple: int
    metadata: dict[str, Any]
    scheduler: SchedulerMixin

    @property
    def has_weak_denoiser(self) -> bool:
        """Whether the model has a weak denoiser (``weak_denoiser/``), which autoguidance needs."""
        ...

    @property
    def vae_scale_factor(self) -> int: ...

    def check_class(self, class_name: str) -> None: ...


def check_known_class(model: ModelInfo, class_name: str) -> None:
    """Raise :class:`~napari_pathup.errors.SettingsError` when ``model`` (a spec or a loaded model)
    has classes and ``class_name`` is not one of them; text models (no classes) accept any."""
    check_class_among(model.classes, class_name, model.path)


def check_class_among(classes: Sequence[str], class_name: str, model_path: str | Path) -> None:
    """:func:`check_known_class` for a model known by its classes and path alone."""
    from napari_pathup.errors import SettingsError

    if classes and class_name not in classes:
        raise SettingsError(
            f"unknown class {class_name!r} (--class) for model {model_path}; "
            f"expected one of {', '.join(classes)}"
        )


def check_data_classes(
    model_classes: Sequence[str], data_classes: Sequence[str], model_path: str | Path
) -> None:
    """Raise :class:`~napari_pathup.errors.InputError` when DATA has classes a model with classes
    lacks (``pathup augment`` could not draw them); a text model (no classes) takes any."""
    from napari_pathup.errors import InputError

    missing = [c for c in data_classes if model_classes and c not in model_classes]
    if missing:
        raise InputError(
            f"class(es) {', '.join(missing)} of DATA are not classes of the model {model_path} "
            f"({', '.join(model_classes)}); train a model on these classes (pathup train) or pass --model"
        )


@dataclass
class ModelSpec:
    """A model folder as its configs describe it (see the module docstring)."""

    kind: str
    path: str
    classes: list[str]
    scales: list[str]
    native_size: int
    scale_factor: int
    latent_channels: int
    patch_multiple: int
    scheduler: SchedulerMixin
    metadata: dict[str, Any] = field(default_factory=dict)
    has_weak_denoiser: bool = False

    @property
    def vae_scale_factor(self) -> int:
        return self.scale_factor

    def check_class(self, class_name: str) -> None:
        """Raise a clear error for a class the model does not know (text models accept any)."""
        check_known_class(self, class_name)


def denoiser_patch_multiple(class_name: str, config: Mapping[str, Any]) -> int:
    """The side a denoiser input must be a multiple of (and at least), from the denoiser's config.

    ``UNet2DModel`` halves its input once per down block but the last, and its skip connections
    only line up again when every halving was exact: sides must be multiples of 2**(blocks - 1)
    (patches of 1-3 latent pixels crash the default model inside diffusers). ``UNet2DConditionModel``
    records the sizes on the way down and up-samples to them, so it takes any side.
    """
    if class_name == "UNet2DConditionModel":
        return 1
    blocks = len(config.get("down_block_types") or config.get("block_out_channels") or [None])
    return 2 ** max(0, blocks - 1)


#: what a weak denoiser (autoguidance) must share with the denoiser: the same inputs and outputs
WEAK_DENOISER_INTERFACE = ("in_channels", "out_channels", "num_class_embeds", "class_embed_type")


def weak_denoiser_mismatch(denoiser: Mapping[str, Any], weak: Mapping[str, Any]) -> str | None:
    """Why a ``UNet2DModel`` config ``weak`` cannot guide the denoiser of config ``denoiser``, or None.

    It may be smaller or shallower (autoguidance's weak network usually is), but it must take the
    same latents and labels and give the same outputs, and take every patch the denoiser takes (its
    patch multiple divides the denoiser's)."""
    differ = [
        f"{k} ({weak.get(k)!r} against the denoiser's {denoiser.get(k)!r})"
        for k in WEAK_DENOISER_INTERFACE
        if weak.get(k) != denoiser.get(k)
    ]
    own, theirs = (denoiser_patch_multiple("UNet2DModel", c) for c in (denoiser, weak))
    if own % theirs:
        differ.append(f"patch multiple ({theirs}, which does not divide the denoiser's {own})")
    return ", ".join(differ) or None


def autoencoder_scale_factor(class_name: str, config: Mapping[str, Any]) -> int:
    """The autoencoder's spatial down-sampling factor from its config (one halving per block but the last).

    :class:`~napari_pathup.models.base.Autoencoder` measures the same factor once the weights load.
    A ``PatchAutoencoder`` down-samples by its ``patch_size``.
    """
    if class_name == "PatchAutoencoder":
        size = config.get("patch_size", 8)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            from napari_pathup.errors import ModelLoadError

            raise ModelLoadError(
                f"the PatchAutoencoder config's patch_size must be a whole number >= 1, got {size!r}"
            )
        return size
    key = "encoder_block_out_channels" if class_name == "AutoencoderTiny" else "block_out_channels"
    blocks = len(config.get(key) or [None])
    return 2 ** max(0, blocks - 1)


def native_sample_size(config: Mapping[str, Any]) -> int:
    """The denoiser's native latent sample size (the default patch), from its config."""
    size = config.get("sample_size")
    if isinstance(size, list | tuple):
        size = size[0]
    if not isinstance(size, int) or size < 1:
        from napari_pathup.errors import ModelLoadError

        raise ModelLoadError(f"the denoiser config has no valid sample_size (found {size!r})")
    return int(size)
