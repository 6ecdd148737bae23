"""Exact top-k search by blocked matrix products: never holds a (queries x documents) matrix."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._checks import as_matrix

__all__ = ["search", "static_topk", "topk_merge", "RunningTopK", "SIMILARITIES", "exact_scores", "refine_topk"]

SIMILARITIES = ("inner_product", "cosine")

# Documents scored per block; a (QUERY_BLOCK x DOC_BLOCK) float32 tile is 16 MiB.
DOC_BLOCK = 16_384
QUERY_BLOCK = 256


def topk_merge(scores: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of each row of ``scores`` (Q, m) with matching ``index`` (Q, m), sorted best first.

    Ties in score are ordered by the smaller index, also at the cut-off: of several entries tied for the k-th
    place, the smaller indices are kept (so the result never depends on the block layout).
    """
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        keep = _top_columns(scores, index, k)
        scores = np.take_along_axis(scores, keep, axis=1)
        index = np.take_along_axis(index, keep, axis=1)
    order = np.lexsort((index, -scores), axis=1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(index, order, axis=1)


# Extra candidates kept by the blocked float32 pass, re-scored exactly before the final top k is cut.
REFINE_PAD = 8


def exact_scores(queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(b, c) float32 scores of ``queries`` (b, d) against ``rows`` (b, c, d): the float64 dot product rounded.

    The sum runs in float64 in a fixed order (no BLAS), so a document scores the same wherever it sits in a
    block and with any thread count; identical vectors tie exactly and the row rule decides.
    """
    q64 = queries.astype(np.float64)[:, None, :]
    return np.sum(rows.astype(np.float64) * q64, axis=2).astype(np.float32)


def refine_topk(
    queries: np.ndarray, top_s: np.ndarray, top_i: np.ndarray, vectors: Callable[[np.ndarray], np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of candidates (b, c) ``top_s``/``top_i`` after re-scoring them with :func:`exact_scores`.

    ``vectors(rows)`` returns the (r, d) vectors of document rows (r,); entries with row -1 stay ``-inf``.
    Ties (equal exact scores) go to the smaller row.
    """
    valid = top_i >= 0
    rows = np.where(valid, top_i, 0)
    uniq, inv = np.unique(rows, return_inverse=True)
    vecs = np.asarray(vectors(uniq), dtype=np.float32)[inv.reshape(rows.shape)]
    scores = np.where(valid, exact_scores(queries.astype(np.float32, copy=False), vecs), -np.inf).astype(np.float32)
    return topk_merge(scores, top_i, k)


def _top_columns(scores: np.ndarray, index: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) columns of the k best entries per row, ties at the k-th score going to the smaller index."""
    part = np.argpartition(-scores, k - 1, axis=1)
    kth = np.take_along_axis(scores, part[:, k - 1 : k], axis=1)
    better = scores > kth
    tied = scores == kth
    need = k - better.sum(axis=1)
    rows = np.flatnonzero(tied.sum(axis=1) > need)  # rows where argpartition chose among tied entries
    if rows.size == 0:
        return part[:, :k]
    chosen = better | tied
    width = scores.shape[1]
    big = np.iinfo(np.int64).max
    key = np.where(tied[rows], index[rows].astype(np.int64) * width + np.arange(width), big)
    cut = np.take_along_axis(np.sort(key, axis=1), (need[rows] - 1)[:, None], axis=1)
    chosen[rows] = better[rows] | (tied[rows] & (key <= cut))
    return np.nonzero(chosen)[1].reshape(scores.shape[0], k)


class RunningTopK:
    """Top-k of each query row over score blocks pushed one after another.

    After the first block, only entries above a row's current k-th best score are merged, so a block costs
    one comparison per score instead of a partial sort. Blocks must come in increasing document order (an
    entry that only ties the current k-th best loses to it, being a larger row).
    """

    def __init__(self, n_rows: int, k: int) -> None:
        self.k = k
        self.scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
        self.index = np.full((n_rows, k), -1, dtype=np.int64)

    def push(self, block: np.ndarray, columns: np.ndarray) -> None:
        """Merge a (n_rows, m) float32 score block whose column j is document ``columns[j]``."""
        if block.shape[1] == 0:
            return
        kth = self.scores[:, -1:]
        mask = block > kth
        counts = mask.sum(axis=1)
        widest = int(counts.max())
        if widest == 0:
            return
        if widest > 4 * self.k + 256:  # many newcomers: a partial sort of the block is cheaper
            top_s, top_i = topk_merge(block, np.broadcast_to(columns, block.shape), self.k)
        else:
            rows, cols = np.nonzero(mask)
            slot = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
            top_s = np.full((block.shape[0], widest), -np.inf, dtype=np.float32)
            top_i = np.full((block.shape[0], widest), -1, dtype=np.int64)
            top_s[rows, slot] = block[rows, cols]
            top_i[rows, slot] = columns[cols]
        self.scores, self.index = topk_merge(
            np.concatenate([self.scores, top_s], axis=1), np.concatenate([self.index, top_i], axis=1), self.k
        )


def search(
    queries: np.ndarray,
    embeddings: np.ndarray,
    k: int = 10,
    *,
    similarity: str = "inner_product",
    doc_block: int = DOC_BLOCK,
    query_block: int = QUERY_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-nearest documents for each query.

    Args:
        queries: (Q, d) float32/float64 query vectors.
        embeddings: (N, d) float32/float64 document vectors.
        k: results per query (capped at N).
        similarity: ``"inner_product"`` or ``"cosine"`` (cosine normalises both sides per block).
        doc_block, query_block: tile sizes of the streamed computation.

    Returns:
        ``(scores, indices)``: (Q, k) float32 similarities, best first (ties: smaller row first), and
        (Q, k) int64 document rows. Candidates found by blocked float32 products are re-scored exactly
        (:func:`exact_scores`), so results do not depend on block sizes or BLAS threading.
    """
    docs = as_matrix(embeddings, "embeddings")
    qs = as_matrix(queries, "queries", dim=docs.shape[1], allow_empty=True)
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    n = docs.shape[0]
    k = min(int(k), n)
    out_s = np.empty((qs.shape[0], k), dtype=np.float32)
    out_i = np.empty((qs.shape[0], k), dtype=np.int64)

    def vectors(rows: np.ndarray) -> np.ndarray:
        v = docs[rows].astype(np.float32, copy=False)
        return unit_rows(v) if similarity == "cosine" else v

    for q0 in range(0, qs.shape[0], query_block):
        qb = qs[q0 : q0 + query_block].astype(np.float32, copy=False)
        if similarity == "cosine":
            qb = unit_rows(qb)
        top = RunningTopK(qb.shape[0], min(k + REFINE_PAD, n))
        for d0 in range(0, n, doc_block):
            db = docs[d0 : d0 + doc_block].astype(np.float32, copy=False)
            if similarity == "cosine":
                db = unit_rows(db)
            top.push(qb @ db.T, np.arange(d0, d0 + db.shape[0], dtype=np.int64))
        s, i = refine_topk(qb, top.scores, top.index, vectors, k)
        out_s[q0 : q0 + qb.shape[0]] = s
        out_i[q0 : q0 + qb.shape[0]] = i
    return out_s, out_i


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
    for v0 in range(0, queries.shape[0], QUERY_BLOCK):
        qb = queries[v0 : v0 + QUERY_BLOCK].astype(np.float32, copy=False)
        top = RunningTopK(qb.shape[0], k + REFINE_PAD)
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
        s, i = refine_topk(qb, top.scores, top.index, lambda r: _rows_of(docs, extra, r), k)
        out_s[v0 : v0 + qb.shape[0]] = s
        out_i[v0 : v0 + qb.shape[0]] = i
    return out_s, out_i


def _rows_of(docs: np.ndarray, extra: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """float32 vectors of corpus rows (< N) and of ``extra`` rows (N + j, unit-normalised as scored)."""
    n = docs.shape[0]
    out = np.empty((rows.size, docs.shape[1]), dtype=np.float32)
    inside = rows < n
    out[inside] = docs[rows[inside]]
    if extra is not None and (~inside).any():
        out[~inside] = unit_rows(extra[rows[~inside] - n].astype(np.float32, copy=False))
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero); returns a new array."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms).astype(x.dtype, copy=False)
