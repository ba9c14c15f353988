"""Optimizer states without pickle: tensors for safetensors, the rest through JSON."""

from __future__ import annotations

import json

import torch

from napari_pathup.io.optimizer_state import load_optimizer, optimizer_tensors


def _stepped(
    optimizer_type: type[torch.optim.Optimizer], **kwargs
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Linear(3, 2)
    opt = optimizer_type(model.parameters(), **kwargs)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
    return model, opt


def test_adamw_state_round_trips_through_json() -> None:
    model, opt = _stepped(torch.optim.AdamW, lr=1e-2)
    tensors, rest = optimizer_tensors(opt)
    assert all(key.startswith("state.") for key in tensors)
    rest = json.loads(json.dumps(rest))
    other = torch.optim.AdamW(model.parameters(), lr=5.0)
    load_optimizer(other, tensors, rest)
    assert other.param_groups[0]["lr"] == 1e-2
    for p in model.parameters():
        assert torch.equal(opt.state[p]["exp_avg"], other.state[p]["exp_avg"])
        assert torch.equal(opt.state[p]["step"], other.state[p]["step"])


def test_sgd_momentum_round_trips_and_the_next_step_is_the_same() -> None:
    model, opt = _stepped(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)
    tensors, rest = optimizer_tensors(opt)
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(model.state_dict())
    other = torch.optim.SGD(twin.parameters(), lr=0.5)
    copies = {k: v.clone() for k, v in tensors.items()}  # as read back from a file
    load_optimizer(other, copies, json.loads(json.dumps(rest)))
    x = torch.randn(4, 3)
    for m, o in ((model, opt), (twin, other)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
