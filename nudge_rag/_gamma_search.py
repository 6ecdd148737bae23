"""Choosing gamma on validation queries without a (validation queries x documents) matrix.

Documents without training queries never move, so each validation query's best scores among them are
computed once, streamed in blocks (:func:`nudge_rag.search.static_topk`). Scores of moving documents are per-document
combinations of two precomputed score columns, so trying a gamma costs no new matrix product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._nudge import NGeometry
from .metrics import ideal_dcg, score_from_relevance
from .queries import QueryAnswers

__all__ = ["PairLookup", "select_gamma_n", "select_gamma_m", "MCurve"]

VAL_BLOCK = 256
# Upper bound on (validation pairs x moving documents) entries held at once by the NUDGE-M sweep.
_PAIR_TILE = 1 << 20
# The gamma grid is cut into this many stretches; candidates are pruned per stretch.
_GAMMA_CHUNKS = 12
# Mean candidates per query below which the whole grid is scored without cutting it into stretches.
_FEW_CANDIDATES = 24


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
    fetch: Callable[[np.ndarray], np.ndarray] | None = None,
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
        (G,) float64 metric summed over the validation queries at each gamma (divide by ``len(val)`` for the
        mean). Summing per-query values keeps exact counts (hit@k, recall@1) exact, so equal curves compare
        equal; ties in score rank the smaller document row first, as :func:`~nudge_rag.search.search` does.

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
        alpha, st_s, st_i = _scores_with_competitors(qb, geo.e, static_s[rows], static_i[rows], fetch, n_docs)
        beta = _dot32(qb, geo.z)
        radius = np.hypot(alpha, beta)
        ctx = _BlockContext(
            rows,
            st_s,
            st_i,
            lookup(rows[:, None], st_i),
            n_ans[rows],
            None if ideal is None else ideal[rows],
        )
        whole = _candidates(ctx.static_s, alpha, beta, radius, geo, gammas[0], gammas[-1], k)
        if whole.sum() <= _FEW_CANDIDATES * rows.size:  # pruning over the whole grid is tight enough
            totals += _score_candidates(ctx, whole, alpha, beta, c32, moving_docs, lookup, gammas, kind, k)
            continue
        for chunk in chunks:
            cand = _candidates(ctx.static_s, alpha, beta, radius, geo, gammas[chunk[0]], gammas[chunk[-1]], k)
            totals[chunk] += _score_candidates(ctx, cand, alpha, beta, c32, moving_docs, lookup, gammas[chunk], kind, k)
    return totals


def _candidates(
    static_s: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    radius: np.ndarray,
    geo: NGeometry,
    g_lo: float,
    g_hi: float,
    k: int,
) -> np.ndarray:
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
    static_i: np.ndarray  # (b, k) their document rows (-1 padding)
    static_rel: np.ndarray  # (b, k) their relevance
    n_ans: np.ndarray  # (b,)
    ideal: np.ndarray | None  # (b,) ideal DCG for nDCG


def _score_candidates(
    ctx: _BlockContext,
    cand: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    c32: np.ndarray,
    moving_docs: np.ndarray,
    lookup: PairLookup,
    gammas: np.ndarray,
    kind: str,
    k: int,
) -> np.ndarray:
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
        rows_all = np.concatenate([ctx.static_i[group], cand_doc], axis=1)
        sub_ans = ctx.n_ans[group]
        sub_ideal = None if ctx.ideal is None else ctx.ideal[group]
        step = max(1, (1 << 23) // (group.size * (width + k)))
        for g0 in range(0, gammas.size, step):
            a = np.maximum(shrink[g0 : g0 + step], cc[None])
            s = a * ca[None] + np.sqrt(np.maximum(1.0 - a * a, 0.0)) * cb[None]
            s[:, ~valid] = -np.inf
            n_g = s.shape[0]
            merged = np.concatenate([np.broadcast_to(st_s, (n_g, *st_s.shape)), s], axis=2)
            ranked = _ranked_relevance(
                merged.reshape(n_g * group.size, -1), np.tile(rows_all, (n_g, 1)), np.tile(rel_all, (n_g, 1)), k
            )
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


def _ranked_relevance(scores: np.ndarray, rows: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    """(V, k) relevance of the k best columns, best first; equal scores rank the smaller document row first.

    ``rows`` (V, w) are the document rows of the columns (-1 for padding, whose score is ``-inf``), so the
    ranking is exactly the one :func:`~nudge_rag.search.search` returns.
    """
    k = min(k, scores.shape[1])
    if k == 1:
        best = scores.max(axis=1, keepdims=True)
        big = np.iinfo(np.int64).max
        col = np.where(scores == best, np.where(rows < 0, big, rows), big).argmin(axis=1)
        return np.take_along_axis(rel, col[:, None], axis=1)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return np.take_along_axis(rel, order, axis=1)


# ---------------------------------------------------------------------------------------------- NUDGE-M


@dataclass
class MCurve:
    """The gammas at which each validation query ranks one of its answers first under NUDGE-M.

    One interval per (query, answer) pair: the gammas at which that answer ranks first, ties in score going
    to the smaller document row (the rule :func:`~nudge_rag.search.search` uses). Under that rule one
    document ranks first at any gamma, so the intervals of one query are disjoint and the number of intervals
    holding gamma is the number of queries hit: hit@1 never counts a query twice and never exceeds 1.

    Attributes:
        lo, hi: (n,) float64 ends (``hi`` may be ``inf``).
        lo_closed, hi_closed: (n,) bool, whether the end belongs to the interval.
        n_queries: number of validation queries.
        refine: optional ``refine(interval, side)`` giving an end ("lo"/"hi") recomputed from exact
            float64 dot products (independent of BLAS threading); used for the chosen gamma only.
    """

    lo: np.ndarray
    hi: np.ndarray
    lo_closed: np.ndarray
    hi_closed: np.ndarray
    n_queries: int
    refine: Callable[[int, str], float | None] | None = None

    def counts(self, gammas: np.ndarray) -> np.ndarray:
        """(G,) int64 number of validation queries hit at each of ``gammas``."""
        g = np.asarray(gammas, dtype=np.float64)
        lo_c, lo_o = np.sort(self.lo[self.lo_closed]), np.sort(self.lo[~self.lo_closed])
        hi_c, hi_o = np.sort(self.hi[self.hi_closed]), np.sort(self.hi[~self.hi_closed])
        started = np.searchsorted(lo_c, g, side="right") + np.searchsorted(lo_o, g, side="left")
        ended = np.searchsorted(hi_c, g, side="left") + np.searchsorted(hi_o, g, side="right")
        return (started - ended).astype(np.int64)

    def hits(self, gammas: np.ndarray) -> np.ndarray:
        """Mean validation hit@1 at each gamma of ``gammas``."""
        return self.counts(gammas) / self.n_queries

    def _points(self) -> np.ndarray:
        ends = np.r_[0.0, self.lo, self.hi[np.isfinite(self.hi)]]
        return np.unique(ends[ends >= 0])

    def best(self, margin: float = 1e-4) -> float:
        """A gamma maximising hit@1 (exact counts); 0 wins ties, then the leftmost optimal stretch.

        The count is constant on each breakpoint and on each open stretch between breakpoints. When the
        optimum starts at a breakpoint L that belongs to it, gamma = L + min(margin * L, half the stretch)
        (``margin=0`` keeps L, as the reference implementation does). When L itself does not belong to it
        (an answer there only ties a smaller row), gamma steps inside by max(margin, 1e-6) * L, or to the
        middle of the stretch when L is 0 (at most 1e-3 past the last breakpoint's zero).

        Optima that float32 vectors cannot reproduce are not candidates: isolated points other than 0, and
        stretches narrower than 1e-4 of their end (scores grow like gamma, so there rounding picks the winner).
        """
        pts = self._points()
        nxt = np.r_[pts[1:], np.inf]
        gaps = np.where(np.isfinite(nxt), (pts + nxt) / 2, pts + 1.0 + pts)
        at_pts, at_gaps = self.counts(pts), self.counts(gaps)
        wide = ~np.isfinite(nxt) | (nxt - pts >= _MIN_WIDTH * np.maximum(1.0, nxt))
        gap_ok = np.where(wide, at_gaps, -1)
        pt_ok = np.where((pts == 0) | ((at_gaps == at_pts) & wide), at_pts, -1)
        top = max(int(pt_ok.max()), int(gap_ok.max()))
        # candidates in order along the gamma axis: point 0, gap 0, point 1, gap 1, ...
        seq = np.column_stack([pt_ok, gap_ok]).ravel()
        first = int(np.flatnonzero(seq == top)[0])
        i, in_gap = divmod(first, 2)
        left, right = self._exact_end(float(pts[i])), float(nxt[i])
        if np.isfinite(right):
            right = self._exact_end(right)
        if not in_gap:
            if at_gaps[i] != top:  # an isolated optimal point
                return left
            return left + min(margin * left, (right - left) / 2)
        if left > 0:
            return left + min(max(margin, _OPEN_STEP) * left, (right - left) / 2)
        return right / 2 if np.isfinite(right) else 1e-3

    def _exact_end(self, value: float) -> float:
        """``value`` (an end of some interval) recomputed exactly when a refiner is available."""
        if self.refine is None or value == 0:
            return value
        for side, ends in (("lo", self.lo), ("hi", self.hi)):
            hit = np.flatnonzero(ends == value)
            if hit.size:
                exact = self.refine(int(hit[0]), side)
                # the exact value only replaces float32 rounding, never a different constraint
                if exact is not None and np.isfinite(exact) and abs(exact - value) <= 1e-4 * value:
                    return exact
                return value
        return value

    def curve(self, gamma: float, max_points: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """(gammas, hit@1) at every breakpoint up to twice the chosen gamma, thinned to ``max_points``."""
        ends = self._points()
        upper = max(2.0 * gamma, float(np.quantile(ends, 0.5)) if ends.size else 1.0, 1e-3)
        pts = np.unique(ends[ends <= upper])
        if pts.size > max_points:
            pts = np.unique(np.r_[pts[np.linspace(0, pts.size - 1, max_points).astype(int)], gamma])
        pts = np.unique(np.r_[pts, gamma])
        return pts, self.hits(pts)


# Relative step into an optimal stretch whose left end does not belong to it.
_OPEN_STEP = 1e-6
# Stretches of the hit@1 curve narrower than this (relative to their end) are left to float32 rounding.
_MIN_WIDTH = 1e-4


def select_gamma_m(
    val: QueryAnswers,
    fetch: Callable[[np.ndarray], np.ndarray],
    moving_docs: np.ndarray,
    base_moving: np.ndarray,
    directions: np.ndarray,
    static_s: np.ndarray,
    static_i: np.ndarray,
    *,
    n_docs: int | None = None,
) -> MCurve:
    """Exact hit@1 intervals for NUDGE-M (scores s_j + gamma h_j with h_j = q . g_hat_j).

    Args:
        val: validation queries with answers.
        fetch: reads unit document rows (the unmoved base) by row, ``fetch(rows) -> (r, d)``; used only to
            recompute the ends that decide gamma exactly.
        moving_docs: (m,) sorted rows of documents with training queries; ``base_moving`` (m, d) their unit
            rows and ``directions`` (m, d) their g_hat.
        static_s, static_i: (V, 2) best two scores/rows among documents that do not move (ties: smaller row
            first, as :class:`~nudge_rag.corpus.Corpus` promises).
        n_docs: number of corpus rows; competitor rows from N on (``nontrain_embeddings``) are not fetched.

    An answer that does not move ranks first only if it is the best fixed document; a moving answer x beats
    document j at gamma when (s_x - s_j) + gamma (h_x - h_j) > 0, or >= 0 when x < j.
    """
    parts: list[tuple[np.ndarray, ...]] = []
    m = moving_docs.size
    for v0 in range(0, len(val), VAL_BLOCK):
        rows = np.arange(v0, min(v0 + VAL_BLOCK, len(val)))
        qb = val.embeddings[rows].astype(np.float32, copy=False)
        s_mat, top_s, top_i = _scores_with_competitors(qb, base_moving, static_s[rows], static_i[rows], fetch, n_docs)
        h_mat = _dot32(qb, directions)
        p0, p1 = val.indptr[rows[0]], val.indptr[rows[-1] + 1]
        pair_r = val.pair_rows()[p0:p1] - v0
        pair_x = val.indices[p0:p1]
        pos = np.minimum(np.searchsorted(moving_docs, pair_x), max(m - 1, 0))
        is_moving = (moving_docs[pos] == pair_x) if m else np.zeros(pair_x.size, bool)
        x_is_top = ~is_moving & (top_i[pair_r, 0] == pair_x)
        keep = np.flatnonzero(is_moving | x_is_top)  # a fixed answer below the best fixed document never wins
        pair_r, pair_x, pos, is_moving, x_is_top = (
            pair_r[keep],
            pair_x[keep],
            pos[keep],
            is_moving[keep],
            x_is_top[keep],
        )
        s_x = np.where(is_moving, s_mat[pair_r, pos] if m else 0.0, top_s[pair_r, 0]).astype(np.float64)
        h_x = np.where(is_moving, h_mat[pair_r, pos] if m else 0.0, 0.0).astype(np.float64)
        comp = x_is_top.astype(np.int64)  # the best fixed document other than x
        u = top_s[pair_r, comp].astype(np.float64)
        u_row = top_i[pair_r, comp]
        step = max(1, _PAIR_TILE // (m + 1))
        for a0 in range(0, pair_x.size, step):
            sl = slice(a0, a0 + step)
            r, x = pair_r[sl], pair_x[sl]
            with np.errstate(invalid="ignore"):
                a = np.concatenate([s_x[sl, None] - s_mat[r], (s_x[sl] - u[sl])[:, None]], axis=1)
            b = np.concatenate([h_x[sl, None] - h_mat[r], h_x[sl, None]], axis=1)
            weak = np.concatenate([x[:, None] <= moving_docs[None, :], (x < u_row[sl])[:, None]], axis=1)
            iv = _row_rule_interval(a, b, weak)
            ok = iv[-1]
            parts.append(
                (
                    *(t[ok] for t in iv[:-1]),
                    (r + v0)[ok],
                    x[ok],
                    np.where(is_moving[sl], pos[sl], -1)[ok],
                    u_row[sl][ok],
                    u[sl][ok],
                )
            )
    if not parts:
        z = np.zeros(0)
        return MCurve(z, z, z.astype(bool), z.astype(bool), len(val))
    lo, hi, lo_closed, hi_closed, lo_col, hi_col, q_row, x_row, x_pos, c_row, c_s = (
        np.concatenate(col) for col in zip(*parts)
    )
    exact = _ExactEnds(val, fetch, base_moving, directions, (q_row, x_row, x_pos, c_row, c_s), lo_col, hi_col, n_docs)
    return MCurve(lo, hi, lo_closed, hi_closed, len(val), exact)


def _scores_with_competitors(
    qb: np.ndarray,
    moving: np.ndarray,
    comp_s: np.ndarray,
    comp_i: np.ndarray,
    fetch: Callable[[np.ndarray], np.ndarray] | None,
    n_docs: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of queries ``qb`` (b, d) against the moving rows (m, d) and their fixed competitors, consistently.

    The competitors' scores are recomputed in the same matrix product as the moving documents', so a moving
    document and an identical fixed one (a duplicate) get bit-identical scores and the row rule decides, as it
    does in :func:`~nudge_rag.search.search`; BLAS products of different shapes may round differently. Returns
    (b, m) float32 moving scores and the (b, c) competitor scores and rows, re-sorted (score desc, row asc).
    Competitors that cannot be fetched (rows >= ``n_docs``: ``nontrain_embeddings``) keep their scores.
    """
    if fetch is None:
        return _dot32(qb, moving), comp_s, comp_i
    limit = np.iinfo(np.int64).max if n_docs is None else int(n_docs)
    ok = (comp_i >= 0) & (comp_i < limit)
    uniq = np.unique(comp_i[ok])
    vecs = np.asarray(fetch(uniq), dtype=np.float32).reshape(uniq.size, moving.shape[1])
    both = _dot32(qb, np.concatenate([moving.astype(np.float32, copy=False), vecs]))
    m = moving.shape[0]
    r, c = np.nonzero(ok)
    comp_s = comp_s.astype(np.float32, copy=True)
    comp_s[r, c] = both[r, m + np.searchsorted(uniq, comp_i[r, c])]
    order = np.lexsort((comp_i, -comp_s), axis=1)
    return both[:, :m], np.take_along_axis(comp_s, order, axis=1), np.take_along_axis(comp_i, order, axis=1)


def _dot32(qb: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(b, r) float32 ``qb @ rows.T`` computed in float64 and rounded: the same value for a document wherever
    it sits in the product (float32 BLAS kernels round by position), equal to :func:`search`'s exact scores."""
    return (qb.astype(np.float64) @ rows.astype(np.float64).T).astype(np.float32)


def _row_rule_interval(a: np.ndarray, b: np.ndarray, weak: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row, the set of gamma >= 0 meeting every constraint a + gamma b > 0 (>= 0 where ``weak``).

    ``a`` (p, c) float64 may hold +inf (an absent competitor, never binding). Returns lo, hi (float64),
    lo_closed, hi_closed (bool), lo_col, hi_col (the binding column, -1 when none) and ok (non-empty).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = -a / b
    up, down = b > 0, b < 0
    lower = np.where(up, ratio, -np.inf)
    upper = np.where(down, ratio, np.inf)
    lo_col, hi_col = lower.argmax(axis=1), upper.argmin(axis=1)
    low = np.take_along_axis(lower, lo_col[:, None], axis=1)[:, 0]
    high = np.take_along_axis(upper, hi_col[:, None], axis=1)[:, 0]
    lo_strict = (up & (lower == low[:, None]) & ~weak).any(axis=1)
    hi_strict = (down & (upper == high[:, None]) & ~weak).any(axis=1)
    flat_fail = ((b == 0) & ((a < 0) | ((a == 0) & ~weak))).any(axis=1)
    lo = np.maximum(low, 0.0)
    lo_closed = ~(lo_strict & (low >= 0))
    hi_closed = ~hi_strict
    ok = ~flat_fail & ((lo < high) | ((lo == high) & lo_closed & hi_closed))
    return lo, high, lo_closed, hi_closed, np.where(low > 0, lo_col, -1), np.where(np.isfinite(high), hi_col, -1), ok


class _ExactEnds:
    """Recompute an interval end from float64 dot products of the float32 vectors.

    BLAS products may round differently with the thread count or block shape; the gamma NudgeM returns is
    recomputed here with a fixed-order float64 reduction, so it is identical for any threading.
    """

    def __init__(
        self,
        val: QueryAnswers,
        fetch: Callable[[np.ndarray], np.ndarray],
        base_moving: np.ndarray,
        directions: np.ndarray,
        pairs: tuple[np.ndarray, ...],
        lo_col: np.ndarray,
        hi_col: np.ndarray,
        n_docs: int | None,
    ) -> None:
        self.val, self.fetch, self.base, self.dirs = val, fetch, base_moving, directions
        self.q_row, self.x_row, self.x_pos, self.c_row, self.c_s = pairs
        self.cols = {"lo": lo_col, "hi": hi_col}
        self.m = base_moving.shape[0]
        self.n_docs = np.iinfo(np.int64).max if n_docs is None else int(n_docs)

    def _line(self, q: np.ndarray, pos: int, row: int) -> tuple[float, float]:
        """(s, h) of a document: moving index ``pos`` or, with pos < 0, the fixed document ``row``."""
        if pos >= 0:
            return _dot64(q, self.base[pos]), _dot64(q, self.dirs[pos])
        return _dot64(q, np.asarray(self.fetch(np.array([row], dtype=np.int64)), dtype=np.float32)[0]), 0.0

    def __call__(self, k: int, side: str) -> float | None:
        """The ``side`` end of interval ``k`` recomputed, or None when it has no binding constraint."""
        col = int(self.cols[side][k])
        if col < 0:
            return None
        q = np.asarray(self.val.embeddings[self.q_row[k]], dtype=np.float32)
        s_x, h_x = self._line(q, int(self.x_pos[k]), int(self.x_row[k]))
        if col < self.m:
            s_j, h_j = self._line(q, col, -1)
        elif 0 <= int(self.c_row[k]) < self.n_docs:
            s_j, h_j = self._line(q, -1, int(self.c_row[k]))
        else:  # a competitor outside the corpus (nontrain_embeddings): its score as the corpus gave it
            s_j, h_j = float(self.c_s[k]), 0.0
        if h_x == h_j:
            return None
        return max(-(s_x - s_j) / (h_x - h_j), 0.0)


def _dot64(a: np.ndarray, b: np.ndarray) -> float:
    """a . b in float64 with numpy's fixed-order pairwise sum (no BLAS, so no thread dependence)."""
    return float(np.sum(a.astype(np.float64) * b.astype(np.float64)))
