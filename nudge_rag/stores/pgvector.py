"""PostgreSQL + pgvector tables as a :class:`~nudge_rag.stores.VectorStore` (psycopg 3).

A table needs an id column and a ``vector`` column (default ``id`` and ``embedding``). The frameworks' own
layouts are recognised: LlamaIndex ``PGVectorStore`` (table ``data_<name>``, ids in ``node_id``) and
langchain-postgres ``PGVector`` (``langchain_pg_embedding``, rows of one collection: ``collection=NAME``).

Every write, revert and reapply is one transaction: each batch's rows are read ``FOR UPDATE`` (compare-and-set
against the vectors the fit read), recorded in the ledger tables ``nudge_rag_ledger_*`` of the same schema
(:class:`~nudge_rag.stores._ledger.PgLedger`), and the new vectors are sent with binary ``COPY`` into a temporary
table and applied with one ``UPDATE ... FROM``; any failure rolls everything back. One writer at a time: a
session-level advisory lock. Exact search is a sequential scan
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

import contextlib
import itertools
import queue
import re
import threading
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from ._base import BaseStore, StoreError
from ._ledger import Ledger, PgLedger
from ._registry import StoreURI

__all__ = ["PgVectorStore"]

_INSTALL = 'pgvector stores need psycopg and pgvector: pip install "nudge-rag[stores]" (or "psycopg[binary]" pgvector)'
#: Bytes of a binary COPY parsed at once by :meth:`PgVectorStore._scan`.
_COPY_CHUNK = 4 << 20
#: Blocks the scan's COPY reader thread may fill ahead of the scorer.
_READ_AHEAD = 2
_END = object()


class _Stopped(Exception):
    """The scan's consumer stopped early: the reader thread leaves the COPY (cancelling it)."""


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


