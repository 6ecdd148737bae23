"""pgvector's streamed scan (a COPY reader thread filling fixed-size NumPy blocks while the caller scores): the same
rows, and bit-identical exact search results, whatever the block size and however the bytes arrive; stopping
early cancels the COPY and leaves the connection usable. Real server (pgserver), real SciFact vectors."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pgserver = pytest.importorskip("pgserver")
psycopg = pytest.importorskip("psycopg")

from nudge_rag.stores import PgVectorStore  # noqa: E402
from nudge_rag.stores import pgvector as pgmod  # noqa: E402
from tests.stores.test_pgvector import _conn, _load  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def pg_store(tmp_path_factory, scifact_ids):
    srv = pgserver.get_server(tmp_path_factory.mktemp("pgstream"), cleanup_mode="stop")
    conn = _conn(srv)
    _load(conn, "stream_docs", scifact_ids.ids, scifact_ids.docs)
    store = PgVectorStore(conn, "stream_docs")
    yield store
    store.close()
    conn.close()
    srv.cleanup()


def _queries(s) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate([s.val.embeddings, s.test.embeddings[:200]]), dtype=np.float32)


def test_scan_blocks_hold_every_row_once_whatever_the_block_and_chunk_size(pg_store, scifact_ids, monkeypatch):
    want = dict(zip(scifact_ids.ids, scifact_ids.docs))
    for batch, chunk in [(2000, 4 << 20), (7, 4096), (6000, 1 << 10), (1, 1 << 20)]:
        monkeypatch.setattr(pgmod, "_COPY_CHUNK", chunk)
        blocks = list(pg_store._scan(batch))
        assert all(len(ids) == v.shape[0] and v.dtype == np.float32 for ids, v in blocks)
        assert all(v.shape[0] == batch for _, v in blocks[:-1]) and 1 <= blocks[-1][1].shape[0] <= batch
        ids = [i for b, _ in blocks for i in b]
        assert sorted(ids) == sorted(want) and len(ids) == len(want)
        got = np.concatenate([v for _, v in blocks])
        np.testing.assert_array_equal(got, np.stack([want[i] for i in ids]))  # bit for bit: float32 round trip


def test_streamed_scan_search_is_bit_identical_for_any_block_size(pg_store, scifact_ids, monkeypatch):
    q = _queries(scifact_ids)
    exclude = frozenset(scifact_ids.ids[:50])
    results = []
    for batch, chunk in [(2000, 4 << 20), (1000, 64 << 10), (333, 4096), (5183, 1 << 10), (6000, 1 << 22)]:
        monkeypatch.setattr(pgmod, "_COPY_CHUNK", chunk)
        monkeypatch.setattr(pg_store, "batch_size", batch)
        results.append(pg_store.scan_search(q, 20, exclude))
    base_s, base_ids = results[0]
    assert base_s.shape == (q.shape[0], 20) and not any(i in exclude for row in base_ids for i in row)
    for s, ids in results[1:]:
        np.testing.assert_array_equal(s, base_s)
        assert ids == base_ids
    # and the same top-20 as exact search over the vectors in memory (cosine; ties aside)
    docs = scifact_ids.docs / np.linalg.norm(scifact_ids.docs, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    keep = np.array([i not in exclude for i in scifact_ids.ids])
    full = (qn @ docs[keep].T).astype(np.float32)
    top = np.sort(full, axis=1)[:, ::-1][:, :20]
    np.testing.assert_allclose(base_s, top, rtol=0, atol=2e-6)


def test_stopping_a_scan_early_cancels_the_copy_and_frees_the_connection(pg_store, monkeypatch):
    monkeypatch.setattr(pgmod, "_COPY_CHUNK", 1 << 12)
    before = threading.active_count()
    scan = pg_store._scan(100)
    ids, vecs = next(scan)
    assert len(ids) == 100 and vecs.shape == (100, pg_store.dim)
    scan.close()  # the consumer stops: the reader thread leaves the COPY and ends
    assert threading.active_count() == before
    assert pg_store.count() == 5183  # the connection is usable again (no COPY left in progress)
    assert sum(len(i) for i, _ in pg_store._scan(2000)) == 5183
