"""Choosing gamma on validation queries without a (validation queries x documents) matrix.

Documents without training queries never move, so each validation query's best scores among them are
computed once, streamed in blocks (:func:`static_topk`). Scores of moving documents are per-document
combinations of two precomputed score columns, so trying a gamma costs no new matrix product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._nudge import NGeometry
from .metrics import ideal_dcg, score_from_relevance
from .queries import QueryAnswers
from .search import DOC_BLOCK, RunningTopK, unit_rows

__all__ = ["static_topk", "PairLookup", "select_gamma_n", "select_gamma_m", "MCurve"]

VAL_BLOCK = 256
# Upper bound on (validation pairs x moving documents) entries held at once by the NUDGE-M sweep.
_PAIR_TILE = 1 << 22
# The gamma grid is cut into this many stretches; candidates are pruned per stretch.
_GAMMA_CHUNKS = 12
# Mean candidates per query below which the whole grid is scored without cutting it into stretches.
_FEW_CANDIDATES = 24


def static_topk(
    queries: np.ndarray,
    docs: np.ndarray,
    exclude: np.ndarray,
    k: int,
    extra: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of ``queries`` (V, d) over ``docs`` (N, d) rows not in ``exclude``.

    ``extra`` (X, d) are further fixed competitors, scored by cosine and reported with indices N + j.
    Returns (V, k) float32 scores (``-inf`` padding when fewer exist) and (V, k) int64 indices (-1 padding).
    """
    n = docs.shape[0]
    keep = np.ones(n, dtype=bool)
    keep[exclude] = False
    out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
    out_i = np.full((queries.shape[0], k), -1, dtype=np.int64)
    for v0 in range(0, queries.shape[0], VAL_BLOCK):
        qb = queries[v0 : v0 + VAL_BLOCK].astype(np.float32, copy=False)
        top = RunningTopK(qb.shape[0], k)
        for d0 in range(0, n, DOC_BLOCK):
            cols = np.flatnonzero(keep[d0 : d0 + DOC_BLOCK]) + d0
            if cols.size == 0:
                continue
            block = docs[d0 : d0 + DOC_BLOCK]
            if cols.size < block.shape[0]:
                block = block[cols - d0]
            top.push(qb @ block.astype(np.float32, copy=False).T, cols)
        if extra is not None:
            for x0 in range(0, extra.shape[0], DOC_BLOCK):
                xb = unit_rows(extra[x0 : x0 + DOC_BLOCK].astype(np.float32, copy=False))
                top.push(qb @ xb.T, np.arange(n + x0, n + x0 + xb.shape[0], dtype=np.int64))
        out_s[v0 : v0 + qb.shape[0]] = top.scores
        out_i[v0 : v0 + qb.shape[0]] = top.index
    return out_s, out_i


