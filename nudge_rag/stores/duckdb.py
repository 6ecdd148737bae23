"""DuckDB tables with a ``FLOAT[d]`` vector column, searched through the VSS extension's HNSW index, or a
``FLOAT[]`` / ``DOUBLE[]`` list column (what LangChain's ``DuckDB`` creates), searched exactly, as a
:class:`~nudge_rag.stores.VectorStore`.

Ids and vectors default to the columns ``id`` and ``embedding``. DuckDB never downloads anything here: extension
auto-install and auto-load are off, and VSS is loaded from the ``duckdb-extension-vss`` package (built for the
pinned duckdb) before the database file is attached, so a file with an HNSW index opens, replays its WAL and
accepts updates. Each write batch is one ``UPDATE ... FROM`` an Arrow table (one DuckDB transaction, never an
insert); the ledger is a SQLite file beside the database (``<file>.nudge-ledger.sqlite``).

Exact competitor search is one streamed Arrow scan scored in NumPy (DuckDB's own exact search is a scan per
query); ``exact=False`` asks the HNSW index (``hnsw_ef_search`` raised to k for the query). ``similarity``
defaults to the HNSW index's metric (``cosine``, ``ip``, ``l2sq``), else cosine.

A list column has no fixed size and no HNSW index (VSS indexes arrays only): its dimension is read from the data
(a row of another length is refused, naming it), writes keep the column's list type, and every search, ``exact=False``
included, is the exact streamed scan.

DuckDB lets one process open a database file for writing: a second process gets one line naming the holder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._base import SIMILARITIES, BaseStore, StoreError, beside
from ._registry import StoreURI

__all__ = ["DuckDBStore", "connect", "vss_extension_path"]

_INSTALL = (
    'DuckDB stores need duckdb and duckdb-extension-vss: pip install "nudge-rag[stores]" '
    "(or duckdb duckdb-extension-vss)"
)
#: similarity -> (DuckDB distance function, distance -> higher-is-better score, HNSW metric)
_DIST = {
    "cosine": ("array_cosine_distance", "cosine"),
    "inner_product": ("array_negative_inner_product", "ip"),
    "l2": ("array_distance", "l2sq"),
}
_HNSW_METRIC = {"cosine": "cosine", "ip": "inner_product", "l2sq": "l2"}
#: the alias of a database file this module attaches
_ALIAS = "nudge_store"
#: no DuckDB download, ever
SAFE_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
EF_SEARCH_DEFAULT = 64


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as exc:  # pragma: no cover
        raise ImportError(_INSTALL) from exc
    return duckdb


def vss_extension_path() -> Path | None:
    """The VSS extension file that ``duckdb-extension-vss`` ships for this duckdb, or None when not installed."""
    duckdb = _duckdb()
    try:
        import duckdb_extension_vss  # type: ignore[import-untyped]
    except ImportError:
        return None
    base = Path(duckdb_extension_vss.__file__).parent / "extensions"
    path = base / f"v{duckdb.__version__}" / "vss.duckdb_extension"
    if not path.exists():
        found = sorted(base.glob("*/vss.duckdb_extension"))
        raise StoreError(
            f"duckdb-extension-vss has no VSS build for duckdb {duckdb.__version__} "
            f"(it has {', '.join(p.parent.name for p in found) or 'none'}): install matching versions"
        )
    return path


def load_vss(conn: Any) -> bool:
    """Load VSS into ``conn`` from the package path (never a download); False when the package is missing."""
    row = conn.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'vss'").fetchone()
    if row is not None and row[0]:
        return True
    path = vss_extension_path()
    if path is None:
        return False
    conn.execute("LOAD '" + str(path).replace("'", "''") + "'")
    return True


def connect(path: str | Path, *, read_only: bool = False) -> Any:
    """A DuckDB connection to ``path`` with VSS loaded first (downloads off), the file attached as the default
    database. A file another process holds raises :class:`StoreError` in one line."""
    duckdb = _duckdb()
    conn = duckdb.connect(":memory:", config=dict(SAFE_CONFIG))
    try:
        load_vss(conn)
        mode = "READ_ONLY" if read_only else "READ_WRITE"
        conn.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS {_ALIAS} ({mode})")
        conn.execute(f"USE {_ALIAS}")
        conn.execute("SET hnsw_enable_experimental_persistence = true")
    except Exception as exc:
        conn.close()
        msg = " ".join(str(exc).split())
        if "lock" in msg.lower() and "conflicting" in msg.lower():
            pid = re.search(r"PID (\d+)", msg)
            who = f" (pid {pid.group(1)})" if pid else ""
            raise StoreError(
                f"DuckDB database {path} is open in another process{who}: DuckDB lets one process open a file "
                "for writing; close it there (or stop that process) and try again"
            ) from None
        raise
    return conn


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBStore(BaseStore):
    """A DuckDB table with a ``FLOAT[d]`` (or ``DOUBLE[d]``) array column, or a ``FLOAT[]`` / ``DOUBLE[]`` list
    column whose rows all hold ``d`` numbers (``d`` read from the data; an empty list column is refused).

    Args:
        conn: a path to the database file, or a ``duckdb`` connection (VSS is loaded into it from the package
            when missing; its database must be a file for the ledger to live beside it).
        table: ``table`` or ``schema.table``.
        id_column, vector_column: default ``id`` / ``embedding``.
        similarity: ``"cosine"``, ``"inner_product"`` or ``"l2"``; default the HNSW index's metric, else cosine.
    """

    #: DuckDB's exact search is a scan per query: one streamed Arrow scan scored here serves every query
    prefers_scan = True

    def __init__(
        self,
        conn: Any,
        table: str,
        *,
        id_column: str = "id",
        vector_column: str = "embedding",
        similarity: str | None = None,
        batch_size: int = 2000,
    ) -> None:
        self.own_conn = isinstance(conn, (str, Path))
        self.conn = connect(conn) if self.own_conn else conn
        if not self.own_conn:
            load_vss(self.conn)
        self.batch_size = batch_size
        schema, name = table.split(".", 1) if "." in table else ("main", table)
        self.schema, self.table = schema, name
        #: the catalog holding the table (cursors, DuckDB's other connections, do not inherit ``USE``)
        self.catalog = str(self.conn.execute("SELECT current_database()").fetchone()[0])
        self.id_column, self.vector_column = id_column, vector_column
        cols = dict(
            self.conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ?",
                [schema, name],
            ).fetchall()
        )
        if not cols:
            raise StoreError(f"DuckDB database {self._file() or '(in memory)'} has no table {table!r}")
        for c in (id_column, vector_column):
            if c not in cols:
                raise StoreError(
                    f"DuckDB table {table!r} has no column {c!r} (columns: {', '.join(cols)}); "
                    "name them with id_column= / vector_column= (&id_column=...&vector_column=... in a URI)"
                )
        m = re.fullmatch(r"(FLOAT|DOUBLE)\[(\d*)\]", str(cols[vector_column]).upper())
        if m is None:
            raise StoreError(
                f"column {vector_column!r} is {cols[vector_column]}, not a FLOAT[d] array or a FLOAT[] list"
            )
        self.id_type = str(cols[id_column])
        #: a variable-length list column (``FLOAT[]``/``DOUBLE[]``): exact search only, dimension from the data
        self.is_list = not m.group(2)
        self.dim = self._list_dim() if self.is_list else int(m.group(2))
        self._vtype = f"{m.group(1)}[]" if self.is_list else f"{m.group(1)}[{self.dim}]"
        self.hnsw_metric = self._hnsw_metric()
        self.similarity = similarity or _HNSW_METRIC.get(self.hnsw_metric or "", "cosine")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {list(SIMILARITIES)}, got {self.similarity!r}")
        self.path = self._file()
        if self.path is None:
            self.ledger_owner = self.conn

    @classmethod
    def from_uri(cls, uri: StoreURI, **kwargs: Any) -> DuckDBStore:
        """``duckdb:///path/file.duckdb?table=T[&id_column=..&vector_column=..&similarity=..]``."""
        table = str(uri.param("table", required=True))
        if not Path(uri.path).exists():
            raise StoreError(f"DuckDB database {uri.path} does not exist")
        opts: dict[str, Any] = uri.options("id_column", "vector_column", "similarity")
        return cls(uri.path, table, **opts, **kwargs)

    @property
    def label(self) -> str:
        return f"DuckDB table {self.schema}.{self.table}"

    def _ledger_key(self) -> str:
        return f"duckdb:{self.schema}.{self.table}"

    def _ledger_home(self) -> Path | None:
        return None if self.path is None else beside(self.path)

    def describe(self) -> str:
        index = f", HNSW {self.hnsw_metric}" if self.hnsw_metric else ""
        index += ", list column" if self.is_list else ""
        return f"DuckDB table {self.schema}.{self.table} ({self.count()} x {self.dim}, {self.similarity}{index})"

    def close(self) -> None:
        self._close_ledger()
        if self.own_conn:
            self.conn.close()

    # ------------------------------------------------------------------ helpers
    def _file(self) -> str | None:
        row = self.conn.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
        return str(row[0]) if row and row[0] else None

    def _list_dim(self) -> int:
        """The one length of every vector in the list column (``StoreError`` naming a row of another length, or
        when no row holds a vector)."""
        v = _ident(self.vector_column)
        row = self.conn.execute(
            f"SELECT len({v}) AS n, count(*) AS c FROM {self._t()} WHERE {v} IS NOT NULL GROUP BY n "
            "ORDER BY c DESC, n LIMIT 1"
        ).fetchone()
        if row is None:
            raise StoreError(
                f"{self.label}: the list column {self.vector_column!r} (a FLOAT[] list) holds no vector, so "
                "its dimension is unknown; add the documents first"
            )
        dim = int(row[0])
        odd = self.conn.execute(
            f"SELECT CAST({_ident(self.id_column)} AS VARCHAR), len({v}) FROM {self._t()} "
            f"WHERE {v} IS NOT NULL AND len({v}) <> ? LIMIT 1",
            [dim],
        ).fetchone()
        if odd is not None:
            raise self._ragged(str(odd[0]), int(odd[1]), dim)
        if dim == 0:
            raise StoreError(f"{self.label}: the vectors in list column {self.vector_column!r} are empty")
        return dim

    def _ragged(self, row_id: str, length: int, dim: int) -> StoreError:
        return StoreError(
            f"{self.label}: row {row_id!r} holds a {length}-number vector in list column {self.vector_column!r}, "
            f"other rows {dim}: every vector must have one length (re-embed that row with the same model)"
        )

    def _hnsw_metric(self) -> str | None:
        """The metric of the table's HNSW index on the vector column (``cosine``, ``ip``, ``l2sq``), or None."""
        if not load_vss(self.conn):
            return None
        rows = self.conn.execute(
            "SELECT h.metric, i.expressions FROM pragma_hnsw_index_info() h JOIN duckdb_indexes() i "
            "ON i.database_name = h.catalog_name AND i.schema_name = h.schema_name AND i.index_name = h.index_name "
            "WHERE h.catalog_name = ? AND h.schema_name = ? AND h.table_name = ?",
            [self.catalog, self.schema, self.table],
        ).fetchall()
        for metric, expressions in rows:
            if self.vector_column in str(expressions or ""):
                return str(metric).lower()
        return None

    def _t(self) -> str:
        return f"{_ident(self.catalog)}.{_ident(self.schema)}.{_ident(self.table)}"

    def _arrow_ids(self, ids: list[str]) -> Any:
        import pyarrow as pa

        return pa.table({"id": pa.array(ids, type=pa.string())})

    def _decode(self, got: Any) -> tuple[list[str], np.ndarray]:
        ids = [str(i) for i in got.column(0).to_pylist()]
        col = got.column(1)
        col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
        if len(col) == 0:
            return ids, np.zeros((0, self.dim), dtype=np.float32)
        if self.is_list:  # a row written since the store opened may have another length: refuse, naming it
            import pyarrow.compute as pc

            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != self.dim)
            if bad.size:
                raise self._ragged(ids[int(bad[0])], int(lengths[bad[0]]), self.dim)
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return ids, np.asarray(flat, dtype=np.float32).reshape(-1, self.dim)

    # ------------------------------------------------------------------ hooks
    def count(self) -> int:
        row = self.conn.execute(
            f"SELECT count(*) FROM {self._t()} WHERE {_ident(self.vector_column)} IS NOT NULL"
        ).fetchone()
        return int(row[0])

    def _get(self, ids: list[str], *, lock: bool = False) -> dict[str, np.ndarray]:
        cur = self.conn.cursor()
        try:
            cur.register("nudge_ids", self._arrow_ids(ids))
            got = cur.execute(
                f"SELECT CAST(t.{_ident(self.id_column)} AS VARCHAR), t.{_ident(self.vector_column)} "
                f"FROM {self._t()} t JOIN nudge_ids p ON t.{_ident(self.id_column)} = TRY_CAST(p.id AS {self.id_type})"
                f" WHERE t.{_ident(self.vector_column)} IS NOT NULL"
            ).fetch_arrow_table()
        finally:
            cur.close()
        out_ids, vecs = self._decode(got)
        return dict(zip(out_ids, vecs))

    def _put(self, ids: list[str], vectors: np.ndarray) -> None:
        """One ``UPDATE ... FROM`` an Arrow table of the batch (one transaction; a deleted row stays deleted)."""
        import pyarrow as pa

        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
        patch = pa.table(
            {"id": pa.array(ids, type=pa.string()), "v": pa.FixedSizeListArray.from_arrays(flat, self.dim)}
        )
        cur = self.conn.cursor()
        try:
            cur.register("nudge_patch", patch)
            cur.execute(
                f"UPDATE {self._t()} AS t SET {_ident(self.vector_column)} = CAST(p.v AS {self._vtype}) "
                f"FROM nudge_patch p WHERE t.{_ident(self.id_column)} = TRY_CAST(p.id AS {self.id_type})"
            )
        finally:
            cur.close()
        if self.hnsw_metric is not None:
            # VSS cannot replay an HNSW-indexed update from the WAL after a crash ("Duplicate keys"): fold the
            # batch into the database file now, so a kill -9 between batches leaves no WAL to replay
            try:
                self.conn.execute(f"CHECKPOINT {_ident(self.catalog)}")
            except _duckdb().TransactionException:  # the application holds a transaction open: the batch is
                pass  # committed all the same, in the WAL until DuckDB's own next checkpoint

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        cur = self.conn.cursor()
        try:
            reader = cur.execute(
                f"SELECT CAST({_ident(self.id_column)} AS VARCHAR), {_ident(self.vector_column)} FROM {self._t()} "
                f"WHERE {_ident(self.vector_column)} IS NOT NULL"
            ).fetch_record_batch(batch)
            for rb in reader:
                if rb.num_rows:
                    yield self._decode(rb)
        finally:
            cur.close()

    def _search(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, list[list[str]]]:
        """Exact: one streamed scan. ANN: the HNSW index, one query at a time (a constant query vector is what
        VSS's optimizer turns into an index scan), ``hnsw_ef_search`` at least the rows asked for.

        VSS keeps an updated row's old entry in the index as a tombstone (a nudge and its revert leave two per
        row, concentrated where the questions look), and an index scan of ``LIMIT k`` then returns fewer than k
        live rows: a query that comes back short asks again for twice as many, up to k plus every tombstone."""
        if exact or self.is_list:  # a list column has no index: exact is the only search it has
            return self.scan_search(queries, k)
        fn, _ = _DIST[self.similarity]
        n = self.count()
        want = min(k, n)
        cap = k + self._tombstones(n)
        out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        out_ids: list[list[str]] = []
        cur = self.conn.cursor()
        try:
            ef = -1
            for j, q in enumerate(np.asarray(queries, dtype=np.float32)):
                ask = k
                while True:
                    if self.hnsw_metric is not None and max(ask, EF_SEARCH_DEFAULT) != ef:
                        ef = max(ask, EF_SEARCH_DEFAULT)
                        cur.execute(f"SET hnsw_ef_search = {int(ef)}")
                    rows = cur.execute(
                        f"SELECT CAST({_ident(self.id_column)} AS VARCHAR), "
                        f"{fn}({_ident(self.vector_column)}, CAST($q AS {self._vtype})) AS d "
                        f"FROM {self._t()} ORDER BY d LIMIT {int(ask)}",
                        {"q": q.tolist()},
                    ).fetchall()[:k]
                    if len(rows) >= want or ask >= cap:
                        break
                    ask = min(2 * ask, cap)
                d = np.asarray([r[1] for r in rows], dtype=np.float64)
                score = {"cosine": 1 - d, "inner_product": -d, "l2": -(d**2)}[self.similarity]
                out_s[j, : len(rows)] = score
                out_ids.append([str(r[0]) for r in rows])
        finally:
            cur.close()
        return out_s, out_ids

    def _tombstones(self, live: int) -> int:
        """Entries of the HNSW index beyond the table's live rows (0 without an index)."""
        if self.hnsw_metric is None:
            return 0
        row = self.conn.execute(
            "SELECT max(count) FROM pragma_hnsw_index_info() WHERE catalog_name = ? AND schema_name = ? "
            "AND table_name = ?",
            [self.catalog, self.schema, self.table],
        ).fetchone()
        return max(0, int(row[0] or 0) - live) if row else 0
