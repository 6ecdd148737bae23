"""SQLite tables holding `sqlite-vec <https://github.com/asg017/sqlite-vec>`_ vectors as a
:class:`~nudge_rag.stores.VectorStore`.

Two layouts: a plain table with an id column and a vector column holding sqlite-vec's float32 ``BLOB`` (JSON text
vectors are read too; writes are always the float32 blob), or a ``vec0`` virtual table (``CREATE VIRTUAL TABLE T
USING vec0(id TEXT PRIMARY KEY, embedding float[384] distance_metric=cosine)``). Ids and vectors default to the
columns ``id`` and ``embedding`` (``id_column=rowid`` names SQLite's rowid).

The connection is an `APSW <https://rogerbinns.github.io/apsw/>`_ one: the standard library's ``sqlite3`` of many
Python builds cannot load extensions. Each write batch is one SQLite transaction (``UPDATE`` by id, never an
insert); the ledger is a SQLite file beside the database (``<file>.nudge-ledger.sqlite``). Other processes may
read and write the same file meanwhile (SQLite's own locking, a 30 s busy timeout). sqlite-vec searches by brute
force (no ANN index): exact competitors are one streamed scan scored in NumPy; ``exact=False`` on a ``vec0`` table
is its own KNN query (also exact).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._base import SIMILARITIES, BaseStore, StoreError, beside
from ._registry import StoreURI

__all__ = ["SQLiteStore"]

_INSTALL = 'SQLite stores need apsw and sqlite-vec: pip install "nudge-rag[stores]" (or apsw sqlite-vec)'
#: sqlite-vec's largest k in one vec0 KNN query
_VEC0_K_MAX = 4096
_VEC0_METRIC = {"cosine": "cosine", "l2": "l2"}
BUSY_TIMEOUT_MS = 30_000


def _libs() -> tuple[Any, Any]:
    try:
        import apsw
        import sqlite_vec  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover
        raise ImportError(_INSTALL) from exc
    return apsw, sqlite_vec


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def load_sqlite_vec(conn: Any) -> None:
    """Load the sqlite-vec extension into an APSW connection (a no-op when it is loaded already)."""
    _, sqlite_vec = _libs()
    try:
        conn.execute("SELECT vec_version()").fetchall()
        return
    except Exception:
        pass
    conn.enable_load_extension(True)
    try:
        conn.load_extension(sqlite_vec.loadable_path())
    finally:
        conn.enable_load_extension(False)


class SQLiteStore(BaseStore):
    """A SQLite table (plain, or a sqlite-vec ``vec0`` virtual table).

    Args:
        conn: a path to the database file, an ``apsw.Connection``, or a standard-library ``sqlite3`` connection
            to a file (its file is opened again with APSW).
        table: the table name.
        id_column, vector_column: default ``id`` / ``embedding``.
        similarity: ``"cosine"`` (default; a ``vec0`` table's own ``distance_metric`` when it has one),
            ``"inner_product"`` or ``"l2"``.
    """

    #: sqlite-vec has no ANN index: every exact search is a scan, and one streamed scan serves all queries
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
        apsw, _ = _libs()
        self.own_conn = not isinstance(conn, apsw.Connection)
        if self.own_conn:
            path = _path_of(conn)
            if path != ":memory:" and not Path(path).exists():
                raise StoreError(f"SQLite database {path} does not exist")
            conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI)
        self.conn = conn
        self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        load_sqlite_vec(self.conn)
        self.path = str(self.conn.filename or ":memory:")
        self.table, self.id_column, self.vector_column = table, id_column, vector_column
        self.batch_size = batch_size
        row = self.conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        if row is None:
            raise StoreError(f"SQLite database {self.path} has no table {table!r}")
        ddl = str(row[0] or "")
        self.vec0 = bool(re.search(r"\busing\s+vec0\s*\(", ddl, re.IGNORECASE))
        cols = {str(r[1]): str(r[2] or "") for r in self.conn.execute(f"PRAGMA table_info({_ident(table)})")}
        for c in (id_column, vector_column):
            if c not in cols and not (c == id_column and c.lower() == "rowid"):
                raise StoreError(
                    f"SQLite table {table!r} has no column {c!r} (columns: {', '.join(cols)}); "
                    "name them with id_column= / vector_column= (&id_column=...&vector_column=... in a URI)"
                )
        id_type = "INTEGER" if id_column.lower() == "rowid" else cols[id_column].upper()
        self._int_ids = "INT" in id_type
        self._metric = None
        if self.vec0:
            m = re.search(rf"\b{re.escape(vector_column)}\s+float\[(\d+)\]([^,)]*)", ddl, re.IGNORECASE)
            if m is None:
                raise StoreError(f"vec0 table {table!r}: column {vector_column!r} is not a float[N] vector")
            self.dim = int(m.group(1))
            metric = re.search(r"distance_metric\s*=\s*(\w+)", m.group(2), re.IGNORECASE)
            self._metric = metric.group(1).lower() if metric else "l2"
        else:
            self.dim = self._dimension(cols[vector_column], ddl)
        default = {"cosine": "cosine", "l2": "l2"}.get(self._metric or "cosine", "cosine")
        self.similarity = similarity or default
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {list(SIMILARITIES)}, got {self.similarity!r}")
        if self.path == ":memory:":
            self.ledger_owner = self.conn

    @classmethod
    def from_uri(cls, uri: StoreURI, **kwargs: Any) -> SQLiteStore:
        """``sqlite:///path/file.db?table=T[&id_column=..&vector_column=..&similarity=..]``."""
        table = str(uri.param("table", required=True))
        opts: dict[str, Any] = uri.options("id_column", "vector_column", "similarity")
        return cls(uri.path, table, **opts, **kwargs)

    @property
    def label(self) -> str:
        return f"SQLite table {self.table!r}"

    def _ledger_key(self) -> str:
        return f"sqlite:{self.table}"

    def _ledger_home(self) -> Path | None:
        return None if self.path == ":memory:" else beside(self.path)

    def describe(self) -> str:
        kind = "vec0 table" if self.vec0 else "table"
        return f"SQLite {kind} {self.table!r} ({self.count()} x {self.dim}, {self.similarity})"

    def close(self) -> None:
        self._close_ledger()
        if self.own_conn:
            self.conn.close()

    # ------------------------------------------------------------------ helpers
    def _dimension(self, declared: str, ddl: str) -> int:
        m = re.search(r"float\[(\d+)\]", declared, re.IGNORECASE) or re.search(
            rf"vec_length\(\s*{re.escape(self.vector_column)}\s*\)\s*==?\s*(\d+)", ddl, re.IGNORECASE
        )
        if m:
            return int(m.group(1))
        row = self.conn.execute(f"SELECT {self._v()} FROM {self._t()} WHERE {self._v()} IS NOT NULL LIMIT 1").fetchone()
        if row is None:
            raise StoreError(f"cannot tell the dimension of SQLite table {self.table!r}: it holds no vector")
        return int(_decode(row[0], None).size)

    def _t(self) -> str:
        return _ident(self.table)

    def _i(self) -> str:
        return "rowid" if self.id_column.lower() == "rowid" else _ident(self.id_column)

    def _v(self) -> str:
        return _ident(self.vector_column)

    def _key(self, i: str) -> Any:
        if self._int_ids:
            try:
                return int(i)
            except ValueError:
                return i
        return i

    def _vectors(self, values: list[Any]) -> np.ndarray:
        if not values:
            return np.zeros((0, self.dim), dtype=np.float32)
        if all(isinstance(v, bytes) and len(v) == 4 * self.dim for v in values):
            return np.frombuffer(b"".join(values), dtype="<f4").reshape(-1, self.dim).astype(np.float32)
        return np.stack([_decode(v, self.dim) for v in values])

    # ------------------------------------------------------------------ hooks
    def count(self) -> int:
        row = self.conn.execute(f"SELECT count(*) FROM {self._t()} WHERE {self._v()} IS NOT NULL").fetchone()
        return int(row[0])

    def _get(self, ids: list[str], *, lock: bool = False) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        step = 500  # well under SQLite's bound on parameters per statement
        for b0 in range(0, len(ids), step):
            part = ids[b0 : b0 + step]
            marks = ", ".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT {self._i()}, {self._v()} FROM {self._t()} WHERE {self._i()} IN ({marks}) "
                f"AND {self._v()} IS NOT NULL",
                [self._key(i) for i in part],
            ).fetchall()
            vecs = self._vectors([r[1] for r in rows])
            out.update(zip((str(r[0]) for r in rows), vecs))
        return out

    def _put(self, ids: list[str], vectors: np.ndarray) -> None:
        """One transaction of ``UPDATE ... WHERE id = ?`` (a deleted row stays deleted)."""
        v32 = np.ascontiguousarray(vectors, dtype="<f4")
        sql = f"UPDATE {self._t()} SET {self._v()} = ? WHERE {self._i()} = ?"
        with self.conn:
            self.conn.cursor().executemany(sql, [(v.tobytes(), self._key(i)) for i, v in zip(ids, v32)])

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        cur = self.conn.cursor()
        cur.execute(f"SELECT {self._i()}, {self._v()} FROM {self._t()} WHERE {self._v()} IS NOT NULL")
        try:
            while True:
                rows = _take(cur, batch)
                if not rows:
                    return
                yield [str(r[0]) for r in rows], self._vectors([r[1] for r in rows])
        finally:
            cur.close()

    def _search(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, list[list[str]]]:
        """A vec0 table's own KNN query (brute force, exact) where its metric is the store's; else one scan."""
        if not self.vec0 or _VEC0_METRIC.get(self.similarity) != self._metric or k > _VEC0_K_MAX:
            return self.scan_search(queries, k)
        sql = f"SELECT {self._i()}, distance FROM {self._t()} WHERE {self._v()} MATCH ? AND k = ? ORDER BY distance"
        out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        out_ids: list[list[str]] = []
        for j, q in enumerate(np.ascontiguousarray(queries, dtype="<f4")):
            rows = self.conn.execute(sql, (q.tobytes(), k)).fetchall()
            d = np.asarray([r[1] for r in rows], dtype=np.float64)
            out_s[j, : len(rows)] = 1 - d if self.similarity == "cosine" else -(d**2)
            out_ids.append([str(r[0]) for r in rows])
        return out_s, out_ids


