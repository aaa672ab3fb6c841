"""Nothing is lost or mislabelled: validation before side effects, --overwrite, fingerprinted
--resume, the one-writer lock, contained names, checkpoint identity, parameter schemas."""
import inspect
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explainers import EXPLAINERS
from metrics import METRICS
from rankers import RANKERS
from rankers.errors import BadInput
from rankers.params import Param
from rankers.text import tokenize
from rankers.training import build_ranker, get_ranker, load_checkpoint, save_ranker, train
from suites.cli import main
from suites.run.config import RANKER_KEYS, SAMPLE_KEYS, SUITE_KEYS, load_suite

ROOT = Path(__file__).resolve().parents[1]

SUITE = """
[suite]
name = "{name}"
collection = "synthetic"
seed = {seed}

[samples]
queries = 2
top_k = 1
relevant = 0

[rankers.bm25]

[explainers.feature_ablation]
[explainers.occlusion]
window = {window}

[metrics.deletion]
max_steps = {steps}
[metrics.rank_deletion]
"""


def _suite(tmp_path, name="safe", seed=0, window=1, steps=5, fname="s.toml"):
    p = tmp_path / fname
    p.write_text(SUITE.format(name=name, seed=seed, window=window, steps=steps))
    return p


def _rows(d):
    con = sqlite3.connect(Path(d) / "results.sqlite")
    n = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    dup = con.execute("SELECT COUNT(*) FROM (SELECT 1 FROM results GROUP BY ranker, explainer, qid, docid, metric "
                      "HAVING COUNT(*) > 1)").fetchone()[0]
    con.close()
    return n, dup


