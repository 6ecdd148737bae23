"""FAISS indexes (and FAISS index files with an id map) as a :class:`~nudge_rag.stores.VectorStore`.

Supported: ``IndexFlat`` (IP / L2), ``IndexHNSWFlat``, ``IndexIVFFlat``, each optionally inside ``IndexIDMap`` /
``IndexIDMap2``. Document ids are ``ids[j]`` for the j-th stored vector; without ``ids``, the labels of an
``IndexIDMap`` (else the positions) as strings. A file store (``faiss:///data/index.faiss``) reads ids from
``?ids=FILE`` or ``<index>.ids`` (one per line) when present, rewrites the index file atomically on each write
(keeping its permission bits), and keeps its ledger in ``<index>.nudge-ledger.sqlite`` (an in-memory ledger for
an index without a file). Exact search: the flat index itself, else brute force
over the stored vectors; ``exact=False`` uses the index so that it returns the k rows asked: HNSW searches
with ``efSearch = max(index efSearch, k)`` (FAISS returns at most about ``efSearch`` rows, 16 by default), IVF
with its ``nprobe`` doubled, for the queries still short of k rows, up to every list (an exhaustive probe).
Search parameters are passed per call; the index itself is never changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write
from ._base import BaseStore, StoreError, beside
from ._registry import StoreURI

__all__ = ["FaissStore"]

_INSTALL = 'FAISS stores need faiss: pip install "nudge-rag[stores]" (or faiss-cpu)'


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL) from exc
    return faiss


class FaissStore(BaseStore):
    """A FAISS index held in memory, optionally backed by an index file.

    Args:
        index: a ``faiss.Index`` of a supported type (see the module docstring).
        ids: document id of each stored vector, in storage order (default: IDMap labels or positions).
        path: the index file to rewrite after each write / revert (None: in memory only).
    """

    _dirty = False

    def __init__(
        self,
        index: Any,
        ids: Sequence[object] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        batch_size: int = 4096,
    ) -> None:
        faiss = _faiss()
        self._owner = index  # the wrapper that owns the C++ index: keep it alive
        self.index = faiss.downcast_index(index)
        self.path = None if path is None else Path(path)
        self.batch_size = batch_size
        self._outer = self.index
        self._labels: np.ndarray | None = None
        self._label_pos: dict[int, int] | None = None
        inner = self.index
        if isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            self._labels = faiss.vector_to_array(inner.id_map).astype(np.int64)
            inner = faiss.downcast_index(inner.index)
        self._inner = inner
        if isinstance(inner, faiss.IndexHNSWFlat):
            self._flat = faiss.downcast_index(inner.storage)
        elif isinstance(inner, faiss.IndexFlat):
            self._flat = inner
        elif isinstance(inner, faiss.IndexIVFFlat):
            self._flat = None
            inner.set_direct_map_type(faiss.DirectMap.Hashtable)
        else:
            raise StoreError(
                f"unsupported FAISS index {type(inner).__name__}; supported: IndexFlatIP/L2, IndexHNSWFlat, "
                "IndexIVFFlat (optionally in IndexIDMap/IndexIDMap2)"
            )
        metric = int(self.index.metric_type)
        if metric == faiss.METRIC_INNER_PRODUCT:
            self.similarity = "inner_product"
        elif metric == faiss.METRIC_L2:
            self.similarity = "l2"
        else:
            raise StoreError(f"unsupported FAISS metric {metric}; supported: METRIC_INNER_PRODUCT, METRIC_L2")
        self.dim = int(self.index.d)
        n = int(self.index.ntotal)
        given: Any = ids if ids is not None else (self._labels if self._labels is not None else np.arange(n))
        self._ids = [str(i) for i in given]
        if len(self._ids) != n:
            raise StoreError(f"the FAISS index holds {n} vectors but {len(self._ids)} ids were given")
        self._pos = {d: j for j, d in enumerate(self._ids)}
        if len(self._pos) != n:
            raise StoreError("the FAISS id map holds duplicate ids")

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls, path: str | os.PathLike[str], ids: Sequence[object] | str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> FaissStore:
        """Read an index file; ``ids`` is a list, an id file (one per line) or None (``<path>.ids`` if present)."""
        faiss = _faiss()
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(p)
        index = faiss.read_index(str(p))
        if ids is None and p.with_name(p.name + ".ids").is_file():
            ids = p.with_name(p.name + ".ids")
        if isinstance(ids, (str, os.PathLike)):
            ids = Path(ids).read_text(encoding="utf-8").splitlines()
        return cls(index, ids, path=p, **kwargs)

    @classmethod
    def from_uri(cls, uri: StoreURI, **kwargs: Any) -> FaissStore:
        return cls.load(uri.path, uri.param("ids"), **kwargs)

    @property
    def prefers_scan(self) -> bool:  # type: ignore[override]
        """HNSW / IVF have no exact search of their own: one streamed scan answers every query at once."""
        return self._flat is not self._inner

    @property
    def label(self) -> str:
        return f"FAISS index {self.path}" if self.path else f"FAISS index (in memory, {id(self._owner):#x})"

    def _ledger_home(self) -> Path | None:
        return None if self.path is None else beside(self.path)

    def _ledger_key(self) -> str:
        return "faiss"

    def describe(self) -> str:
        where = str(self.path) if self.path else "in memory"
        return f"FAISS {type(self._inner).__name__} ({where}, {self.count()} x {self.dim}, {self.similarity})"

    # ------------------------------------------------------------------ hooks
    def count(self) -> int:
        return int(self.index.ntotal)

    def _positions(self, ids: list[str]) -> np.ndarray:
        missing = [i for i in ids if i not in self._pos]
        if missing:
            raise StoreError(f"{len(missing)} id(s) not in the FAISS index (first: {missing[0]!r})")
        return np.fromiter((self._pos[i] for i in ids), dtype=np.int64, count=len(ids))

    def _keys(self, pos: np.ndarray) -> np.ndarray:
        """The keys the inner index addresses (positions; IVF ids are the labels it was given)."""
        if self._flat is None and self._labels is not None:
            return self._labels[pos]
        return pos

    def _get(self, ids: list[str], *, lock: bool = False) -> dict[str, np.ndarray]:
        known = [i for i in ids if i in self._pos]
        if not known:
            return {}
        pos = self._positions(known)
        if self._flat is not None:
            vecs = np.array(self._xb()[pos], dtype=np.float32)
        else:
            vecs = np.asarray(self._inner.reconstruct_batch(self._keys(pos)), dtype=np.float32)
        return dict(zip(known, vecs))

    def _xb(self) -> np.ndarray:
        faiss = _faiss()
        n = int(self._flat.ntotal)
        return faiss.rev_swig_ptr(self._flat.get_xb(), n * self.dim).reshape(n, self.dim)

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        n = self.count()
        for b0 in range(0, n, batch):
            part = self._ids[b0 : b0 + batch]
            got = self._get(part)
            yield part, np.stack([got[i] for i in part])

    def _search(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, list[list[str]]] | None:
        if exact and self._flat is not self._inner:
            return None  # HNSW / IVF: brute force over the stored vectors
        k = min(k, self.count())
        q = np.ascontiguousarray(queries, dtype=np.float32)
        dist, labels = self._ann(q, k)
        scores = -dist if self.similarity == "l2" else dist
        if self._labels is not None:
            if self._label_pos is None:
                self._label_pos = {int(lab): j for j, lab in enumerate(self._labels)}
            lookup = self._label_pos
            pos = [[lookup[int(x)] for x in row if x >= 0] for row in labels]
        else:
            pos = [[int(x) for x in row if x >= 0] for row in labels]
        return scores.astype(np.float32), [[self._ids[j] for j in row] for row in pos]

    def _ann(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, labels) of the index search, with search parameters wide enough for k rows."""
        faiss = _faiss()
        inner = self._inner
        if isinstance(inner, faiss.IndexHNSWFlat):
            params = faiss.SearchParametersHNSW(efSearch=max(int(inner.hnsw.efSearch), k))
            return self.index.search(q, k, params=params)
        if not isinstance(inner, faiss.IndexIVFFlat):
            return self.index.search(q, k)
        nprobe, nlist = int(inner.nprobe), int(inner.nlist)
        dist, labels = self.index.search(q, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
        short = np.flatnonzero((labels < 0).any(axis=1))
        while short.size and nprobe < nlist:
            nprobe = min(2 * nprobe, nlist)
            d2, l2 = self.index.search(q[short], k, params=faiss.SearchParametersIVF(nprobe=nprobe))
            dist[short], labels[short] = d2, l2
            short = short[(l2 < 0).any(axis=1)]
        return dist, labels

    # ------------------------------------------------------------------ persistence
    def _save_index(self) -> None:
        if self.path is None:
            return
        data = _faiss().serialize_index(self._outer)
        atomic_write(self.path, lambda fh: fh.write(data.tobytes()))

    def _put(self, ids: list[str], vectors: np.ndarray) -> None:
        pos = self._positions(ids)
        if self._flat is not None:
            self._xb()[pos] = vectors
        else:
            self._inner.update_vectors(self._keys(pos), np.ascontiguousarray(vectors, dtype=np.float32))
        self._dirty = True

    @property
    def buffered(self) -> bool:  # type: ignore[override]
        return self.path is not None

    def _flush(self) -> None:
        """Replace the index file atomically (its mode kept) when rows changed since the last flush."""
        if self._dirty:
            self._save_index()
            self._dirty = False
