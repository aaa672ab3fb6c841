"""Scale-out: the Dask engine gives the serial path's values, survives a killed worker, and batches
perturbation rows across the pairs of a query; CUDA out-of-memory halves the batch."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from explainers import build_explainer, make_pair
from metrics import MetricContext, compute_metrics, compute_metrics_many
from suites.run.config import load_suite
from suites.run.runner import run_suite

pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[1]

SUITE = """
[suite]
name = "scale"
collection = "synthetic"
[samples]
queries = {queries}
top_k = 2
relevant = 1
[rankers.bm25]
[rankers.knrm]
[explainers.feature_ablation]
[explainers.kernel_shap]
n_samples = {n_samples}
[explainers.gradcam]
[explainers.integrated_gradients]
n_steps = 8
[metrics.rank_deletion]
[metrics.insertion]
[metrics.explainer_agreement]
[metrics.listwise_tau]
[metrics.sanity_randomization]
max_stages = 1
"""

KEY = ["ranker", "explainer", "qid", "docid", "metric"]


def _suite(tmp_path, queries=3, n_samples=40):
    p = tmp_path / "scale.toml"
    p.write_text(SUITE.format(queries=queries, n_samples=n_samples))
    return p


def _rows(d) -> pd.DataFrame:
    con = sqlite3.connect(Path(d) / "results.sqlite")
    df = pd.read_sql_query("SELECT ranker, explainer, qid, docid, metric, value, status, message, curve "
                           "FROM results ORDER BY ranker, explainer, qid, docid, metric", con)
    con.close()
    return df


def test_workers_give_the_serial_values(tmp_path, monkeypatch):
    """Serial, 2 forked workers (Linux CPU default) and 2 spawned workers (CUDA and macOS) give the same rows."""
    import suites.run.engine as eng
    assert eng.start_method("cpu", None) == ("fork" if sys.platform.startswith("linux") else "spawn")
    assert eng.start_method("cuda", None) == "spawn"
    p = _suite(tmp_path, queries=2)
    serial = _rows(run_suite(load_suite(p), tmp_path / "w1", progress=False))  # also trains and caches knrm
    assert len(serial) > 100 and (serial.status == "ok").mean() > 0.7
    for method in ("fork", "spawn"):
        monkeypatch.setattr(eng, "start_method", lambda _device, _address, m=method: m)
        two = _rows(run_suite(load_suite(p), tmp_path / method, progress=False, workers=2))
        assert not two.duplicated(KEY).any()
        pd.testing.assert_frame_equal(serial, two)
        con = sqlite3.connect(tmp_path / method / "results.sqlite")
        assert '"workers": 2' in con.execute("SELECT value FROM meta WHERE key='engine'").fetchone()[0]
        con.close()


def _worker_pids(pid: int) -> list[int]:
    """Dask worker processes under `pid`: its forked or spawned descendants (not multiprocessing's resource
    tracker)."""
    parent, cmd = {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd[int(d.name)] = (d / "cmdline").read_bytes().decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue

    def under(p):
        while p in parent and p != 1:
            p = parent[p]
            if p == pid:
                return True
        return False
    return [p for p in parent if under(p) and "resource_tracker" not in cmd[p]]


def test_a_killed_worker_loses_and_duplicates_nothing(tmp_path):
    p = _suite(tmp_path, queries=5, n_samples=100)
    full = _rows(run_suite(load_suite(p), tmp_path / "full", progress=False))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "suites.cli", "run", str(p), "--out", str(out), "--quiet",
                             "--workers", "2"], cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # a Dask worker process (forked by the run's LocalCluster), killed after the first shard is recorded
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        db = out / "results.sqlite"
        try:
            con = sqlite3.connect(db)
            n = con.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
            con.close()
        except sqlite3.Error:
            continue
        if n >= 1:
            workers = _worker_pids(proc.pid)
            victim = workers[0] if workers else None
    assert victim is not None, "no worker found while the run was going"
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    got = _rows(out)
    assert not got.duplicated(KEY).any()
    pd.testing.assert_frame_equal(got, full)


def test_cross_pair_batching_equals_one_pair_at_a_time(cranfield):
    from rankers.training import build_ranker
    r = build_ranker("bm25", cranfield)
    q = cranfield.split("test")[0]
    ctxs = []
    for d in cranfield.candidates(q)[:4]:
        pair = make_pair(r, cranfield.queries[q], cranfield.docs[d])
        for e in ("feature_ablation", "random"):
            ex = build_explainer(e, r).attribute_pair(pair)
            ctxs.append(MetricContext(r, pair, ex, other_scores=np.linspace(0, 10, 20)))
    names = ["deletion", "insertion", "rank_deletion", "rank_insertion", "comprehensiveness", "sufficiency"]
    many = compute_metrics_many(ctxs, names, batch_size=37)   # batches span pairs of unequal length
    for ctx, got in zip(ctxs, many):
        one = compute_metrics(ctx, names)
        for m in names:
            assert got[m].status == one[m].status
            assert got[m].value == pytest.approx(one[m].value, abs=1e-9), m


@pytest.mark.parametrize("name", ["bm25", "knrm"])
def test_score_rows_returns_each_jobs_rows_in_order(cranfield, name):
    """Jobs of unequal query and document lengths, rows straddling calls: every job gets exactly its own
    rows' scores (as scoring it alone), in ceil(rows / batch_size) model calls."""
    from rankers.scorer import score_rows
    from rankers.training import build_ranker
    torch.manual_seed(0)
    r = build_ranker(name, cranfield, seed=0).eval()
    q_units, d_units = cranfield.units(r.analyzer)
    g = torch.Generator().manual_seed(1)
    jobs = []
    for q, d, n in [("1", "184", 7), ("2", "12", 1), ("1", "29", 12), ("3", "30", 0), ("2", "51", 5)]:
        pair = make_pair(r, cranfield.queries[q], cranfield.docs[d])
        jobs.append((pair.q_ids, pair.d_ids, (torch.rand(n, len(pair.d_ids), generator=g) > 0.4).float()))
    calls = []
    r.register_forward_hook(lambda _m, inp, _o: calls.append(inp[0].shape[0]))
    got = score_rows(r, jobs, batch_size=4)
    assert calls == [4, 4, 4, 4, 4, 4, 1]  # 25 rows
    with torch.no_grad():
        for (q, d, m), s in zip(jobs, got):
            want = r(q[None].expand(len(m), -1), d[None].expand(len(m), -1), m).double().numpy()
            np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-6)
            assert s.shape == (len(m),)


