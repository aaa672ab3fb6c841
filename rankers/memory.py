"""Peak memory of one explanation, not of the process.

`PeakMemory(device)` around a block: `.mb` = the most memory in use during the block above what was in use
when it began, in MiB. CUDA: `torch.cuda.max_memory_allocated` after a peak reset (the caching
allocator's tensors). CPU: the process's resident set size sampled every `interval_s` by a thread
(/proc/self/statm; tensors, Python objects and library buffers alike), so peaks shorter than the
interval can be missed, and memory freed by an earlier block but kept by the allocator is not counted
again. Without /proc (not Linux) the CPU value is nan.
"""
from __future__ import annotations

import os
import threading

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    def __init__(self, device: str | torch.device = "cpu", interval_s: float = 0.005):
        self.cuda = str(device).startswith("cuda")
        self.interval_s, self.mb = float(interval_s), float("nan")

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
            return self
        self._start = _rss()
        self._peak = self._start
        self._stop = threading.Event()
        if self._start is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            r = _rss()
            if r is not None and r > self._peak:
                self._peak = r

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated() - self._start) / 2 ** 20
            return
        if self._start is None:
            return
        self._stop.set()
        self._thread.join()
        r = _rss()
        self._peak = max(self._peak, r or 0)
        self.mb = (self._peak - self._start) / 2 ** 20
