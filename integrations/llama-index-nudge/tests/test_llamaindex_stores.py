"""NudgeFinetuneEngine on each supported vector store, through the framework's own store, on real SciFact:
only documents named by training pairs change, held-out hit@1 rises, and the moved vectors equal the core
in-memory fit on the same vectors; a fresh store object reads the nudged vectors (PostgreSQL, Milvus); revert
restores the originals. PostgreSQL is a real server started by ``pgserver``; Milvus is Milvus Lite (a file)."""

from __future__ import annotations

import uuid

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
    return QdrantVectorStore(collection_name="scifact", client=client), True, None


def _chroma(tmp_path):
    pytest.importorskip("llama_index.vector_stores.chroma")
    import chromadb
    from llama_index.vector_stores.chroma import ChromaVectorStore

    coll = chromadb.PersistentClient(path=str(tmp_path / "chroma")).get_or_create_collection("scifact")
    return ChromaVectorStore(chroma_collection=coll), True, None


def _lancedb(tmp_path):
    pytest.importorskip("llama_index.vector_stores.lancedb")
    from llama_index.vector_stores.lancedb import LanceDBVectorStore

    return LanceDBVectorStore(uri=str(tmp_path / "lance"), table_name="scifact"), True, None


def _faiss(tmp_path):
    pytest.importorskip("llama_index.vector_stores.faiss")
    import faiss
    from llama_index.vector_stores.faiss import FaissVectorStore

    return FaissVectorStore(faiss_index=faiss.IndexFlatIP(384)), False, None


def _simple(tmp_path):
    return None, False, None


@pytest.fixture(scope="module")
def pg_uri(tmp_path_factory):
    """A real PostgreSQL server with pgvector (pgserver, in a temporary folder), as a SQLAlchemy URL tail."""
    pgserver = pytest.importorskip("pgserver")
    srv = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield srv.get_uri().split("://", 1)[1]  # postgres:@/postgres?host=/tmp/... (a unix socket)
    srv.cleanup()


def pgvector_store(pg_uri, table: str | None = None, **kwargs):
    """``(PGVectorStore, make another store object on the same table)``."""
    pytest.importorskip("llama_index.vector_stores.postgres")
    from llama_index.vector_stores.postgres import PGVectorStore

    table = table or f"scifact_{uuid.uuid4().hex[:8]}"

    def make():
        return PGVectorStore.from_params(
            connection_string=f"postgresql+psycopg://{pg_uri}",
            async_connection_string=f"postgresql+asyncpg://{pg_uri}",
            table_name=table,
            embed_dim=384,
            **kwargs,
        )

    return make(), make


def milvus_store(tmp_path, **kwargs):
    """``(MilvusVectorStore on a Milvus Lite file, make another store object on the same collection)``."""
    pytest.importorskip("llama_index.vector_stores.milvus")
    from llama_index.vector_stores.milvus import MilvusVectorStore

    def make(overwrite=False):
        return MilvusVectorStore(
            uri=str(tmp_path / "m.db"),
            collection_name="scifact",
            dim=384,
            overwrite=overwrite,
            use_async_client=False,  # the async client needs a running event loop
            **kwargs,
        )

    return make(overwrite=True), make


def _pgvector(tmp_path, request):
    store, make = pgvector_store(request.getfixturevalue("pg_uri"))
    return store, True, make


def _milvus(tmp_path):
    store, make = milvus_store(tmp_path)
    return store, True, make


STORES = {
    "qdrant": _qdrant,
    "chroma": _chroma,
    "lancedb": _lancedb,
    "faiss": _faiss,
    "simple": _simple,
    "pgvector": _pgvector,
    "milvus": _milvus,
}


def make_store(kind, tmp_path, request):
    factory = STORES[kind]
    return factory(tmp_path, request) if kind == "pgvector" else factory(tmp_path)


def _read(index, node_ids):
    return core_store(index).fetch(node_ids)  # SimpleVectorStore too (the core MemoryStore over its dict)


