"""Any scoring function as a ranker (in the spirit of PyTerrier's `pt.apply.doc_score`).

`fn(queries: list[str], docs: list[str]) -> list[float]` scores aligned (query, document)
texts: a ranker behind an API, a Pyserini/PyTerrier pipeline, an ONNX model, a hand-written
BM25 over raw text. Units are the words of the original text (`rankers.text.words`); with nothing
removed the function gets the original text (its leading and trailing whitespace stripped); the
removal operator drops the removed words with the whitespace before them (the rest keep their own),
so perturbation explainers (occlusion, feature_ablation, shapley_sampling, kernel_shap, lime)
and every curve metric apply. It is a black box: no gradients, layers or attention, so
gradient explainers report it as incompatible.

In a suite: `[rankers.mine]` with `type = "callable"` and `function = "package.module:attr"`.
"""
from __future__ import annotations

import importlib
import math
from typing import Callable, Sequence

import torch

from .base import Ranker
from .errors import BadInput
from .params import Float, Int, Str
from .registry import register_ranker
from .text import PAD_ID, GrowingVocab, Vocab

ScoreFn = Callable[[list[str], list[str]], Sequence[float]]


def import_function(spec: str) -> ScoreFn:
    """'package.module:attr' -> the callable it names (BadInput when it cannot be imported)."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise BadInput(f"function {spec!r}: expected 'module:attr' (e.g. 'mypkg.scoring:score')")
    mod_name, attr = spec.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # ImportError, or anything the module raises at import
        raise BadInput(f"function {spec!r}: cannot import {mod_name!r} ({type(e).__name__}: {e})") from None
    fn = mod
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise BadInput(f"function {spec!r}: module {mod_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise BadInput(f"function {spec!r} is not callable")
    return fn


@register_ranker("callable", kind="black-box", trainable=False)
class CallableRanker(Ranker):
    """A scoring function `fn(queries, docs) -> scores` as a ranker; see the module docstring.

    `forward(q_ids [B, Lq], d_ids [B, Ld], d_mask [B, Ld] | None) -> scores [B]` rebuilds each
    row's texts from its words (mask 0 = the word is dropped) and calls `fn` in chunks of
    `batch_size` pairs. Soft masks (values strictly between 0 and 1) have no meaning for a text
    function and are an error.
    """

    analyzer = "words"
    capabilities = ()
    pretrained = True
    params = {"function": Str(None, doc="'module:attr' naming fn(queries: list[str], docs: list[str]) -> scores"),
              "batch_size": Int(256, lo=1, hi=65536, doc="pairs per call of the function"),
              "max_doc_len": Int(512, lo=1, hi=100000, doc="document words kept"),
              "max_query_len": Int(64, lo=1, hi=10000, doc="query words kept"),
              "timeout_s": Float(0.0, lo=0.0, hi=86400.0, doc="seconds one call of the function may take (0: no "
                                 "limit); a call over it is an error for that pair (the suite goes on)")}

    def __init__(self, function: str | ScoreFn | None = None, vocab: Vocab | None = None, batch_size: int = 256,
                 max_doc_len: int = 512, max_query_len: int = 64, name: str | None = None, timeout_s: float = 0.0):
        super().__init__(GrowingVocab(list(vocab.itos)) if vocab is not None else GrowingVocab(),
                         max_doc_len=max_doc_len, max_query_len=max_query_len)
        if function is None:
            raise BadInput("callable ranker: give `function` ('module:attr' or a Python callable)")
        self.function = (function if isinstance(function, str)
                         else getattr(function, "__qualname__", None) or f"<{type(function).__name__} object>")
        self.fn = import_function(function) if isinstance(function, str) else function
        if not callable(self.fn):
            raise BadInput(f"callable ranker: {function!r} is not callable")
        self.batch_size = int(batch_size)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 <= timeout_s <= 86400:
            raise BadInput(f"callable ranker: timeout_s must be seconds in [0, 86400], got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        if name is not None:
            self.name = name
        self.calls = 0  # calls of fn so far (cost accounting)

    @classmethod
    def from_collection(cls, collection, seed: int = 0, **params) -> "CallableRanker":
        return cls(**params)

    def config(self) -> dict:
        return {"function": self.function, "batch_size": self.batch_size, "max_doc_len": self.max_doc_len,
                "max_query_len": self.max_query_len, **({"timeout_s": self.timeout_s} if self.timeout_s else {})}

    def _timed(self, queries: list[str], docs: list[str]):
        """fn(queries, docs), bounded by `timeout_s`: the call runs in a daemon helper thread; one that is late is
        abandoned (Python cannot stop it; being a daemon, it never keeps the process from exiting) and reported
        as a BadInput. The function gets copies of the lists (one that empties them changes nothing here)."""
        import threading
        if not self.timeout_s:
            return self.fn(list(queries), list(docs))
        box: dict = {}

        def call():
            try:
                box["out"] = self.fn(list(queries), list(docs))
            except BaseException as e:  # noqa: BLE001 -- handed to the caller's thread
                box["err"] = e

        t = threading.Thread(target=call, daemon=True, name="rexbench-callable")
        t.start()
        t.join(self.timeout_s)
        if t.is_alive():
            raise BadInput(f"ranker {self.name!r}: the function {self.function} did not return within "
                           f"{self.timeout_s:g} s (timeout_s) on {len(docs)} pairs")
        if "err" in box:
            raise box["err"]
        return box["out"]

    def _text(self, row: torch.Tensor, keep: torch.Tensor | None = None) -> str:
        """The row's text: the original text when nothing is removed; else the kept words, each after
        its own separator from the original (`GrowingVocab.text`)."""
        ids = row.tolist()
        kept = [i for j, i in enumerate(ids) if i != PAD_ID and (keep is None or bool(keep[j]))]
        return self.vocab.text(kept)[0]

    def forward(self, q_ids: torch.Tensor, d_ids: torch.Tensor, d_mask: torch.Tensor | None = None) -> torch.Tensor:
        if d_mask is not None:
            soft = (d_mask > 0) & (d_mask < 1)
            if bool(soft.any()):
                raise BadInput(f"ranker {self.name!r} is a black-box function of text: a word is kept (1) or "
                               "dropped (0); soft masks (gradient explainers) do not apply")
        queries = [self._text(q) for q in q_ids.cpu()]
        keep = None if d_mask is None else (d_mask > 0).cpu()
        docs = [self._text(d, None if keep is None else keep[b]) for b, d in enumerate(d_ids.cpu())]
        out = []
        for s in range(0, len(docs), self.batch_size):
            out += self._call(queries[s: s + self.batch_size], docs[s: s + self.batch_size])
        return torch.tensor(out, dtype=torch.float64, device=q_ids.device)

    def _call(self, queries: list[str], docs: list[str]) -> list[float]:
        try:
            got = self._timed(queries, docs)
            scores = [float(x) for x in got]
        except BadInput:
            raise
        except (Exception, SystemExit) as e:  # SystemExit too: a function's exit() must not end the run unseen
            raise BadInput(f"ranker {self.name!r}: the function {self.function} failed on {len(docs)} pairs "
                           f"({type(e).__name__}: {e})") from None
        self.calls += 1
        if len(scores) != len(docs):
            raise BadInput(f"ranker {self.name!r}: the function {self.function} returned {len(scores)} scores for "
                           f"{len(docs)} (query, document) pairs; it must return one score per pair")
        bad = [i for i, v in enumerate(scores) if not math.isfinite(v)]
        if bad:
            raise BadInput(f"ranker {self.name!r}: the function {self.function} returned a non-finite score "
                           f"({scores[bad[0]]}) for pair {bad[0]} of {len(docs)}")
        return scores
