"""Chroma collections (``PersistentClient`` on disk, or a ``chroma run`` server) as a
:class:`~nudge_rag.stores.VectorStore`.

Vectors are read with ``get(ids=..., include=["embeddings"])``, written with ``update`` (documents and
metadata untouched), searched with ``query`` (Chroma's HNSW index: ANN only, so exact search is brute force
over a ``get`` scan). Chroma's ``update`` skips ids that no longer exist, so a deleted document is never
re-inserted. The ledger is a SQLite file beside a ``PersistentClient`` folder (``<path>.nudge-ledger.sqlite``), per
server in the user's data folder unless ``?ledger=`` names one, and in memory for an in-memory client.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._base import BaseStore, StoreError, beside, server_ledger_path
from ._registry import StoreURI

__all__ = ["ChromaStore"]

_INSTALL = 'Chroma stores need chromadb: pip install "nudge-rag[stores]" (or chromadb)'
_SPACES = {"cosine": "cosine", "ip": "inner_product", "l2": "l2"}


def _chromadb() -> Any:
    try:
        import chromadb
    except ImportError as exc:  # pragma: no cover
        raise ImportError(_INSTALL) from exc
    return chromadb


def _space(collection: Any) -> str:
    space = None
    config = getattr(collection, "configuration", None) or getattr(collection, "configuration_json", None) or {}
    try:
        hnsw = config.get("hnsw") if hasattr(config, "get") else None
        space = (hnsw or {}).get("space") if hasattr(hnsw or {}, "get") else None
    except Exception:  # noqa: BLE001 - configuration shapes differ across versions
        space = None
    if space is None:
        space = (collection.metadata or {}).get("hnsw:space", "l2")
    return str(getattr(space, "value", space))


def _public_client(collection: Any) -> Any:
    """The public client (same system, tenant and database) of a collection handed over on its own."""
    api = getattr(collection, "_client", None)
    if api is None:
        raise StoreError("pass client= (the chromadb client holding the collection)")
    return _chromadb().Client(settings=api.get_settings(), tenant=collection.tenant, database=collection.database)


class ChromaStore(BaseStore):
    """A Chroma collection.

    Args:
        collection: a ``chromadb`` Collection (as LangChain's ``Chroma._collection`` or LlamaIndex's
            ``ChromaVectorStore._collection`` hold it).
        client: the client that holds it (default: the collection's own): where the ledger lives follows it.
    """

    #: exact search here is one query at a time over every row (or a scan): one streamed scan is faster
    prefers_scan = True
    supports_doc_field = True

    def __init__(self, collection: Any, *, client: Any = None, batch_size: int = 1000) -> None:
        self.collection = collection
        self.client = client if client is not None else _public_client(collection)
        self.batch_size = batch_size
        space = _space(collection)
        if space not in _SPACES:
            raise StoreError(f"unsupported Chroma space {space!r}; supported: cosine, ip, l2")
        self.similarity = _SPACES[space]
        first = collection.get(limit=1, include=["embeddings"])
        if not first["ids"]:
            raise StoreError(f"Chroma collection {collection.name!r} is empty")
        self.dim = int(np.asarray(first["embeddings"]).shape[1])

    @classmethod
    def from_uri(cls, uri: StoreURI, **kwargs: Any) -> ChromaStore:
        """``chroma:///path?collection=C`` (PersistentClient) or ``chroma://host:8000?collection=C`` (HttpClient)."""
        chromadb = _chromadb()
        name = str(uri.param("collection", required=True))
        if uri.is_local:
            client = chromadb.PersistentClient(path=uri.path)
        else:
            client = chromadb.HttpClient(host=uri.host, port=uri.port or 8000, ssl=uri.param("ssl") == "true")
        try:
            collection = client.get_collection(name)
        except Exception as exc:  # noqa: BLE001 - chromadb raises several types for a missing collection
            raise StoreError(f"Chroma has no collection {name!r} ({exc})") from None
        return cls(collection, client=client, **kwargs)

    @property
    def label(self) -> str:
        return f"Chroma collection {self.collection.name!r}"

    def _ledger_key(self) -> str:
        return f"chroma:{self.collection.name}"

    def _ledger_home(self) -> Path | None:
        settings = self.client.get_settings()
        if getattr(settings, "chroma_server_host", None) and not settings.is_persistent:
            host = str(settings.chroma_server_host)
            return server_ledger_path("chroma", host, settings.chroma_server_http_port, self.collection.name)
        if settings.is_persistent and settings.persist_directory:
            return beside(settings.persist_directory)
        return None

    def describe(self) -> str:
        return f"Chroma collection {self.collection.name!r} ({self.count()} x {self.dim}, {self.similarity})"

    # ------------------------------------------------------------------ hooks
    def count(self) -> int:
        return int(self.collection.count())

    def _get(self, ids: list[str], *, lock: bool = False) -> dict[str, np.ndarray]:
        got = self.collection.get(ids=ids, include=["embeddings"])
        return dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32).reshape(-1, self.dim)))

    def _put(self, ids: list[str], vectors: np.ndarray) -> None:
        self.collection.update(ids=ids, embeddings=np.ascontiguousarray(vectors, dtype=np.float32))

    def _scan_of(self, collection: Any, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        offset = 0
        while True:
            got = collection.get(limit=batch, offset=offset, include=["embeddings"])
            if not got["ids"]:
                return
            yield list(got["ids"]), np.asarray(got["embeddings"], dtype=np.float32).reshape(-1, self.dim)
            offset += len(got["ids"])

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        return self._scan_of(self.collection, batch)

    def _search(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, list[list[str]]] | None:
        if exact:
            return None  # Chroma searches its HNSW index only: exact search scans
        k = min(k, self.count())
        res = self.collection.query(query_embeddings=queries, n_results=k, include=["distances"])
        out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        for j, d in enumerate(res["distances"]):
            d = np.asarray(d, dtype=np.float64)
            out_s[j, : d.size] = -d if self.similarity == "l2" else 1 - d
        return out_s, [list(r) for r in res["ids"]]

    def _chunks(self, doc_field: str, doc_ids: list[str]) -> Iterable[tuple[str, object]]:
        ints = [int(d) for d in doc_ids if d.isdigit()]  # a metadata value may be stored as a number
        for values in (doc_ids, ints):
            if values:
                got = self.collection.get(where={doc_field: {"$in": values}}, include=["metadatas"])
                for i, meta in zip(got["ids"], got["metadatas"] or []):
                    yield str(i), (meta or {}).get(doc_field)
