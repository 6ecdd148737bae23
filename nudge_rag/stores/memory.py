"""Vectors held by the calling process as a :class:`~nudge_rag.stores.VectorStore`: the one in-process store.

Framework stores that keep their vectors in Python objects are served by :class:`MemoryStore` over their own
mapping, changed in place: LangChain's ``InMemoryVectorStore`` (``store.store[id]["vector"]``, ``field="vector"``)
and LlamaIndex's ``SimpleVectorStore`` (``store.data.embedding_dict[id]``). FAISS indexes are
:class:`~nudge_rag.stores.FaissStore`. Both get the same compare-and-set writes, ledger, revert, status and
reapply as the databases; their ledger is in memory, shared by every store object over the same framework object
(``owner``), unless :meth:`~nudge_rag.stores.BaseStore.use_ledger` names a file.

Vectors are kept in the ledger as float64, and each row is written back as a list of Python floats, so a revert
restores a Python-float vector bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np

from ._base import SIMILARITIES, BaseStore, StoreError

__all__ = ["MemoryStore"]


class MemoryStore(BaseStore):
    """A mutable mapping ``id -> vector`` (or ``id -> record`` holding the vector under ``field``).

    Args:
        records: the framework's own mapping, changed in place.
        similarity: how the framework searches it (``"cosine"`` for both frameworks' defaults).
        field: the key of the vector inside each record (None: the values are the vectors).
        owner: the framework object the mapping belongs to (hashable or not, e.g. a pydantic model; it must take
            weak references): keys the shared in-memory ledger (default: none, the ledger lives with this store).
        name: how messages name the store.
        metadata: id -> metadata dict of each record, where :meth:`chunks_of` reads ``doc_field`` (a dotted
            path such as ``"a.b"`` reaches nested dicts). Default: the records themselves, looking inside their
            ``"metadata"`` dict too (LangChain's ``InMemoryVectorStore`` keeps ``{"vector", "text", "metadata"}``).
    """

    ledger_dtype = "<f8"

    def __init__(
        self,
        records: MutableMapping[Any, Any],
        *,
        similarity: str = "cosine",
        field: str | None = None,
        owner: Any = None,
        name: str = "in-memory store",
        batch_size: int = 4096,
        metadata: Mapping[Any, Any] | None = None,
    ) -> None:
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        self.records = records
        self.field = field
        self.similarity = similarity
        self.batch_size = batch_size
        self.ledger_owner = owner  # None: this store object keeps its own in-memory ledger
        self.name = name
        self.metadata = metadata
        first = next(iter(records.values()), None)
        if first is None:
            raise StoreError(f"the {name} holds no documents")
        self.dim = len(self._vector(first))
        self._key = {str(k): k for k in records}

    supports_doc_field = True

    @property
    def label(self) -> str:
        return self.name

    def _ledger_key(self) -> str:
        return f"memory:{self.name}"

    def _vector(self, value: Any) -> Any:
        return value[self.field] if self.field is not None else value

    def count(self) -> int:
        return len(self.records)

    def _keys(self, ids: list[str]) -> list[Any]:
        if len(self._key) != len(self.records):  # documents were added or removed since
            self._key = {str(k): k for k in self.records}
        return [self._key.get(i, i) for i in ids]

    def _get(self, ids: list[str], *, lock: bool = False) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, k in zip(ids, self._keys(ids)):
            value = self.records.get(k)
            if value is None:
                continue
            vec = np.asarray(self._vector(value), dtype=np.float64)
            if vec.shape != (self.dim,):
                raise StoreError(f"the {self.name} holds vectors of several dimensions ({vec.shape} vs {self.dim})")
            out[i] = vec
        return out

    def _put(self, ids: list[str], vectors: np.ndarray) -> list[str]:
        gone = []
        for i, k, v in zip(ids, self._keys(ids), np.asarray(vectors, dtype=np.float64).tolist()):
            if k not in self.records:  # removed since it was read: never re-created
                gone.append(i)
                continue
            if self.field is not None:
                self.records[k][self.field] = v
            else:
                self.records[k] = v
        return gone

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        ids = [str(k) for k in self.records]
        for b0 in range(0, len(ids), batch):
            part = ids[b0 : b0 + batch]
            got = self._get(part)
            yield part, np.stack([got[i] for i in part]).astype(np.float32)

    def _chunks(self, doc_field: str, doc_ids: list[str]) -> Iterable[tuple[str, object]]:
        wanted = set(doc_ids)
        source = self.metadata if self.metadata is not None else self.records
        for key, meta in source.items():
            value = _dotted(meta, doc_field)
            if value is None and isinstance(meta, Mapping):  # a framework record's own metadata dict
                value = _dotted(meta.get("metadata"), doc_field)
            if value is not None and str(value) in wanted:
                yield str(key), value


def _dotted(record: Any, path: str) -> Any:
    """``record[a][b]`` for ``path == "a.b"`` (None where a level is missing or not a mapping)."""
    for part in path.split("."):
        if not isinstance(record, Mapping) or part not in record:
            return None
        record = record[part]
    return record
