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
