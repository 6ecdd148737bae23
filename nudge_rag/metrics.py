"""Retrieval metrics on ranked result lists, vectorised over queries.

Every function takes ``retrieved``, a (Q, k') int array of document rows ranked best first (k' >= k), and
the :class:`~nudge_rag.queries.QueryAnswers` holding the relevant documents, and returns a (Q,) float64
array of per-query scores in [0, 1]. Gains in nDCG are linear in the graded relevance (as trec_eval).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from .queries import QueryAnswers

__all__ = [
    "relevance_matrix",
    "recall_at_k",
    "hit_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "parse_metric",
    "score_metric",
    "metric_names",
    "score_from_relevance",
    "ideal_dcg",
    "METRICS",
]


def relevance_matrix(retrieved: np.ndarray, qa: QueryAnswers) -> np.ndarray:
    """(Q, k) float32 relevance of each retrieved document (0 where it is not an answer)."""
    retrieved = np.asarray(retrieved)
    if retrieved.ndim != 2 or retrieved.shape[0] != len(qa):
        raise ValueError(f"retrieved must have shape ({len(qa)}, k), got {retrieved.shape}")
    if retrieved.size == 0:
        return np.zeros(retrieved.shape, dtype=np.float32)
    base = int(max(retrieved.max(), qa.max_index())) + 1
    keys = qa.pair_rows() * base + qa.indices
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    probe = np.arange(len(qa), dtype=np.int64)[:, None] * base + retrieved.astype(np.int64)
    pos = np.searchsorted(keys, probe)
    pos_c = np.minimum(pos, keys.size - 1)
    found = (pos < keys.size) & (keys[pos_c] == probe) & (retrieved >= 0)
    return np.where(found, qa.relevance[order][pos_c], 0).astype(np.float32)


def _head(rel: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if rel.shape[1] < k:
        raise ValueError(f"need at least {k} retrieved documents per query, got {rel.shape[1]}")
    return rel[:, :k]


def recall_at_k(retrieved: np.ndarray, qa: QueryAnswers, k: int) -> np.ndarray:
    """Relevant documents in the top k divided by min(|answers|, k)."""
    return score_metric("recall", relevance_matrix(retrieved, qa), qa, k)


def hit_at_k(retrieved: np.ndarray, qa: QueryAnswers, k: int) -> np.ndarray:
    """1 when any relevant document is in the top k."""
    return score_metric("hit", relevance_matrix(retrieved, qa), qa, k)


def mrr_at_k(retrieved: np.ndarray, qa: QueryAnswers, k: int) -> np.ndarray:
    """Reciprocal rank of the first relevant document in the top k (0 if none)."""
    return score_metric("mrr", relevance_matrix(retrieved, qa), qa, k)


def ndcg_at_k(retrieved: np.ndarray, qa: QueryAnswers, k: int) -> np.ndarray:
    """Normalised discounted cumulative gain at k with linear graded gains."""
    return score_metric("ndcg", relevance_matrix(retrieved, qa), qa, k)


def _mrr(rel: np.ndarray) -> np.ndarray:
    hit = rel > 0
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), 1.0 / (first + 1), 0.0)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ideal_dcg(qa: QueryAnswers, k: int) -> np.ndarray:
    """(Q,) best achievable DCG at k: each query's relevances sorted descending."""
    rows = qa.pair_rows()
    order = np.lexsort((-qa.relevance, rows))
    rank = np.arange(qa.n_pairs) - np.repeat(qa.indptr[:-1], np.diff(qa.indptr))
    keep = rank < k
    gains = qa.relevance[order][keep] * _discounts(k)[rank[keep]]
    return np.bincount(rows[keep], weights=gains, minlength=len(qa))


def _ndcg(rel: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    dcg = (rel * _discounts(rel.shape[1])).sum(axis=1)
    return dcg / ideal


METRICS: dict[str, Callable[[np.ndarray, QueryAnswers, int], np.ndarray]] = {
    "recall": recall_at_k,
    "hit": hit_at_k,
    "mrr": mrr_at_k,
    "ndcg": ndcg_at_k,
}

_NAME = re.compile(r"^(recall|hit|mrr|ndcg)@([1-9][0-9]*)$")


def parse_metric(name: str) -> tuple[str, int]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)``; raise on an unknown name."""
    m = _NAME.match(str(name).strip().lower())
    if not m:
        raise ValueError(f"unknown metric {name!r}; use one of recall@k, hit@k, mrr@k, ndcg@k (e.g. 'ndcg@10')")
    return m.group(1), int(m.group(2))


def score_metric(kind: str, rel: np.ndarray, qa: QueryAnswers, k: int) -> np.ndarray:
    """Per-query score of metric ``kind`` from a precomputed (Q, >=k) relevance matrix."""
    ideal = ideal_dcg(qa, k) if kind == "ndcg" else None
    return score_from_relevance(kind, _head(rel, k), np.diff(qa.indptr), ideal)


def score_from_relevance(
    kind: str, rel: np.ndarray, n_answers: np.ndarray, ideal: np.ndarray | None = None
) -> np.ndarray:
    """Per-query metric from ranked relevances ``rel`` (Q, k), answer counts (Q,) and, for nDCG, ideal DCG (Q,)."""
    k = rel.shape[1]
    if kind == "recall":
        return (rel > 0).sum(axis=1) / np.minimum(n_answers, k)
    if kind == "hit":
        return np.asarray((rel > 0).any(axis=1), dtype=np.float64)
    if kind == "mrr":
        return _mrr(rel)
    if kind == "ndcg":
        if ideal is None:
            raise ValueError("nDCG needs the ideal DCG of each query")
        return _ndcg(rel, ideal)
    raise ValueError(f"unknown metric kind {kind!r}")


def metric_names(metrics: str | Sequence[str]) -> list[tuple[str, str, int]]:
    """Validated ``(name, kind, k)`` triples; a single name given as a string is one metric."""
    if isinstance(metrics, str):
        metrics = [metrics]
    return [(m, *parse_metric(m)) for m in metrics]
