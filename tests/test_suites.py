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

from explainers.base import EXPLAINERS, Explainer, register_explainer
from rankers.errors import BadInput
from suites.cli import main
from suites.run.config import load_suite
from suites.report import write_report
from suites.run.runner import run_suite
from suites.stats import holm, leaderboard, mean_ci

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[suite]
name = "tiny"
collection = "synthetic"
seed = 0

[samples]
split = "test"
queries = {queries}
top_k = 2
relevant = 1

[rankers.bm25]
[rankers.knrm]

[explainers.feature_ablation]
[explainers.gradcam]
[explainers.saliency]
{extra}

[metrics.deletion]
[metrics.insertion]
[metrics.explainer_agreement]
[metrics.listwise_tau]
"""

VALUE_COLS = ["suite", "ranker", "explainer", "collection", "qid", "docid", "metric", "value", "status", "message",
              "curve"]


def _suite(tmp_path, queries=3, extra="", name="tiny.toml"):
    p = tmp_path / name
    p.write_text(TINY.format(queries=queries, extra=extra))
    return p


def _table(d):
    con = sqlite3.connect(Path(d) / "results.sqlite")
    df = pd.read_sql_query("SELECT * FROM results", con)
    con.close()
    return df[VALUE_COLS].sort_values(VALUE_COLS[:7]).reset_index(drop=True)


def test_same_suite_same_seed_same_values(tmp_path):
    cfg = load_suite(_suite(tmp_path))
    a = _table(run_suite(cfg, tmp_path / "a", progress=False))
    b = _table(run_suite(cfg, tmp_path / "b", progress=False))
    pd.testing.assert_frame_equal(a, b)
    # 2 rankers x 3 explainers x 3 queries x 3 samples x 3 metrics + listwise rows per query
    assert len(a) == 2 * 3 * 9 * 3 + 2 * 3 * 3
    skipped = a[(a.ranker == "bm25") & (a.explainer == "gradcam")]
    assert (skipped.status == "skipped").all() and skipped.message.str.contains("feature_layer").all()
    ok = a[(a.ranker == "knrm") & (a.metric == "deletion")]
    assert (ok.status == "ok").all() and ok.value.between(-1, 2).all()


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    extra = "[explainers.kernel_shap]\nn_samples = 400\n[explainers.shapley_sampling]\nn_samples = 20"
    suite = _suite(tmp_path, queries=6, extra=extra)
    full = run_suite(load_suite(suite), tmp_path / "full", progress=False)  # also caches the trained knrm
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "suites.cli", "run", str(suite), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    db = out / "results.sqlite"
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline:
        time.sleep(0.05)
        try:
            con = sqlite3.connect(db)
            n = con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
            con.close()
        except sqlite3.Error:
            continue
        if n >= 20:
            break
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _table(out)
    assert 0 < len(partial) < len(_table(full))
    assert main(["run", str(suite), "--out", str(out), "--resume", "--quiet"]) == 0
    resumed = _table(out)
    assert not resumed.duplicated(VALUE_COLS[:7]).any()
    pd.testing.assert_frame_equal(resumed, _table(full))


def test_failing_explainer_is_recorded_and_suite_goes_on(tmp_path):
    @register_explainer("boom")
    class Boom(Explainer):
        def _attribute(self, pair):
            raise RuntimeError("kaboom")

    try:
        cfg = load_suite(_suite(tmp_path, queries=1, extra="[explainers.boom]"))
        df = _table(run_suite(cfg, tmp_path / "r", progress=False))
    finally:
        EXPLAINERS.pop("boom")
    boom = df[(df.explainer == "boom") & (df.docid != "*")]
    assert len(boom) and (boom.status == "error").all() and boom.message.str.contains("kaboom").all()
    assert (df[(df.explainer == "saliency") & (df.ranker == "knrm")].status == "ok").any()


@pytest.mark.parametrize("text,match", [
    ("[suite\nname=1", "malformed TOML"),
    ("[suite]\ncollection='synthetic'\n[rankers.bm25]\n[explainers.saliency]\n[metrics.deletion]", "missing required key 'name'"),
    ("[suite]\nname='x'\ncollection='synthetic'\n[rankers.bm25]\n[explainers.gradcamm]\n[metrics.deletion]",
     "unknown explainer 'gradcamm'; valid: .*gradcam"),
    ("[suite]\nname='x'\ncollection='synthetic'\n[rankers.bm25]\n[explainers.occlusion]\nwindw=2\n[metrics.deletion]",
     "unknown parameter 'windw'; allowed: .*window"),
    ("[suite]\nname='x'\ncollection='synthetic'\nseed='a'\n[rankers.bm25]\n[explainers.saliency]\n[metrics.deletion]",
     r"\[suite\].seed: expected int"),
    ("[suite]\nname='x'\ncollection='synthetic'\n[rankers.bm25]\n[explainers.saliency]\n[metrics.deletion]\nsteps=3",
     "unknown parameter 'steps'; allowed: max_steps"),
    ("[suite]\nname='x'\ncollection='synthetic'\n[rankers.bm25]\n[explainers.saliency]", r"\[metrics\] is empty"),
])
def test_malformed_suites(tmp_path, text, match, capsys):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(BadInput, match=match):
        load_suite(p)
    assert main(["run", str(p), "--out", str(tmp_path / "o")]) == 2
    assert str(p) in capsys.readouterr().err


def test_bundled_suites_validate():
    for name in ("quick", "cranfield", "cranfield_gpu", "trec-dl"):
        cfg = load_suite(ROOT / "suites" / f"{name}.toml")
        assert cfg.rankers and cfg.explainers and cfg.metrics and cfg.plan.rankers
    dl = load_suite(ROOT / "suites" / "trec-dl.toml").plan.rankers        # the next evidence run's design
    assert dl["crossencoder_delete"].config["removal_training"] == 0.5 and dl["knrm_exact"].config["kernels"] == "exact"
    import json
    chosen = json.loads((ROOT / "results" / "trec-dl" / "removal_selection.json").read_text())["selected"]
    assert chosen and all(dl[r].config["removal_training"] == share for r, share in chosen.items())  # dev's choice
    cr = load_suite(ROOT / "results" / "cranfield-next" / "suite.toml").plan.rankers   # the run under way
    chosen = json.loads((ROOT / "results" / "cranfield" / "removal_selection.json").read_text())["selected"]
    trained = [p for p in cr.values() if p.type in chosen and p.config.get("kernels") != "exact"]
    assert len(trained) == 6 and all(p.config["removal_training"] == chosen[p.type] for p in trained)  # every seed
    assert {p.seed for p in cr.values() if p.type == "knrm" and p.config.get("kernels") != "exact"} == {0, 1, 2}


def test_report_from_run_dir_alone(tmp_path):
    cfg = load_suite(_suite(tmp_path, queries=2, extra="[explainers.integrated_gradients]\n[explainers.occlusion]\n"
                            "[explainers.random]\n[metrics.rank_deletion]\nmax_steps = 5\n"
                            "[metrics.groundtruth_spearman]\n[metrics.sanity_randomization]\nmax_stages = 1\n"))
    d = run_suite(cfg, tmp_path / "run", progress=False)
    assert (d / "results.csv").exists() and (d / "summary.csv").exists()
    out = write_report(d, tmp_path / "RESULTS.md")
    text = out.read_text()
    page = (d / "report" / "knrm.md").read_text()
    for part in ("## The answer", "## Trust matrix", "## What was run", "## Ranker effectiveness", "heatmaps.png",
                 "timing.png", "faithfulness_cost.png", "(run/report/knrm.md)"):
        assert part in text, part
    for part in ("## Leaderboard", "## Cost per explanation", "curves_knrm.png", "## Comparisons", "versus random",
                 "bm25_agreement", "| constant |", "vs ceiling", "| rows |"):
        assert part in page, part
    board = page.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in board.splitlines() if line.startswith("| ")]
    assert rows and not any("**" in line for line in rows) and "not ranked" in board  # 2 queries: nothing bold
    for f in ("curves_knrm.png", "heatmaps.png", "timing.png", "faithfulness_cost.png"):
        assert (d / "figures" / f).stat().st_size > 1000
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_stats_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    m, lo, hi = mean_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    assert m == 2.5 and 1.0 <= lo < m < hi <= 4.0
    assert mean_ci(np.array([2.0])) == (2.0, 2.0, 2.0)
    rows = []
    for i in range(12):
        rows += [{"ranker": "r", "explainer": "good", "metric": "deletion", "qid": str(i), "docid": "d",
                  "value": 0.1 + 0.01 * i, "status": "ok"},
                 {"ranker": "r", "explainer": "bad", "metric": "deletion", "qid": str(i), "docid": "d",
                  "value": 0.5 + 0.01 * i, "status": "ok"}]
    b = leaderboard(pd.DataFrame(rows), "r", "deletion")
    assert list(b.explainer) == ["good", "bad"] and bool(b.worse_than_best.iloc[1])
