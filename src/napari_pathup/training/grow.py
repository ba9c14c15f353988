"""Deepen a trained denoiser without changing what it computes, so that training goes on with more capacity.

A ``UNet2DModel`` with ``layers_per_block`` L becomes one with L' > L: every down block gets L' - L
new resnets (and attentions) after its own, every up block L' - L new ones after its first. Each new
resnet is the identity at the start: its last convolution is zero, so only its skip path remains
(for an up-block resnet, whose input is the hidden state concatenated with a skip connection, a 1x1
shortcut that passes the hidden state through and drops the skip); each new attention's output
projection is zero, leaving its residual. The new down resnets then repeat their block's last output,
which the up blocks' new resnets receive as their (ignored) skips, so the skips that the old resnets
receive are the ones they were trained with. The grown network's output equals the old one's to
float rounding (tested), and the new layers learn from there (the zero convolutions get gradients).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from diffusers import UNet2DModel

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D


def grow_depth(old: UNet2DModel, layers_per_block: int) -> UNet2DModel:
    """``old`` with ``layers_per_block`` resnets per down block (up blocks: one more), same function."""
    config = dict(old.config)
    depth = int(config["layers_per_block"])
    if layers_per_block < depth:
        raise ValueError(f"cannot grow a denoiser of {depth} layers per block to {layers_per_block}")
    if layers_per_block == depth:
        return copy.deepcopy(old)
    config["layers_per_block"] = layers_per_block
    new = UNet2DModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    extra = layers_per_block - depth
    target = new.state_dict()
    for name, value in old.state_dict().items():  # every old weight keeps its role
        target[_grown_name(name, extra)] = value.clone()
    new.load_state_dict(target)
    with torch.no_grad():
        for block in new.down_blocks:
            for k in range(depth, layers_per_block):
                _make_identity(block.resnets[k])
                if getattr(block, "attentions", None) is not None:
                    _silence(block.attentions[k])
        for block in new.up_blocks:
            for k in range(1, 1 + extra):
                _make_identity(block.resnets[k])
                if getattr(block, "attentions", None) is not None:
                    _silence(block.attentions[k])
    return new


def _grown_name(name: str, extra: int) -> str:
    """The grown network's name of an old weight: down blocks keep their indexes (the new layers come
    after theirs); in the up blocks index 0 stays and the others move ``extra`` on."""
    parts = name.split(".")
    if len(parts) > 3 and parts[0] == "up_blocks" and parts[2] in ("resnets", "attentions"):
        index = int(parts[3])
        parts[3] = str(index if index == 0 else index + extra)
        return ".".join(parts)
    return name


def _make_identity(resnet: ResnetBlock2D) -> None:
    """A ``ResnetBlock2D`` whose residual branch is zero: output = shortcut(input)."""
    resnet.conv2.weight.zero_()
    resnet.conv2.bias.zero_()
    shortcut = resnet.conv_shortcut
    if shortcut is None:
        return
    out_channels = shortcut.weight.shape[0]  # input = [hidden (out_channels), skip]: keep the hidden part
    shortcut.weight.zero_()
    shortcut.weight[:, :out_channels, 0, 0] = torch.eye(out_channels)
    shortcut.bias.zero_()


def _silence(attention: Attention) -> None:
    """An attention block with a residual connection whose attention output is zero."""
    out = attention.to_out[0]
    out.weight.zero_()
    out.bias.zero_()