class PairLookup:
    """Relevance of arbitrary (query row, document) pairs of a :class:`QueryAnswers`, vectorised."""

    def __init__(self, qa: QueryAnswers, n_docs: int) -> None:
        self.base = np.int64(max(n_docs, qa.max_index() + 1) + 1)
        keys = qa.pair_rows() * self.base + qa.indices
        order = np.argsort(keys)
        self.keys = keys[order]
        self.rel = qa.relevance[order]

    def __call__(self, rows: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """float32 relevance (0 when not an answer) for broadcastable ``rows`` and ``docs``; docs < 0 give 0."""
        probe = rows * self.base + np.where(docs < 0, self.base - 1, np.minimum(docs, self.base - 1))
        pos = np.searchsorted(self.keys, probe)
        pos_c = np.minimum(pos, self.keys.size - 1)
        found = (pos < self.keys.size) & (self.keys[pos_c] == probe) & (docs >= 0)
        return np.where(found, self.rel[pos_c], 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------- NUDGE-N


def select_gamma_n(
    val: QueryAnswers,
    geo: NGeometry,
    moving_docs: np.ndarray,
    static_s: np.ndarray,
    static_i: np.ndarray,
    gammas: np.ndarray,
    kind: str,
    k: int,
    n_docs: int,
) -> np.ndarray:
    """Mean validation metric at each gamma of ``gammas`` for NUDGE-N.

    Args:
        val: validation queries (V, d) with answers.
        geo: geometry of the m moving documents; ``moving_docs`` (m,) their document rows.
        static_s, static_i: (V, k) top-k scores/rows among documents that do not move.
        gammas: (G,) ascending candidate step sizes.
        kind, k: the metric (``recall``, ``hit``, ``mrr``, ``ndcg``) at cut-off k.
        n_docs: number of documents N.

    Returns:
        (G,) float64 mean metric per gamma.

    Per validation query and range of gammas, a moving document can only enter the top-k when the best
    score it reaches on that stretch of its arc (e moves along a great circle towards g_hat as gamma grows)
    beats the k-th best of the scores guaranteed over the stretch; only those candidates are re-scored.
    """
    lookup = PairLookup(val, n_docs)
    n_ans = np.diff(val.indptr)
    ideal = ideal_dcg(val, k) if kind == "ndcg" else None
    totals = np.zeros(gammas.size, dtype=np.float64)
    c32 = geo.c.astype(np.float32)
    chunks = np.array_split(np.arange(gammas.size), max(1, min(_GAMMA_CHUNKS, gammas.size // 8)))
    for v0 in range(0, len(val), VAL_BLOCK):
        rows = np.arange(v0, min(v0 + VAL_BLOCK, len(val)))
        qb = val.embeddings[rows].astype(np.float32, copy=False)
        alpha = qb @ geo.e.T
        beta = qb @ geo.z.T
        radius = np.hypot(alpha, beta)
        ctx = _BlockContext(
            rows, static_s[rows], lookup(rows[:, None], static_i[rows]), n_ans[rows],
            None if ideal is None else ideal[rows],
        )
        whole = _candidates(ctx.static_s, alpha, beta, radius, geo, gammas[0], gammas[-1], k)
        if whole.sum() <= _FEW_CANDIDATES * rows.size:  # pruning over the whole grid is tight enough
            totals += _score_candidates(ctx, whole, alpha, beta, c32, moving_docs, lookup, gammas, kind, k)
            continue
        for chunk in chunks:
            cand = _candidates(ctx.static_s, alpha, beta, radius, geo, gammas[chunk[0]], gammas[chunk[-1]], k)
            totals[chunk] += _score_candidates(ctx, cand, alpha, beta, c32, moving_docs, lookup, gammas[chunk], kind, k)
    return totals / len(val)


def _candidates(static_s, alpha, beta, radius, geo, g_lo, g_hi, k) -> np.ndarray:
    """(b, m) bool: moving documents that may reach a query's top k for some gamma in [g_lo, g_hi]."""
    lo, hi = _arc_bounds(alpha, beta, radius, geo.cos_theta(float(g_lo)), geo.cos_theta(float(g_hi)))
    pool = np.concatenate([static_s, lo], axis=1)
    kk = min(k, pool.shape[1])
    floor = np.partition(pool, pool.shape[1] - kk, axis=1)[:, pool.shape[1] - kk][:, None]
    return hi >= floor - 1e-6


@dataclass
class _BlockContext:
    rows: np.ndarray  # (b,) validation rows of this block
    static_s: np.ndarray  # (b, k) fixed competitors' scores
    static_rel: np.ndarray  # (b, k) their relevance
    n_ans: np.ndarray  # (b,)
    ideal: np.ndarray | None  # (b,) ideal DCG for nDCG


def _score_candidates(ctx, cand, alpha, beta, c32, moving_docs, lookup, gammas, kind, k) -> np.ndarray:
    """Summed metric over the block's queries at each of ``gammas``, re-scoring only candidate documents."""
    totals = np.zeros(gammas.size, dtype=np.float64)
    shrink = (1.0 - gammas / 2.0).astype(np.float32)[:, None, None]
    counts = cand.sum(axis=1)
    by_count = np.argsort(counts, kind="stable")  # rows grouped by candidate count: little padding
    for group in np.array_split(by_count, max(1, min(8, by_count.size // 16))):
        if group.size == 0:
            continue
        width = max(int(counts[group].max()), 1)
        r, cidx = np.nonzero(cand[group])
        slot = np.arange(r.size) - np.repeat(np.cumsum(counts[group]) - counts[group], counts[group])
        ca = np.zeros((group.size, width), dtype=np.float32)
        cb = np.zeros_like(ca)
        cc = np.ones_like(ca)
        valid = np.zeros((group.size, width), dtype=bool)
        src = group[r]
        ca[r, slot], cb[r, slot], cc[r, slot] = alpha[src, cidx], beta[src, cidx], c32[cidx]
        valid[r, slot] = True
        cand_doc = np.full((group.size, width), -1, dtype=np.int64)
        cand_doc[r, slot] = moving_docs[cidx]
        st_s = ctx.static_s[group]
        rel_all = np.concatenate([ctx.static_rel[group], lookup(ctx.rows[group][:, None], cand_doc)], axis=1)
        sub_ans = ctx.n_ans[group]
        sub_ideal = None if ctx.ideal is None else ctx.ideal[group]
        step = max(1, (1 << 23) // (group.size * (width + k)))
        for g0 in range(0, gammas.size, step):
            a = np.maximum(shrink[g0 : g0 + step], cc[None])
            s = a * ca[None] + np.sqrt(np.maximum(1.0 - a * a, 0.0)) * cb[None]
            s[:, ~valid] = -np.inf
            n_g = s.shape[0]
            merged = np.concatenate([np.broadcast_to(st_s, (n_g, *st_s.shape)), s], axis=2)
            ranked = _ranked_relevance(merged.reshape(n_g * group.size, -1), np.tile(rel_all, (n_g, 1)), k)
            per_query = score_from_relevance(
                kind, ranked, np.tile(sub_ans, n_g), None if sub_ideal is None else np.tile(sub_ideal, n_g)
            )
            totals[g0 : g0 + n_g] += per_query.reshape(n_g, group.size).sum(axis=1)
    return totals


def _arc_bounds(
    alpha: np.ndarray, beta: np.ndarray, radius: np.ndarray, a_start: np.ndarray, a_stop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of alpha cos t + beta sin t over t in [arccos(a_start), arccos(a_stop)], elementwise.

    alpha, beta and radius = hypot(alpha, beta) are (b, m); a_start >= a_stop are (m,) cosines of the ends.
    """
    a0, a1 = a_start.astype(np.float32), a_stop.astype(np.float32)
    s0 = alpha * a0 + beta * np.sqrt(np.maximum(1.0 - a0 * a0, 0.0))
    s1 = alpha * a1 + beta * np.sqrt(np.maximum(1.0 - a1 * a1, 0.0))
    # the sinusoid peaks at angle atan2(beta, alpha) and bottoms out opposite to it
    peak = (beta >= 0) & (alpha <= a0 * radius) & (alpha >= a1 * radius)
    trough = (beta <= 0) & (-alpha <= a0 * radius) & (-alpha >= a1 * radius)
    hi = np.where(peak, radius, np.maximum(s0, s1))
    lo = np.where(trough, -radius, np.minimum(s0, s1))
    return lo, hi


def _ranked_relevance(scores: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    """(V, k) relevance of the k best-scoring columns, best first."""
    k = min(k, scores.shape[1])
    if k == 1:
        return np.take_along_axis(rel, scores.argmax(axis=1)[:, None], axis=1)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(rel, np.take_along_axis(part, order, axis=1), axis=1)


# ---------------------------------------------------------------------------------------------- NUDGE-M


@dataclass
class MCurve:
    """Intervals of gamma on which each validation (query, answer) pair ranks first under NUDGE-M."""

    lo: np.ndarray
    hi: np.ndarray
    n_queries: int

    def hits(self, gammas: np.ndarray) -> np.ndarray:
        """Mean validation hit@1 at each gamma of ``gammas`` (closed intervals)."""
        lo, hi = np.sort(self.lo), np.sort(self.hi)
        covered = np.searchsorted(lo, gammas, side="right") - np.searchsorted(hi, gammas, side="left")
        return covered / self.n_queries

    def best(self, margin: float = 1e-4) -> float:
        """A gamma maximising hit@1; 0 is always a candidate and ties go to the leftmost optimal segment.

        The optimal segment starts at an interval's left end, where the answer that opens it only ties its
        competitor. ``margin`` moves gamma into the segment by ``margin * gamma`` (at most half the segment),
        so that answer wins outright; 0 keeps the left end, as the reference implementation does.
        """
        cand = np.unique(np.r_[0.0, self.lo])
        left = float(cand[int(np.argmax(self.hits(cand)))])
        ends = np.r_[self.lo[self.lo > left], self.hi[self.hi >= left]]
        right = float(ends.min()) if ends.size else np.inf
        return left + min(margin * left, (right - left) / 2)

    def curve(self, gamma: float, max_points: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """(gammas, hit@1) at every breakpoint up to twice the chosen gamma, thinned to ``max_points``."""
        ends = np.r_[0.0, self.lo, self.hi[np.isfinite(self.hi)]]
        upper = max(2.0 * gamma, float(np.quantile(ends, 0.5)) if ends.size else 1.0, 1e-3)
        pts = np.unique(ends[ends <= upper])
        if pts.size > max_points:
            pts = np.unique(np.r_[pts[np.linspace(0, pts.size - 1, max_points).astype(int)], gamma])
        pts = np.unique(np.r_[pts, gamma])
        return pts, self.hits(pts)


def select_gamma_m(
    val: QueryAnswers,
    fetch: Callable[[np.ndarray], np.ndarray],
    moving_docs: np.ndarray,
    base_moving: np.ndarray,
    directions: np.ndarray,
    static_s: np.ndarray,
    static_i: np.ndarray,
) -> MCurve:
    """Exact hit@1 intervals for NUDGE-M (scores s_j + gamma h_j with h_j = q . g_hat_j).

    Args:
        val: validation queries with answers.
        fetch: reads unit document rows (the unmoved base) by row, ``fetch(rows) -> (r, d)``.
        moving_docs: (m,) sorted rows of documents with training queries; ``base_moving`` (m, d) their unit
            rows and ``directions`` (m, d) their g_hat.
        static_s, static_i: (V, 2) best two scores/rows among documents that do not move.
    """
    los, his = [], []
    for v0 in range(0, len(val), VAL_BLOCK):
        rows = np.arange(v0, min(v0 + VAL_BLOCK, len(val)))
        qb = val.embeddings[rows].astype(np.float32, copy=False)
        s_mat = qb @ base_moving.T
        h_mat = qb @ directions.T
        p0, p1 = val.indptr[rows[0]], val.indptr[rows[-1] + 1]
        pair_r = val.pair_rows()[p0:p1] - v0
        pair_x = val.indices[p0:p1]
        pos = np.minimum(np.searchsorted(moving_docs, pair_x), max(moving_docs.size - 1, 0))
        is_moving = (moving_docs[pos] == pair_x) if moving_docs.size else np.zeros(pair_x.size, bool)
        s_x = np.zeros(pair_x.size, dtype=np.float32)
        if moving_docs.size:
            s_x[is_moving] = s_mat[pair_r[is_moving], pos[is_moving]]
        still = np.flatnonzero(~is_moving)
        if still.size:
            rows_x = np.asarray(fetch(pair_x[still]), dtype=np.float32)
            s_x[still] = np.einsum("ij,ij->i", qb[pair_r[still]], rows_x)
        h_x = np.where(is_moving, h_mat[pair_r, pos] if moving_docs.size else 0.0, 0.0).astype(np.float32)
        # best fixed competitor other than x itself
        first_is_x = static_i[rows][pair_r, 0] == pair_x
        u = np.where(first_is_x, static_s[rows][pair_r, 1], static_s[rows][pair_r, 0])
        step = max(1, _PAIR_TILE // max(moving_docs.size, 1))
        for a in range(0, pair_x.size, step):
            sl = slice(a, a + step)
            d = np.concatenate([h_x[sl, None] - h_mat[pair_r[sl]], h_x[sl, None]], axis=1)
            sd = np.concatenate([s_mat[pair_r[sl]] - s_x[sl, None], (u[sl] - s_x[sl])[:, None]], axis=1)
            lo, hi, ok = _feasible_interval(d, sd)
            los.append(lo[ok])
            his.append(hi[ok])
    return MCurve(np.concatenate(los) if los else np.zeros(0), np.concatenate(his) if his else np.zeros(0), len(val))


def _feasible_interval(d: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of constraints gamma * d >= sd (with gamma >= 0): the interval [lo, hi] and whether it is non-empty.

    ``sd`` may hold -inf (absent competitor), which never binds.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sd.astype(np.float64) / d
    pos, neg = d > 0, d < 0
    lo = np.maximum(np.max(np.where(pos, ratio, -np.inf), axis=1), 0.0)
    hi = np.min(np.where(neg, ratio, np.inf), axis=1)
    blocked = ((d == 0) & (sd > 0)).any(axis=1)
    return lo, hi, ~blocked & (lo <= hi)
