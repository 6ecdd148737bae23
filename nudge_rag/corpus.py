"""Where the solver reads document vectors from: the :class:`Corpus` protocol and its in-memory form.

A NUDGE fit needs only (a) the vectors of the documents that training (and validation) pairs name and
(b) each validation query's best scores among the documents that do not move. :class:`Corpus` asks for
exactly that, so a fit never needs the whole N x d matrix: an in-memory array, a vector database or a
Dask array can each answer it (see :mod:`nudge_rag.stores` and :mod:`nudge_rag.distributed`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .search import static_topk

__all__ = ["Corpus", "ArrayCorpus", "as_corpus"]


@runtime_checkable
class Corpus(Protocol):
    """Document vectors addressed by row (0 .. n_docs - 1), read in batches.

    Rows returned by :meth:`fetch` are unit-norm; :meth:`competitors` scores unit rows by inner product
    (cosine), breaking ties by the smaller row, so that a fit on any corpus equals the in-memory fit.
    """

    @property
    def n_docs(self) -> int:
        """Number of documents N."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension d."""
        ...

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        """(r, d) unit rows for ``rows`` (r,) int64, in that order."""
        ...

    def competitors(self, queries: np.ndarray, exclude: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of ``queries`` (V, d) among rows not in ``exclude`` (sorted int64).

        Returns (V, k) float32 scores, best first (``-inf`` padding), and (V, k) int64 rows (-1 padding).
        """
        ...


class ArrayCorpus:
    """A :class:`Corpus` over an in-memory (N, d) array of unit rows (not copied).

    ``extra`` (X, d) are further documents that never move and answer no query; they only compete
    (scored by cosine) and are reported with rows N + j.
    """

    def __init__(self, docs: np.ndarray, extra: np.ndarray | None = None) -> None:
        self.docs = docs
        self.extra = extra

    @property
    def n_docs(self) -> int:
        return int(self.docs.shape[0])

    @property
    def dim(self) -> int:
        return int(self.docs.shape[1])

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        return self.docs[np.asarray(rows, dtype=np.int64)]

    def competitors(self, queries: np.ndarray, exclude: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return static_topk(queries, self.docs, exclude, k, self.extra)


def as_corpus(x: object) -> Corpus:
    """``x`` as a :class:`Corpus`: a Corpus as is; a ``dask.array.Array`` through :mod:`nudge_rag.distributed`.

    In-memory arrays are handled by the estimators themselves (they also produce the full nudged matrix).
    """
    if isinstance(x, Corpus):
        return x
    if type(x).__module__.split(".")[0] == "dask":
        from .distributed import DaskCorpus  # optional extra: nudge-rag[distributed]

        return DaskCorpus(x)
    raise TypeError(
        "embeddings must be a 2-D float32/float64 numpy array or a Corpus (fetch / competitors), "
        f"got {type(x).__name__}"
    )
