"""Where shards run: in this process (serial), or on a Dask distributed cluster.

`--workers 1` (default) runs shards here, one after another. `--workers N` starts a local Dask
cluster (`distributed.LocalCluster`, N worker processes, each with cores/N torch threads);
`--address tcp://HOST:8786` joins an existing Dask scheduler. Each task is one shard
(`suites.execute.run_shard`), a pure function: a worker that dies mid-shard has its task
rescheduled on another worker (Dask's `allowed-failures`, default 3), and the coordinator
records each shard's rows once, when its result arrives. Rankers are loaded once per worker
and kept (`suites.execute.runtime`). Tasks of one ranker are submitted together, so each
worker loads few rankers. On a GPU box, start one worker per GPU (`CUDA_VISIBLE_DEVICES`)
and give the suite `device = "cuda"`.

Why Dask and not Ray (measured on the 2-core CPU development machine, one trivial task): Dask
`LocalCluster` of 2 worker processes started and ran it in 1.0 s with 198 MB resident (all
processes), 24 MB installed; Ray (`ray.init(num_cpus=2)`) took 3.1 s and 706 MB resident, 240 MB
installed. rexbench's tasks are coarse (a shard takes seconds to minutes), so neither
scheduler's per-task overhead matters; start-up, memory and install size do, in CI and on
laptops. Both restart lost work and run on clusters (dask-jobqueue / dask-kubernetes / `dask
scheduler` + `dask worker` by hand).
"""
from __future__ import annotations

import os
from typing import Iterator

from rankers.errors import BadInput

from .execute import RunSpec, ShardResult, release, run_shard


class SerialEngine:
    """Shards in this process, in order."""

    workers = 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, spec: RunSpec, shards: list[tuple[str, str]]) -> Iterator[ShardResult | BaseException]:
        try:
            for r, q in shards:
                yield run_shard(spec, r, q)
        finally:
            release(spec.token)


def _worker_threads(n: int) -> None:
    """Worker start-up: share the machine's cores among the workers (no oversubscription)."""
    import torch
    torch.set_num_threads(n)


class DaskEngine:
    """Shards as Dask tasks on a LocalCluster of `workers` processes, or on the scheduler at `address`."""

    def __init__(self, workers: int | None = None, address: str | None = None):
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise BadInput("--workers > 1 and --address need Dask: pip install 'rexbench[distributed]'") from None
        self.n, self.address = workers, address
        self.cluster = self.client = None

    def __enter__(self):
        from distributed import Client, LocalCluster
        try:
            if self.address:
                self.client = Client(self.address, timeout="20s")
            else:
                self.cluster = LocalCluster(n_workers=self.n, threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=40)
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as e:
            self.close()
            raise BadInput(f"cannot reach the Dask scheduler {self.address or '(local)'}: {e}") from None
        self.workers = len(self.client.scheduler_info()["workers"])
        if not self.address:  # our own cluster: share this machine's cores among its workers
            self.client.run(_worker_threads, max(1, (os.cpu_count() or 1) // max(1, self.workers)))
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for x in (self.client, self.cluster):
            if x is not None:
                try:
                    x.close()
                except Exception:
                    pass

    def run(self, spec: RunSpec, shards: list[tuple[str, str]]) -> Iterator[ShardResult | BaseException]:
        """Results as they complete; a shard that failed on every retry yields its exception."""
        from distributed import as_completed
        remote = self.client.scatter(spec, broadcast=True)
        futures = [self.client.submit(run_shard, remote, r, q, pure=False, retries=2, key=f"shard-{spec.token}-{i}")
                   for i, (r, q) in enumerate(shards)]
        try:
            for fut in as_completed(futures):
                try:
                    yield fut.result()
                except Exception as e:  # the shard's own failure, or KilledWorker after repeated deaths
                    yield e
                fut.release()
        finally:
            if self.address:
                self.client.run(release, spec.token)


def engine(workers: int = 1, address: str | None = None):
    """The engine for `--workers`/`--address`: serial for one worker without an address."""
    if address or workers > 1:
        return DaskEngine(workers, address)
    return SerialEngine()
