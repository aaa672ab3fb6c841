"""Where shards run: in this process (serial), or on a Dask distributed cluster.

`--workers 1` (default) runs shards here, one after another. `--workers N` starts a local Dask
cluster (`distributed.LocalCluster`, N worker processes, each with cores/N torch threads, forked
on Linux for CPU runs and spawned otherwise: `start_method`; Dask's task profiler off:
`WORKER_CONFIG`); `--address tcp://HOST:8786` joins an existing Dask scheduler. Each task is one shard
(`suites.run.execute.run_shard`), a pure function: a worker that dies mid-shard has its task
rescheduled on another worker (Dask's `allowed-failures`, default 3), and the coordinator
records each shard's rows once, when its result arrives. Rankers are loaded once per worker
and kept (`suites.run.execute.runtime`). Tasks of one ranker are submitted together, so each
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
import sys
import threading
from typing import Iterator

from rankers.errors import BadInput, RunFault

from .execute import RunSpec, ShardResult, release, run_shard


#: seconds to wait for a Dask scheduler to answer at --address ($REXBENCH_CONNECT_TIMEOUT overrides)
CONNECT_TIMEOUT_S = 20.0


def connect_timeout() -> float:
    raw = os.environ.get("REXBENCH_CONNECT_TIMEOUT")
    if raw is None:
        return CONNECT_TIMEOUT_S
    try:
        t = float(raw)
    except ValueError:
        t = -1.0
    if not 0 < t <= 3600:
        raise BadInput(f"REXBENCH_CONNECT_TIMEOUT={raw!r}: expected seconds in (0, 3600]")
    return t


def parse_address(address) -> str:
    """`--address` as Dask's `PROTOCOL://HOST:PORT` (tcp:// added to a bare HOST:PORT); anything else
    is a one-line BadInput. Only tcp:// and tls:// are supported (rexbench installs no UCX)."""
    if not isinstance(address, str) or not address.strip():
        raise BadInput(f"--address: expected HOST:PORT or tcp://HOST:PORT, got {address!r}")
    text = address.strip()
    proto, sep, rest = text.partition("://")
    if not sep:
        proto, rest = "tcp", text
    if proto not in ("tcp", "tls"):
        raise BadInput(f"--address {text!r}: protocol {proto!r} is not supported; use tcp://HOST:PORT or "
                       "tls://HOST:PORT")
    host, colon, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [IPv6]:port
    if not colon or not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--address {text!r}: expected HOST:PORT or {proto}://HOST:PORT with a port in 1-65535")
    return f"{proto}://{rest}"


_LOG_LEVELS: dict = {}


def _quiet_dask(on: bool) -> None:
    """While an engine runs, Dask's own loggers in this process print nothing below CRITICAL: a lost
    scheduler makes the client log reconnection tracebacks, and rexbench reports the fault itself, in
    one line naming --resume (`RunFault`). Restored when the engine closes."""
    import logging
    names = ("distributed", "distributed.client", "tornado", "asyncio")
    if on and not _LOG_LEVELS:
        for n in names:
            _LOG_LEVELS[n] = logging.getLogger(n).level
            logging.getLogger(n).setLevel(logging.CRITICAL)
    elif not on:
        for n, lv in _LOG_LEVELS.items():
            logging.getLogger(n).setLevel(lv)
        _LOG_LEVELS.clear()


def _listening(address: str) -> None:
    """Fail at once (not after Dask's connect timeout of retries) when nothing listens at `address`."""
    import socket
    host, _, port = address.partition("://")[2].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, connect_timeout())):
            pass
    except OSError as e:
        raise BadInput(f"cannot reach the Dask scheduler {address}: "
                       f"{e.strerror or type(e).__name__} (is `dask scheduler` running there?)") from None


