"""Named diffusers schedulers; any of them can drive the engine (see docs/architecture.md)."""

from __future__ import annotations

import diffusers
from diffusers import SchedulerMixin

from napari_pathup.errors import SettingsError

#: short CLI names → diffusers scheduler classes
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "dpm++-sde": "DPMSolverSDEScheduler",
    "unipc": "UniPCMultistepScheduler",
    "pndm": "PNDMScheduler",
    "heun": "HeunDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
}

#: scheduler classes a run could not repeat from its seed: they draw noise outside the engine's generators
UNSEEDED: dict[str, str] = {
    "DPMSolverSDEScheduler": "its Brownian-tree noise is seeded from torch's global generator, not the run's",
}

#: the short names a run accepts (SCHEDULERS less UNSEEDED): what errors and the widget offer
USABLE_SCHEDULERS: tuple[str, ...] = tuple(n for n, c in SCHEDULERS.items() if c not in UNSEEDED)

#: every scheduler class a model folder may name in its scheduler config
ALLOWED_SCHEDULER_CLASSES: frozenset[str] = frozenset(
    name
    for name in dir(diffusers)
    if name.endswith("Scheduler") and isinstance(getattr(diffusers, name, None), type)
)


def scheduler_class(class_name: str) -> type[SchedulerMixin]:
    """The diffusers scheduler class of that name; never imports code from a model folder."""
    if class_name not in ALLOWED_SCHEDULER_CLASSES:
        raise ValueError(f"unknown scheduler class {class_name!r}")
    return getattr(diffusers, class_name)


def scheduler_by_name(name: str, base: SchedulerMixin) -> SchedulerMixin:
    """A fresh scheduler: ``name`` (a short name or a class name) configured from the model's own.

    Raises :class:`~napari_pathup.errors.SettingsError` for a name that is not a diffusers scheduler,
    for one a run could not repeat from its seed (:data:`UNSEEDED`), and for one whose optional
    package is not installed.
    """
    class_name = SCHEDULERS.get(name, name)
    if class_name not in ALLOWED_SCHEDULER_CLASSES:
        raise SettingsError(
            f"unknown scheduler {name!r} (--sampler); expected one of {', '.join(USABLE_SCHEDULERS)}"
        )
    if class_name in UNSEEDED:
        raise SettingsError(f"scheduler {name!r} (--sampler) is not supported: {unseeded(class_name)}")
    try:
        return scheduler_class(class_name).from_config(base.config)
    except ImportError as exc:  # diffusers' requires_backends: the class exists, its backend does not
        raise SettingsError(f"scheduler {name!r} (--sampler) {missing_backend(exc)}") from exc


def run_scheduler(name: str | None, base: SchedulerMixin) -> SchedulerMixin:
    """A run's own scheduler (a fresh one, since schedulers hold state): ``name``'s configured from the
    model's scheduler ``base`` (:func:`scheduler_by_name`), or, with no name, a copy of ``base``."""
    return scheduler_by_name(name, base) if name else base.from_config(base.config)


def unseeded(class_name: str) -> str:
    """Why a scheduler of :data:`UNSEEDED` is refused, and what to use instead."""
    return (
        f"{UNSEEDED[class_name]}, so a run could not be repeated from its seed; "
        "for stochastic sampling use euler-a or ddpm"
    )


def missing_backend(exc: ImportError) -> str:
    """What diffusers' import error says is missing, in one line (its message spans several)."""
    said = " ".join(str(exc).split()) or "a package it needs is not installed"
    return f"cannot be used here: {said}"


#: deprecated spelling of :func:`scheduler_by_name`, kept for one release
make_scheduler = scheduler_by_name
