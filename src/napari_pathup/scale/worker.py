"""Deprecated alias of the module named below (the very same module object); removed in the next release."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("napari_pathup.augmentation.worker")
