"""A connection for langchain-community's ``SQLiteVec`` that the core SQLite store can write through.

``SQLiteVec`` wants a standard-library ``sqlite3`` connection with sqlite-vec loaded; many Python builds (pyenv's
among them) cannot load extensions into ``sqlite3``, and :class:`nudge_rag.stores.SQLiteStore` writes through
APSW. Two SQLite libraries in one process must not both load sqlite-vec (its one extension pointer then calls the
wrong library: a segmentation fault, measured with pysqlite3 + APSW). :func:`sqlitevec_connection` therefore
gives ``SQLiteVec`` the APSW connection itself, behind the few ``sqlite3`` methods it calls (``execute``,
``executemany``, ``cursor``, ``commit``, rows by column name), and the core store shares it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

__all__ = ["sqlitevec_connection", "APSWConnection"]


class _Row(tuple):  # type: ignore[type-arg]
    """A result row readable by position and by column name (as ``sqlite3.Row``)."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(self.names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self.names)


def _named(cursor: Any, row: tuple[Any, ...]) -> _Row:
    out = _Row(row)
    out.names = {d[0]: i for i, d in enumerate(cursor.getdescription())}
    return out


class APSWConnection:
    """An ``apsw.Connection`` (``.apsw``) behind the ``sqlite3`` calls ``SQLiteVec`` makes. Statements commit as
    they run (APSW's autocommit); ``executemany`` is one transaction; ``commit`` has nothing left to do."""

    def __init__(self, conn: Any) -> None:
        self.apsw = conn

    def cursor(self) -> Any:
        cur = self.apsw.cursor()
        cur.row_trace = _named
        return cur

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Any]) -> Any:
        with self.apsw:
            return self.cursor().executemany(sql, rows)

    def commit(self) -> None:
        """Nothing to do: every statement has committed."""

    def close(self) -> None:
        self.apsw.close()


def sqlitevec_connection(path: str | os.PathLike[str]) -> APSWConnection:
    """An APSW connection to the SQLite file ``path`` with sqlite-vec loaded, for
    ``SQLiteVec(table, connection=sqlitevec_connection(path), embedding=...)``: ``fit_vectorstore`` and
    ``revert_vectorstore`` then write the store through the same connection."""
    import apsw

    from nudge_rag.stores.sqlite import load_sqlite_vec

    conn = apsw.Connection(os.fspath(path))
    load_sqlite_vec(conn)
    return APSWConnection(conn)
