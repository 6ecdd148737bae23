"""``evaluate``: exact search followed by retrieval metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import metric_names, relevance_matrix, score_metric
from .queries import QueryAnswers
from .search import search

__all__ = ["evaluate", "DEFAULT_METRICS"]

DEFAULT_METRICS = ("recall@1", "recall@10", "ndcg@10", "mrr@10")


def evaluate(
    embeddings: np.ndarray,
    qa: QueryAnswers,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    similarity: str = "inner_product",
) -> dict[str, float]:
    """Mean of each metric over the queries of ``qa`` when searching ``embeddings`` (N, d).

    Metric names are ``recall@k``, ``hit@k``, ``mrr@k`` and ``ndcg@k``; use ``similarity="inner_product"``
    for NUDGE-M output and either for unit-norm vectors.
    """
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
