"""The ledger: what every store fine-tune wrote, kept beside the store, and the one-writer-at-a-time lock.

For every row a write changed the ledger keeps the row's *original* vector (what it held before its first nudge,
or before the latest nudge if the row changed in between), the vector *written*, the generation (one per write
call) and the time. Revert, status and reapply all read it; nothing here ever drops a table or a file.

Two homes, one schema (four tables, every row keyed by the store's ``store_key``):

* :class:`SqliteLedger`: a SQLite file (standard library) beside the store: ``<store path>.nudge-ledger.sqlite``
  for stores on disk, a file named in the URI (``?ledger=PATH``) or in the user's data folder for servers, and an
  in-memory database for in-process stores. SQLite commits are atomic and durable, so a ``kill -9`` leaves the
  ledger as of its last commit.
* :class:`PgLedger`: tables ``nudge_rag_ledger_*`` in the user's PostgreSQL schema, on the store's own connection,
  so a ledger update commits in the same transaction as the rows it describes. Their names are fixed and short
  (never truncated, never a user table's), and each carries a ``COMMENT`` marker: a table of that name without the
  marker makes the ledger refuse to open instead of touching it.

Vectors are kept as little-endian float32 bytes (``BLOB`` / ``bytea``), so they come back bit for bit.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import StoreError, StoreLockedError

__all__ = ["Ledger", "LedgerRecord", "SqliteLedger", "PgLedger", "Generation", "MARKER", "default_ledger_dir"]

#: The marker every ledger table or file carries; nothing without it is ever written to as a ledger.
MARKER = "nudge-rag ledger v1"
#: ids per SQL statement when reading records by id.
_ID_CHUNK = 500
_TABLES = ("rows", "generations", "locks", "meta")


def default_ledger_dir() -> Path:
    """Where ledgers of server-backed stores live unless a URI names one: ``$NUDGE_RAG_HOME/ledgers``, else
    ``$XDG_DATA_HOME/nudge-rag/ledgers`` (``~/.local/share/nudge-rag/ledgers``)."""
    home = os.environ.get("NUDGE_RAG_HOME")
    if home:
        return Path(home) / "ledgers"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "nudge-rag" / "ledgers"


def _blob(v: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(v, dtype=dtype).tobytes()


def _vec(b: bytes | memoryview, dim: int, dtype: str) -> np.ndarray:
    out = np.frombuffer(bytes(b), dtype=dtype).astype(np.dtype(dtype).newbyteorder("="))
    if out.size != dim:
        raise StoreError(f"the ledger holds a vector of {out.size} values for a {dim}-d store: it is not this store's")
    return out


@dataclass(frozen=True)
class LedgerRecord:
    """One row's entry: the vector before our write (``original``), the vector written, its generation."""

    id: str
    original: np.ndarray
    written: np.ndarray
    generation: int
    at: float


@dataclass(frozen=True)
class Generation:
    """One write call: number, kind (``fit``, ``reapply``), start time (s since the epoch) and rows it wrote."""

    number: int
    kind: str
    at: float
    rows: int
    note: str = ""