def test_cuda_out_of_memory_halves_the_batch(tmp_path, monkeypatch):
    """Simulated: the first attempt at a shard runs out of memory; the shard is retried at half the
    batch size and the retry is recorded in its rows."""
    import suites.run.execute as ex
    calls = []
    real = ex._run_shard

    def flaky(spec, rname, qid, batch_size, oom_retries):
        calls.append(batch_size)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(spec, rname, qid, batch_size, oom_retries)

    monkeypatch.setattr(ex, "_run_shard", flaky)
    p = tmp_path / "s.toml"
    p.write_text(SUITE.format(queries=1, n_samples=20).replace("[rankers.knrm]\n", ""))
    d = run_suite(load_suite(p), tmp_path / "r", progress=False)
    assert calls[:2] == [128, 64]  # "auto" on CPU: bm25's 128 rows per call
    info = pd.read_csv(d / "results.csv")["info"].dropna()
    assert info.str.contains('"oom_retries": 1').any()


def test_batch_size_auto_is_resolved_per_device_and_ranker(tmp_path, monkeypatch):
    """`batch_size = "auto"` (the default) becomes rows per model call for the device and ranker (CPU: the
    ranker's `cpu_batch_size`; CUDA: by device memory), recorded per ranker and used by its shards; a number
    is kept for every ranker; anything else is a one-line error naming the key."""
    from rankers.errors import BadInput
    from rankers.scorer import default_batch_size, resolve_batch_size
    from rankers.training import build_ranker
    import suites.run.execute as ex
    from suites.run.store import Store

    knrm = build_ranker("knrm", load_suite_collection())
    assert default_batch_size("cpu", knrm) == knrm.cpu_batch_size == resolve_batch_size("auto", "cpu", knrm) == 128
    assert resolve_batch_size(7, "cpu", knrm) == 7 and default_batch_size("cpu") == 64
    for gib, want in [(141, 512), (16, 256), (8, 128)]:
        props = type("P", (), {"total_memory": gib * 2 ** 30})
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _d, p=props: p)
        assert default_batch_size("cuda:0", knrm) == want
    monkeypatch.undo()
    for bad, msg in [('"big"', "expected int or 'auto'"), ("0", "out of range")]:
        p = tmp_path / f"bad{bad.strip(chr(34))}.toml"
        p.write_text(SUITE.format(queries=1, n_samples=20).replace('collection = "synthetic"',
                                                                   f'collection = "synthetic"\nbatch_size = {bad}'))
        with pytest.raises(BadInput, match=rf"\[suite\]\.batch_size: .*{msg}"):
            load_suite(p)
    seen = {}
    real = ex._run_shard
    monkeypatch.setattr(ex, "_run_shard", lambda spec, r, q, b, o: seen.setdefault(r, b) and real(spec, r, q, b, o))
    monkeypatch.setattr(type(knrm), "cpu_batch_size", 8)  # a ranker of its own preference (transformers: 16)
    p = tmp_path / "auto.toml"
    p.write_text(SUITE.format(queries=1, n_samples=20))
    cfg = load_suite(p)
    assert cfg.batch_size == "auto"
    d = run_suite(cfg, tmp_path / "r", progress=False)
    store = Store(d / "results.sqlite")
    recorded = dict(zip(store.rankers().ranker, store.rankers().batch_size))
    store.close()
    assert seen == recorded == {"bm25": 128, "knrm": 8}
    assert "rows per model call: bm25 128, knrm 8" in open(
        __import__("suites.report", fromlist=["x"]).write_report(d, tmp_path / "R.md")).read()


