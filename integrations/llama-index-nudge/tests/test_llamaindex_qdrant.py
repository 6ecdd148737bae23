"""NudgeFinetuneEngine on Qdrant in local mode (``QdrantClient(path=...)``): updated in place, durable,
rolled back on failure, NUDGE-M only with dot product."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.integration  # Qdrant (local mode) and a subprocess
pytest.importorskip("qdrant_client")
pytest.importorskip("llama_index.vector_stores.qdrant")

from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.nudge import NudgeFinetuneEngine, StoreWriteError  # noqa: E402
from llama_index.vector_stores.qdrant import QdrantVectorStore  # noqa: E402
from qdrant_client import QdrantClient  # noqa: E402
from qdrant_client.http.models import Distance, VectorParams  # noqa: E402

from nudge_rag import search  # noqa: E402

N_DOCS = 500
COLLECTION = "scifact"


def _build(client, scifact, embed_model, rows, *, distance=None):
    if distance is not None:
        client.create_collection(COLLECTION, vectors_config=VectorParams(size=384, distance=distance))
    store = QdrantVectorStore(collection_name=COLLECTION, client=client)
    VectorStoreIndex(
        scifact.nodes(rows), storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
    )
    # reopen the way an application does: from the vector store alone (no docstore, empty index struct)
    return VectorStoreIndex.from_vector_store(
        QdrantVectorStore(collection_name=COLLECTION, client=client), embed_model=embed_model
    )


def _points(client) -> dict[str, tuple[np.ndarray, str]]:
    out, offset = {}, None
    while True:
        points, offset = client.scroll(COLLECTION, limit=500, offset=offset, with_payload=True, with_vectors=True)
        for p in points:
            vec = p.vector if not isinstance(p.vector, dict) else next(iter(p.vector.values()))
            out[str(p.id)] = (np.asarray(vec, dtype=np.float32), json.dumps(p.payload, sort_keys=True))
        if offset is None:
            return out


@pytest.fixture
def qdrant_dir(tmp_path):
    """Folder for a local-mode Qdrant. Local mode commits every point to SQLite separately, which costs an
    fsync each on a disk; on tmpfs (/dev/shm) the same files are written without that wait."""
    import shutil
    import tempfile
    from pathlib import Path

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path / "qdrant"
        return
    folder = Path(tempfile.mkdtemp(prefix="nudge-qdrant-", dir=shm))
    try:
        yield folder / "qdrant"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _pairs_for(scifact, index_node_ids, split="train"):
    return [(q, n) for q, n in scifact.pairs(split) if n in index_node_ids]


def test_qdrant_local_is_updated_in_place_and_durable(scifact, embed_model, qdrant_dir, helpers):
    path = qdrant_dir
    client = QdrantClient(path=str(path))
    rows = list(range(N_DOCS))
    index = _build(client, scifact, embed_model, rows)
    present = {scifact.node_of[scifact.doc_ids[i]] for i in rows}
    before = _points(client)
    test_q = {q: a & present for q, a in scifact.answers("test").items() if a & present}
    hit_before = helpers.hit_rate(index, test_q, also=(1,))

    engine = NudgeFinetuneEngine(index, train_dataset=_pairs_for(scifact, present))
    report = engine.finetune()
    assert report.store_similarity == "cosine" and engine.n_embedded_nodes == 0
    assert embed_model.live_texts == 0
    nudged = engine.get_finetuned_index()
    hit_after = helpers.hit_rate(nudged, test_q, also=(1,))
    assert hit_after[1] >= hit_before[1] + 0.05 and hit_after[10] >= hit_before[10], (hit_before, hit_after)

    after = _points(client)
    assert set(after) == set(before)
    assert all(after[k][1] == before[k][1] for k in before)  # payloads (text, metadata) untouched
    moved = [k for k in before if not np.allclose(before[k][0], after[k][0], atol=1e-6)]
    assert len(moved) == report.n_moved > 0

    # persist beside the store and reopen the engine (as after a restart): insert() continues the fit in place
    engine.persist(path.parent / "storage")
    assert (path.parent / "storage" / "nudge_report.json").is_file()
    engine = NudgeFinetuneEngine.from_persist_dir(path.parent / "storage", index=nudged)
    assert engine.report.n_moved == report.n_moved
    added = scifact.nodes(range(N_DOCS, N_DOCS + 2))
    engine.insert(nodes=added)
    assert engine.inserts[-1]["n_new_nodes"] == 2
    after.update({k: v for k, v in _points(client).items() if k in {n.node_id for n in added}})
    moved = [n.node_id for n in added] + moved  # a new process must see them too
    expected = {k: after[k][0] for k in moved[:50]}
    expected_payload = {k: after[k][1] for k in moved[:5]}
    client.close()

    # a NEW process opens the Qdrant path and sees the nudged and inserted vectors
    code = (
        "import json, sys; from qdrant_client import QdrantClient;"
        f"c = QdrantClient(path={str(path)!r});"
        f"ids = json.loads({json.dumps(json.dumps(sorted(expected)))});"
        f"pts = c.retrieve({COLLECTION!r}, ids=ids, with_vectors=True, with_payload=True);"
        "print(json.dumps({str(p.id): [p.vector, json.dumps(p.payload, sort_keys=True)] for p in pts}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    seen = json.loads(out)
    assert set(seen) == set(expected)
    for k, vec in expected.items():
        assert np.allclose(seen[k][0], vec / np.linalg.norm(vec), atol=1e-6), k
    for k, payload in expected_payload.items():
        assert seen[k][1] == payload


def test_nudge_m_needs_a_dot_product_collection(scifact, embed_model):
    client = QdrantClient(location=":memory:")
    rows = list(range(300))
    index = _build(client, scifact, embed_model, rows, distance=Distance.DOT)
    present = {scifact.node_of[scifact.doc_ids[i]] for i in rows}
    pairs = _pairs_for(scifact, present)

    # seed 1: with the one carving rule (nudge_rag.finetune.carve_rows), seed 0's 30 validation questions give a
    # flat NUDGE-M hit@1 curve (0.80 at every gamma), so gamma = 0 moves nothing, by design
    report = NudgeFinetuneEngine(index, train_dataset=pairs, variant="nudge-m", seed=1).finetune()
    assert report.similarity == "inner_product" and report.store_similarity == "inner_product"
    stored = _points(client)
    norms = np.array([np.linalg.norm(v) for v, _ in stored.values()])
    assert (np.abs(norms - 1) > 1e-3).sum() == report.n_moved > 0  # unnormalised, kept as is by a DOT collection

    # Qdrant's dot-product ranking equals exact inner-product search over the nudged vectors
    ids = list(stored)
    matrix = np.stack([stored[k][0] for k in ids])
    retriever = index.as_retriever(similarity_top_k=5)
    for text, _ in pairs[:10]:
        q = np.asarray(embed_model.get_query_embedding(text), dtype=np.float32)[None]
        _, top = search(q, matrix, k=5, similarity="inner_product")
        assert [r.node.node_id for r in retriever.retrieve(text)] == [ids[i] for i in top[0]]

    client.close()
    cosine = QdrantClient(location=":memory:")
    cos_index = _build(cosine, scifact, embed_model, rows[:20])
    with pytest.raises(ValueError, match="NUDGE-M.*inner product.*Distance.DOT"):
        NudgeFinetuneEngine(cos_index, train_dataset=pairs, variant="nudge-m")
    cosine.close()


def test_failed_qdrant_write_restores_the_original_vectors(scifact, embed_model, qdrant_dir, monkeypatch):
    client = QdrantClient(path=str(qdrant_dir))
    rows = list(range(300))
    index = _build(client, scifact, embed_model, rows)
    present = {scifact.node_of[scifact.doc_ids[i]] for i in rows}
    before = _points(client)

    real = client.update_vectors
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # two batches of 40 written, the third fails
            raise ConnectionError("connection reset by peer")
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "update_vectors", flaky)
    engine = NudgeFinetuneEngine(index, train_dataset=_pairs_for(scifact, present))
    engine._core.batch_size = 40  # the core store writes in batches of 40
    with pytest.raises(StoreWriteError, match="connection reset"):
        engine.finetune()
    after = _points(client)
    assert set(after) == set(before)
    assert all(after[k][1] == before[k][1] for k in before)
    # a cosine collection re-normalises every vector written to it, so a restored unit vector can differ
    # from the original in its last bit (float32 ulp ~6e-8); nothing else may differ
    assert max(float(np.abs(after[k][0] - before[k][0]).max()) for k in before) <= 6e-8
    client.close()
