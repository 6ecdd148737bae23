"""Re-ingestion after ``fit_vectorstore``, on real stores and real SciFact vectors: where the store calls an
embedding function it exposes (Chroma, Qdrant, FAISS, InMemoryVectorStore, PGVector), the fit makes the wrapper
that function, so re-adding the unchanged documents with the same ids keeps every nudge; ``status_vectorstore``
counts them, and ``reapply_vectorstore`` restores nudges a re-index through another embedding object undid.
Where the wrapper cannot keep them (Milvus returns no documents by id), the fit says so in a warning."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_nudge import NudgeEmbeddings
from langchain_nudge_test_support import STORES, _pgvector, _uid  # the store builders of test_stores.py

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

N_DOCS = 300


def _build(kind, emb, docs, ids, tmp_path, request):
    if kind == "pgvector":
        store = _pgvector(emb, request.getfixturevalue("pg"))
    else:
        store = STORES[kind](emb, tmp_path)
    if callable(store) and not hasattr(store, "add_documents"):
        return store(docs, ids)
    store.add_documents(docs, ids=ids)
    return store


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    pgserver = pytest.importorskip("pgserver")
    pytest.importorskip("langchain_postgres")
    srv = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield srv
    srv.cleanup()


@pytest.mark.parametrize("kind", ["chroma", "qdrant", "faiss", "inmemory", "pgvector"])
def test_re_adding_unchanged_documents_keeps_their_nudge(kind, scifact, sup, tmp_path, request):
    emb = sup.MiniLMEmbeddings(scifact.known)
    docs = scifact.documents(scifact.subset_rows(N_DOCS))
    for d in docs:
        d.id = _uid(d.id)
    ids = [d.id for d in docs]
    store = _build(kind, emb, docs, ids, tmp_path, request)
    present = set(ids)
    pairs = [(q, _uid(d)) for q, d in scifact.pairs("train") if _uid(d) in present]
    nudged = NudgeEmbeddings(emb)
    nudged.fit_vectorstore(store, pairs)
    n = nudged.model_.n_moved_
    assert NudgeEmbeddings.status_vectorstore(store).nudged == n
    if kind == "faiss":  # FAISS refuses an existing id: its re-index deletes the documents and adds them again
        store.delete(ids)
    store.add_documents(docs, ids=ids)  # the nightly re-index: same ids, same texts
    st = NudgeEmbeddings.status_vectorstore(store)
    assert (st.nudged, st.overwritten, st.missing) == (n, 0, 0), st


@pytest.mark.parametrize("kind", ["chroma", "inmemory"])
def test_a_re_index_through_the_base_model_is_seen_and_reapplied(kind, scifact, sup, tmp_path, request):
    emb = sup.MiniLMEmbeddings(scifact.known)
    docs = scifact.documents(scifact.subset_rows(N_DOCS))
    ids = [d.id for d in docs]
    store = _build(kind, emb, docs, ids, tmp_path, request)
    pairs = [(q, d) for q, d in scifact.pairs("train") if d in set(ids)]
    nudged = NudgeEmbeddings(emb)
    nudged.fit_vectorstore(store, pairs)
    n = nudged.model_.n_moved_
    # a re-index through the base model (as another process with its own embedding object would do): the nudges
    # are gone, and status says so
    for name in ("_embedding_function", "embedding"):
        if hasattr(store, name):
            setattr(store, name, emb)
    store.add_documents(docs, ids=ids)
    st = NudgeEmbeddings.status_vectorstore(store)
    assert (st.nudged, st.overwritten, st.reapplicable) == (0, n, n)
    result = NudgeEmbeddings.reapply_vectorstore(store)
    assert result.reapplied == n and NudgeEmbeddings.status_vectorstore(store).nudged == n
    assert NudgeEmbeddings.revert_vectorstore(store) == n


def test_milvus_says_plainly_that_a_re_add_drops_the_nudges(scifact, sup, tmp_path, request):
    emb = sup.MiniLMEmbeddings(scifact.known)
    docs = scifact.documents(scifact.subset_rows(N_DOCS))
    ids = [d.id for d in docs]
    store = _build("milvus", emb, docs, ids, tmp_path, request)
    pairs = [(q, d) for q, d in scifact.pairs("train") if d in set(ids)]
    with pytest.warns(RuntimeWarning, match="drops their nudge.*reapply_vectorstore"):
        NudgeEmbeddings(emb).fit_vectorstore(store, pairs)
    assert NudgeEmbeddings.status_vectorstore(store).nudged > 0
    np.testing.assert_equal(NudgeEmbeddings.revert_vectorstore(store) > 0, True)
