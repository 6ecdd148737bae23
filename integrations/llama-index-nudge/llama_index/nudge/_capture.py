"""The documents an engine fits on: node ids and vectors as the store holds them (nodes without one are
embedded with the base model in batches), and which of them a fit must rewrite."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, MetadataMode

from llama_index.nudge._stores import COSINE

__all__ = ["Captured", "check_unique", "embed_missing", "rows_to_write", "node_text"]

# A stored vector counts as unchanged when it differs from the target by less than this (relative L2).
_SAME_TOL = 1e-6


def node_text(node: BaseNode) -> str:
    """The text a node is embedded from."""
    return node.get_content(metadata_mode=MetadataMode.EMBED)


def check_unique(ids: Sequence[str], what: str) -> None:
    """``ValueError`` naming the first node id that ``ids`` holds twice."""
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ValueError(f"{what} hold node id {dup!r} more than once")


class Captured:
    """Captured documents: parallel lists over the solver rows."""

    def __init__(self, node_ids, store_ids, stored, vectors, missing, get_nodes) -> None:
        self.node_ids: list[str] = list(node_ids)
        self.store_ids: list[str] = list(store_ids)
        self.stored: list[Any] = list(stored)  # as the store holds them (None: no vector)
        self.vectors: np.ndarray = vectors  # (N, d) float32, missing ones embedded
        self.missing: np.ndarray = np.asarray(missing, dtype=bool)
        self._get_nodes = get_nodes

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def nodes(self, rows: Sequence[int] | None = None) -> list[BaseNode]:
        return list(self._get_nodes(list(range(len(self.node_ids))) if rows is None else list(rows)))


def embed_missing(
    stored: Sequence[Any],
    dim: int | None,
    nodes_of: Callable[[list[int]], Sequence[BaseNode]],
    embed_model: BaseEmbedding,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 vectors: stored ones as given, missing ones (``None``) embedded in batches from the
    nodes ``nodes_of(rows)``; (n,) bool mask of the embedded rows. Checks dimensions and values."""
    missing = np.array([v is None for v in stored], dtype=bool)
    dims: dict[int, int] = {}
    for v in stored:
        if v is not None:
            dims[len(v)] = dims.get(len(v), 0) + 1
    if dim is not None:
        dims.setdefault(dim, 0)
    if len(dims) > 1:
        desc = ", ".join(f"{n} vector(s) of dimension {d}" for d, n in sorted(dims.items()))
        raise ValueError(f"mixed embedding dimensions: {desc}. All document vectors must come from the same embed model.")
    if not len(stored):
        return np.zeros((0, dim or 0), dtype=np.float32), missing
    rows = np.flatnonzero(missing)
    fresh: list[list[float]] = []
    if rows.size:
        texts = [node_text(n) for n in nodes_of(rows.tolist())]
        fresh = embed_model.get_text_embedding_batch(texts, show_progress=show_progress)
        if len({len(v) for v in fresh} | set(dims)) > 1:
            raise ValueError(
                f"mixed embedding dimensions: the embed model produces {sorted({len(v) for v in fresh})} "
                f"but the index stores vectors of dimension {sorted(dims)}"
            )
    d = len(fresh[0]) if fresh else next(iter(dims))
    out = np.empty((len(stored), d), dtype=np.float32)
    if rows.size:
        out[rows] = np.asarray(fresh, dtype=np.float32)
    for i in np.flatnonzero(~missing):
        out[i] = stored[i]
    if not np.isfinite(out).all():
        raise ValueError("the index holds non-finite (NaN/inf) vector values")
    zero = np.flatnonzero(~out.any(axis=1))
    if zero.size:
        raise ValueError(f"{zero.size} document vector(s) are all zeros (first: row {int(zero[0])})")
    return out, missing


def rows_to_write(
    candidates: np.ndarray, stored: Sequence[Any], targets: np.ndarray, similarity: str
) -> np.ndarray:
    """The candidate rows whose stored vector (``None``: none) does not already search like its target row.

    ``candidates`` (m,) rows, ``targets`` (m, d) their new vectors; only these rows are compared (under
    cosine the store compares directions only). Returns a (m,) bool mask.
    """
    if candidates.size == 0:
        return np.zeros(0, dtype=bool)
    none = np.array([stored[r] is None for r in candidates], dtype=bool)
    old = np.zeros(targets.shape, dtype=np.float64)
    for j, r in enumerate(candidates):
        if not none[j]:
            old[j] = stored[r]
    new = targets.astype(np.float64)
    if similarity == COSINE:
        old = old / np.maximum(np.linalg.norm(old, axis=1, keepdims=True), 1e-30)
        new = new / np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-30)
    diff = np.linalg.norm(old - new, axis=1)
    return none | (diff > _SAME_TOL * np.maximum(np.linalg.norm(new, axis=1), 1.0))
