"""`make bench-compare` is a real gate: a slowed explainer fails it (pytest-benchmark's compare-fail)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(storage, *extra, slowdown=None):
    env = {**os.environ, "REXBENCH_BENCH_DEVICE": "cpu"}
    if slowdown:
        env["REXBENCH_BENCH_SLOWDOWN"] = str(slowdown)
    cmd = [sys.executable, "-m", "pytest", "tests/benchmarks", "-q", "-o", "addopts=", "--benchmark-only",
           f"--benchmark-storage=file://{storage}", "-k", "exact_match and bm25", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_slowed_explainer_fails_bench_compare(tmp_path):
    base = _bench(tmp_path, f"--benchmark-json={tmp_path}/0001_baseline.json")
    assert base.returncode == 0, base.stdout + base.stderr
    same = _bench(tmp_path, "--benchmark-compare=0001", "--benchmark-compare-fail=median:500%")
    assert same.returncode == 0, same.stdout + same.stderr
    slow = _bench(tmp_path, "--benchmark-compare=0001", "--benchmark-compare-fail=median:500%", slowdown=0.05)
    assert slow.returncode != 0
    assert "Performance has regressed" in slow.stdout + slow.stderr
