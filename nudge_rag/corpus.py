"""Where the solver reads document vectors from: the :class:`Corpus` protocol and its in-memory form.

A NUDGE fit needs only (a) the vectors of the documents that training (and validation) pairs name and
(b) each validation query's best scores among the documents that do not move. :class:`Corpus` asks for
exactly that, so a fit never needs the whole N x d matrix: an in-memory array, a vector database or a
Dask array can each answer it (see :mod:`nudge_rag.stores` and :mod:`nudge_rag.distributed`).

The core knows no extension: an extension that wraps a foreign array type in a Corpus registers it with
:func:`register_corpus_adapter` when it is imported (``import nudge_rag.distributed`` lets ``fit`` take a
``dask.array.Array``), and :func:`as_corpus` consults the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._checks import as_matrix, normalize_rows
from .search import static_topk

__all__ = ["Corpus", "ArrayCorpus", "as_corpus", "register_corpus_adapter"]


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

    def append(self, new: object) -> ArrayCorpus:
        """A new corpus of these rows followed by ``new`` (X, d) (validated and unit-normalised; not in place)."""
        rows = as_matrix(new, "new_embeddings", dim=self.dim, float32_range=False)
        unit = normalize_rows(rows, "new_embeddings", self.docs.dtype)
        return ArrayCorpus(np.concatenate([self.docs, unit]), self.extra)


# (match, factory) pairs, in registration order; see register_corpus_adapter.
_ADAPTERS: list[tuple[type | Callable[[Any], bool], Callable[[Any], Corpus]]] = []


def register_corpus_adapter(match: type | Callable[[Any], bool], factory: Callable[[Any], Corpus]) -> None:
    """Let :func:`as_corpus` (and so ``fit``) accept objects that ``match``, wrapped by ``factory``.

    Args:
        match: a type (``isinstance`` decides) or a predicate ``match(x) -> bool``; a predicate lets an
            extension recognise a type without importing its package (it cannot be an instance of a type that
            is not imported).
        factory: ``factory(x)`` returns a :class:`Corpus` over ``x``.

    Registering the same pair again changes nothing; the first matching registration wins.

    Example:
        >>> register_corpus_adapter(MyLazyArray, MyLazyCorpus)  # in my_extension/__init__.py
    """
    if not (isinstance(match, type) or callable(match)) or not callable(factory):
        raise TypeError(f"register_corpus_adapter needs a type or predicate and a factory, got {match!r}, {factory!r}")
    if (match, factory) not in _ADAPTERS:
        _ADAPTERS.append((match, factory))


def as_corpus(x: object) -> Corpus:
    """``x`` as a :class:`Corpus`: a Corpus as is, else through the first registered adapter that matches it.

    In-memory arrays are handled by the estimators themselves (they also produce the full nudged matrix).
    """
    if isinstance(x, Corpus):
        return x
    for match, factory in _ADAPTERS:
        if isinstance(x, match) if isinstance(match, type) else match(x):
            return factory(x)
    raise TypeError(
        "embeddings must be a 2-D float32/float64 numpy array or a Corpus (fetch / competitors), "
        f"got {type(x).__name__}; other array types are accepted once the extension that registers them "
        "(register_corpus_adapter) is imported, e.g. nudge_rag.distributed for a Dask array"
    )
