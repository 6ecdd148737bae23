"""DuckDB + VSS on disk, on real SciFact: the contract with an HNSW index on the table, ANN recall against exact,
and the one-process-per-file rule in one line."""

from __future__ import annotations

import numpy as np
import pytest

duckdb = pytest.importorskip("duckdb")
pytest.importorskip("duckdb_extension_vss")

import pyarrow as pa  # noqa: E402

from nudge_rag.stores import DuckDBStore, StoreError, open_store  # noqa: E402
from nudge_rag.stores.duckdb import connect  # noqa: E402
from tests.stores.conftest import check_contract  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def make_duckdb(path, s, *, metric: str | None = "cosine", column: str | None = None) -> None:
    """A DuckDB file with SciFact in table ``docs`` (id, embedding FLOAT[384], text), bulk-loaded through Arrow,
    with an HNSW index of ``metric`` (None: no index). ``column``: another vector column type (e.g. ``FLOAT[]``,
    the list column LangChain's DuckDB creates; no index then)."""
    d = s.docs.shape[1]
    vec = pa.FixedSizeListArray.from_arrays(pa.array(s.docs.ravel(), type=pa.float32()), d)
    rows = pa.table({"id": s.ids, "embedding": vec, "text": [f"doc {i}" for i in s.ids]})  # noqa: F841
    conn = connect(path)
    conn.execute(f"CREATE TABLE docs (id VARCHAR PRIMARY KEY, embedding {column or f'FLOAT[{d}]'}, text VARCHAR)")
    conn.execute("INSERT INTO docs SELECT * FROM rows")
    if metric is not None:
        conn.execute(f"CREATE INDEX docs_hnsw ON docs USING HNSW (embedding) WITH (metric = '{metric}')")
    conn.close()


def _delete(store, ids):
    cur = store.conn.cursor()
    cur.register("gone", pa.table({"id": ids}))
    cur.execute(f"DELETE FROM {store._t()} WHERE id IN (SELECT id FROM gone)")
    cur.close()


def test_duckdb_contract(tmp_path, scifact_ids, reference_fit, monkeypatch):
    s = scifact_ids
    path = tmp_path / "rag.duckdb"
    make_duckdb(path, s)
    store = DuckDBStore(str(path), "docs")
    assert (store.similarity, store.dim, store.count(), store.hnsw_metric) == ("cosine", 384, len(s.ids), "cosine")
    uri = f"duckdb://{path}?table=docs"
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
    conn = connect(path)
    assert conn.execute("SELECT text FROM docs WHERE id = ?", [s.ids[7]]).fetchall() == [(f"doc {s.ids[7]}",)]
    assert [r[0] for r in conn.execute("SHOW TABLES").fetchall()] == ["docs"]  # the ledger is a file beside it
    conn.close()
    assert (tmp_path / "rag.duckdb.nudge-ledger.sqlite").exists()


@pytest.mark.parametrize("column", ["FLOAT[]", "DOUBLE[]"])
def test_duckdb_list_column_contract(column, tmp_path, scifact_ids, reference_fit, monkeypatch):
    """A ``FLOAT[]`` / ``DOUBLE[]`` list column (LangChain's DuckDB default): the dimension comes from the data,
    the full contract and safety suite pass with exact search (``exact=False`` included: no index on a list),
    and the column keeps its list type."""
    s = scifact_ids
    path = tmp_path / "list.duckdb"
    make_duckdb(path, s, metric=None, column=column)
    store = DuckDBStore(str(path), "docs")
    assert (store.is_list, store.dim, store.count(), store.hnsw_metric) == (True, 384, len(s.ids), None)
    q = s.test.embeddings[:20]
    assert store.search(q, 10, exact=False)[1] == store.search(q, 10, exact=True)[1]
    uri = f"duckdb://{path}?table=docs"
    store = check_contract(
        store, s, reference_fit, monkeypatch, reopen=lambda: open_store(uri), uri=uri, tmp_path=tmp_path,
        delete=_delete,
    )  # fmt: skip
    store.close()
    conn = connect(path)
    kind = conn.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'docs' AND column_name = 'embedding'"
    ).fetchone()[0]
    assert kind == column
    conn.close()


