"""Committed reports regenerate from tracked files: `rexbench report DIR` on a clean checkout rewrites
RESULTS.md byte for byte from DIR/results.sqlite.gz (the per-sample results), a small committed run and the
committed Cranfield evidence run alike (the TREC DL run's report too, as a slow test: ~3 minutes here)."""
import shutil
from pathlib import Path

import pytest

from suites.report import write_report

ROOT = Path(__file__).resolve().parent.parent


def _regenerate(tmp_path, monkeypatch, run_dir: str, report: str) -> tuple[str, str]:
    """Copy the tracked files of `run_dir` (relative to the repository) into a fresh tree, regenerate the report
    there with the same relative paths, and return (committed text, regenerated text)."""
    src = ROOT / run_dir
    dst = tmp_path / run_dir
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("results.sqlite") or f.name == "results.sqlite.gz":
            shutil.copy2(f, dst / f.name)
    assert not (dst / "results.sqlite").exists()  # only the packed file: what a clean clone has
    monkeypatch.chdir(tmp_path)
    write_report(run_dir, report)
    return (ROOT / report).read_text(), (tmp_path / report).read_text()


def _same_pages(tmp_path, run_dir: str) -> None:
    """The ranker pages regenerated beside the run equal the committed ones, page for page."""
    committed = {p.name: p.read_text() for p in sorted((ROOT / run_dir / "report").glob("*.md"))}
    again = {p.name: p.read_text() for p in sorted((tmp_path / run_dir / "report").glob("*.md"))}
    assert committed and sorted(again) == sorted(committed)
    for name, text in committed.items():
        assert again[name].splitlines() == text.splitlines(), name


def test_small_committed_run_regenerates_byte_for_byte(tmp_path, monkeypatch):
    committed, again = _regenerate(tmp_path, monkeypatch, "tests/data/small_run", "tests/data/small_run/RESULTS.md")
    assert again == committed
    _same_pages(tmp_path, "tests/data/small_run")


def test_committed_cranfield_report_regenerates_byte_for_byte(tmp_path, monkeypatch):
    committed, again = _regenerate(tmp_path, monkeypatch, "results/cranfield", "RESULTS.md")
    assert again.splitlines() == committed.splitlines()
    _same_pages(tmp_path, "results/cranfield")


@pytest.mark.slow
def test_committed_trec_dl_report_regenerates_byte_for_byte(tmp_path, monkeypatch):
    committed, again = _regenerate(tmp_path, monkeypatch, "results/trec-dl", "results/trec-dl/RESULTS.md")
    assert again.splitlines() == committed.splitlines()
    _same_pages(tmp_path, "results/trec-dl")


def test_committed_report_opens_with_the_answer_and_stays_small():
    """RESULTS.md is under 100 KB and opens with the answer card, the trust matrix, the cost strip and what the
    evidence does not support, before what was run; every explained ranker's page is linked from it."""
    text = (ROOT / "RESULTS.md").read_text()
    assert len(text.encode()) < 100_000
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads[:3] == ["## The answer", "## Trust matrix", "## What was run"]
    first = text.split("## What was run", 1)[0]
    assert "**Cost strip**" in first and "What this evidence does not support" in first
    for page in sorted((ROOT / "results/cranfield/report").glob("*.md")):
        assert f"(results/cranfield/report/{page.name})" in text


def test_readme_numbers_are_results_md_numbers():
    """README copies no result by hand: the effectiveness figures it quotes are RESULTS.md's (its effectiveness
    table, rounded as quoted), and its account of the committed run points at RESULTS.md's sections."""
    import re
    readme = (ROOT / "README.md").read_text()
    results = (ROOT / "RESULTS.md").read_text()
    table = results.split("## Ranker effectiveness", 1)[1].split("\n## ", 1)[0]
    ndcg = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 4 and re.fullmatch(r"\d\.\d{4}", cells[4]):
            ndcg[cells[1]] = f"{float(cells[4]):.3f}"
    quoted = re.search(r"scores nDCG@10\s+(\d\.\d{3}) on Cranfield test on the original text against (\d\.\d{3})",
                       readme)
    assert quoted and quoted.groups() == (ndcg["biencoder"], ndcg["biencoder_index"])
    quoted = re.search(r"test (\d\.\d{3}) against BM25's (\d\.\d{3})", readme)
    assert quoted and quoted.groups() == (ndcg["crossencoder"], ndcg["bm25"])
    for section in ("The answer", "Trust matrix", "Cost strip", "What this evidence does not support"):
        assert section in readme and section in results, section
