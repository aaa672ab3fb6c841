"""Nothing silently wrong, round three (issue 31): what a run says it measured is what it measured. Each test
fails on the code before the fix: the removal operator of every route is the one the model runs, delete is
the text without the word in every tokenizer family, a run's identity covers code and local files, models
that cannot be read as asked are refused in one line, truncation is recorded, code runs only with an opt-in,
names are checked on every route, and a function that hangs or exits cannot end or hang a run unseen."""
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_tiny import DOC, QUERY, build, word_pieces
from rankers.errors import BadInput
from suites.cli import main

transformers = pytest.importorskip("transformers")
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
MASKED = ("bert", "roberta", "xlm-roberta", "distilbert", "deberta-v2", "electra", "modernbert")
UNMASKED = {"qwen2-cls": "crossencoder", "t5": "seq2seq", "qwen2": "causal_lm"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("silent")
    return {f: build(f, root / f) for f in (*MASKED, *UNMASKED)}


def _suite(tmp_path, name: str, rankers: str = "[rankers.bm25]\n", queries: int = 1, file: str = "s.toml",
           explainers: str = "[explainers.random]\n", metrics: str = "[metrics.deletion]\nmax_steps = 3\n") -> Path:
    """A small suite on the synthetic collection (top document of each query), written to tmp_path/file."""
    p = tmp_path / file
    p.write_text(f'[suite]\nname = "{name}"\ncollection = "synthetic"\n[samples]\nqueries = {queries}\ntop_k = 1\n'
                 f'relevant = 0\n{rankers}{explainers}{metrics}')
    return p


def _direct(path: str, enc, fill: int | None = None, pieces=()) -> float:
    """The model's own forward on the encoding `enc`, the pieces at `pieces` replaced by the id `fill`."""
    m = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    x = {k: torch.tensor([v]) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    x["input_ids"][0, list(pieces)] = -1 if fill is None else fill
    with torch.no_grad():
        return float(m(**x).logits[0, 0])


def _occluded(capsys, argv: list[str], word: int) -> float:
    """The score with document word `word` removed, as the CLI's occlusion (window 1) reports it."""
    assert main([*argv, "--explainer", "occlusion", "--param", "window=1", "--query", QUERY, "--doc", DOC,
                 "--json"]) == 0, capsys.readouterr().err
    ex = json.loads(capsys.readouterr().out)
    return ex["score"] - ex["doc_scores"][word]


# ----------------------------------------------------------------------------- the removal operator
@pytest.mark.parametrize("family", MASKED)
def test_mask_given_by_any_route_is_the_mask_operator(family, models, tmp_path, capsys):
    """removal = "mask" from a suite table, --ranker-param and an API table: the removed word's pieces are the
    tokenizer's mask token (checked against the model's own forward on ids built that way)."""
    from suites.api import _rankers
    from suites.data.collections import load_collection
    from suites.run.config import SuiteConfig
    path = models[family]
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc, words = word_pieces(tok, QUERY, DOC)
    pieces = words[3]
    want, pad = _direct(path, enc, tok.mask_token_id, pieces), _direct(path, enc, tok.pad_token_id, pieces)
    assert abs(want - pad) > 1e-4  # the two operators differ on this model: the check can tell them apart
    cli = ["explain", "--ranker", "crossencoder", "--ranker-param", f"model={path}", "--ranker-param", "train=false",
           "--ranker-param", "removal=mask"]
    assert _occluded(capsys, cli, 3) == pytest.approx(want, abs=1e-4)
    suite = tmp_path / "s.toml"
    suite.write_text(f'[suite]\nname = "m"\ncollection = "synthetic"\n[rankers.r]\ntype = "crossencoder"\n'
                     f'model = "{path}"\ntrain = false\nremoval = "mask"\n[explainers.occlusion]\n'
                     '[metrics.deletion]\n')
    assert _occluded(capsys, ["explain", "--suite", str(suite), "--ranker", "r"], 3) == pytest.approx(want, abs=1e-4)
    tables, _ = _rankers({"r": {"type": "crossencoder", "model": path, "train": False, "removal": "mask"}})
    r = SuiteConfig("api", "synthetic", rankers=tables).plan.rankers["r"].load(load_collection("synthetic"))
    assert r.removal == "mask" and r.removed_id == tok.mask_token_id


@pytest.mark.parametrize("family", list(UNMASKED))
def test_mask_without_a_mask_token_is_refused_on_every_route(family, models, capsys):
    argv = ["explain", "--ranker", UNMASKED[family], "--ranker-param", f"model={models[family]}", "--ranker-param",
            "train=false", "--ranker-param", "removal=mask", "--explainer", "occlusion", "--query", QUERY, "--doc", DOC]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no mask token" in err and err.count("\n") == 1
    from rankers.registry import ranker_spec
    r = ranker_spec(UNMASKED[family]).cls(model=models[family])
    with pytest.raises(BadInput, match="no mask token"):
        r.removal = "mask"  # what get_ranker does with a runtime parameter
    assert r.removal == "pad"


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "deberta-v2", "modernbert", "qwen2-cls"])
@pytest.mark.parametrize("drop", [[0], [0, 1], [4], [0, 5, 9]])
def test_delete_is_the_text_without_the_words(family, drop, models):
    """Deleting any words, the first included, scores the text without them as the tokenizer encodes it
    (byte-level BPE: the next word loses its leading-space piece; unigram: its word-start marker moves)."""
    from rankers.crossencoder import CrossEncoder
    from rankers.text import words
    path = models[family]
    r = CrossEncoder(model=path, removal="delete").eval()
    q, d = words(QUERY), words(DOC)
    enc = r.encode(q, [d])
    mask = torch.ones(enc.d_ids.shape)
    mask[0, drop] = 0
    with torch.no_grad():
        ours = float(r(enc.q_ids, enc.d_ids, mask)[0])
    import re  # the text without the words: each dropped with the whitespace before it, the rest keep theirs
    rest = "".join(m.group(0) for i, m in enumerate(re.finditer(r"\s*\S+", DOC)) if i not in drop).lstrip()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    want = _direct(path, tok(QUERY, rest))
    assert ours == pytest.approx(want, abs=1e-4)


