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
    s = scifact_ids
    path = str(tmp_path / "milvus.db")
    client = MilvusClient(path)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=384)
    schema.add_field("text", DataType.VARCHAR, max_length=64)
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
        store, s, reference_fit, monkeypatch, reopen=lambda: open_store(uri), uri=uri, tmp_path=tmp_path
    )
    assert store.client.get("scifact", ids=[s.ids[3]], output_fields=["text"])[0]["text"] == f"doc {s.ids[3]}"
    assert not store.client.has_collection("scifact__nudge_originals")
    store.close()
