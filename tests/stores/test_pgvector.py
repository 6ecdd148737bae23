"""PostgreSQL + pgvector on a real server (started by pgserver in a temporary folder), on real SciFact."""

from __future__ import annotations

import numpy as np
import pytest

pgserver = pytest.importorskip("pgserver")
psycopg = pytest.importorskip("psycopg")

from pgvector.psycopg import register_vector  # noqa: E402

from nudge_rag.stores import PgVectorStore, StoreError, open_store  # noqa: E402
from tests.stores.conftest import check_contract  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    srv = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield srv
    srv.cleanup()


def _conn(srv):
    conn = psycopg.connect(srv.get_uri(), autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    return conn


def _load(conn, table, ids, docs, *, id_col="id", vec_col="embedding", extra_cols="", extra_vals=()):
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(
        f"CREATE TABLE {table} ({id_col} text PRIMARY KEY, {vec_col} vector({docs.shape[1]}), body text{extra_cols})"
    )
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY {table} ({id_col}, {vec_col}, body) FROM STDIN WITH (FORMAT BINARY)") as cp,
    ):
        cp.set_types(["text", "vector", "text"])
        for i, v in zip(ids, docs):
            cp.write_row((i, v, f"doc {i}"))


def _uri(srv, query):
    # pgserver listens on a unix socket: host= goes in the query string
    base = srv.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
    return base + "&" + query


def test_pgvector_contract(pg, tmp_path, scifact_ids, reference_fit, monkeypatch):
    s = scifact_ids
    conn = _conn(pg)
    _load(conn, "scifact", s.ids, s.docs)
    store = PgVectorStore(conn, table="scifact")
    assert (store.similarity, store.dim, store.count()) == ("cosine", 384, len(s.ids))
    uri = _uri(pg, "table=scifact")
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
    # other columns untouched (the deleted rows aside), the ledger tables marked
    assert conn.execute("SELECT count(*) FROM scifact WHERE body = 'doc ' || id").fetchone()[0] == len(s.ids) - 2
    for name in ("rows", "generations", "locks", "meta"):
        comment = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (f"nudge_rag_ledger_{name}",))
        assert comment.fetchone()[0].startswith("nudge-rag ledger v1")
    store.close()
    conn.close()


def test_pgvector_framework_layouts(pg, scifact_ids):
    """LlamaIndex PGVectorStore (data_<table>, node_id) and langchain-postgres (collection_id) are recognised."""
    s = scifact_ids
    conn = _conn(pg)
    ids, docs = s.ids[:50], s.docs[:50]
    conn.execute("DROP TABLE IF EXISTS data_llama")
    conn.execute("CREATE TABLE data_llama (id bigserial PRIMARY KEY, node_id varchar, embedding vector(384))")
    for i, v in zip(ids, docs):
        conn.execute("INSERT INTO data_llama (node_id, embedding) VALUES (%s, %s)", (i, v))
    llama = open_store(_uri(pg, "table=llama"))
    assert (llama.table, llama.id_column) == ("data_llama", "node_id")
    np.testing.assert_array_equal(llama.fetch(ids[:3]), docs[:3])
    conn.execute("DROP TABLE IF EXISTS langchain_pg_embedding; DROP TABLE IF EXISTS langchain_pg_collection")
    conn.execute("CREATE TABLE langchain_pg_collection (uuid uuid PRIMARY KEY, name varchar)")
    conn.execute(
        "CREATE TABLE langchain_pg_embedding (id varchar PRIMARY KEY, collection_id uuid, "
        "embedding vector, document varchar)"
    )
    conn.execute(
        "INSERT INTO langchain_pg_collection VALUES ('00000000-0000-0000-0000-000000000001', 'a'), "
        "('00000000-0000-0000-0000-000000000002', 'b')"
    )
    for j, (i, v) in enumerate(zip(ids, docs)):
        conn.execute(
            "INSERT INTO langchain_pg_embedding VALUES (%s, %s, %s, 'x')",
            (i, f"00000000-0000-0000-0000-00000000000{1 + j % 2}", v),
        )
    with pytest.raises(StoreError, match="collection"):
        PgVectorStore(conn)
    lc = PgVectorStore(conn, collection="a")
    assert lc.count() == 25 and lc.dim == 384
    lc.write([ids[0]], docs[1:2])
    np.testing.assert_array_equal(lc.fetch([ids[0]]), docs[1:2])
    with pytest.raises(StoreError, match="not in"):
        lc.fetch([ids[1]])  # in collection b
    lb = PgVectorStore(conn, collection="b")  # another collection of the same table, written in place too
    lb.write([ids[1]], docs[2:3])
    assert lc.revert() == 1
    np.testing.assert_array_equal(lc.fetch([ids[0]]), docs[:1])
    np.testing.assert_array_equal(lb.fetch([ids[1]]), docs[2:3])  # reverting a leaves b's write and originals
    assert lb.revert() == 1
    np.testing.assert_array_equal(lb.fetch([ids[1]]), docs[1:2])
    _, hits = lc.search(docs[:2], 3)
    assert hits[0][0] == ids[0] and all(ids.index(h) % 2 == 0 for h in hits[1])
    llama.close()
    conn.close()