def _copy_record(dim: int, width: int) -> np.dtype:
    """The fixed-width row of the binary COPY in :meth:`PgVectorStore._scan`: field count, (length, pgvector's
    binary vector: dim, unused, dim big-endian float32), (length, the id's UTF-8 bytes zero-padded to ``width``;
    NumPy drops the padding, and PostgreSQL text never holds a zero byte)."""
    return np.dtype(
        [
            ("nfields", ">i2"),
            ("vlen", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("vec", ">f4", (dim,)),
            ("blen", ">i4"),
            ("id", f"S{width}"),
        ]
    )


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
        self._tx_depth = 0
        self.own_conn = not hasattr(conn, "cursor")
        self.conn = psycopg.connect(conn, autocommit=True) if self.own_conn else conn
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self._done()
        register_vector(self.conn)
        row = self.conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        self._done()
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

    @property
    def label(self) -> str:
        coll = f" (collection {self.collection!r})" if self.collection else ""
        return f"PostgreSQL table {self.schema}.{self.table}{coll}"

    def _ledger_key(self) -> str:
        return f"{self.schema}.{self.table}" + (f"#{self.collection}" if self.collection else "")

    def _open_ledger(self) -> Ledger:
        return PgLedger(self.conn, self.schema, self._ledger_key(), self.dim)

    transactional = True

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        with self.conn.transaction():
            self._tx_depth += 1
            try:
                yield
            finally:
                self._tx_depth -= 1

    def _done(self) -> None:
        """End the implicit transaction of a read, unless inside :meth:`_atomic` (or autocommit)."""
        if self._tx_depth == 0 and not self.conn.autocommit:
            self.conn.commit()

    def describe(self) -> str:
        coll = f", collection {self.collection!r}" if self.collection else ""
        return (
            f"PostgreSQL table {self.schema}.{self.table}{coll} ({self.id_column}, {self.vector_column}: "
            f"{self.count()} x {self.dim}, {self.similarity})"
        )

    def close(self) -> None:
        self._close_ledger()
        if self.own_conn and not self.conn.closed:
            self.conn.close()

    # ------------------------------------------------------------------ introspection
    def _exists(self, schema: str, name: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s", (schema, name)
        ).fetchone()
        self._done()
        return row is not None

    def _columns(self) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (f'"{self.schema}"."{self.table}"',),
        ).fetchall()
        self._done()
        return dict(rows)

    def _dimension(self, vtype: str) -> int:
        m = re.fullmatch(r"vector\((\d+)\)", vtype)
        if m:
            return int(m.group(1))
        row = self.conn.execute(self._q("SELECT vector_dims({v}) FROM {t}{w} LIMIT 1"), self._where_args).fetchone()
        self._done()
        if row is None:
            raise StoreError(f"cannot tell the dimension of {self.schema}.{self.table}.{self.vector_column}: empty")
        return int(row[0])

    def _index_similarity(self) -> str | None:
        rows = self.conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            (f'"{self.schema}"."{self.table}"',),
        ).fetchall()
        self._done()
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
        self._done()
        if row is None:
            raise StoreError(f"langchain-postgres has no collection {self.collection!r}")
        return " WHERE collection_id = %s", (row[0],)

    def _q(self, template: str, **extra: Any) -> Any:
        """A composed SQL statement: {t} table, {i} id, {v} vector, {w} the collection filter,
        {ity} the id type."""
        sql = self._sql
        return sql.SQL(template).format(
            t=sql.Identifier(self.schema, self.table),
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
        self._done()
        return int(row[0])

    def _get(self, ids: list[str], *, lock: bool = False) -> dict[str, np.ndarray]:
        rows = self.conn.execute(
            self._q("SELECT {i}::text, {v} FROM {t} WHERE {i} = ANY(%s::{ity}[])" + self._and())
            + self._sql.SQL(" FOR UPDATE" if lock and self._tx_depth else ""),
            (ids, *self._where_args),
            binary=True,
        ).fetchall()
        self._done()
        return {r[0]: _vec(r[1]) for r in rows}

    #: exact search in PostgreSQL is a sequential scan per query: one streamed scan scored here is much faster
    prefers_scan = True

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every row as (ids, (b, d) float32) blocks of ``batch`` rows (the last one shorter), streamed with one
        binary ``COPY ... TO STDOUT`` by a reader thread that fills fixed-size NumPy blocks while the caller
        scores the previous ones (at most ``_READ_AHEAD`` blocks wait in between, so memory is
        O(batch x d) whatever the table's size). Rows come in the table's scan order; the blocks' contents do
        not depend on ``batch`` or on how the bytes arrive."""
        blocks: queue.Queue[Any] = queue.Queue(maxsize=_READ_AHEAD)
        stop = threading.Event()

        def hand_over(item: Any) -> bool:
            while not stop.is_set():
                try:
                    blocks.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def reader() -> None:
            gen = self._copy_blocks(batch, stop)
            try:
                for item in gen:
                    if not hand_over(item):
                        return
                hand_over(_END)
            except BaseException as exc:  # handed to the consumer, raised there
                hand_over(exc)
            finally:
                gen.close()

        thread = threading.Thread(target=reader, name="nudge-rag-pgvector-scan", daemon=True)
        thread.start()
        try:
            while True:
                item = blocks.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    def _copy_blocks(self, batch: int, stop: threading.Event) -> Generator[tuple[list[str], np.ndarray], None, None]:
        """The rows of one binary ``COPY``, whose rows have a fixed width (the vector, then the id zero-padded to
        the longest), parsed by NumPy every ``_COPY_CHUNK`` bytes (no per-row Python beyond collecting the bytes)
        and copied into (batch, d) float32 blocks; stops (cancelling the COPY) once ``stop`` is set."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        with self.conn.transaction():
            row = self.conn.execute(
                self._q("SELECT COALESCE(max(octet_length({i}::text)), 0) FROM {t}{w}"), self._where_args
            ).fetchone()
            width = max(1, int(row[0]))
            pad = self._sql.Literal("00" * width)
            select = self._q(
                "SELECT {v}, convert_to({i}::text, 'UTF8') || "
                "decode(substr({pad}, 1, 2 * ({n} - octet_length({i}::text))), 'hex') FROM {t}{w}",
                pad=pad,
                n=self._sql.Literal(width),
            )
            copy_sql = self._sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(select)
            rec = _copy_record(self.dim, width)
            block = np.empty((batch, self.dim), dtype=np.float32)
            block_ids: list[str] = []
            with self.conn.cursor() as cur, cur.copy(copy_sql, self._where_args or None) as copy:
                parts: list[bytes] = []  # libpq hands over one row per message: join them, parse ~4 MiB at once
                size, rest, header = 0, b"", True
                for piece in itertools.chain(copy, [b""]):
                    if stop.is_set():
                        raise _Stopped  # leaving the COPY with an exception cancels it on the server
                    parts.append(bytes(piece))
                    size += len(piece)
                    if size < _COPY_CHUNK and piece:
                        continue
                    buf = rest + b"".join(parts)
                    parts, size = [], 0
                    if header:  # signature, flags, extension length
                        buf = buf[19 + int.from_bytes(buf[15:19], "big") :]
                        header = False
                    whole = len(buf) // rec.itemsize
                    recs = np.frombuffer(buf, dtype=rec, count=whole)
                    rest = buf[whole * rec.itemsize :]
                    recs = recs[recs["nfields"] == 2]
                    if recs.size and (recs["dim"] != self.dim).any():
                        raise StoreError(f"a stored vector does not have {self.dim} dimensions")
                    ids = np.char.decode(recs["id"], "utf-8").tolist()
                    done = 0
                    while done < len(ids):
                        take = min(batch - len(block_ids), len(ids) - done)
                        fill = len(block_ids)
                        block[fill : fill + take] = recs["vec"][done : done + take]  # big-endian -> float32
                        block_ids += ids[done : done + take]
                        done += take
                        if len(block_ids) == batch:
                            yield block_ids, block
                            block, block_ids = np.empty((batch, self.dim), dtype=np.float32), []
                if block_ids:
                    yield block_ids, block[: len(block_ids)]

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

    # ------------------------------------------------------------------ writes (inside _atomic)
    def _put(self, ids: list[str], vectors: np.ndarray) -> None:
        """Binary ``COPY`` of the batch into a temporary table, then one ``UPDATE ... FROM`` (never an insert)."""
        with self._atomic():
            self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS nudge_rag_patch (id text, v vector) ON COMMIT DROP")
            self.conn.execute("TRUNCATE nudge_rag_patch")
            with (
                self.conn.cursor() as cur,
                cur.copy("COPY nudge_rag_patch (id, v) FROM STDIN WITH (FORMAT BINARY)") as cp,
            ):
                cp.set_types(["text", "vector"])
                for i, v in zip(ids, vectors):
                    cp.write_row((i, v))
            self.conn.execute(
                self._q("UPDATE {t} SET {v} = p.v FROM nudge_rag_patch p WHERE {t}.{i} = p.id::{ity}" + self._and()),
                self._where_args,
            )
