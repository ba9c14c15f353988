"""Sample data: the shipped real H&E references open as RGB layers, one per class."""

import pytest

from napari_pathup import _sample_data


@pytest.mark.parametrize("name", ["tumour", "stroma", "normal"])
def test_each_class_has_a_real_reference(name):
    ((data, meta, kind),) = getattr(_sample_data, f"{name}_reference")()
    assert kind == "image" and meta["rgb"] and data.dtype.name == "uint8" and data.shape[2] == 3
    assert min(data.shape[:2]) >= 256 and data.std() > 10  # tissue, not a blank field
    assert meta["metadata"]["pathup"]["class"] == name