# ----------------------------------------------------------------------------- models that cannot be read as asked
def test_model_directory_without_tokenizer_files_is_refused(models, tmp_path, capsys):
    import shutil
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in Path(models["bert"]).iterdir():
        if f.name in ("config.json", "model.safetensors"):
            shutil.copy(f, bare / f.name)
    argv = ["explain", "--ranker", "crossencoder", "--ranker-param", f"model={bare}", "--ranker-param",
            "train=false", "--explainer", "occlusion", "--query", QUERY, "--doc", DOC]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no tokenizer files" in err and str(bare) in err and err.count("\n") == 1
    assert main([*argv[:4], f"model={tmp_path / 'missing'}", *argv[5:]]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "repo" not in err.lower()


def test_truncated_weights_are_one_line(models, tmp_path, capsys):
    import shutil
    cut = tmp_path / "cut"
    shutil.copytree(models["bert"], cut)
    w = cut / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    assert main(["explain", "--ranker", "crossencoder", "--ranker-param", f"model={cut}", "--ranker-param",
                 "train=false", "--explainer", "occlusion", "--query", QUERY, "--doc", DOC]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("rtype, family, msg", [("causal_lm", "bert", "is not a CausalLM checkpoint"),
                                                 ("biencoder", "t5", "is an encoder-decoder model")])
def test_a_checkpoint_of_the_wrong_kind_is_refused(rtype, family, msg, models, capsys):
    assert main(["explain", "--ranker", rtype, "--ranker-param", f"model={models[family]}", "--ranker-param",
                 "train=false", "--explainer", "occlusion", "--query", QUERY, "--doc", DOC]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1


def test_an_answer_token_of_several_pieces_is_refused(models):
    from rankers.generative import CausalLMRanker
    with pytest.raises(BadInput, match="is not one vocabulary entry"):
        CausalLMRanker(model=models["qwen2"], true_token="Relevant yes")
    assert CausalLMRanker(model=models["qwen2"]).true_id == transformers.AutoTokenizer.from_pretrained(
        models["qwen2"]).get_vocab()["yes"]


# ----------------------------------------------------------------------------- truncation is recorded
def test_a_long_query_is_recorded_as_truncated(models, capsys):
    long_query = " ".join(["drag"] * 40)
    argv = ["explain", "--ranker", "crossencoder", "--ranker-param", f"model={models['bert']}", "--ranker-param",
            "train=false", "--explainer", "occlusion", "--doc", DOC, "--json"]
    assert main([*argv, "--query", long_query]) == 0
    cap = capsys.readouterr()
    ex = json.loads(cap.out)
    assert ex["query_truncated"] is True and len(ex["query_tokens"]) == 32 and not ex["truncated"]
    assert "query" in cap.err and "40" in cap.err and "32" in cap.err
    assert main([*argv, "--query", QUERY]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["query_truncated"] is False and cap.err == ""


# ----------------------------------------------------------------------------- names and code
@pytest.mark.parametrize("bad", ["evil\n", "a|b", "x\ty", "a b"])
def test_names_are_checked_on_every_route(bad, tmp_path):
    from suites.api import benchmark
    from suites.run.config import load_suite
    p = tmp_path / "s.toml"
    p.write_text(f'[suite]\nname = {json.dumps(bad)}\ncollection = "synthetic"\n[rankers.bm25]\n'
                 '[explainers.random]\n[metrics.deletion]\n')
    with pytest.raises(BadInput, match="not an identifier"):
        load_suite(p)
    with pytest.raises(BadInput, match="not an identifier"):
        benchmark({bad: "bm25"}, ["random"], ["deletion"], collection="synthetic", queries=1)
    with pytest.raises(BadInput, match="not an identifier"):
        benchmark(["bm25"], ["random"], ["deletion"], collection="synthetic", queries=1, name=bad)


def test_code_named_by_a_suite_file_runs_only_with_allow_code(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "ran"
    (tmp_path / "beside_the_suite_code.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "def score(queries, docs):\n    return [float(len(d)) for d in docs]\n")
    p = _suite(tmp_path, "code",
               rankers='[rankers.mine]\ntype = "callable"\nfunction = "beside_the_suite_code:score"\n')
    for argv in (["run", str(p), "--out", str(tmp_path / "run"), "--quiet"], ["plan", str(p)],
                 ["explain", "--suite", str(p), "--ranker", "mine", "--explainer", "random", "--query", "a",
                  "--doc", "a b"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "--allow-code" in err and err.count("\n") == 1
        assert not marker.exists() and not (tmp_path / "run").exists()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", str(p), "--allow-code", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert marker.exists()


def test_a_directory_given_as_a_suite_is_named_as_such(tmp_path, capsys):
    assert main(["run", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# ----------------------------------------------------------------------------- identity of a run
def test_resume_after_an_edit_of_the_callable_or_the_model_is_refused(models, tmp_path, capsys, monkeypatch):
    import shutil
    mod = tmp_path / "edited_fn_xyz.py"
    mod.write_text("def score(queries, docs):\n    return [float(len(d)) for d in docs]\n")
    model = tmp_path / "model"
    shutil.copytree(models["bert"], model)
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "ident"\ncollection = "synthetic"\n[samples]\nqueries = 1\ntop_k = 1\n'
                 'relevant = 0\n[rankers.mine]\ntype = "callable"\nfunction = "edited_fn_xyz:score"\n'
                 f'[rankers.ce]\ntype = "crossencoder"\nmodel = "{model}"\ntrain = false\nmax_doc_len = 20\n'
                 '[explainers.random]\n[metrics.deletion]\nmax_steps = 3\n')
    out = tmp_path / "run"
    run = ["run", str(p), "--allow-code", "--out", str(out), "--quiet"]
    assert main([*run, "--limit", "1"]) == 0
    capsys.readouterr()
    mod.write_text("def score(queries, docs):\n    return [float(len(d)) + 1 for d in docs]\n")
    assert main([*run, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "artifacts.function" in err and "mine" in err
    mod.write_text("def score(queries, docs):\n    return [float(len(d)) for d in docs]\n")
    (model / "config.json").write_text((model / "config.json").read_text().replace("}", ', "note": 1}', 1)
                                       if False else (model / "config.json").read_text() + "\n")
    assert main([*run, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "artifacts.model" in err and "ce" in err


def test_api_function_source_is_part_of_the_identity():
    from suites.api import _rankers
    from suites.run.config import SuiteConfig

    def one(queries, docs):
        return [1.0 for _ in docs]

    def two(queries, docs):
        return [2.0 for _ in docs]

    ids = []
    for fn in (one, two):
        tables, objects = _rankers({"f": fn})
        ids.append(SuiteConfig("api", "synthetic", rankers=tables, objects=objects).resolved()["rankers"]["f"])
    assert ids[0]["artifacts"]["function"] != ids[1]["artifacts"]["function"]


# ----------------------------------------------------------------------------- functions that hang, exit or consume
@pytest.mark.parametrize("fn, workers", [("forever", 1), ("hangs_on_perturbations", 1),
                                         ("hangs_on_perturbations", 2)])
def test_a_hanging_function_with_timeout_ends_the_run(fn, workers, tmp_path):
    """A function that never returns, bounded by timeout_s = 1: the run ends (serial and on Dask workers) within
    a bounded time after its last call, with exit 2 when it hangs on the probe and error rows when it hangs
    only on perturbed documents; no abandoned call keeps the process alive."""
    if workers > 1:
        pytest.importorskip("distributed")
    p = _suite(tmp_path, "hang", queries=2,
               rankers=f'[rankers.mine]\ntype = "callable"\nfunction = "fault_rankers:{fn}"\ntimeout_s = 1\n')
    env = {"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "suites.cli", "run", str(p), "--allow-code", "--out",
                           str(tmp_path / "run"), "--quiet", "--workers", str(workers)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert time.perf_counter() - t0 < 180
    if fn == "forever":
        assert proc.returncode == 2 and "did not return within 1 s" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        import pandas as pd
        df = pd.read_csv(tmp_path / "run" / "results.csv")
        assert (df.status == "error").any() and df.message.str.contains("did not return within 1 s").any()


@pytest.mark.parametrize("fn, msg", [("exits", "SystemExit: 5"), ("empties_its_input", None)])
def test_functions_that_exit_or_consume_their_input(fn, msg, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    import fault_rankers
    from rankers.callable import CallableRanker
    r = CallableRanker(getattr(fault_rankers, fn), name="mine")
    enc = r.encode(["a", "b"], [["a", "c"], ["b"], ["a", "b", "c"]])
    if msg:
        with pytest.raises(BadInput, match=msg):
            r(enc.q_ids, enc.d_ids)
    else:
        assert np.allclose(r(enc.q_ids, enc.d_ids).numpy(), fault_rankers.overlap(["a b"] * 3, ["a c", "b", "a b c"]))


def test_explain_with_a_suite_uses_the_suites_explainer_parameters(tmp_path, capsys):
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "x"\ncollection = "synthetic"\n[rankers.bm25]\n'
                 '[explainers.occlusion]\nwindow = 1\n[explainers.loo]\ntype = "occlusion"\nwindow = 2\n'
                 '[metrics.deletion]\n')
    pair = ["--query", "drag cone", "--doc", "the drag of a cone at supersonic speed", "--json"]
    got = {}
    for argv in (["--suite", str(p), "--ranker", "bm25", "--explainer", "occlusion"],
                 ["--ranker", "bm25", "--explainer", "occlusion", "--param", "window=1"],
                 ["--ranker", "bm25", "--explainer", "occlusion", "--param", "window=2"],
                 ["--suite", str(p), "--ranker", "bm25", "--explainer", "loo"],
                 ["--suite", str(p), "--ranker", "bm25", "--explainer", "occlusion", "--param", "window=2"]):
        assert main(["explain", *argv, *pair]) == 0
        got[len(got)] = json.loads(capsys.readouterr().out)["doc_scores"]
    assert got[0] == got[1] and got[3] == got[2] and got[4] == got[2] and got[1] != got[2]


# ----------------------------------------------------------------------------- no loss, no leftovers
class _Killed(BaseException):
    pass


def test_overwrite_swap_keeps_one_complete_run_at_every_step(tmp_path, monkeypatch):
    """The swap is killed at each of its file operations in turn: the directory always holds a complete run,
    the old one or the new one, never neither (and never the new database beside the old WAL)."""
    import shutil
    import sqlite3

    from suites.run.rundir import DB, Staging, check_database
    from suites.run.store import Store
    real = {"unlink": Path.unlink, "replace": Path.replace, "rmtree": shutil.rmtree, "connect": sqlite3.connect}
    k, finished = 0, False
    while not finished:
        k += 1
        out = tmp_path / f"k{k}"
        old = Store(out / DB)
        old.set_meta("marker", "old")
        old.db.execute("PRAGMA wal_autocheckpoint=0")
        old.set_meta("rows", list(range(100)))  # left in the WAL
        (out / "results.csv").write_text("old")
        staging = Staging(out)
        new = Store(staging.db_path())
        new.set_meta("marker", "new")
        calls = [0]

        def kill_at(name):
            def op(*a, **kw):
                calls[0] += 1
                if calls[0] == k:
                    raise _Killed(name)
                return real[name](*a, **kw)
            return op
        monkeypatch.setattr(Path, "unlink", kill_at("unlink"))
        monkeypatch.setattr(Path, "replace", kill_at("replace"))
        monkeypatch.setattr(shutil, "rmtree", kill_at("rmtree"))
        monkeypatch.setattr(sqlite3, "connect", kill_at("connect"))
        try:
            staging.swap(new)
            finished = True
        except _Killed:
            pass
        finally:
            monkeypatch.undo()
            old.db.close()  # the old run's writer is gone (in life: a finished process)
        meta = check_database(out / DB)
        assert meta["marker"] in ("old", "new"), k
        if meta["marker"] == "old":
            assert meta["rows"] == list(range(100)), k
        assert k < 50
    assert meta["marker"] == "new" and not (out / "results.csv").exists() and not (out / ".rexbench-overwrite").exists()


def test_leftovers_of_killed_commands_are_cleaned(tmp_path, monkeypatch):
    import os
    import tempfile

    from suites.run.rundir import STAGING, private_tmp
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, mine = tmp_path / f"rexbench-plan-{dead.pid}-x", tmp_path / f"rexbench-plan-{os.getpid()}-y"
    stale.mkdir()
    mine.mkdir()
    with private_tmp("plan") as d:
        assert Path(d).exists()
    assert not stale.exists() and mine.exists()
    # a killed --overwrite's staging directory is removed by the next run of that directory
    p = _suite(tmp_path, "left")
    out = tmp_path / "run"
    (out / STAGING).mkdir(parents=True)
    (out / STAGING / "results.sqlite").write_bytes(b"partial")
    assert main(["run", str(p), "--out", str(out), "--quiet"]) == 0
    assert not (out / STAGING).exists()


@pytest.mark.parametrize("damage", ["garbage", "empty", "zero-byte-with-wal"])
def test_plan_calibration_run_checks_the_database_like_every_reader(damage, tmp_path, capsys):
    p = _suite(tmp_path, "cal")
    run = tmp_path / "run"
    run.mkdir()
    db = run / "results.sqlite"
    if damage == "garbage":
        db.write_bytes(b"not a database at all" * 10)
    else:
        db.write_bytes(b"")
    if damage == "zero-byte-with-wal":
        (run / "results.sqlite-wal").write_bytes(b"wal contents")
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    assert main(["plan", str(p), "--calibration-run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "not a usable rexbench results database" in err and err.count("\n") == 1
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before  # its WAL included


def test_plan_reads_a_packed_calibration_run(tmp_path, capsys):
    p = _suite(tmp_path, "cal", queries=2)
    run = tmp_path / "run"
    assert main(["run", str(p), "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["plan", str(p), "--json", "--calibration-run", str(run)]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["report", str(run), "--pack"]) == 0
    for f in run.glob("results.sqlite*"):
        if f.name != "results.sqlite.gz":
            f.unlink()
    capsys.readouterr()
    assert main(["plan", str(p), "--json", "--calibration-run", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["rankers"] == plain["rankers"]
    from suites.report.scaling import shard_timings  # every reader of a run directory reads a packed run
    assert shard_timings(run)["rankers"]["bm25"]["shards"] == 2 and not (run / "results.sqlite").exists()


@pytest.mark.parametrize("what", ["garbage", "truncated", "directory", "bomb"])
def test_damaged_packed_runs_are_one_line(what, tmp_path, capsys, monkeypatch):
    import gzip

    import suites.run.rundir as rundir
    run = tmp_path / "run"
    run.mkdir()
    gz = run / "results.sqlite.gz"
    if what == "garbage":
        gz.write_bytes(b"\x1f\x8b garbage")
    elif what == "truncated":
        whole = gzip.compress(b"SQLite format 3\x00" + np.random.default_rng(0).bytes(100000))
        gz.write_bytes(whole[: len(whole) // 2])
    elif what == "directory":
        gz.mkdir()
    else:  # a valid header, then far more zeros than the (lowered) limit allows
        monkeypatch.setattr(rundir, "MAX_UNPACKED", 1 << 20)
        with gzip.open(gz, "wb") as z:
            z.write(b"SQLite format 3\x00")
            for _ in range(8):
                z.write(bytes(1 << 20))
    for argv in (["report", str(run)], ["plan", "quick", "--calibration-run", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "results.sqlite.gz" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("run/*.sqlite"))


# ----------------------------------------------------------------------------- escaping
def test_markup_escaping_by_hand():
    from suites.report.markup import html_text, md_cell, md_inline
    assert md_cell("a|b") == r"a\|b" and md_cell(r"\|rho\|") == r"\|rho\|"
    assert md_inline("x\n# Heading\r\n<script>alert(1)</script>") == "x # Heading &lt;script>alert(1)&lt;/script>"
    assert md_inline("pass <= 0.5") == "pass <= 0.5"  # no tag: left as written
    assert html_text('<b a="1">&') == "&lt;b a=&quot;1&quot;&gt;&amp;"


def test_report_escapes_messages_and_the_description(tmp_path, capsys, monkeypatch):
    """An error message with `|` and a newline and a description with a heading and raw HTML stay inside their
    table cell and line."""
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "esc"\ncollection = "synthetic"\n'
                 'description = "ok\\n# Injected heading\\n<img src=x onerror=alert(1)>"\n'
                 '[samples]\nqueries = 1\ntop_k = 1\nrelevant = 0\n[rankers.bm25]\n'
                 '[explainers.occlusion]\n[metrics.deletion]\nmax_steps = 3\n')
    import explainers.captum_methods as cm

    def boom(self, sc, x, fm):
        raise RuntimeError("left | right\nsecond line")
    monkeypatch.setattr(cm.OcclusionExplainer, "_run", boom)
    out = tmp_path / "run"
    assert main(["run", str(p), "--out", str(out), "--quiet"]) == 0
    assert main(["report", str(out)]) == 0
    md = (out / "RESULTS.md").read_text()
    assert "\n# Injected heading" not in md and "<img" not in md and "&lt;img" in md
    md = (out / "report" / "bm25.md").read_text()          # the skips and errors are on the ranker's page
    row = next(line for line in md.splitlines() if "left" in line and "right" in line)
    assert r"left \| right second line" in row
    header = md.splitlines()[md.splitlines().index(row) - 2]  # the table's header, above its rule
    assert row.count(" | ") == header.count(" | ")  # an escaped "\\|" is no separator


def test_words_with_dollars_are_drawn_as_text(tmp_path, capsys):
    assert main(["explain", "--ranker", "bm25", "--explainer", "occlusion", "--query", "cost $x$ drag",
                 "--doc", "the $x^{2$ cost of $drag$ is $$ high", "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").stat().st_size > 0


# ----------------------------------------------------------------------------- one line, not a traceback
def test_more_inputs_that_were_tracebacks(tmp_path, capsys, monkeypatch):
    import os
    small = _suite(tmp_path, "tb")
    out = tmp_path / "run"
    assert main(["run", str(small), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    # the figures directory is a file
    (out / "figures").write_text("x")
    assert main(["report", str(out), "--out", str(tmp_path / "R.md")]) == 2
    assert "figures" in capsys.readouterr().err
    (out / "figures").unlink()
    # --pack on a read-only run directory is refused before the report is written
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == out else real(p, mode))
    assert main(["report", str(out), "--pack", "--out", str(tmp_path / "R2.md")]) == 2
    assert "not writable" in capsys.readouterr().err and not (tmp_path / "R2.md").exists()
    monkeypatch.undo()
    # a budget no arithmetic can hold
    assert main(["plan", str(small), "--budget", "9" * 400]) == 2
    assert "at most a year" in capsys.readouterr().err
    # API explainer parameters that are not a mapping
    from suites.api import benchmark
    with pytest.raises(BadInput, match="expected a mapping"):
        benchmark(["bm25"], {"occlusion": [1]}, ["deletion"], collection="synthetic", queries=1)


def test_a_function_wrong_only_on_big_calls_names_the_suite_ranker_and_leaves_nothing(tmp_path, capsys,
                                                                                       monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    p = _suite(tmp_path, "big",
               rankers='[rankers.mine]\ntype = "callable"\nfunction = "byo_rankers:wrong_count_on_big_calls"\n')
    out = tmp_path / "run"
    assert main(["run", str(p), "--allow-code", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "ranker 'mine'" in err and "'callable'" not in err and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())


def test_gradcam_under_bfloat16(models):
    from explainers import build_explainer
    from rankers.generative import CausalLMRanker
    r = CausalLMRanker(model=models["qwen2"], dtype="bfloat16").eval()
    ex = build_explainer("gradcam", r, layer=0).attribute(QUERY, DOC)
    assert ex.doc_scores.dtype == np.float64 and np.isfinite(ex.doc_scores).all()


def test_attention_of_a_mean_pooling_head_reads_every_position(models, tmp_path):
    """ModernBERT's mean-pooling head reads all positions, not [CLS]: the attention explanation is the mean
    attention row over the attended pieces (by hand from the model's own attentions), not an all-zero map."""
    import shutil

    from explainers import build_explainer
    from rankers.crossencoder import CrossEncoder
    path = tmp_path / "mean"
    shutil.copytree(models["modernbert"], path)
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "classifier_pooling": "mean"}))
    models = {"modernbert": str(path)}
    r = CrossEncoder(model=models["modernbert"]).eval()
    assert not r.reads_one_position()
    ex = build_explainer("attention", r).attribute(QUERY, DOC)
    tok = transformers.AutoTokenizer.from_pretrained(models["modernbert"])
    m = transformers.AutoModelForSequenceClassification.from_pretrained(models["modernbert"],
                                                                        attn_implementation="eager").eval()
    enc, words = word_pieces(tok, QUERY, DOC)
    with torch.no_grad():
        att = m(input_ids=torch.tensor([enc["input_ids"]]), output_attentions=True).attentions[-1][0].mean(0)
    row = att.mean(0).numpy()
    want = np.zeros(len(DOC.split()))
    for w in range(len(want)):
        want[w] = row[words[w]].sum()
    assert np.abs(ex.doc_scores).max() > 0
    np.testing.assert_allclose(ex.doc_scores, want, atol=1e-5)


def test_a_run_records_and_warns_about_cut_queries(tmp_path, capsys, monkeypatch):
    """A ranker reading 2 query words: every sampled query of more words is cut, said on stderr and recorded
    in each of its rows (info.query_truncated) and explanations."""
    import sqlite3
    monkeypatch.syspath_prepend(str(TESTS))
    p = _suite(tmp_path, "cut", queries=2,
               rankers='[rankers.mine]\ntype = "callable"\nfunction = "fault_rankers:overlap"\nmax_query_len = 2\n')
    assert main(["run", str(p), "--allow-code", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    from suites.data.collections import load_collection
    coll = load_collection("synthetic")
    q_units = coll.units("words")[0]
    long_ = [q for q in coll.split("test")[:2] if len(q_units[q]) > 2]
    assert long_ and f"{len(long_)} of the 2 sampled queries are longer" in err
    con = sqlite3.connect(tmp_path / "run" / "results.sqlite")
    rows = con.execute("SELECT qid, info FROM results WHERE status = 'ok'").fetchall()
    exps = con.execute("SELECT qid, data FROM explanations").fetchall()
    con.close()
    assert {q for q, info in rows if json.loads(info).get("query_truncated")} == set(long_)
    assert {q for q, d in exps if json.loads(d)["query_truncated"]} == set(long_)


def test_a_packed_run_on_a_clean_clone_resumes_refuses_a_plain_run_and_is_replaced_whole(tmp_path, capsys,
                                                                                          monkeypatch):
    """A committed (packed) run continues with --resume (the packed database unpacked first) to the rows of an
    uninterrupted run; a run without --resume into its directory is refused (exit 2, nothing written), and
    --overwrite replaces it, packed copy included. The packed database is decompressed once to be checked and
    once into the run, not at each of the run's checks of its directory."""
    from suites.run import rundir
    p = _suite(tmp_path, "packed", queries=2)
    full, run = tmp_path / "full", tmp_path / "run"
    assert main(["run", str(p), "--out", str(full), "--quiet"]) == 0
    shutil.copytree(full, run)
    con = sqlite3.connect(run / "results.sqlite")                 # a run killed after its first query's shard
    last = con.execute("SELECT MAX(qid) FROM shards").fetchone()[0]
    with con:
        for table in ("results", "cells", "explanations", "shards"):
            con.execute(f"DELETE FROM {table} WHERE qid = ?", (last,))
    con.close()
    assert main(["report", str(run), "--pack"]) == 0
    for f in run.iterdir():
        if f.name != "results.sqlite.gz":
            f.unlink() if f.is_file() else shutil.rmtree(f)
    packed = (run / "results.sqlite.gz").read_bytes()
    capsys.readouterr()
    assert main(["run", str(p), "--out", str(run), "--quiet"]) == 2
    assert "already holds a run of suite 'packed'" in capsys.readouterr().err
    assert [f.name for f in run.iterdir()] == ["results.sqlite.gz"] and (run / "results.sqlite.gz").read_bytes() == packed
    unpacked, unpack = [], rundir.unpack_database
    monkeypatch.setattr(rundir, "unpack_database", lambda *a, **k: unpacked.append(a[1]) or unpack(*a, **k))
    rundir._PACKED_META.clear()
    assert main(["run", str(p), "--out", str(run), "--resume", "--quiet"]) == 0
    assert len(unpacked) == 2 and unpacked[-1] == run  # checked once (in a private directory), then unpacked here

    def rows(d):
        con = sqlite3.connect(d / "results.sqlite")
        try:
            return sorted(con.execute("SELECT ranker, qid, docid, explainer, metric, value FROM results").fetchall())
        finally:
            con.close()
    assert rows(run) == rows(full) and last in {r[1] for r in rows(run)}
    (run / "results.sqlite").unlink()
    assert main(["run", str(p), "--out", str(run), "--overwrite", "--quiet"]) == 0
    assert not (run / "results.sqlite.gz").exists() and rows(run) == rows(full)


def test_the_report_says_how_many_explained_pairs_were_cut_per_ranker():
    """RESULTS.md's 'What was run' names, per ranker, the share of its explained pairs whose document or query
    was cut to the ranker's length (a cut word cannot move the score), counted once per pair; nothing when none
    was: here ce 1 of 2 documents, q 1 of 1 query; the '*' (query-level) rows and error rows are not pairs."""
    import json

    import pandas as pd

    from suites.report.writer import _cut_lines
    row = lambda r, q, d, t, info=None, st="ok": {"ranker": r, "qid": q, "docid": d, "status": st,  # noqa: E731
                                                   "truncated": t, "info": info}
    df = pd.DataFrame([row("ce", "1", "a", 1), row("ce", "1", "a", 1), row("ce", "2", "b", 0),
                       row("ce", "3", "c", 1, st="error"), row("ce", "3", "*", 1),
                       row("q", "1", "a", 0, json.dumps({"query_truncated": True})), row("bm", "1", "a", 0, {})])
    docs, queries = _cut_lines(df)
    assert docs.startswith("- documents cut") and "ce 50% of 2" in docs and "q " not in docs and "bm" not in docs
    assert queries.startswith("- queries cut") and "q 100% of 1" in queries and "ce" not in queries
    assert _cut_lines(df[df.ranker == "bm"]) == []
