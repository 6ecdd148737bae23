"""``fit_vectorstore`` on each supported LangChain store, through the store itself, on real SciFact: PGVector (a real
PostgreSQL from ``pgserver``), Qdrant (local mode), Chroma (on disk), Milvus Lite, FAISS and InMemoryVectorStore are
all written in place by document id through ``nudge_rag.stores``. Only documents named by training pairs change,
held-out hit@1 rises, the vectors equal the core in-memory fit on the same vectors, and revert is exact."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_nudge import NudgeEmbeddings
from langchain_nudge.vectorstores._core import core_store

from nudge_rag.finetune import finetune_pairs, group_pairs

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

N_DOCS = 400


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    pgserver = pytest.importorskip("pgserver")
    pytest.importorskip("langchain_postgres")
    srv = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield srv
    srv.cleanup()


from langchain_nudge_test_support import STORES, _chroma, _faiss, _pgvector, _uid  # noqa: E402  (store builders)


def _vectors(store, ids):
    with core_store(store) as core:
        return core.fetch(ids)


@pytest.mark.parametrize("kind", sorted([*STORES, "pgvector"]))
def test_fit_vectorstore_in_the_store(kind, scifact, sup, tmp_path, request):
    emb = sup.MiniLMEmbeddings(scifact.known)
    rows = scifact.subset_rows(N_DOCS)
    docs = scifact.documents(rows)
    ids = [_uid(d.id) for d in docs]
    if kind == "pgvector":
        srv = request.getfixturevalue("pg")
        other = _pgvector(emb, srv, "other")  # a second collection in the same table: never touched
        other.add_documents(docs[:30], ids=[f"other-{i}" for i in range(30)])
        other_before = _vectors(other, [f"other-{i}" for i in range(30)])
        store = _pgvector(emb, srv)
    else:
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
    assert nudged is store  # written in place
    after = _vectors(store, ids)

    # only documents named by training pairs change, by id
    changed = {ids[j] for j in np.flatnonzero(np.abs(after - before).max(axis=1) > 1e-6)}
    assert 0 < len(changed) == nudged_emb.model_.n_moved_ and changed <= {d for _, d in pairs}
    # the moved documents become the wrapper's lookup table where the store returns them by id (not Milvus)
    if kind == "milvus":
        assert not nudged_emb.is_fitted
    else:
        assert sorted(nudged_emb.document_ids_) == sorted(changed)
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
    hit_after = hit1(store)
    assert hit_after >= hit_before + 0.05, (hit_before, hit_after)
    if kind == "pgvector":  # a new store object (a restarted service) reads the nudged vectors
        reopened = _pgvector(emb, srv)
        np.testing.assert_array_equal(_vectors(reopened, ids), after)
        assert hit1(reopened) == hit_after
        np.testing.assert_array_equal(_vectors(other, [f"other-{i}" for i in range(30)]), other_before)
    assert NudgeEmbeddings.revert_vectorstore(store) == len(changed)
    np.testing.assert_allclose(_vectors(store, ids), before, rtol=0, atol=1.2e-7 if kind == "qdrant" else 0)
    assert NudgeEmbeddings.revert_vectorstore(store) == 0


def test_in_place_nudge_m_needs_an_inner_product_store(scifact, sup, tmp_path):
    emb = sup.MiniLMEmbeddings(scifact.known)
    store = _chroma(emb, tmp_path)  # Chroma collections rank by L2 unless created otherwise
    docs = scifact.documents(range(20))
    store.add_documents(docs, ids=[d.id for d in docs])
    with pytest.raises(Exception, match="inner product"):
        NudgeEmbeddings(emb, variant="nudge-m").fit_vectorstore(store, [("a question", docs[0].id)])


def test_pgvector_distance_strategies(pg, scifact, sup):
    """PGVector's distance strategy is the core store's similarity; NUDGE-M only under inner product."""
    from langchain_postgres.vectorstores import DistanceStrategy

    emb = sup.MiniLMEmbeddings(scifact.known)
    docs = scifact.documents(sorted({scifact.row_of[d] for _, d in scifact.train_raw[:8]} | set(range(40))))
    expected = {"COSINE": "cosine", "EUCLIDEAN": "l2", "MAX_INNER_PRODUCT": "inner_product"}
    for name, similarity in expected.items():  # ids are unique across collections (the table's primary key)
        store = _pgvector(emb, pg, f"strategy-{name.lower()}", distance_strategy=DistanceStrategy[name])
        store.add_documents(docs, ids=[f"{name}-{d.id}" for d in docs])
        present = {d.id for d in docs}
        pairs = [(q, f"{name}-{d}") for q, d in scifact.pairs("train") if d in present][:6]
        with core_store(store) as core:
            assert (core.similarity, core.count(), core.dim) == (similarity, len(docs), 384)
        m = NudgeEmbeddings(emb, variant="nudge-m", gamma=0.5)
        if similarity != "inner_product":
            with pytest.raises(ValueError, match="inner product"):
                m.fit_vectorstore(store, pairs)
            assert m.model_ is None
            continue
        m.fit_vectorstore(store, pairs)
        moved = sorted({d for _, d in pairs})
        norms = np.linalg.norm(_vectors(store, moved), axis=1)
        assert np.abs(norms - 1).max() > 0.01  # NUDGE-M vectors written as they are, not renormalised
        assert NudgeEmbeddings.revert_vectorstore(store) == len(moved)


def test_faiss_failed_write_rolls_back(scifact, sup):
    """A write that fails half-way leaves the live FAISS index as it was."""
    emb = sup.MiniLMEmbeddings(scifact.known)
    docs = scifact.documents(range(100))
    store = _faiss(emb, None)(docs, [d.id for d in docs])
    before = store.index.reconstruct_n(0, 100)
    core = core_store(store)
    core.batch_size = 8
    calls = sup.fail_on_batch(core, 3)
    with pytest.raises(RuntimeError, match="injected"):
        core.write([d.id for d in docs[:40]], np.ones((40, 384), dtype=np.float32))
    assert calls == [8, 8, 8]
    np.testing.assert_array_equal(store.index.reconstruct_n(0, 100), before)