@pytest.mark.parametrize("kind", sorted(STORES))
def test_engine_fits_in_the_store(kind, scifact, embed_model, helpers, tmp_path, request):
    vector_store, reopen, fresh = make_store(kind, tmp_path, request)
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
    if fresh is not None:  # another store object (as a new process would open) reads the nudged vectors
        np.testing.assert_array_equal(_read(VectorStoreIndex.from_vector_store(fresh(), embed_model), ids), after)
    # revert puts back the originals bit for bit (SimpleVectorStore too: the same core path)
    assert engine.revert() == len(changed)
    # (Qdrant local mode renormalises a COSINE collection in place when it searches: last-bit changes)
    np.testing.assert_allclose(_read(index, ids), before, rtol=0, atol=1.2e-7 if kind == "qdrant" else 0)


def test_nudge_m_needs_an_inner_product_store(scifact, embed_model, tmp_path):
    vector_store, _, _ = _chroma(tmp_path)  # LlamaIndex creates Chroma collections with L2
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


# ------------------------------------------------------------------------------------------ PostgreSQL and Milvus
def _index(vector_store, nodes, embed_model):
    """Nodes written through the store, then the index reopened from the store alone (as an application does)."""
    VectorStoreIndex(
        nodes, storage_context=StorageContext.from_defaults(vector_store=vector_store), embed_model=embed_model
    )
    return VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)


def test_nudge_m_in_an_inner_product_milvus_collection(scifact, embed_model, tmp_path):
    """MilvusVectorStore's default metric is IP: NUDGE-M runs there and equals the core in-memory NUDGE-M fit
    (on the whole 1000-node subset: on 400 nodes NUDGE-M's validation chooses gamma = 0)."""
    vector_store, _ = milvus_store(tmp_path)
    nodes = scifact.nodes()
    ids = [n.node_id for n in nodes]
    index = _index(vector_store, nodes, embed_model)
    present = set(ids)
    pairs = [(q, n) for q, n in scifact.pairs("train") if n in present]
    test_q = {q: a & present for q, a in scifact.answers("test").items() if a & present}
    before = _read(index, ids)
    engine = NudgeFinetuneEngine(index, train_dataset=pairs, embed_model=embed_model, variant="nudge-m")
    report = engine.finetune()
    after = _read(index, ids)
    row = {n: j for j, n in enumerate(ids)}
    embed = lambda texts: np.asarray([embed_model.get_query_embedding(t) for t in texts], dtype=np.float32)  # noqa: E731
    ref = finetune_pairs(
        before,
        group_pairs(pairs),
        None,
        row_of=row,
        embed_queries=embed,
        variant="nudge-m",
        base_similarity="inner_product",
    ).model
    assert report.gamma == pytest.approx(ref.gamma_, abs=1e-12) and report.gamma > 0
    np.testing.assert_allclose(after, ref.embeddings_, atol=1e-5)
    # held-out hit@1 by inner product (as Milvus ranks; scored here: one Milvus Lite search per question is slow)
    q = embed([t for t in test_q])
    answers = [{row[n] for n in a} for a in test_q.values()]

    def hit1(vectors):
        return np.mean([top in a for top, a in zip(np.argmax(q @ vectors.T, axis=1), answers)])

    assert hit1(after) > hit1(before), (hit1(before), hit1(after))
    assert engine.revert() == report.n_moved
    np.testing.assert_array_equal(_read(index, ids), before)


