"""An optimizer's state without pickle: its tensors for a safetensors file, the rest as JSON.

Training checkpoints (``training.checkpoint``) and the evaluation's fold checkpoints
(``evaluation.finetune``) both store optimizer states this way, so that resuming never unpickles.
Per-parameter tensors are keyed ``state.<parameter index>.<name>``; the JSON part holds the
parameter groups and the per-parameter values that are not tensors (``scalars``).
"""

from __future__ import annotations

from typing import Any

import torch


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state into tensors (``state.<param>.<name>``) and JSON-able rest."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict[str, Any]
) -> None:
    """Restore what :func:`optimizer_tensors` split (``rest`` may have been through JSON)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in rest.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
