"""Per-explanation peak memory (rankers/memory.py) sees an allocation made and freed inside the block."""
import numpy as np

from rankers.memory import PeakMemory


def test_peak_memory_sees_a_transient_allocation():
    import mmap
    import time
    with PeakMemory("cpu", interval_s=0.001) as m:
        # 64 MiB of fresh anonymous pages, touched: a malloc'd tensor may instead reuse memory the allocator kept
        # from earlier tests (then the process's resident set does not grow, which the instrument documents)
        x = mmap.mmap(-1, 64 * 2 ** 20)
        x.write(b"\x01" * (64 * 2 ** 20))
        time.sleep(0.05)
        x.close()
    assert 48 <= m.mb <= 256, m.mb
    with PeakMemory("cpu") as small:
        np.zeros(10)
    assert small.mb < 16