def _take(cur: Any, n: int) -> list[Any]:
    out = []
    for row in cur:
        out.append(row)
        if len(out) >= n:
            break
    return out


def _decode(value: Any, dim: int | None) -> np.ndarray:
    """A stored vector (float32 blob, or JSON text) as float32."""
    if isinstance(value, (bytes, memoryview)):
        raw = bytes(value)
        if len(raw) % 4:
            raise StoreError(f"a stored vector blob of {len(raw)} bytes is not float32")
        out = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif isinstance(value, str):
        out = np.asarray(json.loads(value), dtype=np.float32)
    else:
        raise StoreError(f"a stored vector is {type(value).__name__}, not a float32 blob or JSON array")
    if dim is not None and out.size != dim:
        raise StoreError(f"a stored vector has {out.size} values, not {dim}")
    return out


def _path_of(conn: Any) -> str:
    """The file of a path or of a standard-library ``sqlite3`` connection."""
    if isinstance(conn, (str, Path)):
        return str(conn)
    if hasattr(conn, "execute"):
        for _, name, file in conn.execute("PRAGMA database_list").fetchall():
            if name == "main":
                if not file:
                    raise StoreError("an in-memory sqlite3 connection cannot be shared: pass an apsw.Connection")
                return str(file)
    raise TypeError(f"conn must be a path, an apsw.Connection or a sqlite3 connection, got {type(conn).__name__}")
