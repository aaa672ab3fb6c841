"""Scoring functions that misbehave in known ways, for the fault tests (plain Python over raw text)."""
from __future__ import annotations

import time
from collections import Counter


def overlap(queries: list[str], docs: list[str]) -> list[float]:
    """Words of the query in the document, plus a little length: a well-behaved function."""
    return [sum(w in d.split() for w in q.split()) + 0.001 * len(d.split()) for q, d in zip(queries, docs)]


def nan_on_empty(queries: list[str], docs: list[str]) -> list[float]:
    """Fine on real documents, NaN on the empty document (which effectiveness and deletion curves score)."""
    return [float("nan") if not d.strip() else s for d, s in zip(docs, overlap(queries, docs))]


def fails_on_perturbations(queries: list[str], docs: list[str]) -> list[float]:
    """Fails on a call holding a document and a part of it (perturbation rows: explainers, metrics),
    never on distinct candidates or one document alone: a ranker that breaks during metric computation."""
    bags = [Counter(d.split()) for d in docs]
    for i, a in enumerate(bags):
        for j, b in enumerate(bags):
            if i != j and a != b and not (a - b):
                raise RuntimeError("backend refused a perturbed document")
    return overlap(queries, docs)


def slow(queries: list[str], docs: list[str]) -> list[float]:
    time.sleep(5)
    return overlap(queries, docs)


def sleepy(queries: list[str], docs: list[str]) -> list[float]:
    """`overlap`, sleeping $REXBENCH_TEST_SLEEP seconds per call where that is set (the processes of a
    distributed run in a test), so a run lasts long enough to be interrupted."""
    import os
    time.sleep(float(os.environ.get("REXBENCH_TEST_SLEEP", "0")))
    return overlap(queries, docs)


def forever(queries: list[str], docs: list[str]) -> list[float]:
    """Never returns (a backend that hangs): only `timeout_s` ends its calls."""
    while True:
        time.sleep(1)


def exits(queries: list[str], docs: list[str]) -> list[float]:
    """Calls exit(5) on a perturbed document (more than one pair in the call)."""
    if len(docs) > 2:
        raise SystemExit(5)
    return overlap(queries, docs)


def empties_its_input(queries: list[str], docs: list[str]) -> list[float]:
    """Scores, then empties the lists it was given (a function that consumes its input)."""
    out = overlap(queries, docs)
    docs.clear()
    queries.clear()
    return out


def hangs_on_perturbations(queries: list[str], docs: list[str]) -> list[float]:
    """`overlap`, except that a call holding a document and a part of it (explainers, metrics) never returns."""
    try:
        return fails_on_perturbations(queries, docs)
    except RuntimeError:
        while True:
            time.sleep(1)


def length(queries: list[str], docs: list[str]) -> list[float]:
    """The number of words: any removal sinks a document (a ranker dominated by its removal operator)."""
    return [float(len(d.split())) for d in docs]