def test_duckdb_list_column_refuses_ragged_and_empty(tmp_path, scifact_ids):
    s = scifact_ids
    path = tmp_path / "list.duckdb"
    make_duckdb(path, s, metric=None, column="FLOAT[]")
    conn = connect(path)
    conn.execute("INSERT INTO docs VALUES ('short-one', ?, 'x')", [s.docs[0][:383].tolist()])
    with pytest.raises(StoreError, match="row 'short-one' holds a 383-number vector"):
        DuckDBStore(conn, "docs")
    conn.execute("DELETE FROM docs WHERE id = 'short-one'")
    store = DuckDBStore(conn, "docs")  # a ragged row written after the store opened: refused when read
    conn.execute("INSERT INTO docs VALUES ('long-one', ?, 'x')", [[*s.docs[0].tolist(), 0.0]])
    with pytest.raises(StoreError, match="row 'long-one' holds a 385-number vector"):
        store.search(s.test.embeddings[:2], 5)
    conn.execute("CREATE TABLE empty_docs (id VARCHAR, embedding FLOAT[], text VARCHAR)")
    with pytest.raises(StoreError, match="holds no vector"):
        DuckDBStore(conn, "empty_docs")
    conn.close()


def test_duckdb_hnsw_recall_against_exact(tmp_path, scifact_ids, reference_fit):
    """ANN (the HNSW index) against exact (a scan) on held-out SciFact queries: recall@10 >= 0.95, and the index
    is what answers: EXPLAIN shows an HNSW index scan. After a write and its revert (two index tombstones per
    moved row, where the questions look) the index still gives k rows per query, with no exact fallback."""
    s = scifact_ids
    path = tmp_path / "rag.duckdb"
    make_duckdb(path, s)
    with open_store(f"duckdb://{path}?table=docs") as store:
        q = s.test.embeddings[:200]
        _, exact = store.search(q, 10, exact=True)
        _, ann = store.search(q, 10, exact=False)
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ann, exact)])
        assert recall >= 0.95, recall
        _, wide = store.search(q[:5], 300, exact=False)  # k above the default ef_search: still k rows
        assert all(len(r) == 300 for r in wide) and store.ann_shortfalls == 0
        plan = store.conn.execute(
            f"EXPLAIN SELECT id, array_cosine_distance(embedding, CAST($q AS FLOAT[384])) AS d FROM {store._t()} "
            "ORDER BY d LIMIT 10",
            {"q": q[0].tolist()},
        ).fetchall()[0][1]
        assert "HNSW_INDEX_SCAN" in plan
        _, moved = reference_fit
        store.write(list(moved), np.stack(list(moved.values())))
        assert store.revert() == len(moved)
        assert store._tombstones(store.count()) >= len(moved)
        _, ann = store.search(q, 10, exact=False)
        assert store.ann_shortfalls == 0 and all(len(r) == 10 for r in ann)
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ann, exact)])
        assert recall >= 0.95, recall


def test_duckdb_one_process_per_file_in_one_line(tmp_path, scifact_ids):
    import subprocess
    import sys

    from tests.stores.conftest import REPO

    path = tmp_path / "rag.duckdb"
    make_duckdb(path, scifact_ids, metric=None)
    with open_store(f"duckdb://{path}?table=docs") as store:
        assert store.hnsw_metric is None and store.similarity == "cosine"
        code = "from nudge_rag.stores import open_store; import sys; open_store(sys.argv[1])"
        r = subprocess.run(
            [sys.executable, "-c", code, f"duckdb://{path}?table=docs"],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(REPO), "PATH": ""},
            timeout=120,
        )
        assert r.returncode == 1
        last = r.stderr.strip().splitlines()[-1]
        assert "is open in another process (pid" in last and "one process" in last, last
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"duckdb://{tmp_path / 'nope.duckdb'}?table=docs")
    with pytest.raises(StoreError, match="no table 'other'"):
        open_store(f"duckdb://{path}?table=other")


def test_duckdb_cli_finetune_and_revert(tmp_path, scifact_ids, reference_fit):
    """``nudge-rag finetune --store duckdb://...`` then ``nudge-rag revert``, each a subprocess, as a user runs them."""
    from tests.stores.test_cli_store import test_cli_finetune_and_revert as cli_check

    def make_uri(tmp_path, s):
        make_duckdb(tmp_path / "cli.duckdb", s)
        return f"duckdb://{tmp_path / 'cli.duckdb'}?table=docs"

    cli_check(tmp_path, scifact_ids, reference_fit, make_uri)
