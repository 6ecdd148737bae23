"""Milvus Lite (a local file), on real SciFact."""

from __future__ import annotations

import pytest

pymilvus = pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from pymilvus import DataType, MilvusClient  # noqa: E402

from nudge_rag.stores import MilvusStore, open_store  # noqa: E402
from tests.stores.conftest import check_contract  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("index", ["FLAT", "HNSW"])
def test_milvus_contract(tmp_path, scifact_ids, reference_fit, monkeypatch, index):
    """FLAT with a required text field; HNSW with a nullable one (where a partial upsert of a deleted row would
    create a ghost row without text: the contract deletes rows and checks none comes back)."""
    s = scifact_ids
    path = str(tmp_path / "milvus.db")
    client = MilvusClient(path)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=384)
    schema.add_field("text", DataType.VARCHAR, max_length=64, nullable=index == "HNSW")
    params = client.prepare_index_params()
    params.add_index("embedding", index_type=index, metric_type="COSINE")
    client.create_collection("scifact", schema=schema, index_params=params)
    for b0 in range(0, len(s.ids), 1000):
        client.insert(
            "scifact",
            [
                {"id": i, "embedding": v, "text": f"doc {i}"}
                for i, v in zip(s.ids[b0 : b0 + 1000], s.docs[b0 : b0 + 1000])
            ],
        )
    store = MilvusStore(client=client, collection="scifact", own_client=True, lite_path=path)
    assert (store.similarity, store.dim, store.count()) == ("cosine", 384, len(s.ids))
    uri = f"milvus://{path}?collection=scifact"
    store = check_contract(
        store,
        s,
        reference_fit,
        monkeypatch,
        reopen=lambda: open_store(uri),
        uri=uri,
        tmp_path=tmp_path,
        delete=lambda st, ids: st.client.delete(st.collection, ids=ids),
    )
    assert store.client.get("scifact", ids=[s.ids[3]], output_fields=["text"])[0]["text"] == f"doc {s.ids[3]}"
    assert store.client.list_collections() == ["scifact"]  # nothing created beside it: the ledger is a file
    store.close()


def test_milvus_search_batches(tmp_path, scifact_ids, monkeypatch):
    """A search split into many requests (a small result budget) equals the one-request answer and the exact
    top-k; a k above Milvus' topk cap is answered exactly (scan), for exact=False with a warning."""
    import numpy as np

    import nudge_rag.stores.milvus as milvus_mod

    s = scifact_ids
    n = 3000
    path = str(tmp_path / "batches.db")
    client = MilvusClient(path)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=32)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=384)
    params = client.prepare_index_params()
    params.add_index("embedding", index_type="FLAT", metric_type="COSINE")
    client.create_collection("docs", schema=schema, index_params=params)
    for b0 in range(0, n, 1000):
        client.insert(
            "docs", [{"id": i, "embedding": v} for i, v in zip(s.ids[b0 : b0 + 1000], s.docs[b0 : b0 + 1000])]
        )
    q = np.ascontiguousarray(s.val.embeddings[:40], dtype=np.float32)
    k = 200
    one = MilvusStore(client, "docs")
    assert one.query_batch(k) == 256 and one._hit_bytes == 32 + 16  # one request for the 40 queries
    want_s, want_ids = one.search(q, k)
    calls = {"n": 0}
    real = client.search

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "search", counting)
    batched = MilvusStore(client, "docs", max_result_bytes=k * 48 * 6)  # 6 queries per request
    assert batched.query_batch(k) == 6
    got_s, got_ids = batched.search(q, k)
    assert calls["n"] == 7
    assert got_ids == want_ids
    np.testing.assert_array_equal(got_s, want_s)
    # equal to the exact answer (cosine, ties tolerated through the scores)
    unit = s.docs[:n] / np.linalg.norm(s.docs[:n], axis=1, keepdims=True)
    ref = -np.sort(-(q @ unit.T), axis=1)[:, :k]
    np.testing.assert_allclose(got_s, ref, atol=1e-5)
    pos = {d: j for j, d in enumerate(s.ids)}
    got_scores = np.stack([q[v] @ unit[[pos[i] for i in row]].T for v, row in enumerate(got_ids)])
    np.testing.assert_allclose(got_scores, ref, atol=1e-5)
    # k above the topk cap: exact search scans; ANN search warns and answers exactly
    monkeypatch.setattr(milvus_mod, "MAX_TOPK", 100)
    calls["n"] = 0
    cap_s, cap_ids = batched.search(q, k)
    assert calls["n"] == 0 and [set(r) for r in cap_ids] == [set(r) for r in want_ids]
    with pytest.warns(RuntimeWarning, match="fewer than 200 rows for 40 of 40"):
        ann_s, ann_ids = batched.search(q, k, exact=False)
    assert calls["n"] == 0 and all(len(r) == k for r in ann_ids)
    np.testing.assert_allclose(ann_s, ref, atol=1e-5)
    with pytest.raises(ValueError, match="search_batch"):
        MilvusStore(client, "docs", search_batch=0)
    client.close()
