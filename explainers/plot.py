"""Figures: the query x document heatmap (the seed paper's figure type) and HTML highlights."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from .base import Explanation


def _plain(text: str) -> str:
    """Text matplotlib draws as given: a `$` would start mathtext (and `$...$` in a word can fail to parse)."""
    return str(text).replace("$", r"\$")


def heatmap_png(expl: Explanation, path: str | Path, max_doc_tokens: int = 60, ax=None, title: str | None = None):
    """Draw pair_map [n_query, n_doc] (or doc_scores as one row) with token labels; returns the axes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if expl.pair_map is not None:
        m, rows = np.asarray(expl.pair_map), expl.query_tokens
    else:
        m, rows = np.asarray(expl.doc_scores)[None], ["(doc)"]
    n_all = m.shape[1]
    m = m[:, :max_doc_tokens]
    cols = expl.doc_tokens[: m.shape[1]]
    notes = [f"first {m.shape[1]} of {n_all} words shown"] if m.shape[1] < n_all else []
    if expl.truncated:
        notes.append(f"document truncated by the ranker to {n_all} words")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(cols) + 2), max(1.6, 0.32 * len(rows) + 1.4)))
    lim = float(np.abs(m).max()) or 1.0
    signed = bool((m < 0).any())
    im = ax.imshow(m, aspect="auto", cmap="RdBu_r" if signed else "Reds", vmin=-lim if signed else 0, vmax=lim)
    ax.set_yticks(range(len(rows)), [_plain(r) for r in rows], fontsize=8)
    ax.set_xticks(range(len(cols)), [_plain(c) for c in cols], rotation=90, fontsize=7)
    ax.set_title(_plain(title or f"{expl.explainer} on {expl.ranker} (score {expl.score:.3f})")
                 + (f"\n[{'; '.join(notes)}]" if notes else ""), fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    if own:
        fig.tight_layout()
        fig.savefig(path, dpi=130)
        plt.close(fig)
    return ax


def highlight_html(expl: Explanation, path: str | Path) -> None:
    """Document words shaded by attribution (red positive, blue negative)."""
    s = np.asarray(expl.doc_scores, dtype=float)
    lim = float(np.abs(s).max()) or 1.0
    spans = []
    for tok, v in zip(expl.doc_tokens, s):
        a = min(abs(v) / lim, 1.0)
        rgb = "220,40,40" if v >= 0 else "40,80,220"
        spans.append(f'<span title="{v:.4g}" style="background:rgba({rgb},{a:.2f})">{html.escape(tok)}</span>')
    q = html.escape(" ".join(expl.query_tokens))
    Path(path).write_text(
        f"<!doctype html><meta charset='utf-8'><title>rexbench {html.escape(expl.explainer)}</title>"
        f"<body style='font-family:sans-serif;max-width:50em'><p><b>query:</b> {q}<br><b>ranker:</b> {html.escape(expl.ranker)} "
        f"<b>explainer:</b> {html.escape(expl.explainer)} <b>score:</b> {expl.score:.4f}</p>"
        + (f"<p><i>The ranker truncated this document: only its first {len(expl.doc_tokens)} words were scored and "
           "are shown.</i></p>" if expl.truncated else "")
        + "<p style='line-height:1.9'>"
        + " ".join(spans) + "</p></body>")
