"""Listwise explanation of a query's ranking (after RankingSHAP, SIGIR 2025): the seed's query-intent use.

`ranking_shap`: the Shapley value of each query word for v(S) = Kendall tau (scipy, tau-b) between the
scores of the query's top `k` candidates under the full query and under the query reduced to the words
in S (the others PAD, removed); v(empty query) = 0 (no ranking is left). Exact over all 2^n coalitions
for n <= `exact_max` query words, else `n_samples` seeded random permutations. Each coalition costs k
rows, batched. It explains the ranking, not the document: `query_scores` are its output and
`doc_scores` are 0 (a constant document explanation; RESULTS.md flags the share), so it is scored by
query_deletion and the listwise metrics.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import kendalltau

from rankers.params import Int
from rankers.scorer import Cost, score_chunks

from .base import Explainer, Pair, register_explainer


@register_explainer("ranking_shap")
class RankingShap(Explainer):
    stochastic = True
    needs_candidates = True
    params = {**Explainer.params,
              "k": Int(10, lo=2, hi=1000, doc="the query's top k candidates form the ranking explained"),
              "exact_max": Int(8, lo=1, hi=16, doc="exact Shapley over all coalitions up to this many query words"),
              "n_samples": Int(25, lo=1, hi=100000, doc="random permutations beyond exact_max")}

    def __init__(self, ranker, k: int = 10, exact_max: int = 8, n_samples: int = 25, seed: int = 0,
                 batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        self.k, self.exact_max, self.n_samples = int(k), int(exact_max), int(n_samples)

    def _attribute(self, pair: Pair) -> dict:
        from .base import Incompatible
        if not pair.candidates or len(pair.candidates) < 2:
            raise Incompatible("ranking_shap explains a query's ranking: it needs the query's candidates "
                               "(a suite run, or rexbench explain --qid)")
        r = self.ranker
        enc = r.encode(list(pair.query_tokens), [list(t) for t in pair.candidates[: self.k]])
        n = enc.q_ids.shape[1]
        cache: dict[frozenset, np.ndarray] = {}

        def values(coalitions: list[frozenset]) -> None:
            todo = [c for c in dict.fromkeys(coalitions) if c not in cache]
            if not todo:
                return
            q = enc.q_ids.repeat(len(todo), 1)
            d = enc.d_ids.repeat(len(todo), 1)
            m = len(enc.d_ids)
            for i, c in enumerate(todo):
                drop = [j for j in range(n) if j not in c]
                if drop:
                    q[i * m: (i + 1) * m, drop] = 0
            s = score_chunks(r, q, d, batch_size=self.batch_size)
            self._cost.append(Cost(math.ceil(len(q) / self.batch_size), len(q)))
            for i, c in enumerate(todo):
                cache[c] = s[i * m: (i + 1) * m]

        everyone = frozenset(range(n))
        values([everyone])
        base = cache[everyone]

        def v(c: frozenset) -> float:
            if not c:
                return 0.0
            s = cache[c]
            if np.ptp(base) == 0 or np.ptp(s) == 0:
                return 0.0
            return float(kendalltau(base, s).statistic)

        phi = np.zeros(n)
        if n <= self.exact_max:
            subsets = [frozenset(c) for size in range(n + 1) for c in itertools.combinations(range(n), size)]
            values([c for c in subsets if c])
            for i in range(n):
                for c in subsets:
                    if i in c:
                        continue
                    w = math.factorial(len(c)) * math.factorial(n - len(c) - 1) / math.factorial(n)
                    phi[i] += w * (v(c | {i}) - v(c))
            how = "exact"
        else:
            rng = np.random.default_rng(self.seed)
            perms = [rng.permutation(n) for _ in range(self.n_samples)]
            values([frozenset(p[: j + 1]) for p in perms for j in range(n)])
            for p in perms:
                prev = frozenset()
                for i in p:
                    cur = prev | {int(i)}
                    phi[int(i)] += v(cur) - v(prev)
                    prev = cur
            phi /= len(perms)
            how = f"{len(perms)} permutations"
        return {"doc_scores": np.zeros(len(pair.doc_tokens)), "query_scores": phi,
                "info": {"k": len(enc.d_ids), "shapley": how, "v_full": v(everyone)}}

