"""The NUDGE updates: per-document training aggregates and the closed-form NUDGE-M / NUDGE-N moves.

Notation (paper, arXiv 2409.02343): e_i unit document vector, g_i the sum of the training queries that list
document i as an answer, g_hat = g / |g|, c_i = e_i . g_hat_i, z_i the unit component of g_i orthogonal to e_i.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .queries import QueryAnswers

__all__ = ["TrainAggregate", "aggregate_training", "NGeometry", "n_geometry", "nudge_n_rows", "nudge_m_rows"]

# Below this |g_perp| / |g| the training direction counts as parallel to the document: it cannot move.
PARALLEL_TOL = 1e-6
_CHUNK = 8192


@dataclass
class TrainAggregate:
    """Documents with training queries and the sums of those queries.

    Attributes:
        docs: (M,) int64 sorted document rows with at least one training query.
        sums: (M, d) float64 sums g_i of their training query embeddings.
    """

    docs: np.ndarray
    sums: np.ndarray

    def merge(self, other: TrainAggregate) -> TrainAggregate:
        """Aggregate of both sets of pairs (sums of shared documents are added)."""
        docs = np.union1d(self.docs, other.docs)
        sums = np.zeros((docs.size, self.sums.shape[1]), dtype=np.float64)
        sums[np.searchsorted(docs, self.docs)] += self.sums
        sums[np.searchsorted(docs, other.docs)] += other.sums
        return TrainAggregate(docs, sums)

    def extend(self, train: QueryAnswers) -> TrainAggregate:
        """This aggregate with the pairs of ``train`` added after the ones already summed.

        Bit for bit the aggregate of all pairs in order (what a refit on the concatenated queries computes),
        because every sum is accumulated one query at a time, in pair order.
        """
        docs = np.union1d(self.docs, train.indices)
        sums = np.zeros((docs.size, self.sums.shape[1]), dtype=np.float64)
        sums[np.searchsorted(docs, self.docs)] = self.sums
        _accumulate(sums, np.searchsorted(docs, train.indices), train)
        return TrainAggregate(docs, sums)


def aggregate_training(train: QueryAnswers) -> TrainAggregate:
    """Sum the training query embeddings per answer document, streamed over chunks of pairs.

    Each sum is accumulated in float64 one query at a time in pair order (``np.add.at`` is unbuffered and
    sequential), so sums extended later by :meth:`TrainAggregate.extend` equal a refit's exactly.
    """
    docs = np.unique(train.indices)
    sums = np.zeros((docs.size, train.dim), dtype=np.float64)
    _accumulate(sums, np.searchsorted(docs, train.indices), train)
    return TrainAggregate(docs, sums)


def _accumulate(sums: np.ndarray, slots: np.ndarray, train: QueryAnswers) -> None:
    """sums[slots[p]] += embedding of the query of pair p, for p in order (in place, float64).

    Vectorised by rank: step t adds every document's t-th query at once (slots are distinct within a step),
    so each sum is built one query at a time in pair order whatever the chunking.
    """
    if slots.size == 0:
        return
    rows = train.pair_rows()
    order = np.argsort(slots, kind="stable")
    slot_s, row_s = slots[order], rows[order]
    starts = np.flatnonzero(np.r_[True, slot_s[1:] != slot_s[:-1]])
    rank = np.arange(slot_s.size) - np.repeat(starts, np.diff(np.r_[starts, slot_s.size]))
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(rank))]
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        for c0 in range(t0, t1, _CHUNK):
            pick = by_rank[c0 : min(c0 + _CHUNK, t1)]
            sums[slot_s[pick]] += train.embeddings[row_s[pick]]


@dataclass
class NGeometry:
    """Per-document quantities of NUDGE-N for documents that can move.

    Attributes:
        rows: (m,) positions (into the aggregate) of the documents that can move.
        e: (m, d) float32 unit document vectors.
        z: (m, d) float32 unit directions orthogonal to e (towards g).
        c: (m,) float64 cosine between e and g.
    """

    rows: np.ndarray
    e: np.ndarray
    z: np.ndarray
    c: np.ndarray

    def cos_theta(self, gamma: float) -> np.ndarray:
        """(m,) coordinate along e of the moved vectors: max(1 - gamma/2, c)."""
        return np.maximum(1.0 - gamma / 2.0, self.c)

    def vectors(self, gamma: float) -> np.ndarray:
        """(m, d) float32 moved unit vectors e' = a e + sqrt(1 - a^2) z with a = max(1 - gamma/2, c)."""
        a = self.cos_theta(gamma)
        b = np.sqrt(np.clip(1.0 - a * a, 0.0, None))
        return (a[:, None] * self.e + b[:, None] * self.z).astype(np.float32)


def n_geometry(base: np.ndarray, sums: np.ndarray, *, move_opposed: bool = False) -> NGeometry:
    """NUDGE-N geometry of the documents with unit rows ``base`` (M, d) and training sums ``sums`` (M, d).

    A document moves iff g_i is non-zero, not parallel to e_i, and (unless ``move_opposed``) g_i . e_i >= 0.
    A document whose training queries point away from it (g . e < 0) is left in place by default: its
    aggregate disagrees with its own content, which is more often a labelling error than a signal.
    """
    e = base.astype(np.float64)
    v = np.einsum("ij,ij->i", sums, e)
    gnorm = np.linalg.norm(sums, axis=1)
    perp = sums - v[:, None] * e
    pnorm = np.linalg.norm(perp, axis=1)
    movable = (gnorm > 0) & (pnorm > PARALLEL_TOL * gnorm)
    if not move_opposed:
        movable &= v >= 0
    rows = np.flatnonzero(movable)
    z = perp[rows] / pnorm[rows, None]
    c = np.clip(v[rows] / gnorm[rows], -1.0, 1.0)
    return NGeometry(rows, base[rows].astype(np.float32), z.astype(np.float32), c)


def nudge_n_rows(
    base: np.ndarray, sums: np.ndarray, gamma: float, *, move_opposed: bool = False
) -> tuple[np.ndarray, int]:
    """NUDGE-N update of rows ``base`` (M, d) with sums (M, d): (new float32 rows, number that moved)."""
    geo = n_geometry(base, sums, move_opposed=move_opposed)
    out = base.astype(np.float32, copy=True)
    if gamma > 0 and geo.rows.size:
        out[geo.rows] = geo.vectors(gamma)
    return out, int(geo.rows.size) if gamma > 0 else 0


def nudge_m_rows(base: np.ndarray, sums: np.ndarray, gamma: float) -> tuple[np.ndarray, int]:
    """NUDGE-M update e' = e + gamma g_hat of rows ``base`` (M, d): (new float32 rows, number that moved)."""
    gnorm = np.linalg.norm(sums, axis=1)
    moving = gnorm > 0
    out = base.astype(np.float32, copy=True)
    if gamma > 0:
        out[moving] += (gamma * sums[moving] / gnorm[moving, None]).astype(np.float32)
    return out, int(moving.sum()) if gamma > 0 else 0


def m_directions(sums: np.ndarray) -> np.ndarray:
    """(M, d) float32 unit directions g_hat (zero rows stay zero)."""
    gnorm = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(gnorm == 0, 1, gnorm)).astype(np.float32)