class SerialEngine:
    """Shards in this process, in order."""

    workers = 1

    def start(self) -> "SerialEngine":
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self, wait: bool = True) -> None:
        pass

    def run(self, spec: RunSpec, shards: list[tuple[str, str]]) -> Iterator[ShardResult | BaseException]:
        try:
            for r, q in shards:
                yield run_shard(spec, r, q)
        finally:
            release(spec.token)


def _worker_setup(n_threads: int) -> None:
    """Worker start-up: share the machine's cores among the workers (no oversubscription) and import
    what shards need while the coordinator prepares."""
    import torch
    torch.set_num_threads(n_threads)
    import suites.run.execute  # noqa: F401  (explainers, metrics, captum)


#: Dask settings for the workers of our own LocalCluster. The statistical profiler samples every task's
#: Python stack every 10 ms; measured on the quick suite (2 workers, 2 CPU cores) it made shards 30-40%
#: slower, so it is off (set DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False on your own workers too).
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


def start_method(device: str, address: str | None) -> str:
    """How our LocalCluster starts its worker processes. "fork" on Linux for CPU runs: a worker is a copy
    of the coordinator with torch and rexbench already imported, up in well under a second instead of
    ~3 s of imports per worker ("spawn", Dask's default); the coordinator forks before it opens the run's
    files or starts work of its own. "spawn" for CUDA (a forked child cannot use CUDA once the parent
    has) and off Linux (fork is unsafe on macOS)."""
    if address is None and sys.platform.startswith("linux") and not str(device).startswith("cuda"):
        return "fork"
    return "spawn"


