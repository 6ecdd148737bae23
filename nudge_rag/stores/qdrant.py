"""Qdrant collections (local mode on disk, or a server) as a :class:`~nudge_rag.stores.VectorStore`.

Point ids are unsigned integers or UUIDs (given as strings). Vectors are read with ``retrieve``, written with
``update_vectors`` (payloads untouched), searched with ``query_batch_points`` (``exact=True`` search params for
exact search, the HNSW index otherwise) and scanned with ``scroll``. ``update_vectors`` never creates a point,
so a point deleted since it was read is never re-inserted. The ledger is a SQLite file beside a local-mode
folder (``<path>.nudge-ledger.sqlite``), or per server in the user's data folder unless ``?ledger=`` names one.

A COSINE collection stores unit vectors (Qdrant normalises on write); NUDGE-N output is unit-norm, so it is
stored as computed; NUDGE-M is refused on such a collection (use DOT distance).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._base import BaseStore, StoreError, beside, server_ledger_path
from ._registry import StoreURI

__all__ = ["QdrantStore"]

_INSTALL = 'Qdrant stores need qdrant-client: pip install "nudge-rag[stores]" (or qdrant-client)'


def _models() -> Any:
    try:
        from qdrant_client import models
    except ImportError as exc:  # pragma: no cover
        raise ImportError(_INSTALL) from exc
    return models


def _point_id(i: str) -> int | str:
    return int(i) if i.isdigit() else i


class QdrantStore(BaseStore):
    """A Qdrant collection.

    Args:
        client: a ``qdrant_client.QdrantClient`` (local ``path=...`` or a server ``url=...``).
        collection: collection name.
        vector_name: the named vector to use (default: the unnamed vector, or the only named one).
        own_client: close the client in :meth:`close` (True when built from a URI).

    :meth:`chunks_of` reads a payload key; a dotted ``doc_field`` (``"metadata.doc_id"``, where LangChain keeps
    metadata) reaches nested payload.
    """

    supports_doc_field = True

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        vector_name: str | None = None,
        batch_size: int = 512,
        own_client: bool = False,
    ) -> None:
        models = _models()
        self.client = client
        self.collection = collection
        self.batch_size = batch_size
        self.own_client = own_client
        if not client.collection_exists(collection):
            raise StoreError(f"Qdrant has no collection {collection!r}")
        vectors = client.get_collection(collection).config.params.vectors
        if isinstance(vectors, dict):
            if vector_name is None and len(vectors) == 1:
                vector_name = next(iter(vectors))
            if vector_name not in vectors:
                raise StoreError(f"collection {collection!r} has named vectors {sorted(vectors)}; pass vector_name")
            params = vectors[vector_name]
        else:
            if vector_name:
                raise StoreError(f"collection {collection!r} has one unnamed vector, not {vector_name!r}")
            params = vectors
        self.vector_name = vector_name
        self.dim = int(params.size)
        distance = params.distance
        table = {models.Distance.COSINE: "cosine", models.Distance.DOT: "inner_product", models.Distance.EUCLID: "l2"}
        if distance not in table:
            raise StoreError(f"unsupported Qdrant distance {distance}; supported: COSINE, DOT, EUCLID")
        self.similarity = table[distance]
        self.normalizes_on_write = distance == models.Distance.COSINE

    @classmethod
    def from_uri(cls, uri: StoreURI, **kwargs: Any) -> QdrantStore:
        """``qdrant:///path?collection=C`` (local mode) or ``qdrant://host:6333?collection=C`` (server)."""
        try:
            from qdrant_client import QdrantClient
        except ImportError as exc:  # pragma: no cover
            raise ImportError(_INSTALL) from exc
        collection = uri.param("collection", required=True)
        if uri.is_local:
            client = QdrantClient(path=uri.path)
        else:
            https = uri.param("https", "false") == "true"
            client = QdrantClient(host=uri.host, port=uri.port or 6333, https=https, api_key=uri.param("api_key"))
        vector_name = uri.param("vector_name")
        return cls(client, str(collection), vector_name=vector_name, own_client=True, **kwargs)

    @property
    def label(self) -> str:
        return f"Qdrant collection {self.collection!r}"

    def _ledger_key(self) -> str:
        return f"qdrant:{self.collection}"

    def _ledger_home(self) -> Path | None:
        inner = getattr(self.client, "_client", None)
        location = getattr(inner, "location", None)
        if location is not None:  # local mode
            return None if location == ":memory:" or not getattr(inner, "persistent", True) else beside(location)
        host = str(getattr(inner, "_host", None) or "server")
        return server_ledger_path("qdrant", host, getattr(inner, "_port", None), self.collection)

    def describe(self) -> str:
        return f"Qdrant collection {self.collection!r} ({self.count()} x {self.dim}, {self.similarity})"

    def close(self) -> None:
        if self.own_client:
            self.client.close()

    # ------------------------------------------------------------------ hooks
    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def _vec(self, record: Any) -> Any:
        v = record.vector
        return v[self.vector_name] if self.vector_name is not None else v

    def _get(self, ids: list[str], *, lock: bool = False) -> dict[str, np.ndarray]:
        got = self.client.retrieve(
            self.collection, ids=[_point_id(i) for i in ids], with_vectors=True, with_payload=False
        )
        return {str(r.id): np.asarray(self._vec(r), dtype=np.float32).reshape(self.dim) for r in got}

    def _put(self, ids: list[str], vectors: np.ndarray) -> None:
        models = _models()
        points = [
            models.PointVectors(
                id=_point_id(i), vector={self.vector_name: v.tolist()} if self.vector_name else v.tolist()
            )
            for i, v in zip(ids, vectors)
        ]
        self.client.update_vectors(self.collection, points=points, wait=True)

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        offset = None
        while True:
            recs, offset = self.client.scroll(
                self.collection, limit=batch, offset=offset, with_vectors=True, with_payload=False
            )
            if recs:
                yield [str(r.id) for r in recs], np.asarray([self._vec(r) for r in recs], dtype=np.float32)
            if offset is None:
                return

    def _search(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, list[list[str]]]:
        models = _models()
        params = models.SearchParams(exact=exact)
        requests = [
            models.QueryRequest(
                query=q.tolist(), limit=k, params=params, using=self.vector_name, with_payload=False, with_vector=False
            )
            for q in queries
        ]
        out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        out_ids: list[list[str]] = []
        for v0 in range(0, len(requests), 64):
            for j, res in enumerate(self.client.query_batch_points(self.collection, requests=requests[v0 : v0 + 64])):
                pts = res.points
                scores = np.asarray([p.score for p in pts], dtype=np.float32)
                if self.similarity == "l2":
                    scores = -(scores**2)  # Qdrant reports the Euclidean distance
                out_s[v0 + j, : len(pts)] = scores
                out_ids.append([str(p.id) for p in pts])
        return out_s, out_ids

    def _chunks(self, doc_field: str, doc_ids: list[str]) -> Iterable[tuple[str, object]]:
        models = _models()
        ints = [int(d) for d in doc_ids if d.isdigit()]  # a payload value may be stored as a number
        for values in (doc_ids, ints):
            if not values:
                continue
            flt = models.Filter(must=[models.FieldCondition(key=doc_field, match=models.MatchAny(any=values))])
            offset = None
            while True:
                recs, offset = self.client.scroll(
                    self.collection, scroll_filter=flt, limit=self.batch_size, offset=offset, with_payload=True
                )
                for r in recs:
                    value: Any = r.payload or {}
                    for part in doc_field.split("."):
                        value = value.get(part) if isinstance(value, dict) else None
                    yield str(r.id), value
                if offset is None:
                    break
