"""``evaluate``: exact search followed by retrieval metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._checks import as_matrix
from .metrics import metric_names, relevance_matrix, score_metric
from .queries import QueryAnswers
from .search import search

__all__ = ["evaluate", "DEFAULT_METRICS"]

DEFAULT_METRICS = ("recall@1", "recall@10", "ndcg@10", "mrr@10")


def evaluate(
    embeddings: np.ndarray,
    qa: QueryAnswers,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    *,
    similarity: str = "inner_product",
) -> dict[str, float]:
    """Mean of each metric over the queries of ``qa`` when searching ``embeddings`` (N, d).

    Metric names are ``recall@k``, ``hit@k``, ``mrr@k`` and ``ndcg@k`` (a single name may be passed as a
    string); use ``similarity="inner_product"`` for NUDGE-M output and either for unit-norm vectors.
    ``embeddings`` may be any 2-D float array-like (a list of rows too, as for :func:`search`).
    """
    if not isinstance(qa, QueryAnswers):
        raise TypeError(f"qa must be a QueryAnswers, got {type(qa).__name__}")
    embeddings = as_matrix(embeddings, "embeddings")
    parsed = metric_names(metrics)
    if not parsed:
        raise ValueError("metrics must name at least one metric")
    qa.check_documents(embeddings.shape[0], "qa")
    k = min(max(k for _, _, k in parsed), embeddings.shape[0])
    _, idx = search(qa.embeddings, embeddings, k, similarity=similarity)
    rel = relevance_matrix(idx, qa)
    if rel.shape[1] < max(k for _, _, k in parsed):
        rel = np.pad(rel, ((0, 0), (0, max(k for _, _, k in parsed) - rel.shape[1])))
    return {name: float(score_metric(kind, rel, qa, k).mean()) for name, kind, k in parsed}
