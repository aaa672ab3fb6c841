"""Per-explanation peak memory (rankers/memory.py) sees an allocation made and freed inside the block."""
import numpy as np
import torch

from rankers.memory import PeakMemory


def test_peak_memory_sees_a_transient_allocation():
    with PeakMemory("cpu", interval_s=0.001) as m:
        x = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB, touched
        x += 1
        import time
        time.sleep(0.05)
        del x
    assert 48 <= m.mb <= 256, m.mb
    with PeakMemory("cpu") as small:
        np.zeros(10)
    assert small.mb < 16
