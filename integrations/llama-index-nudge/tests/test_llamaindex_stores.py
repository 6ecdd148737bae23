"""NudgeFinetuneEngine on each supported vector store, through the framework's own store, on real SciFact:
only documents named by training pairs change, held-out hit@1 rises, and the moved vectors equal the core
in-memory fit on the same vectors; revert restores the originals."""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.nudge import NudgeFinetuneEngine
from llama_index.nudge._backends import core_store

from nudge_rag.finetune import finetune_pairs, group_pairs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_DOCS = 400


def _qdrant(tmp_path):
    pytest.importorskip("llama_index.vector_stores.qdrant")
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    return QdrantVectorStore(collection_name="scifact", client=client), True


def _chroma(tmp_path):
    pytest.importorskip("llama_index.vector_stores.chroma")
    import chromadb
    from llama_index.vector_stores.chroma import ChromaVectorStore

    coll = chromadb.PersistentClient(path=str(tmp_path / "chroma")).get_or_create_collection("scifact")
    return ChromaVectorStore(chroma_collection=coll), True


def _lancedb(tmp_path):
    pytest.importorskip("llama_index.vector_stores.lancedb")
    from llama_index.vector_stores.lancedb import LanceDBVectorStore

    return LanceDBVectorStore(uri=str(tmp_path / "lance"), table_name="scifact"), True


def _faiss(tmp_path):
    pytest.importorskip("llama_index.vector_stores.faiss")
    import faiss
    from llama_index.vector_stores.faiss import FaissVectorStore

    return FaissVectorStore(faiss_index=faiss.IndexFlatIP(384)), False


def _simple(tmp_path):
    return None, False


STORES = {"qdrant": _qdrant, "chroma": _chroma, "lancedb": _lancedb, "faiss": _faiss, "simple": _simple}


def _read(index, node_ids):
    store = core_store(index)
    if store is None:  # SimpleVectorStore: keyed by node id
        emb = index.vector_store.data.embedding_dict
        return np.asarray([emb[n] for n in node_ids], dtype=np.float32)
    return store.fetch(node_ids)


@pytest.mark.parametrize("kind", sorted(STORES))
def test_engine_fits_in_the_store(kind, scifact, embed_model, helpers, tmp_path):
    vector_store, reopen = STORES[kind](tmp_path)
    nodes = scifact.nodes(range(N_DOCS))
    ids = [n.node_id for n in nodes]
    ctx = StorageContext.from_defaults(vector_store=vector_store) if vector_store is not None else None
    index = VectorStoreIndex(nodes, storage_context=ctx, embed_model=embed_model)
    if reopen:  # as an application does: from the vector store alone
        index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)
    present = set(ids)
    pairs = [(q, n) for q, n in scifact.pairs("train") if n in present]
    test_q = {q: a & present for q, a in scifact.answers("test").items() if a & present}
    before = _read(index, ids)
    hit_before = helpers.hit_rate(index, test_q, also=(1,))

    engine = NudgeFinetuneEngine(index, train_dataset=pairs, embed_model=embed_model)
    report = engine.finetune()
    after = _read(engine.get_finetuned_index(), ids)

    # only documents named by training pairs change
    changed = {ids[j] for j in np.flatnonzero(np.abs(after - before).max(axis=1) > 1e-6)}
    assert 0 < len(changed) == report.n_moved and changed <= {n for _, n in pairs}
    # equal to the core in-memory fit on the same vectors
    row = {n: j for j, n in enumerate(ids)}
    embed = lambda texts: np.asarray([embed_model.get_query_embedding(t) for t in texts], dtype=np.float32)  # noqa: E731
    ref = finetune_pairs(before, group_pairs(pairs), None, row_of=row, embed_queries=embed).model
    assert report.gamma == pytest.approx(ref.gamma_, abs=1e-12)
    np.testing.assert_allclose(after, ref.embeddings_, atol=1e-5)
    # held-out hit@1 rises, searched through the framework's own store
    hit_after = helpers.hit_rate(engine.get_finetuned_index(), test_q, also=(1,))
    assert hit_after[1] >= hit_before[1] + 0.05, (hit_before, hit_after)
    if kind != "simple":  # revert puts back the originals bit for bit
        assert engine.revert() == len(changed)
        # (Qdrant local mode renormalises a COSINE collection in place when it searches: last-bit changes)
        np.testing.assert_allclose(_read(index, ids), before, rtol=0, atol=1.2e-7 if kind == "qdrant" else 0)


def test_nudge_m_needs_an_inner_product_store(scifact, embed_model, tmp_path):
    vector_store, _ = _chroma(tmp_path)  # LlamaIndex creates Chroma collections with L2
    index = VectorStoreIndex(
        scifact.nodes(range(50)),
        storage_context=StorageContext.from_defaults(vector_store=vector_store),
        embed_model=embed_model,
    )
    with pytest.raises(ValueError, match="inner product"):
        NudgeFinetuneEngine(index, train_dataset=scifact.pairs("train")[:5], variant="nudge-m")


def test_unsupported_store_names_the_supported_ones(embed_model):
    from llama_index.core.vector_stores.types import BasePydanticVectorStore

    class OtherStore(BasePydanticVectorStore):
        stores_text: bool = True

        def client(self):
            return None

        def add(self, nodes, **kwargs):
            return [n.node_id for n in nodes]

        def delete(self, ref_doc_id, **kwargs):
            return None

        def query(self, query, **kwargs):
            raise NotImplementedError

    index = VectorStoreIndex(
        [], storage_context=StorageContext.from_defaults(vector_store=OtherStore()), embed_model=embed_model
    )
    with pytest.raises(NotImplementedError, match="ChromaVectorStore.*FaissVectorStore"):
        NudgeFinetuneEngine(index, train_dataset=[("q", "n")])
