"""Committed reports regenerate from tracked files: `rexbench report DIR` on a clean checkout rewrites
RESULTS.md byte for byte from DIR/results.sqlite.gz (the per-sample results), a small committed run and the
committed Cranfield evidence run alike."""
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


def test_small_committed_run_regenerates_byte_for_byte(tmp_path, monkeypatch):
    committed, again = _regenerate(tmp_path, monkeypatch, "tests/data/small_run", "tests/data/small_run/RESULTS.md")
    assert again == committed


def test_committed_cranfield_report_regenerates_byte_for_byte(tmp_path, monkeypatch):
    committed, again = _regenerate(tmp_path, monkeypatch, "results/cranfield", "RESULTS.md")
    assert again.splitlines() == committed.splitlines()
