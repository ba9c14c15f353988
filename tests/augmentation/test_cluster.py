"""The LocalCluster augment starts: its workers' environment."""

from __future__ import annotations

import os

from napari_pathup.augmentation.cluster import LocalSize, open_client

TRIM = "MALLOC_TRIM_THRESHOLD_"


def workers_trim(client) -> list[str | None]:
    return list(client.run(os.getenv, TRIM).values())  # os.getenv runs on each worker


def test_workers_keep_glibcs_adaptive_trim_unless_the_user_set_one(monkeypatch):
    """Dask's nanny would spawn the workers with MALLOC_TRIM_THRESHOLD_=65536, which made every image
    about twice as slow (docs/performance.md, Augmentation)."""
    monkeypatch.delenv(TRIM, raising=False)
    with open_client(None, LocalSize(1, 1)) as client:
        assert workers_trim(client) == [None]
    assert os.getenv(TRIM) is None  # the client's own environment is left as it was
    monkeypatch.setenv(TRIM, "1048576")
    with open_client(None, LocalSize(1, 1)) as client:
        assert workers_trim(client) == ["1048576"]
