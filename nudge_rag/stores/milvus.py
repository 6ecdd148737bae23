"""Milvus collections (Milvus Lite files, or a server) as a :class:`~nudge_rag.stores.VectorStore`.

Vectors are read with ``get`` by primary key, written with a partial ``upsert`` (other fields untouched),
searched with ``search`` and scanned with ``query_iterator``. Milvus has no update that cannot insert: a row is
upserted only right after it was read and found holding the expected vector (a delete by another client in that
window, milliseconds, would re-create it: the documented race). The ledger is a SQLite file beside a Milvus Lite
file (``<file>.nudge-ledger.sqlite``), or per server in the user's data folder unless ``?ledger=`` names one.
The metric is the vector index's (``COSINE``, ``IP``, ``L2``). Exact search is the index
itself when it is ``FLAT``, else brute force over a scan; ``exact=False`` uses the index.

Searches are split into requests within Milvus' documented limits: at most ``MAX_TOPK`` (16384) rows and
``MAX_NQ`` (16384) queries per request, and a result of at most ``max_result_bytes`` estimated as
nq x k x (id + score + overhead) bytes (Milvus caps a search result at 64 MB, Milvus Lite's gRPC server at
256 MB). Only the primary key is asked for (Milvus Lite otherwise returns every hit's vector). A k above
``MAX_TOPK`` is answered exactly (brute force over a scan), with ``exact=False`` too, and says so in a
``RuntimeWarning``. HNSW searches ask for ``ef = max(k, 64)``, so the index can return k rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._base import BaseStore, StoreError, beside, server_ledger_path
from ._registry import StoreURI

__all__ = ["MilvusStore"]

_INSTALL = 'Milvus stores need pymilvus (and milvus-lite for files): pip install "nudge-rag[stores]"'
_METRICS = {"COSINE": "cosine", "IP": "inner_product", "L2": "l2"}
#: Milvus' documented caps per search request: rows per query (topk) and queries (nq).
MAX_TOPK = 16384
MAX_NQ = 16384
#: Estimated result bytes per hit besides the id: the float32 score plus protobuf framing.
_HIT_OVERHEAD = 16
#: The id bytes assumed per hit for a VARCHAR key of larger ``max_length``.
_VARCHAR_ID_BYTES = 256


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:  # pragma: no cover
        raise ImportError(_INSTALL) from exc
    return pymilvus


class MilvusStore(BaseStore):
    """A Milvus collection.

    Args:
        client: a ``pymilvus.MilvusClient`` (Milvus Lite file or server URI).
        collection: collection name.
        vector_field: the float-vector field (default: the only one).
        own_client: close the client in :meth:`close` (True when built from a URI).
        lite_path: the Milvus Lite ``.db`` file the client opened; :meth:`close` then also stops its in-process
            server and frees the file's lock, so another process can open it.
        search_batch: most queries per search request (at most ``MAX_NQ``).
        max_result_bytes: most estimated bytes of one search result (nq x k x bytes per hit); default 32 MiB.
    """

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        vector_field: str | None = None,
        batch_size: int = 1000,
        own_client: bool = False,
        lite_path: str | None = None,
        search_batch: int = 256,
        max_result_bytes: int = 32 << 20,
    ) -> None:
        dt = _pymilvus().DataType
        if not 1 <= search_batch <= MAX_NQ:
            raise ValueError(f"search_batch must be in [1, {MAX_NQ}], got {search_batch!r}")
        if max_result_bytes < 1:
            raise ValueError(f"max_result_bytes must be positive, got {max_result_bytes!r}")
        self.search_batch = int(search_batch)
        self.max_result_bytes = int(max_result_bytes)
        self.client = client
        self.collection = collection
        self.batch_size = batch_size
        self.own_client = own_client
        self.lite_path = lite_path
        if not client.has_collection(collection):
            raise StoreError(f"Milvus has no collection {collection!r}")
        fields = client.describe_collection(collection)["fields"]
        pk = [f for f in fields if f.get("is_primary")]
        vecs = [f for f in fields if f["type"] == dt.FLOAT_VECTOR]
        if vector_field is None:
            if len(vecs) != 1:
                raise StoreError(f"collection {collection!r} has {len(vecs)} float-vector fields; pass vector_field")
            vector_field = vecs[0]["name"]
        match = [f for f in vecs if f["name"] == vector_field]
        if not match:
            raise StoreError(f"collection {collection!r} has no float-vector field {vector_field!r}")
        self.pk_field = pk[0]["name"]
        self._pk_type = pk[0]["type"]
        self._int_pk = pk[0]["type"] == dt.INT64
        max_len = int(pk[0].get("params", {}).get("max_length", _VARCHAR_ID_BYTES))
        self._hit_bytes = (8 if self._int_pk else min(max_len, _VARCHAR_ID_BYTES)) + _HIT_OVERHEAD
        self.vector_field = vector_field
        self.dim = int(match[0]["params"]["dim"])
        self._index_type, metric = self._index(vector_field)
        if metric not in _METRICS:
            raise StoreError(f"unsupported Milvus metric {metric!r}; supported: COSINE, IP, L2")
        self.metric = metric
        self.similarity = _METRICS[metric]
        client.load_collection(collection)

    def _index(self, field: str) -> tuple[str, str]:
        for name in self.client.list_indexes(self.collection):
            info = self.client.describe_index(self.collection, name)
            if info.get("field_name") == field:
                return str(info.get("index_type", "")).upper(), str(info.get("metric_type", "")).upper()
        raise StoreError(f"collection {self.collection!r} has no index on {field!r} (Milvus searches need one)")

    @classmethod
    def from_uri(cls, uri: StoreURI, **kwargs: Any) -> MilvusStore:
        """``milvus:///path/file.db?collection=C`` (Milvus Lite) or ``milvus://host:19530?collection=C``."""
        MilvusClient = _pymilvus().MilvusClient
        name = str(uri.param("collection", required=True))
        target = uri.path if uri.is_local else f"http://{uri.host}:{uri.port or 19530}"
        quiet = logging.getLogger("milvus_lite")  # it logs a whole traceback when the file is held elsewhere
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            client = MilvusClient(target, token=uri.param("token", "") or "")
        except Exception as exc:
            if uri.is_local:
                raise StoreError(
                    f"cannot open the Milvus Lite file {uri.path}: Milvus Lite lets one process open a file at a "
                    f"time; is another process (a nudge-rag write, or your app) holding it? ({type(exc).__name__})"
                ) from None
            raise
        finally:
            quiet.setLevel(level)
        return cls(
            client,
            name,
            vector_field=uri.param("vector_field"),
            own_client=True,
            lite_path=uri.path if uri.is_local else None,
            **kwargs,
        )

    @property
    def prefers_scan(self) -> bool:  # type: ignore[override]
        """Exact search is the index itself only when it is FLAT; otherwise one streamed scan."""
        return self._index_type != "FLAT"

    @property
    def label(self) -> str:
        return f"Milvus collection {self.collection!r}"

    def _ledger_key(self) -> str:
        return f"milvus:{self.collection}"

    def _ledger_home(self) -> Path | None:
        target = self.lite_path or str(getattr(self.client, "_using", "") or "")
        if target and "://" not in target:
            return beside(target)
        return server_ledger_path("milvus", target.split("://")[-1] or "server", None, self.collection)

    def describe(self) -> str:
        return (
            f"Milvus collection {self.collection!r} ({self.count()} x {self.dim}, {self.similarity}, "
            f"{self._index_type} index)"
        )

    def close(self) -> None:
        if self.own_client:
            self.client.close()
            if self.lite_path:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.lite_path)

    # ------------------------------------------------------------------ hooks
    def _keys(self, ids: list[str]) -> list[Any]:
        return [int(i) for i in ids] if self._int_pk else list(ids)

    def count(self) -> int:
        return int(self.client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def _get(self, ids: list[str], *, lock: bool = False) -> dict[str, np.ndarray]:
        got = self.client.get(self.collection, ids=self._keys(ids), output_fields=[self.vector_field])
        return {str(r[self.pk_field]): np.asarray(r[self.vector_field], dtype=np.float32) for r in got}

    def _rows(self, ids: list[str], vectors: np.ndarray) -> list[dict[str, Any]]:
        return [{self.pk_field: k, self.vector_field: v} for k, v in zip(self._keys(ids), vectors)]

    def _put(self, ids: list[str], vectors: np.ndarray) -> None:
        self.client.upsert(self.collection, self._rows(ids, np.asarray(vectors, dtype=np.float32)), partial_update=True)

    def _scan_of(self, collection: str, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        it = self.client.query_iterator(collection, batch_size=batch, output_fields=[self.vector_field])
        try:
            while rows := it.next():
                yield (
                    [str(r[self.pk_field]) for r in rows],
                    np.asarray([r[self.vector_field] for r in rows], dtype=np.float32).reshape(-1, self.dim),
                )
        finally:
            it.close()

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        return self._scan_of(self.collection, batch)

    def query_batch(self, k: int) -> int:
        """Queries per search request at top-``k``: within ``search_batch`` and ``max_result_bytes``."""
        return max(1, min(self.search_batch, self.max_result_bytes // (k * self._hit_bytes)))

    def _search(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, list[list[str]]] | None:
        if exact and self._index_type != "FLAT":
            return None  # brute force over a scan
        k = min(k, self.count())
        if k > MAX_TOPK:
            if exact:
                return None
            return np.zeros((queries.shape[0], 0), dtype=np.float32), [[] for _ in range(queries.shape[0])]
        params: dict[str, Any] = {"metric_type": self.metric}
        if self._index_type == "HNSW":
            params["params"] = {"ef": max(k, 64)}
        out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        out_ids: list[list[str]] = []
        step = self.query_batch(k)
        for v0 in range(0, queries.shape[0], step):
            res = self.client.search(
                self.collection,
                data=list(queries[v0 : v0 + step]),
                limit=k,
                anns_field=self.vector_field,
                search_params=params,
                output_fields=[self.pk_field],
            )
            for j, hits in enumerate(res):
                d = np.asarray([h["distance"] for h in hits], dtype=np.float32)
                out_s[v0 + j, : d.size] = -d if self.similarity == "l2" else d
                out_ids.append([str(h["id"]) for h in hits])
        return out_s, out_ids