def load_suite_collection():
    from suites.data.collections import load_collection
    return load_collection("synthetic")


def test_shard_timings_and_their_projection(tmp_path, capsys):
    """`python -m suites.report.scaling` summarises a run's shards (a --limit run measures fewer queries than the
    suite file plans); the report projects the whole suite from them and says it is a projection."""
    from suites.report import write_report
    from suites.report.cost import shard_scaling
    from suites.report.scaling import main, shard_timings
    p = _suite(tmp_path, queries=3, n_samples=20)
    d = run_suite(load_suite(p), tmp_path / "r", progress=False, limit=2)
    got = shard_timings(d)
    con = sqlite3.connect(d / "results.sqlite")
    want = dict(con.execute("SELECT ranker, SUM(seconds) FROM shards GROUP BY ranker").fetchall())
    n_exp = dict(con.execute("SELECT ranker, COUNT(*) FROM explanations GROUP BY ranker").fetchall())
    con.close()
    assert got["complete"] and got["workers"] == 1 and set(got["rankers"]) == {"bm25", "knrm"}
    assert got["unmeasured"] == []
    for r, v in got["rankers"].items():
        assert v["shards"] == 2 and v["planned_queries"] == 3 and v["explanations"] == n_exp[r]
        assert sum(v["seconds"]) == pytest.approx(want[r])
    md = "\n".join(shard_scaling("scaling_x.json", got, workers=(1, 3)))
    bm = got["rankers"]["bm25"]
    assert f"| bm25 | 2 | {np.mean(bm['seconds']):.0f} | {n_exp['bm25'] / sum(bm['seconds']):.3g} | 3 | " in md
    assert f"{3 * np.mean(bm['seconds']) / 3:.0f} s |" in md and "not measured" in md
    partial = {**got, "rankers": {"bm25": bm}, "unmeasured": ["knrm"], "complete": False}
    md = "\n".join(shard_scaling("scaling_x.json", partial))
    assert "**measured rankers**" in md and "(not in the projection): knrm" in md and "stopped (partial" in md
    assert main([str(d), "--out", str(d / "scaling_x.json")]) == 0
    assert "## Scaling (scaling_x.json)" in write_report(d, tmp_path / "R.md").read_text()
    assert main([str(tmp_path / "nothing"), "--out", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_plan_starts_the_costliest_rankers_and_skips_recorded_shards():
    from suites.run.config import SuiteConfig
    from suites.run.prepare import plan
    # the plan is the resolved suite's: rankers of registered types (any; their names decide nothing here)
    cfg = SuiteConfig(name="s", collection="synthetic",
                      rankers={"a": {"type": "bm25"}, "b": {"type": "bm25", "queries": 1}, "c": {"type": "bm25"},
                               "d": {"type": "bm25", "explain": False}})
    shards = plan(cfg, ["q1", "q2"], {("c", "q1")}, {"a": 0.1, "b": 2.0, "c": 0.5})
    assert shards == [("b", "q1"), ("c", "q2"), ("a", "q1"), ("a", "q2")]
    assert plan(cfg, ["q1", "q2"], set()) == [("a", "q1"), ("a", "q2"), ("b", "q1"), ("c", "q1"), ("c", "q2")]
