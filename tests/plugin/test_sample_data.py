"""Sample data: the shipped real H&E references open as RGB layers, one per reference of each class."""

import pytest

from napari_pathup import _sample_data
from napari_pathup.models.default import class_references, default_model_path
from napari_pathup.models.load import read_model_spec


@pytest.mark.parametrize("name", ["tumour", "stroma", "normal"])
def test_each_class_has_a_real_reference(name):
    layers = getattr(_sample_data, f"{name}_reference")()
    expected = class_references(read_model_spec(default_model_path()), name)
    assert [meta["metadata"]["pathup"]["reference"] for _, meta, _ in layers] == [str(p) for p in expected]
    for data, meta, kind in layers:
        assert kind == "image" and meta["rgb"] and data.dtype.name == "uint8" and data.shape[2] == 3
        assert min(data.shape[:2]) >= 256 and data.std() > 10  # tissue, not a blank field
        assert meta["metadata"]["pathup"]["class"] == name
    assert len({meta["name"] for _, meta, _ in layers}) == len(layers)  # each layer its own name