def test_nudge_m_refused_unless_inner_product(scifact, embed_model, tmp_path, request):
    """PGVectorStore always searches by cosine distance (even over an HNSW index built with inner-product
    operators); a Milvus COSINE collection ranks by cosine too."""
    nodes = scifact.nodes(range(20))
    pg, _ = pgvector_store(request.getfixturevalue("pg_uri"))
    hnsw = {"hnsw_m": 16, "hnsw_ef_construction": 64, "hnsw_ef_search": 40, "hnsw_dist_method": "vector_ip_ops"}
    pg_hnsw, _ = pgvector_store(request.getfixturevalue("pg_uri"), hnsw_kwargs=hnsw)
    milvus, _ = milvus_store(tmp_path, similarity_metric="COSINE")
    for vector_store in (pg, pg_hnsw, milvus):
        index = _index(vector_store, nodes, embed_model)
        store = core_store(index)
        assert store.similarity == "cosine"
        if vector_store is pg_hnsw:  # the HNSW index exists, with inner-product operators
            sql = "SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%hnsw%%vector_ip_ops%%'"
            assert store.conn.execute(sql, (store.table,)).fetchone()[0] == 1
        with pytest.raises(ValueError, match="inner product"):
            NudgeFinetuneEngine(index, train_dataset=[("q", nodes[0].node_id)], variant="nudge-m")


def test_pgvector_halfvec_is_refused_clearly():
    pytest.importorskip("llama_index.vector_stores.postgres")
    from types import SimpleNamespace

    from llama_index.vector_stores.postgres import PGVectorStore

    vs = PGVectorStore.from_params(connection_string="postgresql://u@h/db", embed_dim=4, use_halfvec=True)
    with pytest.raises(NotImplementedError, match="half-precision"):
        core_store(SimpleNamespace(vector_store=vs))


@pytest.mark.parametrize("kind", ["pgvector", "milvus"])
def test_insert_in_a_database_store_equals_the_in_memory_insert(kind, scifact, embed_model, tmp_path, request):
    """finetune on 750 nodes, then insert 250 new nodes with new pairs: the store's vectors equal those of the same
    two calls on an in-memory index; only named nodes move; revert restores every vector (new nodes: as added)."""
    vector_store, _ = (
        pgvector_store(request.getfixturevalue("pg_uri")) if kind == "pgvector" else milvus_store(tmp_path)
    )
    nodes = scifact.nodes()  # 1000 nodes (on a few hundred, validation may choose gamma = 0)
    ids = [n.node_id for n in nodes]
    old, new = nodes[:750], nodes[750:]
    present = set(ids)
    pairs = [(q, n) for q, n in scifact.pairs("train") if n in present]
    texts = sorted({q for q, _ in pairs})
    later = set(texts[::3])  # a third of the questions come with the insert
    first = [(q, n) for q, n in pairs if q not in later and n in {o.node_id for o in old}]
    second = [(q, n) for q, n in pairs if (q, n) not in set(first)]
    assert any(n in {x.node_id for x in new} for _, n in second)

    index = _index(vector_store, old, embed_model)
    engine = NudgeFinetuneEngine(index, train_dataset=first, embed_model=embed_model)
    assert engine.finetune().gamma > 0
    with pytest.raises(ValueError, match="not in the index"):  # checked before anything is written
        engine.insert(train_dataset=[("a question", "no-such-node")])
    with pytest.raises(ValueError, match="already exist"):
        engine.insert(nodes=old[:2])
    report = engine.insert(nodes=new, train_dataset=second)

    memory = NudgeFinetuneEngine(VectorStoreIndex(old, embed_model=embed_model), train_dataset=first)
    memory.finetune()
    ref = memory.insert(nodes=new, train_dataset=second)
    assert (report.gamma, report.n_moved) == (ref.gamma, ref.n_moved)
    assert engine.inserts[-1]["n_new_nodes"] == len(new)
    after = _read(index, ids)
    np.testing.assert_allclose(after, _read(memory.get_finetuned_index(), ids), atol=1e-5)
    original = np.asarray([n.embedding for n in nodes], dtype=np.float32)
    changed = {ids[j] for j in np.flatnonzero(np.abs(after - original).max(axis=1) > 1e-6)}
    assert 0 < len(changed) == report.n_moved and changed <= {n for _, n in pairs}
    assert changed & {n.node_id for n in new}  # new nodes named by the new pairs moved too
    assert engine.revert() == len(changed)
    np.testing.assert_array_equal(_read(index, ids), original)


