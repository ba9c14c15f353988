"""The Dask cluster ``pathup augment`` runs on: a LocalCluster sized to this machine, or an existing one.

Local default on the CPU: one worker process per core (at most one per :data:`WORKER_MEMORY` of
memory), one Dask thread and one torch thread each. On a GPU: one worker (use
dask-cuda's ``LocalCUDACluster`` and ``--dask-address`` for one worker per GPU). ``--dask-address ADDRESS``
connects to a running scheduler (e.g. started by dask-jobqueue on a batch system) with a short
timeout, so an unreachable address fails fast with a clear error.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from napari_pathup.errors import InputError

#: memory one worker may need for a 2048² output (measured peak about 1.5 GiB on the CPU)
WORKER_MEMORY = 2 * 1024**3
#: glibc's malloc setting that Dask's nanny gives every worker unless told not to
TRIM_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
#: the Dask setting of the environment the nanny gives its workers for that variable
TRIM_CONFIG_KEY = f"distributed.nanny.pre-spawn-environ.{TRIM_VARIABLE}"
#: Dask config for the LocalCluster we start. Dask's nanny spawns workers with
#: ``MALLOC_TRIM_THRESHOLD_=65536``; setting that variable at all freezes glibc's mmap threshold at
#: 128 KiB, so every tensor buffer above it is a fresh mmap faulted in page by page: a 2048x2048
#: synthesis took 55-58 s instead of 28 s (docs/performance.md, Augmentation). ``None`` (Dask's way
#: to unset it) leaves glibc's adaptive thresholds; a value the user exported still reaches the workers.
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {TRIM_CONFIG_KEY: None}


class ClusterWarning(UserWarning):
    """The cluster's workers are set up in a way that was measured to slow augment."""


def warn_if_trimmed(client: Any, fix: str) -> None:
    """One :class:`ClusterWarning` (with ``fix``, which depends on who started the workers) when a worker
    runs with ``MALLOC_TRIM_THRESHOLD_`` set: Dask's nanny sets 65536 unless told not to, and such
    workers computed every image about half as fast here."""
    try:
        found = client.run(os.getenv, TRIM_VARIABLE)  # worker address -> its value (os.getenv runs there)
    except Exception:  # a diagnostic only: a worker that cannot answer is not an error here
        return
    slowed = {address: value for address, value in found.items() if value is not None}
    if slowed:
        values = ", ".join(sorted(set(slowed.values())))
        message = (
            f"{len(slowed)} of {len(found)} Dask workers run with {TRIM_VARIABLE}={values}, which made "
            "every synthesis about half as fast in our measurements (docs/performance.md, Augmentation)"
        )
        warnings.warn(f"{message}; {fix}", ClusterWarning, stacklevel=4)


@dataclass(frozen=True)
class LocalSize:
    workers: int
    torch_threads: int


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def local_size(workers: int | None, device: str, torch_threads: int | None = None) -> LocalSize:
    """Workers and torch threads per worker for a LocalCluster on this machine.

    Torch threads default to 1: images are then bit-identical whatever the number of workers (CPU
    kernels sum in a thread-dependent order, so the thread count changes the last bits).
    """
    import psutil

    threads = torch_threads or 1
    if threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    if workers is not None:
        if workers < 1:
            raise InputError(f"--workers must be at least 1, got {workers}")
        return LocalSize(workers, threads)
    if _uses_gpu(device):
        return LocalSize(1, threads)
    by_memory = max(1, int(psutil.virtual_memory().total * 0.8 // WORKER_MEMORY))
    return LocalSize(max(1, min(usable_cores() // threads, by_memory)), threads)


def _uses_gpu(device: str) -> bool:
    if device.startswith(("cuda", "mps")):
        return True
    if device != "auto":
        return False
    from napari_pathup.engine.device import select_device

    return select_device("auto").type != "cpu"


@contextlib.contextmanager
def open_client(
    dask_address: str | None, size: LocalSize | None, connect_timeout: float = 10.0
) -> Iterator[Any]:
    """A ``distributed.Client`` on ``dask_address`` or on a new LocalCluster of ``size``; closed on exit."""
    import dask
    from distributed import Client, LocalCluster

    if dask_address:
        try:
            client = Client(dask_address, timeout=connect_timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(
                f"cannot reach the Dask scheduler at {dask_address} within {connect_timeout:g} s ({exc}); "
                "start one (dask scheduler, dask-jobqueue, dask-cuda) or leave out --dask-address to run "
                "on a local cluster"
            ) from exc
        try:
            warn_if_trimmed(
                client, f"start the cluster's workers with the Dask setting {TRIM_CONFIG_KEY}: null"
            )
            yield client
        finally:
            client.close()
        return
    assert size is not None
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        cluster = LocalCluster(
            n_workers=size.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: no clash with other clusters on 8787
            env={"OMP_NUM_THREADS": str(size.torch_threads), "MKL_NUM_THREADS": str(size.torch_threads)},
            preload=["napari_pathup.augmentation.worker"],  # its dask_setup leaves Ctrl-C to the client
        )
    try:
        client = Client(cluster)
        try:
            # our workers have it only when it is in this process's environment: exported by the user,
            # or left there by the nanny of a Dask cluster started earlier from this process
            warn_if_trimmed(
                client,
                "unset it in this process's environment (a Dask cluster started earlier from this process "
                "leaves it set there)",
            )
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
