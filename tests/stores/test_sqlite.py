"""SQLite + sqlite-vec on disk (through APSW), on real SciFact: a plain table of float32 blobs and a vec0 table."""

from __future__ import annotations

import numpy as np
import pytest

apsw = pytest.importorskip("apsw")
pytest.importorskip("sqlite_vec")

from nudge_rag.stores import SQLiteStore, open_store  # noqa: E402
from nudge_rag.stores.sqlite import load_sqlite_vec  # noqa: E402
from tests.stores.conftest import check_contract  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def make_sqlite(path, s, *, vec0: bool = False) -> None:
    """A SQLite file with SciFact in table ``docs`` (plain: id, embedding blob, text; or a vec0 cosine table)."""
    conn = apsw.Connection(str(path))
    load_sqlite_vec(conn)
    if vec0:
        conn.execute(
            f"CREATE VIRTUAL TABLE docs USING vec0(id TEXT PRIMARY KEY, embedding float[{s.docs.shape[1]}] "
            "distance_metric=cosine, +text TEXT)"
        )
    else:
        conn.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, embedding BLOB NOT NULL, text TEXT)")
    with conn:
        conn.cursor().executemany(
            "INSERT INTO docs (id, embedding, text) VALUES (?, ?, ?)",
            [(i, v.astype("<f4").tobytes(), f"doc {i}") for i, v in zip(s.ids, s.docs)],
        )
    conn.close()


def _delete(store, ids):
    with store.conn:
        store.conn.cursor().executemany("DELETE FROM docs WHERE id = ?", [(i,) for i in ids])


@pytest.mark.parametrize("vec0", [False, True], ids=["table", "vec0"])
def test_sqlite_contract(tmp_path, scifact_ids, reference_fit, monkeypatch, vec0):
    s = scifact_ids
    path = tmp_path / "rag.db"
    make_sqlite(path, s, vec0=vec0)
    conn = apsw.Connection(str(path))
    store = SQLiteStore(conn, "docs")  # built from the application's own connection
    assert (store.similarity, store.dim, store.count(), store.vec0) == ("cosine", 384, len(s.ids), vec0)
    uri = f"sqlite://{path}?table=docs"
    store = check_contract(
        store,
        s,
        reference_fit,
        monkeypatch,
        reopen=lambda: open_store(uri),
        uri=uri,
        tmp_path=tmp_path,
        delete=_delete,
    )
    store.close()
    check = apsw.Connection(str(path))
    load_sqlite_vec(check)
    assert check.execute("SELECT text FROM docs WHERE id = ?", (s.ids[7],)).fetchall() == [(f"doc {s.ids[7]}",)]
    names = [r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE name LIKE 'nudge%'")]
    assert names == []  # nothing created in the user's database: the ledger is a file beside it
    check.close()
    assert (tmp_path / "rag.db.nudge-ledger.sqlite").exists()
    with open_store(uri) as again:
        np.testing.assert_array_equal(again.fetch(s.ids[:5]), s.docs[:5])
        # exact search (one scan, or vec0's KNN) agrees with NumPy
        q = s.docs[:3]
        scores, ids = again.search(q, 10, exact=not vec0)
        want = np.argsort(-(q @ s.docs.T), axis=1, kind="stable")[:, :10]
        assert ids == [[s.ids[j] for j in row] for row in want]


def test_sqlite_uri_errors(tmp_path):
    from nudge_rag.stores import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite://{tmp_path / 'nope.db'}?table=docs")
    conn = apsw.Connection(str(tmp_path / "x.db"))
    conn.execute("CREATE TABLE t (id TEXT, vec BLOB)")
    conn.close()
    with pytest.raises(StoreError, match="no table 'docs'"):
        open_store(f"sqlite://{tmp_path / 'x.db'}?table=docs")
    with pytest.raises(StoreError, match="no column 'embedding'"):
        open_store(f"sqlite://{tmp_path / 'x.db'}?table=t")


def test_sqlite_cli_finetune_and_revert(tmp_path, scifact_ids, reference_fit):
    """``nudge-rag finetune --store sqlite://...`` then ``nudge-rag revert``, each a subprocess, as a user runs them."""
    from tests.stores.test_cli_store import test_cli_finetune_and_revert as cli_check

    def make_uri(tmp_path, s):
        make_sqlite(tmp_path / "cli.db", s)
        return f"sqlite://{tmp_path / 'cli.db'}?table=docs"

    cli_check(tmp_path, scifact_ids, reference_fit, make_uri)
