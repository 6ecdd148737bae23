"""The fitted change as a patch: which rows moved, their new vectors and their originals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Patch"]


@dataclass(frozen=True)
class Patch:
    """The rows a NUDGE fit moved.

    Attributes:
        rows: (m,) int64 sorted document rows that moved.
        new: (m, d) nudged vectors (the model's output dtype, float32 by default).
        old: (m, d) the same rows before the fit, as the solver saw them (unit-normalised).
        ids: optional document ids of ``rows`` (a store's native ids), same order.

    Every writer (files, vector stores, shards) writes only these rows; ``old`` is what a rollback restores
    when the writer keeps no originals of its own.
    """

    rows: np.ndarray
    new: np.ndarray
    old: np.ndarray
    ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        rows = np.asarray(self.rows)
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise ValueError(f"patch rows must be a 1-D integer array, got shape {rows.shape} dtype {rows.dtype}")
        if self.new.ndim != 2 or self.new.shape != self.old.shape or self.new.shape[0] != rows.size:
            raise ValueError(f"patch shapes disagree: {rows.size} rows, new {self.new.shape}, old {self.old.shape}")
        if self.ids is not None and len(self.ids) != rows.size:
            raise ValueError(f"patch has {rows.size} rows but {len(self.ids)} ids")

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def dim(self) -> int:
        """Vector dimension d."""
        return int(self.new.shape[1])

    def with_ids(self, doc_ids: Sequence[str]) -> Patch:
        """The same patch with ``ids`` taken from ``doc_ids`` (indexed by row)."""
        return Patch(self.rows, self.new, self.old, tuple(str(doc_ids[int(r)]) for r in self.rows))

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        """A copy of ``embeddings`` (N, d) with the patched rows replaced by ``new``; the input is not modified."""
        out = np.array(embeddings, copy=True)
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise ValueError(f"cannot apply a {self.dim}-d patch to an array of shape {out.shape}")
        if self.rows.size and int(self.rows.max()) >= out.shape[0]:
            raise ValueError(f"patch names row {int(self.rows.max())} but the array has {out.shape[0]} rows")
        out[self.rows] = self.new
        return out

    def revert(self, embeddings: np.ndarray) -> np.ndarray:
        """A copy of ``embeddings`` with the patched rows restored to ``old``."""
        return Patch(self.rows, self.old, self.new, self.ids).apply(embeddings)
