"""PostgreSQL + pgvector tables as a :class:`~nudge_rag.stores.VectorStore` (psycopg 3).

A table needs an id column and a ``vector`` column (default ``id`` and ``embedding``). The frameworks' own
layouts are recognised: LlamaIndex ``PGVectorStore`` (table ``data_<name>``, ids in ``node_id``) and
langchain-postgres ``PGVector`` (``langchain_pg_embedding``, rows of one collection: ``collection=NAME``).

Every write is one transaction: the originals of rows never written before are copied into
``<table>__nudge_originals``, the new vectors are sent with binary ``COPY`` into a temporary table and
applied with one ``UPDATE ... FROM`` per batch; any failure rolls everything back. :meth:`revert` restores
the originals and drops the side table, in one transaction too. Exact search is a sequential scan
(``enable_indexscan`` / ``enable_bitmapscan`` off for the query); ``exact=False`` lets PostgreSQL use an
HNSW / IVFFlat index. An HNSW index scan returns at most ``hnsw.ef_search`` rows (default 40), so each ANN
search sets ``hnsw.ef_search = max(k, 40)`` for its transaction (pgvector caps it at 1000); on pgvector >= 0.8
``hnsw.iterative_scan = strict_order`` and ``ivfflat.iterative_scan = relaxed_order`` let the scan go on past
that. A query that still comes back short (k > 1000 before pgvector 0.8, IVFFlat ``probes`` too few, a
collection filter) is answered by exact search instead, with a ``RuntimeWarning``.

Point it at your own server with ``postgresql://user:password@host:5432/db?table=docs`` (or pass a psycopg
connection or DSN); the tests start a throw-away server with the ``pgserver`` package.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ._base import BaseStore, StoreError, as_id_list, check_vectors, progress
from ._registry import StoreURI

__all__ = ["PgVectorStore"]

_INSTALL = 'pgvector stores need psycopg and pgvector: pip install "nudge-rag[stores]" (or "psycopg[binary]" pgvector)'
_SIDE = "__nudge_originals"
#: pgvector's bounds on ``hnsw.ef_search``: its default and its maximum.
EF_SEARCH_DEFAULT, EF_SEARCH_MAX = 40, 1000
# pgvector operator (distance) and "distance -> higher-is-better score" per similarity
_OPS = {"cosine": "<=>", "inner_product": "<#>", "l2": "<->"}
_OPCLASS = {"vector_cosine_ops": "cosine", "vector_ip_ops": "inner_product", "vector_l2_ops": "l2"}


def _libs() -> tuple[Any, Any, Any]:
    try:
        import psycopg
        from pgvector.psycopg import register_vector
        from psycopg import sql
    except ImportError as exc:  # pragma: no cover
        raise ImportError(_INSTALL) from exc
    return psycopg, sql, register_vector


def _vec(v: Any) -> np.ndarray:
    """A fetched vector value (numpy array, pgvector ``Vector`` or text) as float32."""
    if hasattr(v, "to_numpy"):
        v = v.to_numpy()
    elif isinstance(v, str):
        v = np.asarray(v.strip("[]").split(","), dtype=np.float32)
    return np.asarray(v, dtype=np.float32)


def _stack(values: list[Any], dim: int) -> np.ndarray:
    return np.stack([_vec(v) for v in values]) if values else np.zeros((0, dim), dtype=np.float32)


class PgVectorStore(BaseStore):
    """A pgvector table (or one langchain-postgres collection).

    Args:
        conn: a psycopg 3 connection, or a DSN / ``postgresql://`` URL to connect to.
        table: table name (``schema.table`` allowed). For LlamaIndex the ``table_name`` you gave
            ``PGVectorStore`` (``data_`` is prefixed when only that table exists).
        id_column, vector_column: default ``id`` / ``embedding`` (``node_id`` for the LlamaIndex layout).
        collection: langchain-postgres collection name (rows of ``langchain_pg_embedding`` in it).
        similarity: how the table is searched; default from its vector index's operator class, else cosine.
    """

    def __init__(
        self,
        conn: Any,
        table: str = "langchain_pg_embedding",
        *,
        id_column: str | None = None,
        vector_column: str | None = None,
        collection: str | None = None,
        similarity: str | None = None,
        batch_size: int = 2000,
    ) -> None:
        psycopg, self._sql, register_vector = _libs()
        self.own_conn = not hasattr(conn, "cursor")
        self.conn = psycopg.connect(conn, autocommit=True) if self.own_conn else conn
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.conn.commit()
        register_vector(self.conn)
        row = self.conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        self.conn.commit()
        #: the server's pgvector version, e.g. (0, 6, 2)
        self.pgvector_version = tuple(int(x) for x in re.findall(r"\d+", str(row[0]))[:3]) if row else (0, 0, 0)
        self.batch_size = batch_size
        schema, name = table.split(".", 1) if "." in table else ("public", table)
        if not self._exists(schema, name) and self._exists(schema, "data_" + name):
            name = "data_" + name  # LlamaIndex PGVectorStore prefixes its table name
        if not self._exists(schema, name):
            raise StoreError(f"PostgreSQL has no table {schema}.{name}")
        self.schema, self.table = schema, name
        cols = self._columns()
        if id_column is None:
            id_column = "node_id" if name.startswith("data_") and "node_id" in cols else "id"
        vector_column = vector_column or "embedding"
        for c in (id_column, vector_column):
            if c not in cols:
                raise StoreError(
                    f"table {schema}.{name} has no column {c!r} (columns: {', '.join(sorted(cols))}); "
                    "name them with id_column= / vector_column= (&id_column=...&vector_column=... in a URI)"
                )
        if not cols[vector_column].startswith("vector"):
            raise StoreError(f"column {vector_column!r} is {cols[vector_column]}, not a pgvector vector")
        self.id_column, self.vector_column = id_column, vector_column
        self.id_type = cols[id_column]
        if collection is None and name == "langchain_pg_embedding" and "collection_id" in cols:
            raise StoreError("langchain_pg_embedding holds several collections: pass collection= (its name)")
        self.collection = collection
        self._where, self._where_args = self._filter()
        self.dim = self._dimension(cols[vector_column])
        self.similarity = similarity or self._index_similarity() or "cosine"
        if self.similarity not in _OPS:
            raise ValueError(f"similarity must be one of {sorted(_OPS)}, got {self.similarity!r}")
        # one side table per langchain-postgres collection: they share langchain_pg_embedding, and a revert drops
        # its side table, which must never take another collection's originals with it
        tag = "_" + hashlib.sha1(collection.encode()).hexdigest()[:10] if collection else ""
        self.side = name + _SIDE + tag

    @classmethod
    def from_uri(cls, uri: StoreURI, **kwargs: Any) -> PgVectorStore:
        """``postgresql://user[:password]@host:port/db?table=T[&id_column=..&vector_column=..&collection=..]``."""
        keep = {"table", "id_column", "vector_column", "collection", "similarity"}
        table = uri.param("table", "langchain_pg_embedding")
        dsn_query = "&".join(f"{k}={v}" for k, v in uri.params.items() if k not in keep)
        dsn = uri.raw.split("?", 1)[0].replace(f"{uri.raw.split('://', 1)[0]}://", "postgresql://", 1)
        if dsn_query:
            dsn += "?" + dsn_query
        return cls(
            dsn,
            str(table),
            id_column=uri.param("id_column"),
            vector_column=uri.param("vector_column"),
            collection=uri.param("collection"),
            similarity=uri.param("similarity"),
            **kwargs,
        )

    def describe(self) -> str:
        coll = f", collection {self.collection!r}" if self.collection else ""
        return (
            f"PostgreSQL table {self.schema}.{self.table}{coll} ({self.id_column}, {self.vector_column}: "
            f"{self.count()} x {self.dim}, {self.similarity})"
        )

    def close(self) -> None:
        if self.own_conn and not self.conn.closed:
            self.conn.close()

    # ------------------------------------------------------------------ introspection
    def _exists(self, schema: str, name: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s", (schema, name)
        ).fetchone()
        self.conn.commit()
        return row is not None

    def _columns(self) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (f'"{self.schema}"."{self.table}"',),
        ).fetchall()
        self.conn.commit()
        return dict(rows)

    def _dimension(self, vtype: str) -> int:
        m = re.fullmatch(r"vector\((\d+)\)", vtype)
        if m:
            return int(m.group(1))
        row = self.conn.execute(self._q("SELECT vector_dims({v}) FROM {t}{w} LIMIT 1"), self._where_args).fetchone()
        self.conn.commit()
        if row is None:
            raise StoreError(f"cannot tell the dimension of {self.schema}.{self.table}.{self.vector_column}: empty")
        return int(row[0])

    def _index_similarity(self) -> str | None:
        rows = self.conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            (f'"{self.schema}"."{self.table}"',),
        ).fetchall()
        self.conn.commit()
        for (definition,) in rows:
            if self.vector_column in definition:
                for opclass, sim in _OPCLASS.items():
                    if opclass in definition:
                        return sim
        return None

    def _filter(self) -> tuple[str, tuple[Any, ...]]:
        if self.collection is None:
            return "", ()
        row = self.conn.execute(
            "SELECT uuid FROM langchain_pg_collection WHERE name = %s", (self.collection,)
        ).fetchone()
        self.conn.commit()
        if row is None:
            raise StoreError(f"langchain-postgres has no collection {self.collection!r}")
        return " WHERE collection_id = %s", (row[0],)

    def _q(self, template: str, **extra: Any) -> Any:
        """A composed SQL statement: {t} table, {s} side table, {i} id, {v} vector, {w} the collection filter,
        {ity} the id type."""
        sql = self._sql
        return sql.SQL(template).format(
            t=sql.Identifier(self.schema, self.table),
            s=sql.Identifier(self.schema, getattr(self, "side", self.table + _SIDE)),
            i=sql.Identifier(self.id_column),
            v=sql.Identifier(self.vector_column),
            w=sql.SQL(self._where),
            ity=sql.SQL(self.id_type),
            **extra,
        )

    def _and(self) -> str:
        return " AND " + self._where.removeprefix(" WHERE ") if self._where else ""

    # ------------------------------------------------------------------ hooks
    def count(self) -> int:
        row = self.conn.execute(self._q("SELECT count(*) FROM {t}{w}"), self._where_args).fetchone()
        self.conn.commit()
        return int(row[0])

    def _fetch(self, ids: list[str]) -> np.ndarray:
        rows = self.conn.execute(
            self._q("SELECT {i}::text, {v} FROM {t} WHERE {i} = ANY(%s::{ity}[])" + self._and()),
            (ids, *self._where_args),
            binary=True,
        ).fetchall()
        self.conn.commit()
        got = {r[0]: r[1] for r in rows}
        missing = [i for i in ids if i not in got]
        if missing:
            raise StoreError(f"{len(missing)} id(s) not in {self.schema}.{self.table} (first: {missing[0]!r})")
        return _stack([got[i] for i in ids], self.dim)

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        with self.conn.transaction(), self.conn.cursor(name="nudge_rag_scan", binary=True) as cur:
            cur.itersize = batch
            cur.execute(self._q("SELECT {i}::text, {v} FROM {t}{w}"), self._where_args)
            while rows := cur.fetchmany(batch):
                yield [r[0] for r in rows], _stack([r[1] for r in rows], self.dim)

    def _search(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, list[list[str]]]:
        try:
            from pgvector import Vector  # pgvector-python >= 0.4
        except ImportError:  # 0.3.x, which langchain-postgres requires
            from pgvector.utils import Vector

        op = self._sql.SQL(_OPS[self.similarity])
        stmt = self._q("SELECT {i}::text, {v} {op} %s AS d FROM {t}{w} ORDER BY d LIMIT %s", op=op)
        out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        out_ids: list[list[str]] = []
        with self.conn.transaction():
            if exact:
                self.conn.execute("SET LOCAL enable_indexscan = off")
                self.conn.execute("SET LOCAL enable_bitmapscan = off")
                self.conn.execute("SET LOCAL enable_seqscan = on")
            else:
                ef = min(max(k, EF_SEARCH_DEFAULT), EF_SEARCH_MAX)
                self.conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
                if self.pgvector_version >= (0, 8, 0):
                    self.conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
                    self.conn.execute("SET LOCAL ivfflat.iterative_scan = relaxed_order")
            for j, q in enumerate(queries):
                # never a prepared statement: its cached plan would ignore the SET LOCALs above (psycopg
                # prepares a statement run 5 times; exact search then silently used the index)
                rows = self.conn.execute(stmt, (Vector(q), *self._where_args, k), prepare=False).fetchall()
                if not exact:  # relaxed_order may return rows slightly out of order
                    rows.sort(key=lambda r: r[1])
                d = np.asarray([r[1] for r in rows], dtype=np.float64)
                score = {"cosine": 1 - d, "inner_product": -d, "l2": -(d**2)}[self.similarity]
                out_s[j, : len(rows)] = score
                out_ids.append([r[0] for r in rows])
        return out_s, out_ids

    # ------------------------------------------------------------------ writes: one transaction
    def _saved_ids(self, ids: list[str]) -> set[str]:
        if not self._exists(self.schema, self.side):
            return set()
        rows = self.conn.execute(self._q("SELECT {i}::text FROM {s} WHERE {i} = ANY(%s::{ity}[])"), (ids,)).fetchall()
        self.conn.commit()
        return {r[0] for r in rows}

    def write(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Overwrite the vectors of ``ids`` in one transaction (originals saved first; all or nothing)."""
        id_list = as_id_list(ids, "ids to write")
        new = check_vectors(vectors, len(id_list), self.dim)
        if not id_list:
            return
        self.fetch(id_list)  # unknown ids raise before anything is written
        with self.conn.transaction():
            side = "CREATE TABLE IF NOT EXISTS {s} ({i} {ity} PRIMARY KEY, {v} vector(" + str(int(self.dim)) + "))"
            self.conn.execute(self._q(side))
            self.conn.execute(
                self._q("CREATE TEMP TABLE IF NOT EXISTS nudge_rag_patch (id text, v vector) ON COMMIT DROP")
            )
            starts = range(0, len(id_list), self.batch_size)
            for b0 in progress(starts, total=len(starts), desc="write", enabled=self.show_progress):
                self._write_batch(id_list[b0 : b0 + self.batch_size], new[b0 : b0 + self.batch_size])

    def _write_batch(self, ids: list[str], vectors: np.ndarray) -> None:
        """One batch inside the write transaction: save originals not yet saved, COPY, UPDATE."""
        self.conn.execute(
            self._q(
                "INSERT INTO {s} ({i}, {v}) SELECT {i}, {v} FROM {t} WHERE {i} = ANY(%s::{ity}[])"
                + self._and()
                + " ON CONFLICT DO NOTHING"
            ),
            (ids, *self._where_args),
        )
        self.conn.execute("TRUNCATE nudge_rag_patch")
        with self.conn.cursor() as cur, cur.copy("COPY nudge_rag_patch (id, v) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["text", "vector"])
            for i, v in zip(ids, vectors):
                cp.write_row((i, v))
        self.conn.execute(
            self._q("UPDATE {t} SET {v} = p.v FROM nudge_rag_patch p WHERE {t}.{i} = p.id::{ity}" + self._and()),
            self._where_args,
        )

    def _put(self, ids: list[str], vectors: np.ndarray) -> None:  # pragma: no cover - writes go through write()
        raise NotImplementedError

    def revert(self) -> int:
        """Restore every saved original and drop the side table, in one transaction."""
        if not self._exists(self.schema, self.side):
            return 0
        with self.conn.transaction():
            cur = self.conn.execute(
                self._q("UPDATE {t} SET {v} = o.{v} FROM {s} o WHERE {t}.{i} = o.{i}" + self._and()), self._where_args
            )
            n = cur.rowcount
            self.conn.execute(self._q("DROP TABLE {s}"))
        return int(n)
