"""Search oracle (Hase et al. 2021, "The out-of-distribution problem in explainability and search methods
for feature importance explanations"): an ordering of the document's tokens found by querying the model.

`greedy_order(score, n, counts, kind)`: on the curve's step schedule `counts` (tokens removed / inserted
after each step, `explainers.schedule.step_counts`, as the curve metrics), each step scores every token still in play alone on
top of what is already removed (deletion) or inserted (insertion), one batched model call of up to n
rows, and takes the `counts[i+1] - counts[i]` tokens whose removal lowers (insertion: whose insertion
raises) the score most. Step-wise approximation: tokens taken in one step are chosen by their single
effects, not re-searched one at a time (exact one-at-a-time greed is `max_steps = null` on the metric:
every step one token). Cost: sum over steps of the tokens in play, at most n x steps rows (n = 150 words,
20 steps: <= 3000 rows, ~1500 on average), in `len(counts) - 1` batched calls.

`search_order` (the oracle of the anchored gains) is a multi-start local search within `SEARCH_BUDGET` x greedy's
rows: it starts from the best of the token greedy, a word-type greedy (every count of a word type's copies, an exact
knapsack a step) and any orders the caller offers (the anchored gains offer the pair's explanations: where words
substitute for one another, a MaxSim's near-duplicate vectors, synonyms under pooling, one-token moves see nothing
and an explanation may see more).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .base import Explainer, Pair, register_explainer
from rankers.params import Choice, Int


def greedy_order(score: Callable[[torch.Tensor], np.ndarray], n: int, counts: np.ndarray, kind: str) -> np.ndarray:
    """Token indices in the order the search takes them (deletion: removed first; insertion: inserted first).

    score(masks [R, n]) -> scores [R] (1 keeps a token, 0 removes it)."""
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', not {kind!r}")
    taken: list[int] = []
    left = list(range(n))
    base = torch.ones(n) if kind == "deletion" else torch.zeros(n)
    for c0, c1 in zip(counts[:-1], counts[1:]):
        k = int(c1 - c0)
        if k <= 0 or not left:
            continue
        if k >= len(left):
            gains = np.zeros(len(left))  # the rest, in document order
        else:
            rows = base.repeat(len(left), 1)
            rows[torch.arange(len(left)), torch.tensor(left)] = 0.0 if kind == "deletion" else 1.0
            s = np.asarray(score(rows), dtype=np.float64)
            gains = -s if kind == "deletion" else s  # deletion: the lowest score first
        pick = [left[i] for i in np.argsort(-gains, kind="stable")[:k]]
        for j in pick:
            base[j] = 0.0 if kind == "deletion" else 1.0
            left.remove(j)
        taken += pick
    return np.array(taken + left, dtype=np.int64)


def type_greedy_order(score: Callable[[torch.Tensor], np.ndarray], n: int, counts: np.ndarray, kind: str,
                      word_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """`greedy_order` with word types as its units: each step scores, for every word type still in play, its first
    1, 2, ..., c remaining copies removed (deletion) or inserted (insertion) on top of what is already done, one
    batched call of one row per token in play and one for the step's start (`greedy_order`'s rows, plus one), then
    chooses how many copies of each type the step takes so that the step's count is met and the sum of the types' effects is best (an exact
    multiple-choice knapsack over types). Within a type every count is scored (removing one copy of a word written
    twice may change nothing, a second copy may add less than a first copy of another word); across types effects
    are added, greedy's own approximation. On a ranker whose score adds up over word types it takes the best set
    of tokens for the step. Returns (token indices in the order taken, rows scored)."""
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', not {kind!r}")
    taken: list[int] = []
    left = list(range(n))
    put = 0.0 if kind == "deletion" else 1.0
    base = torch.ones(n) if kind == "deletion" else torch.zeros(n)
    rows_scored = 0
    for c1 in counts[1:]:
        due = int(c1) - len(taken)
        if due <= 0 or not left:
            continue
        if due >= len(left):
            taken += left  # the rest, in document order
            left = []
            continue
        types = list(dict.fromkeys(int(word_ids[t]) for t in left))
        copies = [[t for t in left if word_ids[t] == w] for w in types]
        rows, where = [base.clone()], [None]  # the first row: the step's start, what each effect is measured from
        for i, cs in enumerate(copies):
            for j in range(1, len(cs) + 1):
                r = base.clone()
                r[cs[:j]] = put
                rows.append(r)
                where.append((i, j))
        s = np.asarray(score(torch.stack(rows)), dtype=np.float64)
        rows_scored += len(rows)
        gain = (s[0] - s) if kind == "deletion" else (s - s[0])  # how much each row lowers (raises) the score
        effect = [np.zeros(len(cs)) for cs in copies]  # effect[i][j - 1]: j copies of type i
        for (i, j), g in zip(where[1:], gain[1:]):
            effect[i][j - 1] = g
        take = _knapsack(effect, due)
        chosen = sorted((i for i, j in enumerate(take) if j), key=lambda i: -effect[i][take[i] - 1] / take[i])
        for i in chosen:  # within the step, the types by their effect per token (the greedy explainer's ranks)
            for t in copies[i][:take[i]]:
                base[t] = put
                left.remove(t)
                taken.append(t)
    return np.array(taken + left, dtype=np.int64), rows_scored


def _knapsack(values: list[np.ndarray], k: int) -> list[int]:
    """How many units of each group to take, exactly `k` in all, maximising the sum of `values[i][j - 1]` (the value
    of j units of group i; 0 units: 0). Needs sum of the groups' sizes >= k. Ties keep the earlier choice."""
    neg = -np.inf
    best = np.full(k + 1, neg)
    best[0] = 0.0
    choice = []
    for v in values:
        new = best.copy()  # 0 units of this group
        pick = np.zeros(k + 1, dtype=np.int64)
        for j in range(1, min(len(v), k) + 1):
            cand = np.full(k + 1, neg)
            cand[j:] = best[: k + 1 - j] + v[j - 1]
            better = cand > new + 1e-12
            new[better], pick[better] = cand[better], j
        choice.append(pick)
        best = new
    out, c = [0] * len(values), k
    for i in range(len(values) - 1, -1, -1):
        out[i] = int(choice[i][c])
        c -= out[i]
    return out


