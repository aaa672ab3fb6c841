import json

from suites.cli import main


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"rankers", "explainers", "metrics", "suites"} <= set(out)
    assert {"name": "bm25", "kind": "lexical"}.items() <= out["rankers"][0].items()


def test_rank_json(capsys):
    assert main(["rank", "bm25", "--collection", "synthetic", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"ranker", "collection", "split", "queries", "ndcg@10", "mrr@10", "map"} <= set(out)
    assert out["queries"] == 16 and 0 < out["ndcg@10"] <= 1


def test_bad_usage_exit_2(capsys):
    assert main(["rank", "nosuch", "--collection", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert "valid: biencoder, bm25" in err and err.count("\n") == 1
    assert main(["rank", "bm25", "--collection", "nosuch"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["rank", "bm25", "--collection", "synthetic", "--split", "nope"]) == 2


def test_list_marks_incompatible_explainers(capsys):
    assert main(["list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    gc = next(e for e in out["explainers"] if e["name"] == "gradcam")
    assert "bm25" in gc["incompatible"] and "knrm" not in gc["incompatible"]
    assert {m["name"] for m in out["metrics"]} >= {"deletion", "insertion", "sanity_randomization"}
    assert {s["name"] for s in out["suites"]} >= {"quick", "cranfield"}


def test_explain_json_metrics_and_figures(capsys, tmp_path):
    png, html = tmp_path / "m.png", tmp_path / "m.html"
    args = ["explain", "--ranker", "bm25", "--explainer", "exact_match", "--collection", "synthetic",
            "--qid", "q001", "--docid", "d0001", "--metrics", "deletion,insertion,rationale_precision", "--json"]
    assert main(args + ["--out", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("ranker", "explainer", "score", "query_tokens", "doc_tokens", "query_scores", "doc_scores", "pair_map",
              "seconds", "forward_passes", "backward_passes", "metrics", "curves"):
        assert k in out
    assert len(out["pair_map"]) == len(out["query_tokens"]) and len(out["pair_map"][0]) == len(out["doc_tokens"])
    assert out["metrics"]["rationale_precision"] == 1.0 and set(out["curves"]) == {"deletion", "insertion"}
    assert out["curves"]["deletion"]["x"][0] == 0.0 and out["curves"]["deletion"]["x"][-1] == 1.0
    assert png.stat().st_size > 1000
    assert main(args[:-1] + ["--out", str(html), "--snippet", "5"]) == 0  # human-readable output
    text = capsys.readouterr().out
    assert "snippet:" in text and "deletion" in text and "<span" in html.read_text()
    free = ["explain", "--ranker", "bm25", "--explainer", "feature_ablation", "--collection", "synthetic",
            "--query", "vari pani", "--doc", "vari pani simiko vari", "--json"]
    assert main(free) == 0
    assert json.loads(capsys.readouterr().out)["doc_tokens"] == ["vari", "pani", "simiko", "vari"]


def test_explain_bad_input_exit_2(capsys):
    base = ["explain", "--ranker", "bm25", "--explainer", "feature_ablation", "--collection", "synthetic"]
    assert main(base + ["--qid", "q001", "--docid", "d0001", "--query", "x"]) == 2
    assert main(base + ["--qid", "q001", "--docid", "nope"]) == 2
    assert main(base + ["--qid", "q001", "--docid", "d0001", "--target", "pair:nope"]) == 2
    assert main(base + ["--qid", "q001", "--docid", "d0001", "--metrics", "delet"]) == 2
    assert main(base + ["--query", "the of and", "--doc", "vari"]) == 2  # no indexable query tokens
    assert main(["explain", "--ranker", "bm25", "--explainer", "gradcam", "--collection", "synthetic",
                 "--qid", "q001", "--docid", "d0001"]) == 2  # incompatible pair
    err = capsys.readouterr().err
    assert "feature_layer" in err and "empty query" in err
