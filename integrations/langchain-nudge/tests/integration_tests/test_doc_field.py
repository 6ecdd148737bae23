"""Pairs by document (issue 20 item 3): SciFact abstracts split into several chunks by a LangChain text splitter,
each chunk carrying its abstract's id in ``metadata["source"]``; pairs naming SciFact document ids fit every chunk
of their document, resolved at fit time, in an ``InMemoryVectorStore`` and in Chroma. An edited document re-added
under new chunk ids is found by the same pairs; a deleted document's pairs are skipped and counted."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_nudge import NudgeEmbeddings
from langchain_nudge.vectorstores._core import core_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_CITED = 60  # abstracts cited by training claims
N_OTHER = 40  # distractors
GAMMA = 0.5  # fixed, no validation carve: every question trains (a chunk as short as 'target.' may not move)


def _split(docs: list[Document], version: str) -> list[Document]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=400, chunk_overlap=0)
    out = []
    for doc in docs:
        for n, chunk in enumerate(splitter.split_text(doc.page_content)):
            out.append(Document(id=f"{doc.id}#{version}-{n}", page_content=chunk, metadata={"source": doc.id}))
    return out


@pytest.fixture(scope="module")
def corpus(scifact, sup):
    """The abstracts, their chunks, training pairs (question, SciFact doc id) and an embeddings model that serves
    precomputed vectors (claims) and the chunk vectors computed once by the real model."""
    cited = sorted({d for _, d in scifact.train_raw}, key=scifact.row_of.get)[:N_CITED]
    named = {d for _, d in scifact.train_raw + scifact.test_raw}
    others = [d for d in scifact.doc_ids if d not in named][:N_OTHER]
    docs = scifact.documents([scifact.row_of[d] for d in cited + others])
    chunks = _split(docs, "v1")
    edited = Document(id=cited[0], page_content="Revised abstract. " + docs[0].page_content, metadata={})
    new_chunks = _split([edited], "v2")
    live = sup.MiniLMEmbeddings()
    texts = list(dict.fromkeys(c.page_content for c in chunks + new_chunks))
    known = dict(scifact.known)
    known.update(zip(texts, np.asarray(live.embed_documents(texts), dtype=np.float32)))
    pairs = [(q, d) for q, d in scifact.pairs("train") if d in set(cited)]
    return {"docs": docs, "chunks": chunks, "new_chunks": new_chunks, "pairs": pairs, "cited": cited, "known": known}


def _store(kind, emb, tmp_path):
    if kind == "memory":
        from langchain_core.vectorstores import InMemoryVectorStore

        return InMemoryVectorStore(embedding=emb)
    pytest.importorskip("langchain_chroma")
    from langchain_chroma import Chroma

    return Chroma("chunks", embedding_function=emb, persist_directory=str(tmp_path / "chroma"))


def _chunk_ids(chunks: list[Document], docs: set[str]) -> set[str]:
    return {c.id for c in chunks if c.metadata["source"] in docs}


@pytest.mark.parametrize("kind", ["memory", "chroma"])
def test_pairs_by_document_resolve_to_current_chunks(kind, corpus, sup, tmp_path):
    emb = sup.MiniLMEmbeddings(corpus["known"], live=False)
    store = _store(kind, emb, tmp_path)
    chunks = corpus["chunks"]
    store.add_documents(chunks, ids=[c.id for c in chunks])
    pairs, cited = corpus["pairs"], corpus["cited"]
    assert len(chunks) > 2 * len(corpus["docs"])  # really split: several chunks per abstract
    trained = {d for _, d in pairs}

    # 1. pairs naming documents fit every chunk of those documents, and equal pairs naming the chunks by hand
    nudged = NudgeEmbeddings(emb, gamma=GAMMA)
    nudged.fit_vectorstore(store, pairs, doc_field="source")
    report = nudged.report_
    by_hand = [(q, c.id) for q, d in pairs for c in chunks if c.metadata["source"] == d]
    assert report.n_train_pairs == len(set(by_hand))  # every chunk of every named document is an answer
    resolved = _chunk_ids(chunks, trained)
    assert set(nudged.document_ids_) <= resolved and report.written >= 0.95 * len(resolved)
    with core_store(store) as core:
        by_doc = core.fetch(sorted(_chunk_ids(chunks, trained)))
    assert NudgeEmbeddings.revert_vectorstore(store) == report.written
    NudgeEmbeddings(emb, gamma=GAMMA).fit_vectorstore(store, by_hand)
    with core_store(store) as core:
        np.testing.assert_allclose(core.fetch(sorted(_chunk_ids(chunks, trained))), by_doc, atol=1e-6)
    NudgeEmbeddings.revert_vectorstore(store)

    # 2. an edited document re-added under new chunk ids: the same pairs now name its new chunks
    edited = cited[0]
    old_ids = sorted(_chunk_ids(chunks, {edited}))
    store.delete(ids=old_ids)
    new_chunks = corpus["new_chunks"]
    store.add_documents(new_chunks, ids=[c.id for c in new_chunks])
    with core_store(store) as core:
        before = core.fetch([c.id for c in new_chunks])
    nudged = NudgeEmbeddings(emb, gamma=GAMMA)
    nudged.fit_vectorstore(store, pairs, doc_field="source")
    written = set(nudged.document_ids_)
    assert {c.id for c in new_chunks} <= written and not written & set(old_ids)
    with core_store(store) as core:
        assert not np.allclose(core.fetch([c.id for c in new_chunks]), before)
    NudgeEmbeddings.revert_vectorstore(store)

    # 3. a deleted document: its pairs are skipped (a warning naming it), questions left without answer counted
    gone = next(d for d in cited[1:] if d in trained)
    store.delete(ids=sorted(_chunk_ids(chunks, {gone})))
    answers: dict[str, set[str]] = {}
    for q, d in pairs:
        answers.setdefault(q, set()).add(d)
    orphaned = sum(a == {gone} for a in answers.values())
    nudged = NudgeEmbeddings(emb, gamma=GAMMA)
    with pytest.warns(UserWarning, match=repr(gone)):
        nudged.fit_vectorstore(store, pairs, doc_field="source")
    assert nudged.report_.n_dropped_questions == orphaned
    assert nudged.report_.n_train_questions == len(answers) - orphaned
    assert not set(nudged.document_ids_) & _chunk_ids(chunks, {gone})
    NudgeEmbeddings.revert_vectorstore(store)


def test_fit_lookup_table_by_document(corpus, sup):
    """``fit`` (the lookup table) on a list of chunks: a pair stands for every chunk of its document."""
    emb = sup.MiniLMEmbeddings(corpus["known"], live=False)
    chunks, pairs = corpus["chunks"], corpus["pairs"]
    trained = {d for _, d in pairs}
    nudged = NudgeEmbeddings(emb, gamma=GAMMA).fit(chunks, pairs, doc_field="source")
    by_hand = [(q, c.id) for q, d in pairs for c in chunks if c.metadata["source"] == d]
    ref = NudgeEmbeddings(emb, gamma=GAMMA).fit(chunks, by_hand)
    np.testing.assert_allclose(nudged.embeddings_, ref.embeddings_, atol=1e-6)
    moved = np.abs(nudged.embeddings_ - np.asarray(emb.embed_documents([c.page_content for c in chunks]))).max(1)
    resolved = _chunk_ids(chunks, trained)
    assert {c.id for c, m in zip(chunks, moved) if m > 1e-6} <= resolved and (moved > 1e-6).sum() >= 0.95 * len(
        resolved
    )
    with pytest.raises(ValueError, match="none of the"):
        NudgeEmbeddings(emb, gamma=GAMMA).fit(chunks, [("q", "no-such-document")], doc_field="source")


def test_doc_field_on_a_store_without_metadata_lookup(corpus, sup):
    """FAISS has no metadata lookup in the core store: NotImplementedError naming it, nothing written."""
    pytest.importorskip("langchain_community")
    from langchain_community.vectorstores import FAISS

    emb = sup.MiniLMEmbeddings(corpus["known"], live=False)
    chunks = corpus["chunks"][:50]
    store = FAISS.from_documents(chunks, emb, ids=[c.id for c in chunks])
    with pytest.raises(NotImplementedError, match="FaissStore"):
        NudgeEmbeddings(emb, gamma=GAMMA).fit_vectorstore(store, corpus["pairs"], doc_field="source")