class Ledger:
    """Records of one store (``key``) plus its writer lock. Subclasses supply the connection and SQL dialect."""

    ph = "?"  # parameter placeholder
    blob_type = "BLOB"
    prefix = "nudge_rag_ledger_"

    #: how vectors are kept: little-endian float32, or float64 for stores that hold Python floats
    dtype = "<f4"

    def __init__(self, key: str, dim: int) -> None:
        self.key = key
        self.dim = int(dim)
        self._depth = 0  # re-entrant lock depth
        self._thread_lock = threading.RLock()
        self._token = f"{os.getpid()}-{id(self)}-{time.time_ns()}"

    # ------------------------------------------------------------------ dialect hooks
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _executemany(self, sql: str, rows: list[Sequence[Any]]) -> None:
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        """A transaction on the ledger's connection (the store's own one for :class:`PgLedger`)."""
        raise NotImplementedError

    def _try_lock(self) -> bool:
        """Take the store's writer lock if it is free or stale; False when another live writer holds it."""
        raise NotImplementedError

    def _unlock(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def t(self, name: str) -> str:
        """The (quoted) name of ledger table ``name``."""
        return self.prefix + name

    # ------------------------------------------------------------------ schema
    def _schema(self) -> list[str]:
        b = self.blob_type
        return [
            f"CREATE TABLE IF NOT EXISTS {self.t('rows')} (store_key TEXT NOT NULL, id TEXT NOT NULL, "
            f"original {b} NOT NULL, written {b} NOT NULL, generation INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL, "
            "PRIMARY KEY (store_key, id))",
            f"CREATE TABLE IF NOT EXISTS {self.t('generations')} (store_key TEXT NOT NULL, generation INTEGER NOT NULL,"
            " kind TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, n_rows INTEGER NOT NULL, note TEXT NOT NULL, "
            "PRIMARY KEY (store_key, generation))",
            f"CREATE TABLE IF NOT EXISTS {self.t('locks')} (store_key TEXT PRIMARY KEY, token TEXT NOT NULL, "
            "pid INTEGER NOT NULL, host TEXT NOT NULL, since DOUBLE PRECISION NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.t('meta')} (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ]

    # ------------------------------------------------------------------ records
    def records(self, ids: Sequence[str]) -> dict[str, LedgerRecord]:
        """The records of those ``ids`` that have one."""
        out: dict[str, LedgerRecord] = {}
        ids = list(ids)
        for b0 in range(0, len(ids), _ID_CHUNK):
            part = ids[b0 : b0 + _ID_CHUNK]
            marks = ", ".join([self.ph] * len(part))
            rows = self._execute(
                f"SELECT id, original, written, generation, at FROM {self.t('rows')} "
                f"WHERE store_key = {self.ph} AND id IN ({marks})",
                [self.key, *part],
            ).fetchall()
            for r in rows:
                out[r[0]] = self._record(r)
        return out

    def iter_records(self, batch: int = 1024) -> Iterator[list[LedgerRecord]]:
        """Every record of this store, in batches ordered by id (keyset pagination: safe while rows go away)."""
        last = ""
        while True:
            rows = self._execute(
                f"SELECT id, original, written, generation, at FROM {self.t('rows')} "
                f"WHERE store_key = {self.ph} AND id > {self.ph} ORDER BY id LIMIT {int(batch)}",
                [self.key, last],
            ).fetchall()
            if not rows:
                return
            yield [self._record(r) for r in rows]
            last = rows[-1][0]

    def _record(self, r: Sequence[Any]) -> LedgerRecord:
        return LedgerRecord(r[0], _vec(r[1], self.dim, self.dtype), _vec(r[2], self.dim, self.dtype), int(r[3]), r[4])

    def count(self) -> int:
        """Number of rows this store's ledger holds."""
        row = self._execute(f"SELECT count(*) FROM {self.t('rows')} WHERE store_key = {self.ph}", [self.key])
        return int(row.fetchone()[0])

    def put(self, records: Sequence[LedgerRecord]) -> None:
        """Insert or replace records (inside the caller's transaction)."""
        if not records:
            return
        p = self.ph
        self._executemany(
            f"INSERT INTO {self.t('rows')} (store_key, id, original, written, generation, at) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (store_key, id) DO UPDATE SET "
            "original = excluded.original, written = excluded.written, generation = excluded.generation, "
            "at = excluded.at",
            [
                (self.key, r.id, _blob(r.original, self.dtype), _blob(r.written, self.dtype), r.generation, r.at)
                for r in records
            ],
        )

    def delete(self, ids: Sequence[str]) -> None:
        """Forget the records of ``ids`` (inside the caller's transaction)."""
        if ids:
            self._executemany(
                f"DELETE FROM {self.t('rows')} WHERE store_key = {self.ph} AND id = {self.ph}",
                [(self.key, i) for i in ids],
            )

    # ------------------------------------------------------------------ generations
    def new_generation(self, kind: str, note: str = "") -> int:
        """Open the next generation number (committed at once; its row count is set by :meth:`finish`)."""
        with self.transaction():
            row = self._execute(
                f"SELECT COALESCE(MAX(generation), 0) FROM {self.t('generations')} WHERE store_key = {self.ph}",
                [self.key],
            ).fetchone()
            number = int(row[0]) + 1
            p = self.ph
            self._execute(
                f"INSERT INTO {self.t('generations')} (store_key, generation, kind, at, n_rows, note) "
                f"VALUES ({p}, {p}, {p}, {p}, 0, {p})",
                [self.key, number, kind, time.time(), note],
            )
        return number

    def finish(self, number: int, rows: int) -> None:
        """Record how many rows generation ``number`` wrote (inside the caller's transaction)."""
        self._execute(
            f"UPDATE {self.t('generations')} SET n_rows = {self.ph} WHERE store_key = {self.ph} AND generation = "
            f"{self.ph}",
            [int(rows), self.key, int(number)],
        )

    def generations(self) -> list[Generation]:
        """Every generation of this store, oldest first."""
        rows = self._execute(
            f"SELECT generation, kind, at, n_rows, note FROM {self.t('generations')} WHERE store_key = {self.ph} "
            "ORDER BY generation",
            [self.key],
        ).fetchall()
        return [Generation(int(r[0]), str(r[1]), float(r[2]), int(r[3]), str(r[4])) for r in rows]

    # ------------------------------------------------------------------ the writer lock
    @contextlib.contextmanager
    def lock(self, what: str) -> Iterator[None]:
        """Hold the store's writer lock (re-entrant within this ledger object); a second writer gets
        :class:`StoreLockedError` naming the holder's pid, host and start time."""
        with self._thread_lock:
            if self._depth == 0 and not self._try_lock():
                holder = self.holder()
                who = (
                    f"pid {holder['pid']} on {holder['host']}, since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder['since']))}"
                    if holder
                    else "holder unknown"
                )
                raise StoreLockedError(f"another nudge-rag write is in progress on {what} ({who})")
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._unlock()

    def holder(self) -> dict[str, Any] | None:
        """The lock row of this store: pid, host, since (None when free)."""
        row = self._execute(
            f"SELECT pid, host, since, token FROM {self.t('locks')} WHERE store_key = {self.ph}", [self.key]
        ).fetchone()
        if row is None:
            return None
        return {"pid": int(row[0]), "host": str(row[1]), "since": float(row[2]), "token": str(row[3])}

    def _claim(self) -> None:
        p = self.ph
        self._execute(
            f"INSERT INTO {self.t('locks')} (store_key, token, pid, host, since) VALUES ({p}, {p}, {p}, {p}, {p}) "
            "ON CONFLICT (store_key) DO UPDATE SET token = excluded.token, pid = excluded.pid, host = excluded.host, "
            "since = excluded.since",
            [self.key, self._token, os.getpid(), socket.gethostname(), time.time()],
        )

    def _release_row(self) -> None:
        self._execute(
            f"DELETE FROM {self.t('locks')} WHERE store_key = {self.ph} AND token = {self.ph}", [self.key, self._token]
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SqliteLedger(Ledger):
    """The ledger in a SQLite file (``path``), or in memory (``path=None``: this process only).

    Stale locks: a lock row whose pid no longer runs on this host (a killed writer) is taken over; a lock held
    from another host is taken over only after ``stale_after`` seconds (default 6 h).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        key: str,
        dim: int,
        *,
        stale_after: float = 6 * 3600,
        dtype: str = "<f4",
        mode: int = 0o600,
    ):
        super().__init__(key, dim)
        self.dtype = dtype
        self.path = None if path is None else Path(path)
        self.stale_after = float(stale_after)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists()
            if fresh:  # created no wider than ``mode`` (the store's own file's, else 0600), under the umask
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o666)
                os.close(fd)
            elif self.path.stat().st_size and not self._looks_like_ledger():
                raise StoreError(f"{self.path} exists and is not a nudge-rag ledger: refusing to use it")
        target = ":memory:" if self.path is None else str(self.path)
        self.conn = sqlite3.connect(target, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 30000")
        if self.path is not None:
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
        self._init()

    def _looks_like_ledger(self) -> bool:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0)) as c:
                row = c.execute(f"SELECT value FROM {self.t('meta')} WHERE name = 'marker'").fetchone()
        except sqlite3.DatabaseError:
            return False
        return row is not None and row[0] == MARKER

    def _init(self) -> None:
        with self.transaction():
            for stmt in self._schema():
                self.conn.execute(stmt)
            row = self.conn.execute(f"SELECT value FROM {self.t('meta')} WHERE name = 'marker'").fetchone()
            if row is None:
                self.conn.execute(f"INSERT INTO {self.t('meta')} (name, value) VALUES ('marker', ?)", [MARKER])
            elif row[0] != MARKER:
                raise StoreError(f"{self.describe()} carries marker {row[0]!r}, not {MARKER!r}: refusing to use it")

    def describe(self) -> str:
        return f"ledger {self.path}" if self.path else "in-memory ledger"

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, list(params))

    def _executemany(self, sql: str, rows: list[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        if self.conn.in_transaction:  # nested: the outer transaction commits
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _try_lock(self) -> bool:
        with self.transaction():
            holder = self.holder()
            if holder is not None and not self._stale(holder):
                return False
            self._claim()
        return True

    def _stale(self, holder: dict[str, Any]) -> bool:
        if holder["host"] == socket.gethostname():
            return not _pid_alive(holder["pid"])
        return time.time() - holder["since"] > self.stale_after

    def _unlock(self) -> None:
        with self.transaction():
            self._release_row()

    def close(self) -> None:
        self.conn.close()

    def backup(self, path: str | os.PathLike[str]) -> Path:
        """Copy this ledger (e.g. an in-memory one, beside a persisted in-process store) into the SQLite file
        ``path``, atomically (a temporary file renamed into place; created 0600). Returns the path."""
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        os.close(fd)
        try:
            with contextlib.closing(sqlite3.connect(tmp)) as out:
                self.conn.backup(out)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest


class PgLedger(Ledger):
    """The ledger in PostgreSQL tables of ``schema``, on the store's psycopg connection ``conn``.

    The writer lock is a session-level advisory lock (freed by PostgreSQL when the holder's connection ends,
    ``kill -9`` included); the lock row only names the holder for the message a second writer gets.
    """

    ph = "%s"
    blob_type = "bytea"
    #: seconds a writer waits for a busy lock before it gives up
    lock_wait = 5.0

    def __init__(self, conn: Any, schema: str, key: str, dim: int) -> None:
        super().__init__(key, dim)
        self.conn = conn
        self.schema = schema
        from psycopg import sql

        self._sqlmod = sql
        self._init()

    def t(self, name: str) -> str:
        return self._sqlmod.Identifier(self.schema, self.prefix + name).as_string(self.conn)

    def describe(self) -> str:
        return f"ledger tables {self.schema}.{self.prefix}*"

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, list(params), prepare=False)

    def _executemany(self, sql: str, rows: list[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql, rows)

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        return self.conn.transaction()

    def _init(self) -> None:
        comment = f"{MARKER}: {{}} (created by nudge-rag; safe to keep)"
        with self.transaction():
            # one creator at a time, whatever the tables' state
            self._execute("SELECT pg_advisory_xact_lock(hashtext('nudge_rag_ledger_schema'))")
            for name, stmt in zip(_TABLES, self._schema()):
                exists = self._execute(
                    "SELECT obj_description(to_regclass(%s), 'pg_class'), to_regclass(%s) IS NOT NULL",
                    [self.t(name), self.t(name)],
                ).fetchone()
                if exists[1] and not str(exists[0] or "").startswith(MARKER):
                    raise StoreError(
                        f"PostgreSQL table {self.t(name)} exists without the nudge-rag marker: refusing to use it "
                        "as a ledger (rename it, or pass another schema)"
                    )
                if not exists[1]:
                    self._execute(stmt)
                    literal = self._sqlmod.Literal(comment.format(name)).as_string(self.conn)
                    self._execute(f"COMMENT ON TABLE {self.t(name)} IS {literal}")

    def _lock_key(self) -> int:
        import hashlib

        return int.from_bytes(hashlib.sha1(f"nudge-rag:{self.key}".encode()).digest()[:8], "big", signed=True)

    def _try_lock(self) -> bool:
        deadline = time.monotonic() + self.lock_wait
        while True:  # a killed writer's session ends a moment after its client: wait that long, no longer
            got = self._execute("SELECT pg_try_advisory_lock(%s)", [self._lock_key()]).fetchone()[0]
            self._commit()
            if got or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not got:
            return False
        with self.transaction():
            self._claim()
        return True

    def _unlock(self) -> None:
        with self.transaction():
            self._release_row()
        self._execute("SELECT pg_advisory_unlock(%s)", [self._lock_key()])
        self._commit()

    def _commit(self) -> None:
        if not self.conn.autocommit and self.conn.info.transaction_status != 0:
            self.conn.commit()
