"""``fit_vectorstore`` on each supported LangChain store, through the store itself, on real SciFact: Qdrant (local
mode), Chroma (on disk) and Milvus Lite are written in place by document id through ``nudge_rag.stores``;
InMemoryVectorStore and FAISS get a nudged copy. Only documents named by training pairs change, held-out hit@1
rises, and the vectors equal the core in-memory fit on the same vectors."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_nudge import NudgeEmbeddings
from langchain_nudge.vectorstores._core import core_store
from langchain_nudge.vectorstores.adapters import get_adapter

from nudge_rag.finetune import finetune_pairs, group_pairs

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

N_DOCS = 400


def _uid(doc_id: str) -> str:  # Qdrant point ids must be UUIDs (or unsigned integers)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"scifact/{doc_id}"))


def _qdrant(emb, tmp_path):
    pytest.importorskip("langchain_qdrant")
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient
    from qdrant_client.http.models import Distance, VectorParams

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    client.create_collection("scifact", vectors_config=VectorParams(size=384, distance=Distance.COSINE))
    return QdrantVectorStore(client=client, collection_name="scifact", embedding=emb)


def _chroma(emb, tmp_path):
    pytest.importorskip("langchain_chroma")
    from langchain_chroma import Chroma

    return Chroma("scifact", embedding_function=emb, persist_directory=str(tmp_path / "chroma"))


def _milvus(emb, tmp_path):
    pytest.importorskip("langchain_milvus")
    from langchain_milvus import Milvus

    return Milvus(emb, collection_name="scifact", connection_args={"uri": str(tmp_path / "milvus.db")})


def _faiss(emb, tmp_path):
    pytest.importorskip("langchain_community")
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy

    return lambda docs, ids: FAISS.from_documents(
        docs, emb, ids=ids, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT
    )


def _memory(emb, tmp_path):
    return InMemoryVectorStore(embedding=emb)


STORES = {"qdrant": _qdrant, "chroma": _chroma, "milvus": _milvus, "faiss": _faiss, "inmemory": _memory}


def _vectors(store, ids):
    core = core_store(store)
    if core is not None:
        return core.fetch(ids)
    docs, vecs = get_adapter(store).extract(store)
    pos = {d.id: j for j, d in enumerate(docs)}
    return vecs[[pos[i] for i in ids]]


@pytest.mark.parametrize("kind", sorted(STORES))
def test_fit_vectorstore_in_the_store(kind, scifact, sup, tmp_path):
    emb = sup.MiniLMEmbeddings(scifact.known)
    rows = scifact.subset_rows(N_DOCS)
    docs = scifact.documents(rows)
    ids = [_uid(d.id) for d in docs]
    store = STORES[kind](emb, tmp_path)
    if callable(store) and not hasattr(store, "add_documents"):
        store = store(docs, ids)
    else:
        store.add_documents(docs, ids=ids)
    present = set(ids)
    pairs = [(q, _uid(d)) for q, d in scifact.pairs("train") if _uid(d) in present]
    held_out = {q: {_uid(d) for d in a} & present for q, a in scifact.answers("test").items()}
    held_out = {q: a for q, a in held_out.items() if a}
    before = _vectors(store, ids)

    def hit1(s):  # langchain-qdrant / -milvus put the id in metadata ("_id" / "pk"), not Document.id
        top = [s.similarity_search(q, k=1)[0] for q in held_out]
        return np.mean(
            [(d.id or d.metadata.get("_id") or d.metadata.get("pk")) in a for d, a in zip(top, held_out.values())]
        )

    hit_before = hit1(store)
    nudged_emb = NudgeEmbeddings(emb)
    nudged = nudged_emb.fit_vectorstore(store, pairs)
    in_place = core_store(store) is not None
    assert (nudged is store) == in_place
    after = _vectors(nudged, ids)
    if not in_place:  # a copy: the original store is untouched
        np.testing.assert_array_equal(_vectors(store, ids), before)

    # only documents named by training pairs change, by id
    changed = {ids[j] for j in np.flatnonzero(np.abs(after - before).max(axis=1) > 1e-6)}
    assert 0 < len(changed) == nudged_emb.model_.n_moved_ and changed <= {d for _, d in pairs}
    # equal to the core in-memory fit on the same vectors
    unit = before / np.linalg.norm(before, axis=1, keepdims=True)
    ref = finetune_pairs(
        unit,
        group_pairs(pairs),
        None,
        row_of={d: j for j, d in enumerate(ids)},
        embed_queries=lambda texts: np.asarray([emb.embed_query(t) for t in texts], dtype=np.float32),
    ).model
    assert nudged_emb.model_.gamma_ == pytest.approx(ref.gamma_, abs=1e-12)
    moved = ref.patch_.rows
    np.testing.assert_allclose(after[moved], ref.embeddings_[moved], atol=1e-5)
    # held-out hit@1 rises, searched through the framework's own store
    hit_after = hit1(nudged)
    assert hit_after >= hit_before + 0.05, (hit_before, hit_after)
    if in_place:
        assert NudgeEmbeddings.revert_vectorstore(store) == len(changed)
        np.testing.assert_allclose(_vectors(store, ids), before, rtol=0, atol=1.2e-7 if kind == "qdrant" else 0)


def test_in_place_nudge_m_needs_an_inner_product_store(scifact, sup, tmp_path):
    emb = sup.MiniLMEmbeddings(scifact.known)
    store = _chroma(emb, tmp_path)  # Chroma collections rank by L2 unless created otherwise
    docs = scifact.documents(range(20))
    store.add_documents(docs, ids=[d.id for d in docs])
    with pytest.raises(Exception, match="inner product"):
        NudgeEmbeddings(emb, variant="nudge-m").fit_vectorstore(store, [("a question", docs[0].id)])
