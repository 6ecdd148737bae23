"""Qdrant local mode on disk (the code path a server URL uses too), on real SciFact."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qdrant_client")

from qdrant_client import QdrantClient, models  # noqa: E402

from nudge_rag.stores import QdrantStore, StoreError, open_store  # noqa: E402
from tests.stores.conftest import check_contract  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _load(path, s, distance):
    client = QdrantClient(path=str(path))
    client.create_collection("scifact", vectors_config=models.VectorParams(size=s.docs.shape[1], distance=distance))
    for b0 in range(0, len(s.ids), 1024):  # SciFact ids are integers: Qdrant point ids must be integers or UUIDs
        client.upsert(
            "scifact",
            points=models.Batch(ids=[int(i) for i in s.ids[b0 : b0 + 1024]], vectors=s.docs[b0 : b0 + 1024].tolist()),
        )
    return client


@pytest.mark.parametrize("distance", [models.Distance.DOT, models.Distance.COSINE])
def test_qdrant_contract(tmp_path, scifact_ids, reference_fit, monkeypatch, distance):
    s = scifact_ids
    store = QdrantStore(client=_load(tmp_path / "q", s, distance), collection="scifact", own_client=True)
    assert store.similarity == {"Dot": "inner_product", "Cosine": "cosine"}[distance.value]
    uri = f"qdrant://{tmp_path / 'q'}?collection=scifact"
    # a COSINE collection renormalises every vector written, so restored rows may differ in the last bit
    store = check_contract(
        store,
        s,
        reference_fit,
        monkeypatch,
        reopen=lambda: open_store(uri),
        uri=uri,
        tmp_path=tmp_path,
        exact_restore=distance == models.Distance.DOT,
        delete=lambda st, ids: st.client.delete(
            st.collection, points_selector=models.PointIdsList(points=[int(i) for i in ids]), wait=True
        ),
    )
    assert [c.name for c in store.client.get_collections().collections] == ["scifact"]
    store.close()


def test_qdrant_refuses_nudge_m_on_cosine(tmp_path, scifact_ids):
    from nudge_rag.stores import finetune_store

    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection("c", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    client.upsert("c", points=models.Batch(ids=[1, 2], vectors=np.eye(4)[:2].tolist()))
    store = QdrantStore(client=client, collection="c")
    with pytest.raises(StoreError, match="inner product"):
        finetune_store(store, scifact_ids.train_q, embed_queries=scifact_ids.vectors, variant="nudge-m")
    client.close()