def improve_order(order: np.ndarray, loss: Callable[[list[np.ndarray]], np.ndarray], word_ids: np.ndarray,
                  max_orders: int, seed: int = 0, batch: int = 16,
                  seed_loss: float | None = None) -> tuple[np.ndarray, int]:
    """Local search over orders seeded with `order` (after Hase et al. 2021's parallel local search): each
    round evaluates up to `batch` moves of the current order in one call of `loss` (orders -> loss each; lower
    is better) and keeps the best move that lowers the loss; it stops when a round brings nothing or
    `max_orders` orders have been evaluated. Moves: every copy of one word brought to the front together
    (greedy cannot see a word written twice: removing one copy alone changes nothing), one word brought to the
    front, and random swaps of two positions. Never returns an order with a higher loss than `order`.
    `seed_loss`: the loss of `order` where the caller has it already (it is not evaluated again).
    Returns (the best order, orders evaluated, `order` included)."""
    rng = np.random.default_rng(seed)
    best = np.asarray(order, dtype=np.int64)
    best_loss = float(loss([best])[0]) if seed_loss is None else float(seed_loss)
    used, tried, idle = 1, set(), 0
    n = len(best)
    while used < max_orders and n > 1:
        moves = []
        pos = {int(t): i for i, t in enumerate(best)}
        for w in dict.fromkeys(int(x) for x in word_ids[best]):  # each word type, in the current order
            copies = [int(t) for t in best if word_ids[t] == w]
            key = ("front", tuple(copies))
            if key in tried or all(pos[c] == i for i, c in enumerate(copies)):
                continue
            tried.add(key)
            moves.append(np.array(copies + [int(t) for t in best if word_ids[t] != w], dtype=np.int64))
            if len(moves) >= batch:
                break
        while len(moves) < batch:
            i, j = rng.choice(n, 2, replace=False)
            m = best.copy()
            m[[i, j]] = m[[j, i]]
            moves.append(m)
        moves = moves[: max(0, max_orders - used)]
        if not moves:
            break
        losses = np.asarray(loss(moves), dtype=np.float64)
        used += len(moves)
        k = int(np.argmin(losses))
        if losses[k] < best_loss - 1e-12:
            best, best_loss, idle = moves[k], float(losses[k]), 0
            tried.clear()  # the order moved: every word's front move is worth trying again
        else:
            idle += 1
            if idle >= 2 and not _untried_fronts(best, word_ids, tried):
                break  # two rounds of random swaps without a gain, every front move tried
    return best, used


def _untried_fronts(order: np.ndarray, word_ids: np.ndarray, tried: set) -> bool:
    """Whether some word type's copies have not been tried at the front of `order`."""
    for w in dict.fromkeys(int(x) for x in word_ids[order]):
        if ("front", tuple(int(t) for t in order if word_ids[t] == w)) not in tried:
            return True
    return False


#: the search oracle may score this many times the rows of its greedy seed (greedy included): a declared budget
SEARCH_BUDGET = 4


