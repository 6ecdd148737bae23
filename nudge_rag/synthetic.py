"""Synthetic structured retrieval data for tests and benchmarks: clustered documents, noisy queries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .queries import QueryAnswers

__all__ = ["SyntheticData", "make_synthetic"]


@dataclass
class SyntheticData:
    """Documents (N, d) float32 unit rows and train/val/test :class:`QueryAnswers` (one answer each)."""

    documents: np.ndarray
    train: QueryAnswers
    val: QueryAnswers
    test: QueryAnswers


def make_synthetic(
    n_docs: int = 20_000,
    n_train: int = 10_000,
    n_val: int = 1_000,
    n_test: int = 1_000,
    dim: int = 384,
    *,
    docs_per_cluster: int = 50,
    answered_fraction: float = 0.2,
    shift: float = 1.0,
    noise: float = 2.0,
    seed: int = 0,
) -> SyntheticData:
    """Clustered unit documents; each query is a noisy copy of its answer moved by a per-document shift.

    Documents lie in tight clusters, so near neighbours compete. Queries are drawn for a random
    ``answered_fraction`` of the documents (Zipf-like popularity); a query for document i is
    ``normalise(e_i + shift * u_i + noise * n)`` with a fixed unit offset ``u_i`` per document (the way its
    users phrase questions) and fresh Gaussian noise ``n`` of unit expected norm. The offset is what
    NUDGE can learn from training queries; base retrieval cannot know it.
    """
    rng = np.random.default_rng(seed)
    n_clusters = max(1, n_docs // docs_per_cluster)
    centers = _unit(rng.standard_normal((n_clusters, dim), dtype=np.float32))
    docs = np.empty((n_docs, dim), dtype=np.float32)
    for d0 in range(0, n_docs, 65_536):  # bounded temporaries for large N
        m = min(65_536, n_docs - d0)
        spread = 0.35 * rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        block = centers[rng.integers(0, n_clusters, m)] + spread
        docs[d0 : d0 + m] = _unit(block)
    n_answered = max(1, int(answered_fraction * n_docs))
    answered = rng.choice(n_docs, n_answered, replace=False)
    popularity = 1.0 / np.arange(1, n_answered + 1) ** 0.5
    popularity /= popularity.sum()
    offsets = _unit(rng.standard_normal((n_answered, dim), dtype=np.float32))

    def queries(n: int) -> QueryAnswers:
        pick = rng.choice(n_answered, n, p=popularity)
        noise_vec = noise * rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim)
        q = _unit(docs[answered[pick]] + shift * offsets[pick] + noise_vec)
        return QueryAnswers.from_lists(q, answered[pick, None].tolist())

    return SyntheticData(docs, queries(n_train), queries(n_val), queries(n_test))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
