"""Data augmentation at scale (``pathup augment``) and its downstream evaluation (``pathup evaluate``)."""
