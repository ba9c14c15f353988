"""``pathup augment``: synthetic images for every real image of a data set, on dask.distributed, exactly
once and resumable (plan: items, seeds and names; worker: one item, committed by a rename; cluster;
manifest; run: the client side)."""