def test_pgvector_ann_competitors(pg, scifact_ids):
    """exact=False on an HNSW index over real SciFact: k rows per query (past hnsw.ef_search's default of 40
    and its cap of 1000, then by exact search with a warning), high recall against exact, and exact search
    still exact after many index searches (no prepared statement reusing an index plan)."""
    from nudge_rag.stores import StoreCorpus

    s = scifact_ids
    conn = _conn(pg)
    _load(conn, "scifact_hnsw", s.ids, s.docs)
    conn.execute("CREATE INDEX ON scifact_hnsw USING hnsw (embedding vector_cosine_ops)")
    store = PgVectorStore(conn, table="scifact_hnsw")
    assert store.similarity == "cosine" and store.pgvector_version >= (0, 5, 0)
    q = np.ascontiguousarray(s.val.embeddings, dtype=np.float32)
    unit = s.docs / np.linalg.norm(s.docs, axis=1, keepdims=True)
    ref = np.argsort(-(q @ unit.T), axis=1, kind="stable")

    def recall(hits, k):
        return np.mean([len(set(h) & {s.ids[j] for j in ref[v, :k]}) / k for v, h in enumerate(hits)])

    for k in (10, 100):
        plan = conn.execute(
            "EXPLAIN SELECT id FROM scifact_hnsw ORDER BY embedding <=> %s LIMIT %s", (q[0], k)
        ).fetchall()
        assert "scifact_hnsw_embedding_idx" in " ".join(r[0] for r in plan)  # the index is used
        _, hits = store.search(q, k, exact=False)
        assert all(len(h) == k for h in hits)
        assert recall(hits, k) > 0.95
        _, exact = store.search(q, k)
        assert recall(exact, k) > 0.999
    # competitor search as the fit asks it (trained documents excluded), ANN against exact
    trained = sorted({d for a in s.train_q.answers for d in a})
    found = {}
    for exact_search in (True, False):
        corpus = StoreCorpus(store, trained, exact=exact_search)
        _, rows = corpus.competitors(q, np.arange(len(trained)), 10)
        found[exact_search] = [set(corpus.ids_of(r[r >= 0])) for r in rows]
        assert all(len(f) == 10 for f in found[exact_search])
    assert np.mean([len(a & e) / 10 for a, e in zip(found[False], found[True])]) > 0.95
    # beyond pgvector's ef_search cap (1000): those queries are answered exactly, and say so
    conn.execute("SET enable_seqscan = off")  # the planner would otherwise pick a scan for so deep a LIMIT
    before = store.ann_shortfalls
    with pytest.warns(RuntimeWarning, match="fewer than 1200 rows"):
        _, deep = store.search(q[:5], 1200, exact=False)
    assert store.ann_shortfalls > before and all(len(h) == 1200 for h in deep)
    assert recall(deep, 1200) > 0.999
    conn.execute("RESET enable_seqscan")
    store.close()
    conn.close()


def test_pgvector_on_a_connection_without_autocommit(pg, scifact_ids, reference_fit):
    """psycopg's default connection (autocommit off), as an application hands it over: write, status, revert."""
    s = scifact_ids
    setup = _conn(pg)
    _load(setup, "plain_tx", s.ids, s.docs)
    setup.close()
    conn = psycopg.connect(pg.get_uri())  # autocommit off
    register_vector(conn)
    _, moved = reference_fit
    ids = list(moved)[:50]
    store = PgVectorStore(conn, table="plain_tx")
    assert len(store.write(ids, np.stack([moved[i] for i in ids])).written) == 50
    assert store.status().nudged == 50
    assert store.revert() == 50
    pos = {d: j for j, d in enumerate(s.ids)}
    np.testing.assert_array_equal(store.fetch(ids), s.docs[[pos[i] for i in ids]])
    conn.close()