def _err(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_bad_input_into_existing_run_destroys_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    s = _suite(tmp_path)
    assert main(["run", str(s), "--out", str(out), "--quiet"]) == 0
    before = _rows(out)
    csv = (out / "results.csv").read_text()
    assert before[0] > 0
    # a collection that cannot be found, with --overwrite: refused before anything is touched
    bad = tmp_path / "bad.toml"
    bad.write_text(s.read_text().replace('"synthetic"', '"cranfield"'))
    monkeypatch.setenv("REXBENCH_DATA", str(tmp_path / "nonexistent"))
    import builtins
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "ir_datasets" else real_import(name, *a, **k))
    from suites.data import collections
    collections._CACHE.clear()
    assert main(["run", str(bad), "--out", str(out), "--overwrite", "--quiet"]) == 2
    assert "Cranfield not found" in _err(capsys)
    assert _rows(out) == before and (out / "results.csv").read_text() == csv
    # without --overwrite an existing run is refused
    assert main(["run", str(s), "--out", str(out), "--quiet"]) == 2
    assert "--overwrite" in _err(capsys)
    assert _rows(out) == before
    # invalid parameters are exit 2 before any work
    (tmp_path / "neg.toml").write_text(s.read_text().replace("max_steps = 5", "max_steps = -1"))
    assert main(["run", str(tmp_path / "neg.toml"), "--out", str(out), "--overwrite", "--quiet"]) == 2
    assert "max_steps" in _err(capsys) and _rows(out) == before
    # --overwrite replaces it
    assert main(["run", str(s), "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert _rows(out) == before


@pytest.mark.parametrize("change, key", [(dict(seed=1), "seed"), (dict(window=2), "occlusion.window"),
                                         (dict(steps=6), "deletion.max_steps"), (dict(name="other"), "name")])
def test_resume_refuses_a_different_run(tmp_path, capsys, change, key):
    out = tmp_path / "run"
    assert main(["run", str(_suite(tmp_path)), "--out", str(out), "--quiet"]) == 0
    before = _rows(out)
    changed = _suite(tmp_path, fname="changed.toml", **change)
    assert main(["run", str(changed), "--out", str(out), "--resume", "--quiet"]) == 2
    err = _err(capsys)
    assert "first difference" in err and key in err and err.count("\n") == 1
    assert _rows(out) == before
    assert main(["run", str(_suite(tmp_path)), "--out", str(out), "--resume", "--quiet"]) == 0  # same run: fine
    assert _rows(out) == before


def test_resume_refuses_a_run_started_by_other_code(tmp_path, capsys, monkeypatch):
    """The source digest of the code that computes a run's values is part of its identity: after a change,
    --resume would mix two versions of its values, so it is refused in one line that says how to continue."""
    import suites.run.runner as runner
    out = tmp_path / "run"
    assert main(["run", str(_suite(tmp_path)), "--out", str(out), "--quiet"]) == 0
    before = _rows(out)
    digest = runner.code_digest()
    assert len(digest) == 12 and digest == runner.code_digest()
    with sqlite3.connect(out / "results.sqlite") as con:
        env = json.loads(con.execute("SELECT value FROM meta WHERE key = 'environment'").fetchone()[0])
    assert env["versions"]["rexbench_code"] == digest   # what "What was run" prints
    monkeypatch.setattr(runner, "code_digest", lambda: "0" * 12)
    assert main(["run", str(_suite(tmp_path)), "--out", str(out), "--resume", "--quiet"]) == 2
    err = _err(capsys)
    assert "code changed" in err and digest in err and "check out that commit" in err and err.count("\n") == 1
    assert _rows(out) == before


def test_resume_refuses_a_cached_model_retrained_since_the_run_started(tmp_path, capsys, synthetic, small_knrm):
    """A trained ranker comes from the cache, keyed by its configuration and recipe, not its weights: the run
    records the weights' digest with the ranker, and --resume refuses a cache entry that holds other weights."""
    import torch

    from rankers.identity import weights_digest
    path, log = _cache_knrm(synthetic, small_knrm)
    p = _knrm_suite(tmp_path, "[rankers.knrm]")
    out = tmp_path / "run"
    assert main(["run", str(p), "--out", str(out), "--quiet"]) == 0
    before = _rows(out)
    with sqlite3.connect(out / "results.sqlite") as con:
        data = json.loads(con.execute("SELECT data FROM rankers WHERE ranker = 'knrm'").fetchone()[0])
    assert data["weights_sha"] == weights_digest(small_knrm)
    _drop_shard(out, "knrm")                                                    # killed before its last shard
    assert main(["run", str(p), "--out", str(out), "--resume", "--quiet"]) == 0   # the same weights: fine
    assert _rows(out) == before
    other = type(small_knrm).from_collection(synthetic, 0)
    other.load_state_dict(small_knrm.state_dict())
    with torch.no_grad():
        other.out.bias.add_(1.0)
    save_ranker(other, path, "synthetic", log)                                  # retrained since, say
    _drop_shard(out, "knrm")
    killed = _rows(out)
    assert main(["run", str(p), "--out", str(out), "--resume", "--quiet"]) == 2
    err = _err(capsys)
    assert "retrained since" in err and data["weights_sha"] in err and err.count("\n") == 1
    assert _rows(out) == killed


def test_resume_does_not_load_or_retrain_a_finished_ranker(tmp_path, synthetic, small_knrm, monkeypatch):
    """A run continued on a fresh machine (an empty model cache) trains only the rankers with shards left: a
    finished one is not loaded, so the resumed rows equal the uninterrupted run's and its model is not trained."""
    import shutil

    path, log = _cache_knrm(synthetic, small_knrm)
    p = _knrm_suite(tmp_path, "[rankers.knrm]\n[rankers.bm25]")
    out = tmp_path / "run"
    assert main(["run", str(p), "--out", str(out), "--quiet"]) == 0
    with sqlite3.connect(out / "results.sqlite") as con:
        full = con.execute(_VALUES).fetchall()
    _drop_shard(out, "bm25")
    shutil.rmtree(path)                                                         # a fresh machine: no cached knrm
    loads = _record_loads(monkeypatch)
    assert main(["run", str(p), "--out", str(out), "--resume", "--quiet"]) == 0
    assert "knrm" not in loads and "bm25" in loads and not path.exists()
    with sqlite3.connect(out / "results.sqlite") as con:
        assert con.execute(_VALUES).fetchall() == full
    save_ranker(small_knrm, path, "synthetic", log)                            # the session's cache as it was


def test_a_run_in_shares_by_ranker_equals_one_run(tmp_path, capsys, synthetic, small_knrm, monkeypatch):
    """`--rankers` prepares and runs only the named rankers (a session's share of a long run): the others are not
    loaded or trained, the run is not finished and says what is left; --resume runs the rest, and the rows equal
    one uninterrupted run's. A name the suite lacks is one line, exit 2, nothing written."""
    _cache_knrm(synthetic, small_knrm)
    p = _knrm_suite(tmp_path, "[rankers.knrm]\n[rankers.bm25]")
    assert main(["run", str(p), "--out", str(tmp_path / "one"), "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "shares"
    assert main(["run", str(p), "--out", str(out), "--quiet", "--rankers", "bm25,bm26"]) == 2
    err = _err(capsys)
    assert "unknown ranker 'bm26'" in err and "knrm, bm25" in err and err.count("\n") == 1 and not out.exists()
    loads = _record_loads(monkeypatch)
    monkeypatch.setattr("suites.run.runner.probe_ranker", lambda p, coll, qid: None)  # loads only in prepare
    assert main(["run", str(p), "--out", str(out), "--quiet", "--rankers", "bm25"]) == 0
    assert "left: knrm; continue with --resume" in capsys.readouterr().out and loads == ["bm25"]
    with sqlite3.connect(out / "results.sqlite") as con:
        assert {r for (r,) in con.execute("SELECT DISTINCT ranker FROM shards")} == {"bm25"}
        assert con.execute("SELECT COUNT(*) FROM meta WHERE key = 'finished'").fetchone()[0] == 0
    assert main(["run", str(p), "--out", str(out), "--quiet", "--resume"]) == 0
    assert "left" not in capsys.readouterr().out and loads == ["bm25", "knrm"]
    with sqlite3.connect(out / "results.sqlite") as con, sqlite3.connect(tmp_path / "one" / "results.sqlite") as one:
        assert con.execute(_VALUES).fetchall() == one.execute(_VALUES).fetchall()
        assert con.execute("SELECT COUNT(*) FROM meta WHERE key = 'finished'").fetchone()[0] == 1


def _cache_knrm(synthetic, small_knrm) -> tuple[Path, dict]:
    """Put `small_knrm` in the model cache as the suites' knrm (seed 0); returns its path and training log."""
    from rankers.identity import training_code
    from rankers.training import cached_checkpoint, training_hyperparameters
    path = cached_checkpoint("knrm", synthetic, 0, {})
    log = {"hyperparameters": training_hyperparameters(type(small_knrm)), "epochs": [], "code": training_code()}
    save_ranker(small_knrm, path, "synthetic", log)
    return path, log


def _knrm_suite(tmp_path, rankers: str) -> Path:
    """SUITE (named k) with `rankers` as its [rankers] tables."""
    p = tmp_path / "k.toml"
    p.write_text(SUITE.format(name="k", seed=0, window=1, steps=5).replace("[rankers.bm25]", rankers))
    return p


def _record_loads(monkeypatch) -> list[str]:
    """The names of the rankers the run loads (`RankerPlan.load`), in order, as they are loaded."""
    from suites.run.resolved import RankerPlan
    loads, real = [], RankerPlan.load
    monkeypatch.setattr(RankerPlan, "load", lambda self, *a, **k: loads.append(self.name) or real(self, *a, **k))
    return loads


_VALUES = ("SELECT ranker, explainer, qid, docid, metric, value, status, message, curve FROM results "
           "ORDER BY ranker, explainer, qid, docid, metric")


def _drop_shard(out: Path, ranker: str) -> None:
    """Forget `ranker`'s last recorded shard, as if the run had been killed before recording it."""
    with sqlite3.connect(out / "results.sqlite") as con:
        qid = con.execute("SELECT MAX(qid) FROM shards WHERE ranker = ?", (ranker,)).fetchone()[0]
        for table in ("shards", "results", "cells", "explanations"):
            con.execute(f"DELETE FROM {table} WHERE ranker = ? AND qid = ?", (ranker, qid))


def test_concurrent_second_writer_exits_2(tmp_path, capsys):
    out = tmp_path / "run"
    slow = tmp_path / "slow.toml"
    slow.write_text(SUITE.format(name="slow", seed=0, window=1, steps=5).replace("queries = 2", "queries = 0")
                    + "[explainers.shapley_sampling]\nn_samples = 40\n")
    cmd = [sys.executable, "-m", "suites.cli", "run", str(slow), "--out", str(out), "--quiet"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(1200):  # until the first run holds the lock and has written rows
        try:
            if first.poll() is not None or ((out / "results.sqlite").exists() and _rows(out)[0] > 0):
                break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before the second started"
    for extra in (["--resume"], ["--overwrite"]):  # a second writer, in this process, while the first runs
        assert main(cmd[3:] + extra) == 2
        err = _err(capsys)
        assert "in use by another rexbench run" in err and f'"pid": {first.pid}' in err
    assert first.wait(timeout=600) == 0, first.stderr
    n, dup = _rows(out)
    # 1 ranker x 3 explainers x (16 queries x 1 sample) x 2 metrics, nothing duplicated
    assert n == 3 * 16 * 2 and dup == 0


def test_suite_names_are_identifiers(tmp_path):
    for bad in ("../../../x", "", "a/b", ".hidden"):
        with pytest.raises(BadInput, match="not an identifier"):
            load_suite(_suite(tmp_path, name=bad))


@pytest.mark.parametrize("section, key, value", [("samples", "queries", -3), ("samples", "top_k", -2),
                                                 ("suite", "batch_size", 0), ("suite", "seed", -1),
                                                 ("suite", "seed", "zero"), ("samples", "split", "nope")])
def test_invalid_suite_values_are_rejected(tmp_path, section, key, value):
    p = tmp_path / "s.toml"
    text = _suite(tmp_path).read_text().replace(f"[{section}]", f"[{section}]\n{key} = {json.dumps(value)}", 1)
    p.write_text("\n".join(line for line in text.splitlines() if not (line.startswith(f"{key} =")
                                                                    and json.dumps(value) not in line)))
    with pytest.raises(BadInput, match=key):
        load_suite(p)


# --------------------------------------------------------------------------- parameter schemas
def _default_of(cls, name):
    for klass in cls.__mro__:
        sig = inspect.signature(klass.__init__).parameters
        if name in sig:
            return sig[name].default
    raise AssertionError(f"{cls.__name__} declares {name!r} but no __init__ takes it")


def _bad_values(p: Param):
    out = []
    if p.lo is not None:
        out.append(p.lo - 1)
    if p.hi is not None:
        out.append(p.hi + 1)
    if p.choices:
        out.append("not-a-choice")
    out.append([] if list not in p.types else "text")
    if not p.nullable:
        out.append(None)
    return out


def _walk():
    for name, cls in EXPLAINERS.items():
        yield "explainer", name, cls.params, cls
    for name, spec in METRICS.items():
        yield "metric", name, spec.params, None
    for name, spec in RANKERS.items():
        yield "ranker", name, spec.cls.params, spec.cls
    for name, schema in (("suite", SUITE_KEYS), ("samples", SAMPLE_KEYS), ("rankers.*", RANKER_KEYS)):
        yield "suite", name, schema, None


def test_parameter_schema_walk():
    """Every registered parameter: declared type and range; its default passes; values outside
    the declared type or range fail with a BadInput naming it; defaults match the constructor."""
    n = 0
    for kind, name, schema, cls in _walk():
        for key, p in schema.items():
            n += 1
            assert isinstance(p, Param) and p.types, (kind, name, key)
            if int in p.types or float in p.types:
                assert p.lo is not None or key in ("layer",), f"{kind} {name}.{key}: numeric without a range"
            if p.default is not None or p.nullable:
                assert p.check(key, p.default) == p.default
            for bad in _bad_values(p):
                with pytest.raises(BadInput, match=key):
                    p.check(f"{name}.{key}", bad)
            if cls is not None:
                assert _default_of(cls, key) == p.default, (kind, name, key)
    assert n > 60


def test_list_json_shows_schemas_and_ranges(capsys):
    assert main(["list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for m in out["metrics"]:
        assert m["direction"] in ("higher", "lower") and len(m["range"]) == 2
    ig = next(e for e in out["explainers"] if e["name"] == "integrated_gradients")
    assert ig["params"]["n_steps"]["range"] == [1, 10000] and ig["params"]["n_steps"]["default"] == 50
    knrm = next(r for r in out["rankers"] if r["name"] == "knrm")
    assert knrm["params"]["dim"]["default"] == 64


def test_cli_param_is_validated(capsys):
    base = ["explain", "--ranker", "bm25", "--explainer", "occlusion", "--collection", "synthetic", "--qid", "q001",
            "--docid", "d0001"]
    assert main(base + ["--param", "window=abc"]) == 2
    assert "window" in _err(capsys)
    assert main(base + ["--param", "window=0"]) == 2
    assert main(base + ["--param", "nosuch=1"]) == 2
    assert main(["floors", "--pairs", "0", "--out", "x.json"]) == 2
    assert main(["rank", "bm25", "--collection", "synthetic", "--seed", "-1"]) == 2
    assert main(["--version"]) == 0 and "rexbench" in capsys.readouterr().out


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_identity_and_damage(tmp_path, synthetic, cranfield, capsys):
    m = build_ranker("knrm", synthetic, seed=0)
    ck = save_ranker(m, tmp_path / "ck", "synthetic", {})
    assert get_ranker("knrm", synthetic, checkpoint=str(ck)) is not None
    with pytest.raises(BadInput, match="ranker 'knrm', not 'matchpyramid'"):
        get_ranker("matchpyramid", synthetic, checkpoint=str(ck))
    with pytest.raises(BadInput, match="collection 'synthetic', not 'cranfield'"):
        get_ranker("knrm", cranfield, checkpoint=str(ck))
    assert main(["rank", "bm25", "--collection", "synthetic", "--checkpoint", str(ck)]) == 2
    assert "not 'bm25'" in _err(capsys)
    # edited vocabulary, truncated weights, garbage config: exit 2, one line
    cfg = json.loads((ck / "config.json").read_text())
    cfg["vocab"][5] = "pizza"
    (tmp_path / "ed").mkdir()
    (tmp_path / "ed" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "ed" / "model.pt").write_bytes((ck / "model.pt").read_bytes())
    with pytest.raises(BadInput, match="vocabulary"):
        load_checkpoint(tmp_path / "ed")
    (ck / "model.pt").write_bytes((ck / "model.pt").read_bytes()[:100])
    assert main(["rank", "knrm", "--collection", "synthetic", "--checkpoint", str(ck)]) == 2
    assert "model.pt cannot be loaded" in _err(capsys)
    (ck / "config.json").write_text("{not json")
    assert main(["rank", "knrm", "--collection", "synthetic", "--checkpoint", str(ck)]) == 2
    assert "damaged" in _err(capsys)


def test_training_is_reproducible_by_epochs(synthetic):
    """Same seed, same weights; the stop is epochs and patience, never a clock."""
    logs, states = [], []
    for _ in range(2):
        m = build_ranker("knrm", synthetic, seed=5)
        logs.append(train(m, synthetic, seed=5, epochs=2, n_per_query=5, progress=False))
        states.append(m.state_dict())
    assert logs[0]["hyperparameters"]["time_budget_s"] is None
    assert all((states[0][k] == states[1][k]).all() for k in states[0])
    assert [e["dev_ndcg@10"] for e in logs[0]["epochs"]] == [e["dev_ndcg@10"] for e in logs[1]["epochs"]]


# --------------------------------------------------------------------------- text
def test_unicode_tokens_and_recorded_oov(capsys):
    assert tokenize("Strömung café 東京 NAÏVE ﬁnal") == ["strömung", "café", "東京", "naïve", "final"]
    args = ["explain", "--ranker", "bm25", "--explainer", "feature_ablation", "--query",
            "blockchain cryptocurrency pressure", "--doc", "the pressure distribution over a wing", "--json"]
    assert main(args) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert out["info"]["oov"]["query"] == ["blockchain", "cryptocurrency"]
    assert "warning" in cap.err and "blockchain" in cap.err


def test_doc_file_and_default_collection(tmp_path, capsys):
    doc = tmp_path / "long.txt"
    doc.write_text("pressure distribution " * 20000, encoding="utf-8")
    assert main(["explain", "--ranker", "bm25", "--explainer", "exact_match", "--query", "pressure",
                 "--doc-file", str(doc), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["truncated"] is True and len(out["doc_tokens"]) == 512
    assert main(["explain", "--ranker", "bm25", "--explainer", "exact_match", "--query", "x",
                 "--doc-file", str(tmp_path / "missing.txt")]) == 2


def test_figures_say_when_truncated(tmp_path, capsys):
    doc = tmp_path / "long.txt"
    doc.write_text("pressure distribution wing " * 300, encoding="utf-8")
    html = tmp_path / "h.html"
    assert main(["explain", "--ranker", "bm25", "--explainer", "exact_match", "--query", "pressure",
                 "--doc-file", str(doc), "--out", str(html)]) == 0
    assert "truncated this document" in html.read_text()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from explainers import Explanation
    from explainers.plot import heatmap_png
    ex = Explanation("bm25", "x", ["q"], [f"w{i}" for i in range(80)], np.ones(80), truncated=True)
    fig, ax = plt.subplots()
    heatmap_png(ex, tmp_path / "f.png", ax=ax)
    plt.close(fig)
    assert "first 60 of 80 words shown" in ax.get_title() and "truncated by the ranker" in ax.get_title()


def test_named_rankers_of_one_type_with_parameters(tmp_path, capsys):
    """Several rankers of one registered type under their own names, each with its parameters."""
    p = tmp_path / "two.toml"
    p.write_text(SUITE.format(name="two", seed=0, window=1, steps=5).replace(
        "[rankers.bm25]", '[rankers.bm25]\n[rankers.bm25_flat]\ntype = "bm25"\nk1 = 0.5\nb = 0.0'))
    cfg = load_suite(p)
    assert cfg.ranker_type("bm25_flat") == "bm25" and cfg.ranker_config("bm25_flat") == {"k1": 0.5, "b": 0.0}
    assert cfg.resolved()["rankers"]["bm25_flat"]["params"] == {"k1": 0.5, "b": 0.0, "max_doc_len": 512}
    out = tmp_path / "run"
    assert main(["run", str(p), "--out", str(out), "--quiet"]) == 0
    con = sqlite3.connect(out / "results.sqlite")
    got = dict(con.execute("SELECT ranker, AVG(value) FROM results WHERE metric = 'rank_deletion' "
                           "AND explainer = 'feature_ablation' GROUP BY ranker").fetchall())
    con.close()
    assert set(got) == {"bm25", "bm25_flat"} and got["bm25"] != got["bm25_flat"]
    for bad, msg in (('type = "nosuch"', "unknown ranker type 'nosuch'"), ("k1 = -1", "k1"),
                     ("removal = 'delete'", "unknown parameter 'removal'")):
        p.write_text(SUITE.format(name="two", seed=0, window=1, steps=5).replace(
            "[rankers.bm25]", f"[rankers.bm25]\n[rankers.other]\ntype = \"bm25\"\n{bad}" if "type" not in bad
            else f"[rankers.bm25]\n[rankers.other]\n{bad}"))
        assert main(["run", str(p), "--out", str(tmp_path / "r2"), "--quiet"]) == 2
        assert msg in _err(capsys)


def test_report_says_when_a_run_is_incomplete(tmp_path):
    from suites.report import write_report
    out = tmp_path / "run"
    assert main(["run", str(_suite(tmp_path)), "--out", str(out), "--quiet"]) == 0
    assert "Incomplete run" not in write_report(out).read_text()
    con = sqlite3.connect(out / "results.sqlite")
    with con:
        con.execute("DELETE FROM meta WHERE key = 'finished'")  # as a killed run leaves it
    con.close()
    text = write_report(out).read_text()
    assert "Incomplete run" in text and "--resume" in text


def test_weights_digest_reads_every_tensor_a_trained_ranker_holds_scalars_included(synthetic):
    """The exact-match KNRM holds a 0-dim buffer (its parametrisation mark): the digest covers it (it crashed the
    TREC DL run at its start), and a change to any byte of a tensor, the scalar included, changes the digest."""
    import torch

    from rankers.identity import weights_digest
    from rankers.neural import KNRM
    model = KNRM.from_collection(synthetic, 0, kernels="exact")
    assert any(t.dim() == 0 for t in model.state_dict().values())
    before = weights_digest(model)
    assert before == weights_digest(model) and len(before) == 16
    with torch.no_grad():
        model.nonnegative_weight.fill_(2.0)
    assert weights_digest(model) != before
