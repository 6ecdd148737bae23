"""LanceDB tables as a :class:`~nudge_rag.stores.VectorStore`.

Ids and vectors are columns (default ``id`` and ``vector``, LanceDB's and LangChain's / LlamaIndex's
default vector column name; ``id_column`` / ``vector_column`` otherwise). A batch write is one
``merge_insert`` that only updates matched rows (one Lance commit: all or nothing; other columns untouched; a
deleted row is never re-inserted). The ledger is a SQLite file beside the database folder
(``<folder>.nudge-ledger.sqlite``). Exact search bypasses any vector index (flat search); ``exact=False`` uses it.
LanceDB tables carry no metric: ``similarity`` defaults to ``"l2"`` (LanceDB's default); pass the metric
your application searches with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._base import BaseStore, StoreError, beside, server_ledger_path
from ._registry import StoreURI

__all__ = ["LanceDBStore"]

_INSTALL = 'LanceDB stores need lancedb: pip install "nudge-rag[stores]" (or lancedb)'
_METRIC = {"cosine": "cosine", "inner_product": "dot", "l2": "l2"}


def _libs() -> tuple[Any, Any]:
    try:
        import lancedb
        import pyarrow as pa
    except ImportError as exc:  # pragma: no cover
        raise ImportError(_INSTALL) from exc
    return lancedb, pa


def _quote(ids: list[str]) -> str:
    return ", ".join("'" + i.replace("'", "''") + "'" for i in ids)


class LanceDBStore(BaseStore):
    """A LanceDB table.

    Args:
        table: a ``lancedb`` Table (as LangChain's ``LanceDB._table`` / LlamaIndex's ``LanceDBVectorStore``
            hold it).
        db: the connection holding it (default: the table's own): the ledger lives beside its folder.
        id_column, vector_column: default ``id`` / ``vector``.
        similarity: ``"l2"`` (default), ``"cosine"`` or ``"inner_product"``.
    """

    #: exact search here is one query at a time over every row (or a scan): one streamed scan is faster
    prefers_scan = True
    supports_doc_field = True

    def __init__(
        self,
        table: Any,
        *,
        db: Any = None,
        id_column: str = "id",
        vector_column: str = "vector",
        similarity: str = "l2",
        batch_size: int = 2000,
    ) -> None:
        _, pa = _libs()
        self.table = table
        self.db = db if db is not None else getattr(table, "_conn", None)
        self.id_column, self.vector_column = id_column, vector_column
        self.batch_size = batch_size
        schema = table.schema
        for c in (id_column, vector_column):
            if c not in schema.names:
                raise StoreError(
                    f"LanceDB table {table.name!r} has no column {c!r} (columns: {schema.names}); "
                    "name them with id_column= / vector_column="
                )
        vtype = schema.field(vector_column).type
        if not pa.types.is_fixed_size_list(vtype):
            raise StoreError(f"column {vector_column!r} is {vtype}, not a fixed-size vector")
        self.dim = int(vtype.list_size)
        self._id_type = schema.field(id_column).type
        if similarity not in _METRIC:
            raise ValueError(f"similarity must be one of {sorted(_METRIC)}, got {similarity!r}")
        self.similarity = similarity

    @classmethod
    def from_uri(cls, uri: StoreURI, **kwargs: Any) -> LanceDBStore:
        """``lancedb:///path?table=T[&id_column=..&vector_column=..&similarity=..]``."""
        lancedb, _ = _libs()
        db = lancedb.connect(uri.path)
        name = str(uri.param("table", required=True))
        try:
            table = db.open_table(name)
        except (ValueError, FileNotFoundError) as exc:
            raise StoreError(f"LanceDB at {uri.path} has no table {name!r} ({exc})") from None
        opts: dict[str, Any] = uri.options("id_column", "vector_column", "similarity")
        return cls(table, db=db, **opts, **kwargs)

    @property
    def label(self) -> str:
        return f"LanceDB table {self.table.name!r}"

    def _ledger_key(self) -> str:
        return f"lancedb:{self.table.name}"

    def _ledger_home(self) -> Path | None:
        uri = str(getattr(self.db, "uri", "") or "")
        if not uri:
            raise StoreError(f"{self.label}: pass db= (the lancedb connection holding the table) to keep a ledger")
        if "://" in uri and not uri.startswith("file://"):
            return server_ledger_path("lancedb", uri.split("://", 1)[1].split("/")[0], None, self.table.name)
        return beside(uri.removeprefix("file://"))

    def describe(self) -> str:
        return f"LanceDB table {self.table.name!r} ({self.count()} x {self.dim}, {self.similarity})"

    # ------------------------------------------------------------------ helpers
    def _ids_filter(self, ids: list[str]) -> str:
        if self._is_int_id():
            return f"{self.id_column} IN ({', '.join(str(int(i)) for i in ids)})"
        return f"{self.id_column} IN ({_quote(ids)})"

    def _is_int_id(self) -> bool:
        _, pa = _libs()
        return bool(pa.types.is_integer(self._id_type))

    def _arrow(self, ids: list[str], vectors: np.ndarray) -> Any:
        _, pa = _libs()
        key = pa.array([int(i) for i in ids], type=self._id_type) if self._is_int_id() else pa.array(ids, self._id_type)
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
        vec = pa.FixedSizeListArray.from_arrays(flat, self.dim)
        return pa.table({self.id_column: key, self.vector_column: vec})

    # ------------------------------------------------------------------ hooks
    def count(self) -> int:
        return int(self.table.count_rows())

    def _get(self, ids: list[str], *, lock: bool = False) -> dict[str, np.ndarray]:
        got = (
            self.table.search()
            .where(self._ids_filter(ids))
            .select([self.id_column, self.vector_column])
            .limit(len(ids))
            .to_arrow()
        )
        vecs = _vectors(got.column(self.vector_column), self.dim)
        return dict(zip((str(i) for i in got.column(self.id_column).to_pylist()), vecs))

    def _chunks(self, doc_field: str, doc_ids: list[str]) -> Iterable[tuple[str, object]]:
        _, pa = _libs()
        schema = self.table.schema
        if doc_field not in schema.names:
            raise StoreError(f"{self.label} has no column {doc_field!r} to read document ids from ({schema.names})")
        if pa.types.is_integer(schema.field(doc_field).type):
            cond = ", ".join(d for d in doc_ids if d.isdigit())
        else:
            cond = _quote(doc_ids)
        if not cond:
            return
        got = (
            self.table.search()
            .where(f"{doc_field} IN ({cond})")
            .select([self.id_column, doc_field])
            .limit(max(1, self.count()))
            .to_arrow()
        )
        yield from zip((str(i) for i in got.column(self.id_column).to_pylist()), got.column(doc_field).to_pylist())

    def _put(self, ids: list[str], vectors: np.ndarray) -> None:
        self.table.merge_insert(self.id_column).when_matched_update_all().execute(self._arrow(ids, vectors))

    def _scan_of(self, table: Any, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        n = int(table.count_rows())
        for b0 in range(0, n, batch):
            got = table.search().select([self.id_column, self.vector_column]).offset(b0).limit(batch).to_arrow()
            yield (
                [str(i) for i in got.column(self.id_column).to_pylist()],
                _vectors(got.column(self.vector_column), self.dim),
            )

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        return self._scan_of(self.table, batch)

    def _search(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, list[list[str]]]:
        out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        out_ids: list[list[str]] = []
        for j, q in enumerate(queries):
            s = self.table.search(q, vector_column_name=self.vector_column).distance_type(_METRIC[self.similarity])
            if exact:
                s = s.bypass_vector_index()
            got = s.select([self.id_column, "_distance"]).limit(k).to_arrow()
            d = np.asarray(got.column("_distance").to_numpy(), dtype=np.float32)
            out_s[j, : d.size] = -d  # smaller distance is better for every LanceDB metric
            out_ids.append([str(i) for i in got.column(self.id_column).to_pylist()])
        return out_s, out_ids


def _vectors(column: Any, dim: int) -> np.ndarray:
    """A fixed-size-list Arrow column as an (n, dim) float32 array."""
    col = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if len(col) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
