"""Deprecated: ``napari_pathup.scale`` was split into :mod:`napari_pathup.augmentation` (``pathup augment``)
and :mod:`napari_pathup.evaluation` (``pathup evaluate``). The old module paths still import, as the very
same module objects, for one release."""