def search_order(score: Callable[[torch.Tensor], np.ndarray], loss: Callable[[list[np.ndarray]], np.ndarray],
                 n: int, counts: np.ndarray, kind: str, word_ids: np.ndarray, seed: int = 0,
                 starts: dict[str, tuple[np.ndarray, float]] | None = None) -> tuple[np.ndarray, dict]:
    """The search oracle, a multi-start local search: `improve_order` on `loss` (orders -> loss, lower is better:
    the AUC of whatever curve the caller optimises) starts from the best of `greedy_order`, `type_greedy_order` and
    `starts` (name -> (order, its loss): orders the caller has already scored, e.g. the pair's explanations, whose
    rows are theirs, not the search's) and spends what is left of `SEARCH_BUDGET` x the greedy's rows. So the
    result is never worse than any start: an explanation can tie the oracle, not beat it.
    Returns (order, {"greedy_rows", "type_greedy_rows", "search_rows", "greedy_loss", "seed", "seed_loss",
    "starts"}): rows scored by each part, the token greedy's loss, the start the local search improved on (its name
    and loss) and how many starts were offered."""
    greedy = greedy_order(score, n, counts, kind)
    g_rows = greedy_rows(n, counts)
    typed, t_rows = type_greedy_order(score, n, counts, kind, word_ids)
    g_loss, t_loss = (float(v) for v in loss([greedy, typed]))
    cands = {"greedy": (greedy, g_loss), "type_greedy": (typed, t_loss), **(starts or {})}
    start = min(cands, key=lambda k: cands[k][1])  # ties: the first offered (greedy, then type_greedy, then starts)
    # the local search spends what is left of SEARCH_BUDGET x the greedy's rows (the two seeds' AUCs included)
    left = (SEARCH_BUDGET - 1) * g_rows - t_rows - len(counts)
    order, used = improve_order(cands[start][0], loss, word_ids, max(left // len(counts), 1), seed,
                                seed_loss=cands[start][1])
    return order, {"greedy_rows": g_rows, "type_greedy_rows": t_rows, "search_rows": (used + 1) * len(counts),
                   "greedy_loss": g_loss, "seed": start, "seed_loss": cands[start][1], "starts": len(starts or {})}


def greedy_rows(n: int, counts: np.ndarray) -> int:
    """Rows `greedy_order` scores on `counts` (every token still in play, each step that chooses)."""
    left, rows = n, 0
    for c0, c1 in zip(counts[:-1], counts[1:]):
        k = int(c1 - c0)
        if 0 < k < left:
            rows += left
        left -= max(k, 0)
    return rows


def order_scores(order: np.ndarray) -> np.ndarray:
    """Attributions [n] whose descending order is `order` (n for the first token, 1 for the last)."""
    n = len(order)
    out = np.empty(n, dtype=np.float64)
    out[order] = np.arange(n, 0, -1, dtype=np.float64)
    return out


@register_explainer("greedy")
class GreedyExplainer(Explainer):
    """The search oracle as an explanation: doc_scores rank the tokens in the order `greedy_order` takes
    them (`kind` = "deletion": the order that lowers the score fastest; "insertion": raises it fastest),
    on a schedule of `max_steps` steps, improved on the score's AUC by `search_order`. Its cost (forward passes and rows) is recorded like any explainer's;
    it is an upper reference for curve metrics, not an explanation a user would read."""

    params = {**Explainer.params, "kind": Choice("deletion", ("deletion", "insertion")),
              "max_steps": Int(20, lo=1, hi=10000, doc="search steps (the curve metrics' schedule)")}

    def __init__(self, ranker, seed: int = 0, batch_size: int = 256, kind: str = "deletion", max_steps: int = 20):
        super().__init__(ranker, seed, batch_size)
        self.kind, self.max_steps = kind, int(max_steps)

    def _attribute(self, pair: Pair) -> dict:
        from .schedule import curve_masks, step_counts
        sc = self.tracked(self.scorer(pair, "mask"))
        n = len(pair.d_ids)
        counts = step_counts(n, self.max_steps)
        x, sign = counts / counts[-1], (1.0 if self.kind == "deletion" else -1.0)

        def scores(masks: torch.Tensor) -> np.ndarray:
            return sc(masks.to(pair.d_ids.device)).double().cpu().numpy()

        def loss(orders):  # the score's AUC along each order: deletion lowest, insertion highest
            s = scores(torch.cat([curve_masks(o, counts, self.kind) for o in orders])).reshape(len(orders), -1)
            return sign * np.trapezoid(s, x, axis=1)
        with torch.no_grad():
            order, cost = search_order(scores, loss, n, counts, self.kind, pair.d_ids.cpu().numpy(), self.seed)
        return {"doc_scores": order_scores(order), "info": {"kind": self.kind, "steps": self.max_steps,
                                                            "search_orders": cost["search_rows"] // len(counts)}}
