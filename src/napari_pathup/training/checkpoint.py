"""Checkpoints without pickle: tensors in safetensors files, everything else in a small JSON state.

A checkpoint is a folder ``<phase>/step-NNNNNNN/`` holding ``model``, ``ema``, ``optimizer`` and
``rng`` safetensors and ``state.json``; ``<phase>/latest.json`` names the newest complete one. Folders
are written under a ``.partial`` name and renamed, and ``latest.json`` is replaced atomically, so an
interrupted run always resumes from a whole checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

from napari_pathup.errors import InputError
from napari_pathup.io.atomic import write_text_atomic
from napari_pathup.io.optimizer_state import load_optimizer, optimizer_tensors

LATEST = "latest.json"


def settings_json(config: Any) -> dict[str, Any]:
    """A run's settings dataclass as JSON values (paths as strings, tuples as lists), as checkpoints and
    ``pathup.json`` record them: the run's own settings first (data, out, ...), then those it shares
    with the other training path (``RunSettings``)."""
    values = dataclasses.asdict(config)
    inherited = {
        f.name
        for base in type(config).__mro__[1:]
        if dataclasses.is_dataclass(base)
        for f in dataclasses.fields(base)
    }
    order = [k for k in values if k not in inherited] + [k for k in values if k in inherited]
    return {
        k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
        for k, v in ((k, values[k]) for k in order)
    }


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}


def save_checkpoint(
    folder: Path,
    iteration: int,
    model: torch.nn.Module,
    ema: EMAModel,
    optimizer: torch.optim.Optimizer,
    numpy_rng: np.random.Generator,
    torch_rng: torch.Generator,
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write the checkpoint of ``iteration`` into ``folder`` and point ``latest.json`` at it."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step-{iteration:07d}"
    partial = folder / f".{name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    save_file(_cpu(model.state_dict()), partial / "model.safetensors")
    ema_state = ema.state_dict()
    shadow = ema_state.pop("shadow_params")
    save_file(_cpu({str(i): p for i, p in enumerate(shadow)}), partial / "ema.safetensors")
    opt_tensors, opt_rest = optimizer_tensors(optimizer)
    save_file(_cpu(opt_tensors), partial / "optimizer.safetensors")
    save_file({"torch": torch_rng.get_state()}, partial / "rng.safetensors")
    state = {
        "iteration": iteration,
        "ema": ema_state,
        "optimizer": opt_rest,
        "numpy_rng": numpy_rng.bit_generator.state,
        **(extra or {}),
    }
    (partial / "state.json").write_text(json.dumps(state, indent=1) + "\n")
    final = folder / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    write_text_atomic(folder / LATEST, json.dumps({"iteration": iteration, "path": name}) + "\n")
    steps = sorted(p for p in folder.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in ``folder``, or None."""
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    try:
        path = folder / json.loads(pointer.read_text())["path"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{pointer} is damaged ({exc}); delete it to start this phase again") from exc
    if not (path / "state.json").is_file():
        raise InputError(f"{pointer} names {path}, which is incomplete; delete {pointer} to start again")
    return path


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    ema: EMAModel,
    optimizer: torch.optim.Optimizer,
    numpy_rng: np.random.Generator,
    torch_rng: torch.Generator,
) -> dict[str, Any]:
    """Restore everything :func:`save_checkpoint` wrote; returns the JSON state (with ``iteration``)."""
    state = json.loads((path / "state.json").read_text())
    device = next(model.parameters()).device
    model.load_state_dict(load_file(path / "model.safetensors", device=str(device)))
    shadow = load_file(path / "ema.safetensors")
    ema_state = dict(state["ema"])
    ema_state["shadow_params"] = [shadow[str(i)].to(device) for i in range(len(shadow))]
    ema.load_state_dict(ema_state)
    load_optimizer(
        optimizer, load_file(path / "optimizer.safetensors", device=str(device)), state["optimizer"]
    )
    numpy_rng.bit_generator.state = state["numpy_rng"]
    torch_rng.set_state(load_file(path / "rng.safetensors")["torch"])
    return state
