"""Nothing silently wrong, round three (issue 31): what a run says it measured is what it measured. Each test
fails on the code before the fix: the removal operator of every route is the one the model runs, delete is
the text without the word in every tokenizer family, a run's identity covers code and local files, models
that cannot be read as asked are refused in one line, truncation is recorded, code runs only with an opt-in,
names are checked on every route, and a function that hangs or exits cannot end or hang a run unseen."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_tiny import DOC, QUERY, build
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


def _word_pieces(tok, query: str, doc: str, word: int) -> tuple[dict, list[int]]:
    """(tokenizer(query, doc), positions of the pieces of document word `word`; a whitespace piece
    belongs to the word after it)."""
    enc = tok(query, doc, return_offsets_mapping=True)
    spans, pos = [], 0
    for w in doc.split():
        pos = doc.index(w, pos)
        spans.append((pos, pos + len(w)))
        pos += len(w)
    out = []
    for p, (a, b) in enumerate(enc["offset_mapping"]):
        if enc.sequence_ids()[p] != 1:
            continue
        j = next(i for i, (s, e) in enumerate(spans) if e > a or (a == b and s >= a))
        if j == word:
            out.append(p)
    return enc, out


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
    from suites.collections import load_collection
    from suites.config import SuiteConfig
    path = models[family]
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc, pieces = _word_pieces(tok, QUERY, DOC, 3)
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
    r = SuiteConfig("api", "synthetic", rankers=tables).load_ranker("r", load_collection("synthetic"))
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
    from rankers.transformer import CrossEncoder
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
    from suites.config import load_suite
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
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "code"\ncollection = "synthetic"\n[samples]\nqueries = 1\ntop_k = 1\nrelevant = 0\n'
                 '[rankers.mine]\ntype = "callable"\nfunction = "beside_the_suite_code:score"\n'
                 '[explainers.random]\n[metrics.deletion]\nmax_steps = 3\n')
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
    from suites.config import SuiteConfig

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
def test_a_hanging_function_with_timeout_ends_a_serial_run(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "hang"\ncollection = "synthetic"\n[samples]\nqueries = 1\ntop_k = 1\nrelevant = 0\n'
                 '[rankers.mine]\ntype = "callable"\nfunction = "fault_rankers:forever"\ntimeout_s = 1\n'
                 '[explainers.random]\n[metrics.deletion]\nmax_steps = 3\n')
    env = {"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "suites.cli", "run", str(p), "--allow-code", "--out",
                           str(tmp_path / "run"), "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert time.perf_counter() - t0 < 60
    assert proc.returncode == 2 and "did not return within 1 s" in proc.stderr


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
