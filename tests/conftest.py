import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory):
    """Checkpoints trained by tests go to a temporary REXBENCH_HOME."""
    old = os.environ.get("REXBENCH_HOME")
    os.environ["REXBENCH_HOME"] = str(tmp_path_factory.mktemp("rexbench_home"))
    yield
    if old is None:
        os.environ.pop("REXBENCH_HOME", None)
    else:
        os.environ["REXBENCH_HOME"] = old


@pytest.fixture(scope="session")
def cranfield():
    from suites.data.collections import load_collection
    return load_collection("cranfield")


@pytest.fixture(scope="session")
def synthetic():
    from suites.data.collections import load_collection
    return load_collection("synthetic")


@pytest.fixture(scope="session")
def small_knrm(synthetic):
    """A KNRM trained briefly on the synthetic collection (seconds)."""
    from rankers.training import build_ranker, train
    m = build_ranker("knrm", synthetic, seed=0)
    train(m, synthetic, seed=0, epochs=4, n_per_query=20, progress=False)
    return m


@pytest.fixture(scope="session")
def small_matchpyramid(synthetic):
    from rankers.training import build_ranker, train
    m = build_ranker("matchpyramid", synthetic, seed=0)
    train(m, synthetic, seed=0, epochs=4, n_per_query=20, progress=False)
    return m
