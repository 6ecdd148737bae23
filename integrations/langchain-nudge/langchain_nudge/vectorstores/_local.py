"""In-process LangChain stores (``InMemoryVectorStore``, FAISS) as :mod:`nudge_rag.stores` stores, written in place.

Their vectors live in the Python process, so the originals of written rows cannot go to a side table: they are
kept per LangChain store object (a weak mapping, dropped with the store). Every :func:`local_store` over the
same object shares them, so ``revert`` works from any later call; they do not survive the process (a store
saved with ``dump`` / ``save_local`` after a write holds the nudged vectors).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from nudge_rag.stores import BaseStore, StoreError
from nudge_rag.stores._base import as_id_list, check_vectors
from nudge_rag.stores.faiss import FaissStore

__all__ = ["InMemoryStore", "LangChainFaissStore", "local_store", "is_faiss"]

#: LangChain store object -> {document id: original vector as it was stored}.
_ORIGINALS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _originals(store: Any) -> dict[str, Any]:
    return _ORIGINALS.setdefault(store, {})


def is_faiss(store: Any) -> bool:
    """Whether ``store`` is a ``langchain_community`` FAISS store (without importing langchain-community)."""
    return any(
        c.__name__ == "FAISS" and c.__module__.startswith("langchain_community.vectorstores")
        for c in type(store).__mro__
    )


class InMemoryStore(BaseStore):
    """The records of a ``langchain_core`` ``InMemoryVectorStore`` (``store.store[id]["vector"]``; cosine).

    Writes replace each record's vector list; :meth:`revert` puts back the very list objects that were stored,
    so the restored vectors are bit for bit the originals (also when they are float64).
    """

    similarity = "cosine"

    def __init__(self, store: Any, *, batch_size: int = 4096) -> None:
        self.records: dict[str, dict[str, Any]] = store.store
        self.saved = _originals(store)
        self.batch_size = batch_size
        first = next(iter(self.records.values()), None)
        if first is None:
            raise ValueError("the InMemoryVectorStore holds no documents")
        self.dim = len(first["vector"])

    def describe(self) -> str:
        return f"InMemoryVectorStore ({self.count()} x {self.dim}, cosine)"

    def count(self) -> int:
        return len(self.records)

    def _fetch(self, ids: list[str]) -> np.ndarray:
        missing = [i for i in ids if i not in self.records]
        if missing:
            raise StoreError(f"{len(missing)} id(s) not in the InMemoryVectorStore (first: {missing[0]!r})")
        rows = [self.records[i]["vector"] for i in ids]
        if any(len(r) != self.dim for r in rows):
            raise StoreError(f"the InMemoryVectorStore holds vectors of several dimensions (expected {self.dim})")
        return np.asarray(rows, dtype=np.float32).reshape(len(ids), self.dim)

    def _put(self, ids: list[str], vectors: np.ndarray) -> None:
        for i, v in zip(ids, vectors.tolist()):
            self.records[i]["vector"] = v

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        ids = list(self.records)
        for b0 in range(0, len(ids), batch):
            yield ids[b0 : b0 + batch], self._fetch(ids[b0 : b0 + batch])

    def write(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Overwrite the vectors of ``ids``, all or nothing (a failure puts the stored lists back)."""
        id_list = as_id_list(ids, "ids to write")
        new = check_vectors(vectors, len(id_list), self.dim)
        self._fetch(id_list)  # unknown ids raise before anything changes
        before = [self.records[i]["vector"] for i in id_list]
        for i, v in zip(id_list, before):
            self.saved.setdefault(i, v)
        try:
            for b0 in range(0, len(id_list), self.batch_size):
                self._write_batch(id_list[b0 : b0 + self.batch_size], new[b0 : b0 + self.batch_size])
        except BaseException:
            for i, v in zip(id_list, before):
                self.records[i]["vector"] = v
            raise

    def revert(self) -> int:
        """Put every saved original list back; returns the number of rows restored."""
        restored = [i for i in self.saved if i in self.records]
        for i in restored:
            self.records[i]["vector"] = self.saved[i]
        self.saved.clear()
        return len(restored)


class LangChainFaissStore(FaissStore):
    """The live index of a LangChain FAISS store (``index`` + ``index_to_docstore_id``; the index's metric).

    Writes go into the index object the LangChain store searches; the originals are kept with the store object.
    """

    def __init__(self, store: Any) -> None:
        index = store.index
        super().__init__(index, [store.index_to_docstore_id[j] for j in range(int(index.ntotal))])
        self.saved: dict[str, Any] = _originals(store)

    def _save_originals(self, ids: list[str], vectors: np.ndarray) -> None:
        for i, v in zip(ids, vectors):
            self.saved.setdefault(i, np.array(v, dtype=np.float32))

    def _saved_ids(self, ids: list[str]) -> set[str]:
        return {i for i in ids if i in self.saved}

    def _iter_originals(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        ids = [i for i in self.saved if i in self._pos]
        for b0 in range(0, len(ids), batch):
            part = ids[b0 : b0 + batch]
            yield part, np.stack([self.saved[i] for i in part])

    def _drop_originals(self) -> None:
        self.saved.clear()


def local_store(store: Any) -> BaseStore | None:
    """The core store over an ``InMemoryVectorStore`` or a FAISS store (None for any other store)."""
    from langchain_core.vectorstores import InMemoryVectorStore

    if isinstance(store, InMemoryVectorStore):
        return InMemoryStore(store)
    if is_faiss(store):
        return LangChainFaissStore(store)
    return None
