"""The LocalCluster augment starts: its workers' environment."""

from __future__ import annotations

import os
import warnings

import pytest

from napari_pathup.augmentation.cluster import LOCAL_CLUSTER_CONFIG, ClusterWarning, LocalSize, open_client

TRIM = "MALLOC_TRIM_THRESHOLD_"


def workers_trim(client) -> list[str | None]:
    return list(client.run(os.getenv, TRIM).values())  # os.getenv runs on each worker


def test_workers_keep_glibcs_adaptive_trim_unless_the_user_set_one(monkeypatch):
    """Dask's nanny would spawn the workers with MALLOC_TRIM_THRESHOLD_=65536, which made every image
    about twice as slow (docs/performance.md, Augmentation)."""
    monkeypatch.delenv(TRIM, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClusterWarning)
        with open_client(None, LocalSize(1, 1)) as client:
            assert workers_trim(client) == [None]
    assert os.getenv(TRIM) is None  # the client's own environment is left as it was
    monkeypatch.setenv(TRIM, "1048576")
    unset = "unset it in this process's environment"
    with pytest.warns(ClusterWarning, match=unset), open_client(None, LocalSize(1, 1)) as client:
        assert workers_trim(client) == ["1048576"]


def test_a_cluster_given_by_address_with_dasks_trim_setting_is_named_in_a_warning(monkeypatch):
    """A cluster of the user's own keeps Dask's setting unless they change it: augment says so, once, at
    the start, with the setting that fixes it; a cluster without it connects silently."""
    import dask
    from distributed import LocalCluster

    monkeypatch.delenv(TRIM, raising=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with pytest.warns(ClusterWarning) as caught, open_client(cluster.scheduler_address, None) as client:
            assert workers_trim(client) == ["65536"]  # Dask's nanny default
        assert len(caught) == 1
        message = str(caught[0].message)
        assert "1 of 1 Dask workers run with MALLOC_TRIM_THRESHOLD_=65536" in message
        assert "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null" in message
    monkeypatch.delenv(TRIM, raising=False)  # Dask's nanny also left it in this process's environment
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0")
    with cluster, warnings.catch_warnings():
        warnings.simplefilter("error", ClusterWarning)
        with open_client(cluster.scheduler_address, None) as client:
            assert workers_trim(client) == [None]