class DaskEngine:
    """Shards as Dask tasks on a LocalCluster of `workers` processes, or on the scheduler at `address`.

    `start()` brings the cluster up: forked workers at once, spawned ones in a background thread (they
    import torch and rexbench while the coordinator loads and trains rankers); entering waits for it.
    `close(wait=False)` shuts it down in the background (the coordinator exports meanwhile); leaving the
    block waits for that."""

    def __init__(self, workers: int | None = None, address: str | None = None, device: str = "cpu"):
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise BadInput("--workers > 1 and --address need Dask: pip install 'rexbench[distributed]'") from None
        if address is not None:  # `workers` is checked by `engine()`, the one way in
            address = parse_address(address)
            if workers not in (None, 1):
                raise BadInput("--workers N starts a local cluster and --address joins an existing one; give one "
                               "of them (the scheduler's workers are the ones it has)")
        self.n, self.address, self.method = workers, address, start_method(device, address)
        self.cluster = self.client = None
        self.workers = 0
        self._starting: threading.Thread | None = None
        self._closing: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> "DaskEngine":
        if self._starting is None:
            self._starting = threading.Thread(target=self._connect, name="rexbench-dask-start", daemon=True)
            if self.address:
                _listening(self.address)
            self._starting.start()
            if self.address:  # the scheduler must answer before the run writes anything
                self._starting.join(connect_timeout() + 5)
                if self._starting.is_alive():
                    raise BadInput(f"no Dask scheduler answered at {self.address} within {connect_timeout():g} s "
                                   "(is a Dask scheduler listening there? $REXBENCH_CONNECT_TIMEOUT sets the wait)")
                if self._error is not None:  # e.g. refused, or a scheduler without workers: close the client
                    self.close()
                    raise self._error
            elif self.method == "fork":  # fork while this process does nothing else
                self._starting.join()
        return self

    def _connect(self) -> None:
        import dask
        from distributed import Client, LocalCluster
        _quiet_dask(True)
        try:
            if self.address:
                self.client = Client(self.address, timeout=f"{connect_timeout():g}s")
            else:
                with dask.config.set({**WORKER_CONFIG, "distributed.worker.multiprocessing-method": self.method}):
                    self.cluster = LocalCluster(n_workers=self.n, threads_per_worker=1, processes=True,
                                                dashboard_address=None, silence_logs=40)
                self.client = Client(self.cluster)
            self.workers = len(self.client.scheduler_info()["workers"])
            if self.address and not self.workers:
                raise BadInput(f"the Dask scheduler at {self.address} has no workers; start some with "
                               f"`dask worker {self.address}`")
            if not self.address:  # our own cluster: share this machine's cores among its workers
                self.client.run(_worker_setup, max(1, (os.cpu_count() or 1) // max(1, self.workers)))
        except (OSError, TimeoutError) as e:
            self._error = BadInput(f"cannot reach the Dask scheduler {self.address or '(local)'}: "
                                   f"{' '.join(str(e).split()) or type(e).__name__}")
        except BaseException as e:  # re-raised in the coordinator's thread
            self._error = e

    def __enter__(self):
        self.start()._starting.join()
        if self._error is not None:
            self.close()
            raise self._error
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self, wait: bool = True) -> None:
        """Shut the client (and our cluster) down; `wait=False` returns at once (a later close waits)."""
        if self._starting is not None:
            self._starting.join()
        if self._closing is None:
            self._closing = threading.Thread(target=self._shutdown, name="rexbench-dask-close", daemon=True)
            self._closing.start()
        if wait:
            self._closing.join()

    def _shutdown(self) -> None:
        try:
            for x in (self.client, self.cluster):
                if x is not None:
                    try:
                        x.close(timeout=10)
                    except BaseException:
                        pass
        finally:
            _quiet_dask(False)

    def run(self, spec: RunSpec, shards: list[tuple[str, str]]) -> Iterator[ShardResult | BaseException]:
        """Results as they complete; a shard that failed on every retry yields its exception. Shards are
        submitted in the given order, which is the order Dask starts them in."""
        import time

        from distributed import wait
        try:
            remote = self.client.scatter(spec, broadcast=True)
            futures = [self.client.submit(run_shard, remote, r, q, pure=False, retries=2,
                                          key=f"shard-{spec.token}-{i}") for i, (r, q) in enumerate(shards)]
        except Exception as e:
            raise self._lost(e) from None
        remaining, idle_since = list(futures), None
        try:
            while remaining:
                try:
                    done, _ = wait(remaining, timeout=5, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                except Exception as e:  # the scheduler went away
                    raise self._lost(e) from None
                if not done:  # nothing finished for a while: are there still workers to run the shards?
                    n = self._workers_now()
                    if n is None:
                        raise self._lost(TimeoutError("the scheduler does not answer"))
                    idle_since = (idle_since or time.monotonic()) if n == 0 else None
                    if idle_since is not None and time.monotonic() - idle_since > connect_timeout():
                        raise RunFault(f"every worker left {self.address or 'the local Dask cluster'} and none "
                                       f"came back within {connect_timeout():g} s")
                    continue
                for fut in [f for f in remaining if f in done]:  # in submission order
                    remaining.remove(fut)
                    try:
                        yield fut.result()
                    except (OSError, TimeoutError) as e:  # connection lost while fetching the result
                        raise self._lost(e) from None
                    except Exception as e:  # the shard's own failure, or KilledWorker after repeated deaths
                        yield e
                    fut.release()
        finally:
            if self.address:
                try:
                    self.client.run(release, spec.token)
                except Exception:
                    pass  # a lost scheduler: nothing to release

    def _workers_now(self) -> int | None:
        """Workers the scheduler has now (asked, not cached); None when it does not answer."""
        try:
            return len(self.client.nthreads())
        except Exception:
            return None

    def _lost(self, e: BaseException) -> RunFault:
        where = self.address or "the local Dask cluster"
        why = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        if self._workers_now() == 0:
            return RunFault(f"every worker left {where} ({why})")
        return RunFault(f"lost the connection to {where} ({why})")


def engine(workers: int = 1, address: str | None = None, device: str = "cpu"):
    """The engine for `--workers`/`--address`: serial for one worker without an address."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BadInput(f"workers: expected an integer >= 1, got {workers!r}")
    if address is not None or workers > 1:
        return DaskEngine(workers, address, device)
    return SerialEngine()
