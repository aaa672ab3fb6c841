"""Bring your own ranker: HF cross-encoders and encoders from a directory, callables, the Python API,
original-text units with offsets, run-file candidates, one compatibility source, bad input."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from explainers import EXPLAINERS, build_explainer
from suites.cli import main
from suites.run.config import load_suite
from suites.run.runner import run_suite

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]


def _save_bert(d: Path, head: int | None) -> str:
    """A small random BERT (seeded) with MiniLM's tokenizer: `head` labels, or no head (plain encoder)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from rankers.transformer import default_model_path
    tok = AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=head or 1)
    if head == 2:
        cfg.id2label, cfg.label2id = {0: "not_relevant", 1: "relevant"}, {"not_relevant": 0, "relevant": 1}
    (BertForSequenceClassification(cfg) if head else BertModel(cfg)).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def ce_dir(tmp_path_factory):
    return _save_bert(tmp_path_factory.mktemp("my_ce"), head=1)


def _direct_logits(model_dir: str, query: str, doc: str) -> torch.Tensor:
    """What the user's own code computes: tokenizer + AutoModelForSequenceClassification on the text."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
    with torch.no_grad():
        return model(**tok(query, doc, return_tensors="pt")).logits[0]


def _kept_text(text: str, ex: dict) -> str:
    """The document as the ranker kept it (truncation cuts at a word): text up to the last kept unit."""
    return text[: ex["doc_offsets"][-1][1]]


def _suite(tmp_path, rankers: str, explainers="[explainers.occlusion]\nwindow = 1\n",
           metrics="[metrics.rank_deletion]\nmax_steps = 5\n", samples="queries = 1\ntop_k = 1\nrelevant = 0\n",
           name="byo"):
    p = tmp_path / f"{name}.toml"
    p.write_text(f'[suite]\nname = "{name}"\ncollection = "cranfield"\n[samples]\n{samples}\n{rankers}\n'
                 f'{explainers}\n{metrics}\n')
    return p


def test_hf_crossencoder_from_a_directory_as_given(ce_dir, tmp_path, capsys, cranfield):
    p = _suite(tmp_path, f'[rankers.my_ce]\ntype = "crossencoder"\nmodel = "{ce_dir}"\ntrain = false\n'
                         "max_length = 512\n")
    d = run_suite(load_suite(p), tmp_path / "run", progress=False)
    df = pd.read_csv(d / "results.csv", dtype={"qid": str, "docid": str})
    assert set(df.ranker) == {"my_ce"} and (df.status == "ok").all()
    qid, docid = df.qid.iloc[0], df.docid.iloc[0]
    assert main(["explain", "--suite", str(p), "--ranker", "my_ce", "--explainer", "occlusion", "--qid", qid,
                 "--docid", docid, "--json"]) == 0
    ex = json.loads(capsys.readouterr().out)
    q, doc = cranfield.queries[qid], cranfield.docs[docid]
    assert ex["score"] == pytest.approx(float(_direct_logits(ce_dir, q, _kept_text(doc, ex))[0]), abs=1e-5)
    # the same through --ranker-param, on free text with case and punctuation
    q2, d2 = "What is the Flow, over swept Wings?", "The flow over swept wings (at M = 2) separates; see Fig. 3."
    assert main(["explain", "--ranker", "crossencoder", "--ranker-param", f"model={ce_dir}", "--ranker-param",
                 "train=false", "--explainer", "feature_ablation", "--query", q2, "--doc", d2, "--json"]) == 0
    ex2 = json.loads(capsys.readouterr().out)
    assert ex2["doc_tokens"] == d2.split()
    assert ex2["score"] == pytest.approx(float(_direct_logits(ce_dir, q2, d2)[0]), abs=1e-5)


def test_multilabel_head_scores_the_chosen_label(tmp_path):
    from rankers.errors import BadInput
    from rankers.crossencoder import CrossEncoder
    d = _save_bert(tmp_path / "mono", head=2)
    with pytest.raises(BadInput, match="2 labels; set `label`.*1 \\(relevant\\)"):
        CrossEncoder(model=d)
    q, doc = "Shock waves on blunt bodies.", "Blunt bodies in hypersonic flow carry a detached shock."
    want = torch.log_softmax(_direct_logits(d, q, doc), -1)[1]
    for label in (1, "relevant"):
        r = CrossEncoder(model=d, label=label, max_length=512).eval()
        assert float(r.score_tokens(r.units(q), [r.units(doc)])[0]) == pytest.approx(float(want), abs=1e-5)
    with pytest.raises(BadInput, match="no label 'yes'"):
        CrossEncoder(model=d, label="yes")


def test_biencoder_reads_the_original_text(cranfield):
    """The bundled MiniLM as a bi-encoder on the original text equals sentence-transformers on that text."""
    st = pytest.importorskip("sentence_transformers")
    from rankers.biencoder import BiEncoder
    from rankers.transformer import default_model_path
    r = BiEncoder().eval()
    d = sorted(cranfield.relevant("1"), key=int)[0]
    q, doc = cranfield.queries["1"], cranfield.docs[d]
    ex = build_explainer("random", r).attribute(q, doc)
    model = st.SentenceTransformer(default_model_path(), device="cpu")
    e = model.encode([q, _kept_text(doc, {"doc_offsets": ex.doc_offsets})], normalize_embeddings=True)
    assert ex.score == pytest.approx(float(e[0] @ e[1]), abs=1e-5)


def test_biencoder_pooling_and_similarity(ce_dir):
    from rankers.biencoder import BiEncoder
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(ce_dir, local_files_only=True)
    enc = AutoModel.from_pretrained(ce_dir, local_files_only=True).eval()
    q, doc = "Heat transfer in Laminar flow.", "Laminar boundary layers transfer heat, slowly."
    with torch.no_grad():
        hq, hd = (enc(**tok(t, return_tensors="pt")).last_hidden_state[0] for t in (q, doc))
    r = BiEncoder(model=ce_dir, pooling="cls", similarity="dot").eval()
    assert float(r.score_tokens(r.units(q), [r.units(doc)])[0]) == pytest.approx(float(hq[0] @ hd[0]), abs=1e-4)
    assert "pooled_states" not in r.capabilities and not EXPLAINERS["pooled_interaction"].compatible(r)[0]
    r = BiEncoder(model=ce_dir, similarity="dot").eval()
    ex = build_explainer("pooled_interaction", r).attribute(q, doc)
    assert ex.pair_map.sum() + ex.info["special_token_share"] == pytest.approx(
        float(hq.mean(0) @ hd.mean(0)), rel=1e-4)


def test_explain_units_are_words_of_the_original_text_with_offsets(capsys, cranfield):
    assert main(["explain", "--ranker", "biencoder", "--explainer", "occlusion", "--qid", "1", "--docid", "184",
                 "--json"]) == 0
    ex = json.loads(capsys.readouterr().out)
    doc = cranfield.docs["184"]
    assert len(ex["doc_offsets"]) == len(ex["doc_tokens"]) == len(ex["doc_scores"])
    assert all(doc[s:e] == u for u, (s, e) in zip(ex["doc_tokens"], ex["doc_offsets"]))
    assert {"of", "the", "."} & set(ex["doc_tokens"])  # stopwords and punctuation are units
    # a lexical ranker's tokens point at their spelling in the original text
    assert main(["explain", "--ranker", "bm25", "--explainer", "exact_shapley", "--query", "Flow over WINGS",
                 "--doc", "The Wings, in supersonic flow.", "--json"]) == 0
    ex = json.loads(capsys.readouterr().out)
    assert ex["doc_tokens"] == ["wings", "supersonic", "flow"]
    assert ["The Wings, in supersonic flow."[s:e] for s, e in ex["doc_offsets"]] == ["Wings", "supersonic", "flow"]


def test_callable_ranker_through_the_api(cranfield):
    from byo_rankers import bm25_text

    from rankers import CallableRanker
    from suites.api import benchmark
    r = CallableRanker(bm25_text, name="text_bm25")
    q, d = cranfield.queries["1"], cranfield.docs[cranfield.candidates("1")[0]]
    # dropping words = scoring the text without them
    ex = build_explainer("feature_ablation", r).attribute(q, d)
    words = d.split()
    j = int(np.argmax(ex.doc_scores))
    without = " ".join(w for i, w in enumerate(words) if i != j)
    assert ex.doc_scores[j] == pytest.approx(bm25_text([q], [d])[0] - bm25_text([q], [without])[0], rel=1e-6)
    curve_metrics = ["deletion", "insertion", "rank_deletion", "rank_insertion", "comprehensiveness",
                     "sufficiency", "rank_comprehensiveness", "rank_sufficiency"]
    df = benchmark({"mine": r}, explainers={"occlusion": {}, "feature_ablation": {}, "kernel_shap": {"n_samples": 40},
                                            "integrated_gradients": {"n_steps": 4}, "saliency": {}},
                   metrics=curve_metrics, queries=1, top_k=1, relevant=1)
    assert set(df.metric) == set(curve_metrics)
    ok = df[df.explainer.isin(["occlusion", "feature_ablation", "kernel_shap"])]
    assert (ok.status == "ok").all(), ok[ok.status != "ok"][["explainer", "metric", "message"]]
    grad = df[df.explainer.isin(["integrated_gradients", "saliency"])]
    assert (grad.status == "skipped").all() and grad.message.str.contains("mask_gradient").all()


def test_callable_ranker_in_a_suite_and_on_a_run_file(tmp_path, cranfield):
    qids = cranfield.split("test")[:2]
    run = tmp_path / "first_stage.trec"
    keep = {q: cranfield.candidates(q)[10:20] for q in qids}  # not BM25's top: the run file decides
    run.write_text("".join(f"{q} Q0 {d} {i + 1} {20 - i} mine\n" for q in qids for i, d in enumerate(keep[q])))
    p = _suite(tmp_path, '[rankers.fn]\ntype = "callable"\nfunction = "byo_rankers:bm25_text"\n[rankers.bm25]\n',
               explainers="[explainers.occlusion]\n[explainers.kernel_shap]\nn_samples = 30\n"
                          "[explainers.integrated_gradients]\nn_steps = 4\n",
               samples=f'queries = 2\ntop_k = 1\nrelevant = 0\nrun_file = "{run.name}"\n')
    d = run_suite(load_suite(p, allow_code=True), tmp_path / "run", progress=False)
    df = pd.read_csv(d / "results.csv", dtype={"qid": str, "docid": str})
    assert all(docid in keep[q] for q, docid in zip(df.qid, df.docid))
    fn = df[df.ranker == "fn"]
    assert (fn[fn.explainer != "integrated_gradients"].status == "ok").all()
    assert (fn[fn.explainer == "integrated_gradients"].status == "skipped").all()
    # both rankers agree on the top document of each query (the same BM25, one over raw text)
    top = df.groupby(["ranker", "qid"]).docid.first().unstack(0)
    assert (top["fn"] == top["bm25"]).all()


def test_listing_and_runner_agree_on_compatibility(synthetic, ce_dir, tmp_path):
    """`rexbench list --json` and `Explainer.compatible` on built rankers: one answer for every pair."""
    from byo_rankers import bm25_text
    from hf_tiny import build
    models = {"seq2seq": build("t5", tmp_path / "t5"), "causal_lm": build("qwen2", tmp_path / "qwen2")}

    from rankers import RANKERS, CallableRanker
    from rankers.training import build_ranker
    from suites.listing import listing
    built = {n: build_ranker(n, synthetic, model=models.get(n, ce_dir)) if s.kind == "transformer" else
             (CallableRanker(bm25_text) if n == "callable" else build_ranker(n, synthetic))
             for n, s in RANKERS.items()}
    listed = {e["name"]: e["incompatible"] for e in listing()["explainers"]}
    assert set(listed) == set(EXPLAINERS)
    for e, cls in EXPLAINERS.items():
        for n, r in built.items():
            ok, why = cls.compatible(r)
            assert ok == (n not in listed[e]), (e, n)
            assert ok or why == listed[e][n]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("table, msg", [
    ('type = "crossencoder"\nmodel = "/nonexistent/model"\ntrain = false', "model directory /nonexistent/model does not exist"),
    ('type = "crossencoder"\nmodel = "{plain}"\ntrain = false', "no sequence-classification head"),
    ('type = "callable"\nfunction = "byo_rankers:wrong_count"', "returned 3 scores for 2"),
    ('type = "callable"\nfunction = "byo_rankers:nan_scores"', "non-finite score"),
    ('type = "callable"\nfunction = "byo_rankers:no_such_fn"', "has no attribute"),
    ('type = "callable"\nfunction = "not a spec"', "expected 'module:attr'"),
    ('type = "crossencoder"\nmodell = "x"', "unknown parameter 'modell'"),
])
def test_bad_rankers_exit_2_before_writing(table, msg, tmp_path, capsys):
    plain = _save_bert(tmp_path / "plain", head=None)
    p = _suite(tmp_path, "[rankers.bad]\n" + table.replace("{plain}", plain) + "\n")
    prior = tmp_path / "prior"
    assert main(["run", str(p), "--allow-code", "--out", str(prior), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err and "Traceback" not in err
    assert not prior.exists()  # nothing written


def test_bad_run_file_exit_2(tmp_path, capsys, cranfield):
    q = cranfield.split("test")[0]
    for body, msg in ((f"{q} Q0 99999 1 3.0 x\n", "document '99999' is not in collection"),
                      (f"{q} Q0 184 1\n", "expected 'qid Q0 docid rank score tag'"),
                      ("nope Q0 184 1 2.0 x\n", "query 'nope' is not in collection")):
        (tmp_path / "r.trec").write_text(body)
        p = _suite(tmp_path, "[rankers.bm25]\n", samples='queries = 1\nrun_file = "r.trec"\n')
        assert main(["run", str(p), "--out", str(tmp_path / "out"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert msg in err and "line 1" in err
        assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- README examples
def _readme_blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Bring your own ranker", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def _readme_block(lang: str) -> str:
    return _readme_blocks(lang)[0]


def test_readme_sentence_transformers_and_generative_examples_run(ce_dir, tmp_path, capsys):
    """The other BYO examples as written, model placeholders replaced by tiny local models."""
    from hf_tiny import build
    py = _readme_blocks("python")[1].replace("MODEL_DIR", ce_dir)
    scope = {}
    exec(compile("from suites.api import benchmark\n" + py.replace('["rank_deletion"])', '["rank_deletion"], '
                 'collection="synthetic", queries=1)'), "README.md", "exec"), scope)
    assert (scope["df"].status == "ok").all()
    toml = _readme_blocks("toml")[1].replace("MONOT5_DIR", build("t5", tmp_path / "t5")).replace(
        "LLM_RERANKER_DIR", build("qwen2", tmp_path / "qwen2"))
    p = _suite(tmp_path, toml + "max_length = 128\n", name="generative", samples="queries = 1\ntop_k = 1\nrelevant = 0\n")
    p.write_text(p.read_text().replace('collection = "cranfield"', 'collection = "synthetic"'))
    assert main(["run", str(p), "--out", str(tmp_path / "gen"), "--quiet"]) == 0, capsys.readouterr().err
    df = pd.read_csv(tmp_path / "gen" / "results.csv")
    assert set(df.ranker) == {"monot5", "llm"} and (df.status == "ok").all()


def test_readme_python_example_runs(capsys):
    exec(compile(_readme_block("python"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "rank_deletion" in out and "needs mask_gradient" in out


def test_readme_toml_example_runs_as_copied(ce_dir, tmp_path):
    """As README says: byo.toml in a folder of its own with tests/byo_rankers.py beside it, MODEL_DIR replaced,
    `rexbench run byo.toml --allow-code` from that folder, in a fresh process whose path holds neither tests/
    nor the folder (the module is found beside the suite file)."""
    import shutil
    import subprocess
    import sys
    work = tmp_path / "mine"
    work.mkdir()
    (work / "byo.toml").write_text(_readme_block("toml").replace("MODEL_DIR", ce_dir))
    shutil.copy(ROOT / "tests" / "byo_rankers.py", work / "byo_rankers.py")
    rexbench = Path(sys.executable).with_name("rexbench")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(rexbench), "run", "byo.toml", "--allow-code", "--out", "run", "--quiet"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(work / "run" / "results.csv")
    assert set(df.ranker) == {"my_ce", "my_fn"}
    assert set(df[df.status == "skipped"].explainer) == {"integrated_gradients"}
    assert set(df[df.status == "skipped"].ranker) == {"my_fn"}
    assert (df[df.explainer != "integrated_gradients"].status == "ok").all()
    # and without --allow-code the suite is refused in one line, before anything is written
    proc = subprocess.run([str(rexbench), "run", "byo.toml", "--out", "run2"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--allow-code" in proc.stderr and not (work / "run2").exists()


def test_readme_commands_that_read_the_committed_run_work_on_a_clean_clone(tmp_path):
    """README's recipe for the committed plan.json reads the packed run (a clean clone has no results.sqlite).
    The committed Cranfield run predates KNRM's current training recipe (`head_init`), so, as README says, today's
    code refuses it as a calibration of the suite: exit 2, one line naming the first difference (the committed
    plan.json came from the run's commit; the Cranfield run on today's code replaces both)."""
    import shlex
    import subprocess
    import sys
    cmd = re.search(r"`(rexbench plan suites/cranfield\.toml [^`]*--calibration-run results/cranfield)`",
                    (ROOT / "README.md").read_text()).group(1)
    argv = shlex.split(cmd)
    proc = subprocess.run([str(Path(sys.executable).with_name("rexbench")), *argv[1:]], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "differs at config.rankers.knrm.training.head_init" in proc.stderr
    assert json.loads((ROOT / "results" / "cranfield" / "plan.json").read_text())["suite"] == "cranfield"


def test_cli_ranker_definitions_are_validated(tmp_path, capsys):
    assert main(["rank", "crossencoder", "--ranker-param", "modell=/x"]) == 2
    assert "--ranker-param: unknown parameter 'modell'" in capsys.readouterr().err
    assert main(["rank", "bm25", "--ranker-param", "k1=0"]) == 2
    assert "out of range" in capsys.readouterr().err
    p = _suite(tmp_path, "[rankers.bm25]\n")
    assert main(["explain", "--suite", str(p), "--ranker", "nope", "--explainer", "occlusion", "--qid", "1",
                 "--docid", "184"]) == 2
    assert "defines no ranker 'nope'; it defines: bm25" in capsys.readouterr().err
    assert main(["explain", "--suite", str(p), "--ranker", "bm25", "--ranker-param", "k1=2", "--explainer",
                 "occlusion", "--qid", "1", "--docid", "184"]) == 2
    assert "drop --ranker-param" in capsys.readouterr().err


def test_api_benchmark_on_workers_equals_serial(tmp_path):
    """Ranker objects travel to Dask workers (a module-level function and a lambda) and give the serial
    rows; one that cannot be serialised is a one-line error before anything runs."""
    pytest.importorskip("distributed")
    import threading

    from byo_rankers import bm25_text

    from rankers import CallableRanker
    from rankers.errors import BadInput
    from suites.api import benchmark
    rankers = {"fn": CallableRanker(bm25_text, name="text_bm25"),
               "lam": CallableRanker(lambda qs, ds: bm25_text(qs, ds), name="lam")}
    kw = dict(explainers={"occlusion": {}, "kernel_shap": {"n_samples": 20}}, metrics=["deletion", "rank_insertion"],
              queries=2, top_k=1, relevant=0)
    key = ["ranker", "explainer", "qid", "docid", "metric"]
    serial = benchmark(rankers, **kw).sort_values(key).reset_index(drop=True)
    two = benchmark(rankers, workers=2, **kw).sort_values(key).reset_index(drop=True)
    assert len(serial) == 16 and (serial.status == "ok").all()
    pd.testing.assert_frame_equal(serial[key + ["value", "status"]], two[key + ["value", "status"]])
    lock = threading.Lock()
    with pytest.raises(BadInput, match=r"ranker 'locked' cannot be sent to Dask workers .*use workers=1"):
        benchmark({"locked": CallableRanker(lambda qs, ds, _l=lock: bm25_text(qs, ds), name="locked")}, workers=2,
                  out=tmp_path / "never", **kw)
    assert not (tmp_path / "never").exists()
