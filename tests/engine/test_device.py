"""engine.device.autocast: mixed precision only when a dtype is given."""

import torch

from napari_pathup.engine.device import autocast


def test_autocast_uses_the_dtype_and_does_nothing_without_one():
    a = torch.ones(4, 4)
    with autocast(torch.device("cpu"), None):
        assert (a @ a).dtype == torch.float32
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