def test_generated_questions_in_a_database_store(scifact, embed_model, llms, tmp_path):
    """Without train_dataset the LLM writes questions about the nodes ``generate_for`` names, read from the store
    by id (``get_nodes``); without ``generate_for`` the store is not read whole: a clear error instead."""
    vector_store, _ = milvus_store(tmp_path)
    nodes = scifact.nodes(range(120))
    index = _index(vector_store, nodes, embed_model)
    with pytest.raises(ValueError, match="generate_for"):
        NudgeFinetuneEngine(index, llm=llms.sentence(), embed_model=embed_model).finetune()
    chosen = [n.node_id for n in nodes[:40]]
    llm = llms.sentence()
    engine = NudgeFinetuneEngine(index, llm=llm, generate_for=chosen, embed_model=embed_model)
    before = _read(index, [n.node_id for n in nodes])
    report = engine.finetune()
    assert llm.calls == len(chosen) and engine.generation["n_questions"] > 0
    after = _read(index, [n.node_id for n in nodes])
    moved = {nodes[j].node_id for j in np.flatnonzero(np.abs(after - before).max(axis=1) > 1e-6)}
    assert moved <= set(chosen) and len(moved) == report.n_moved
    engine.revert()


def test_failed_insert_leaves_the_store_as_it_was(scifact, embed_model, tmp_path, monkeypatch):
    """A write that fails half-way through an insert: the moved vectors are restored and the added nodes deleted."""
    vector_store, _ = milvus_store(tmp_path)
    nodes = scifact.nodes(range(300))
    ids = [n.node_id for n in nodes]
    old, new = nodes[:200], nodes[200:]
    index = _index(vector_store, old, embed_model)
    present = set(ids)
    pairs = [(q, n) for q, n in scifact.pairs("train") if n in present]
    first = [(q, n) for q, n in pairs if n in set(ids[:200])]
    later = [p for p in pairs if p not in set(first)]
    engine = NudgeFinetuneEngine(index, train_dataset=first, embed_model=embed_model, gamma=0.2)
    engine.finetune()
    core = engine._core
    before, count = core.fetch(ids[:200]), core.count()

    def failing(*args, **kwargs):
        raise RuntimeError("injected failure")

    core.batch_size = 4
    monkeypatch.setattr(core, "_write_batch", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        engine.insert(nodes=new, train_dataset=later)
    monkeypatch.undo()
    assert core.count() == count
    np.testing.assert_array_equal(core.fetch(ids[:200]), before)
    assert not vector_store.get_nodes(node_ids=ids[200:210])
    engine.insert(nodes=new, train_dataset=later)
    assert engine.inserts[-1]["n_new_nodes"] == len(new)


def test_faiss_generates_from_the_docstore_and_refuses_new_nodes(scifact, embed_model, llms, tmp_path):
    """FAISS keeps no text: questions are generated from the docstore's nodes (every node by default); pairs
    can be inserted later, new nodes cannot (the FAISS index numbers its vectors by position)."""
    vector_store, _, _ = _faiss(tmp_path)
    nodes = scifact.nodes(range(60))
    ctx = StorageContext.from_defaults(vector_store=vector_store)
    index = VectorStoreIndex(nodes, storage_context=ctx, embed_model=embed_model)
    llm = llms.sentence()
    engine = NudgeFinetuneEngine(index, llm=llm, embed_model=embed_model, gamma=0.2)
    report = engine.finetune()
    assert llm.calls == len(nodes) and engine.generation["n_questions"] > 0 and report.n_moved > 0
    with pytest.raises(NotImplementedError, match="numbers vectors by position"):
        engine.insert(nodes=scifact.nodes(range(60, 62)))
    present = {n.node_id for n in nodes}
    more = [(q, n) for q, n in scifact.pairs("train") if n in present][:10]
    engine.insert(train_dataset=more)
    assert engine.inserts[-1]["n_train_questions"] > 0
    assert engine.revert() >= report.n_moved
