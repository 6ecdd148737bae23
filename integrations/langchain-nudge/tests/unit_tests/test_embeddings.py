"""NudgeEmbeddings with LangChain's deterministic fake embeddings: lookup rules, fitting, errors, stores, files."""

from __future__ import annotations

import copy
import os
import sys
import warnings

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore
from langchain_nudge import NudgeEmbeddings, VectorStoreAdapter, register_adapter
from langchain_nudge.vectorstores import FAISSAdapter

from nudge_rag import NotFittedError, NudgeN
from nudge_rag.stores import StoreFinetuneReport

DIM = 16


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


@pytest.fixture
def base() -> DeterministicFakeEmbedding:
    return DeterministicFakeEmbedding(size=DIM)


@pytest.fixture
def docs() -> list[Document]:
    return [
        Document(
            id=f"d{i}", page_content=f"document number {i} about subject {i % 5}", metadata={"i": i, "tags": ["x"]}
        )
        for i in range(40)
    ]


@pytest.fixture
def pairs() -> list[tuple[str, str]]:
    return [(f"question {j} about document {j % 20}", f"d{j % 20}") for j in range(60)]


@pytest.fixture
def fitted(base, docs, pairs) -> NudgeEmbeddings:
    return NudgeEmbeddings(base, gamma=0.3).fit(docs, pairs)


def snapshot(store: InMemoryVectorStore) -> dict:
    return copy.deepcopy(store.store)


# ------------------------------------------------------------------------------------------ Embeddings API
def test_unfitted_wrapper_delegates_to_the_base_model(base):
    w = NudgeEmbeddings(base)
    texts = ["alpha beta", "gamma delta"]
    assert w.embed_documents(texts) == base.embed_documents(texts)
    assert w.embed_query("what is alpha?") == base.embed_query("what is alpha?")
    assert all(type(x) is float for x in w.embed_documents(texts)[0])
    assert not w.is_fitted and w.embed_documents([]) == []
    with pytest.raises(NotFittedError):
        _ = w.gamma_
    assert "NudgeEmbeddings" in repr(w)


def test_fitted_documents_get_nudged_vectors_others_the_base(fitted, base, docs, pairs):
    texts = [d.page_content for d in docs]
    got = np.asarray(fitted.embed_documents(texts))
    np.testing.assert_allclose(got, fitted.embeddings_, rtol=0, atol=0)
    assert all(type(x) is float for x in fitted.embed_documents(texts[:1])[0])
    # training questions are now closer to their documents than under the base vectors
    before, after = [], []
    for q, d in pairs:
        qv = unit(base.embed_query(q))
        row = int(d[1:])
        before.append(qv @ unit(base.embed_documents([texts[row]])[0]))
        after.append(qv @ got[row])
    assert np.mean(after) > np.mean(before) + 0.05
    # untrained documents (rows 20..39) only got normalised
    np.testing.assert_allclose(got[25], unit(base.embed_documents([texts[25]])[0]), atol=1e-6)
    # unknown texts and all queries come from the base model
    assert fitted.embed_documents(["never seen"]) == base.embed_documents(["never seen"])
    assert fitted.embed_query(texts[0]) == base.embed_query(texts[0])
    r = fitted.report_
    assert r.n_documents == 40 and r.n_train_questions == 60 and r.val_source == "none"
    assert r.gamma == 0.3 and 0 < r.n_moved <= 20 and r.similarity == "cosine"
    assert fitted.document_ids_ == [d.id for d in docs]


def test_matching_by_id_then_content(fitted, base, docs):
    text3, text5 = docs[3].page_content, docs[5].page_content
    nudged3 = fitted.embeddings_[3].tolist()
    assert fitted.embed_documents([text3], ids=["d3"]) == [nudged3]
    # a known id whose content changed is an edited document: base vector
    assert fitted.embed_documents(["edited text of d3"], ids=["d3"]) == base.embed_documents(["edited text of d3"])
    # a known id with another fitted document's content: still the base vector (the document changed)
    assert fitted.embed_documents([text5], ids=["d3"]) == base.embed_documents([text5])
    # no id / unknown id: exact content
    assert fitted.embed_documents([text3], ids=[None]) == [nudged3]
    assert fitted.embed_documents([text3], ids=["other-id"]) == [nudged3]
    assert fitted.embed_documents([text3 + " "]) == base.embed_documents([text3 + " "])
    with pytest.raises(ValueError, match="2 texts but 1 ids"):
        fitted.embed_documents([text3, text5], ids=["d3"])


def test_duplicate_content_is_matched_by_id_only(base):
    docs = [
        Document(id="a", page_content="same text here"),
        Document(id="b", page_content="same text here"),
        Document(id="c", page_content="another text"),
    ]
    w = NudgeEmbeddings(base, variant="nudge-m", gamma=0.5)
    w.fit(docs, [("a question about a", "a"), ("another question on c", "c")])
    va, vb = w.embed_documents(["same text here"] * 2, ids=["a", "b"])
    assert va != vb  # a moved, b did not
    assert w.embed_documents(["same text here"]) == base.embed_documents(["same text here"])  # ambiguous


async def test_async_variants_match_sync(fitted, docs):
    texts = [d.page_content for d in docs[:5]] + ["unseen text"]
    assert await fitted.aembed_documents(texts) == fitted.embed_documents(texts)
    assert await fitted.aembed_documents(texts[:2], ids=["d0", "zz"]) == fitted.embed_documents(
        texts[:2], ids=["d0", "zz"]
    )
    assert await fitted.aembed_query("q?") == fitted.embed_query("q?")


# ------------------------------------------------------------------------------------------ fitting
def test_validation_split_is_carved_when_none_given(base, docs, pairs):
    w = NudgeEmbeddings(base).fit(docs, pairs, seed=3, val_fraction=0.2)  # default 0.1 (nudge_rag.finetune)
    r = w.report_
    assert r.val_source == "carved" and r.n_val_questions == 12 and r.n_train_questions == 48
    gammas, scores = w.validation_curve_
    assert gammas.shape == scores.shape and gammas[0] == 0.0
    assert r.val_score >= r.val_base_score
    again = NudgeEmbeddings(base).fit(docs, pairs, seed=3, val_fraction=0.2)
    np.testing.assert_array_equal(again.embeddings_, w.embeddings_)  # deterministic


def test_given_validation_and_input_forms(base, docs, pairs):
    mapping = {}
    for q, d in pairs[:40]:
        mapping.setdefault(q, []).append(d)
    val = [(q, d, 1) for q, d in pairs[40:]]
    w = NudgeEmbeddings(base, variant="M").fit(docs, mapping, validation=val)
    assert w.report_.val_source == "given" and w.report_.n_val_questions == 20
    assert w.similarity_ == "inner_product" and w.variant == "nudge-m"
    # Document references: by id, or by content when the document has no id
    anon = [Document(page_content=d.page_content) for d in docs]
    w2 = NudgeEmbeddings(base, gamma=0.2).fit(anon, [(q, anon[int(d[1:])]) for q, d in pairs])
    np.testing.assert_allclose(w2.embeddings_, NudgeEmbeddings(base, gamma=0.2).fit(docs, pairs).embeddings_)
    assert w2.embed_documents([anon[0].page_content]) == [w2.embeddings_[0].tolist()]


@pytest.mark.parametrize(
    ("pairs", "match"),
    [
        ([("a good question here", "nope")], "unknown document id 'nope'"),
        ([("a good question here", Document(page_content="not in the corpus"))], "matches no source document"),
        ([], "empty"),
        ({}, "empty"),
        (None, "no question-document pairs"),
        ([("", "d1")], "non-empty string"),
        ([("a good question here",)], r"must be \(question, document\)"),
        ([("a good question here", "d1", "high")], "relevance must be a number"),
        ([("a good question here", "d1", 0)], "no pair has a positive relevance"),
    ],
)
def test_bad_pairs_raise_clear_errors(base, docs, pairs, match):
    w = NudgeEmbeddings(base, gamma=0.1)
    with pytest.raises(ValueError, match=match):
        w.fit(docs, pairs)
    assert not w.is_fitted


def test_failed_fit_leaves_the_previous_fit_intact(fitted, docs, pairs):
    state, model = fitted._state, fitted.model_
    vectors = fitted.embeddings_.copy()
    with pytest.raises(ValueError, match="unknown document id"):
        fitted.fit(docs, pairs + [("what about the missing one?", "missing")])
    with pytest.raises(ValueError, match="validation pair 0 names unknown"):
        fitted.fit(docs, pairs, validation=[("what about the missing one?", "missing")])
    assert fitted._state is state and fitted.model_ is model
    np.testing.assert_array_equal(fitted.embeddings_, vectors)


def test_dimension_mismatch_between_model_and_stored_vectors(base, docs, pairs):
    store = InMemoryVectorStore.from_documents(docs, DeterministicFakeEmbedding(size=8))
    w = NudgeEmbeddings(base)
    with pytest.raises(ValueError, match="dimension mismatch: the base embeddings return 16-dimensional .* 8 dim"):
        w.fit(store, pairs)
    assert not w.is_fitted
    fitted = NudgeEmbeddings(base, gamma=0.2).fit(docs, pairs)
    with pytest.raises(ValueError, match="dimension mismatch: the store holds 8-dimensional"):
        fitted.nudge_vectorstore(store)
    # a wrapper loaded around the wrong base model fails loudly when it needs the base model
    wrong = NudgeEmbeddings(DeterministicFakeEmbedding(size=8))
    wrong._state = fitted._state
    with pytest.raises(ValueError, match="dimension mismatch"):
        wrong.embed_documents(["unseen text"])


def test_small_question_sets_and_parameters(base, docs):
    with pytest.raises(ValueError, match="cannot carve a validation split from 1 question"):
        NudgeEmbeddings(base).fit(docs, [("only one question here", "d1")])
    NudgeEmbeddings(base, gamma=0.1).fit(docs, [("only one question here", "d1")])  # fixed gamma: fine
    with pytest.raises(ValueError, match="val_fraction"):
        NudgeEmbeddings(base).fit(docs, [("q one two", "d1"), ("q three four", "d2")], val_fraction=1.5)
    with pytest.raises(ValueError, match="variant"):
        NudgeEmbeddings(base, variant="nudge-x")
    with pytest.raises(TypeError, match="solver_params"):
        NudgeEmbeddings(base, solver_params={"bogus": 1})
    with pytest.raises(TypeError, match="Embeddings"):
        NudgeEmbeddings("not a model")
    with pytest.raises(ValueError, match="no documents"):
        NudgeEmbeddings(base).fit([], [("q one two", "d1")])
    with pytest.raises(TypeError, match="source must be"):
        NudgeEmbeddings(base).fit("docs", [("q one two", "d1")])
    with pytest.raises(ValueError, match="duplicate document id"):
        NudgeEmbeddings(base, gamma=0.1).fit(
            [Document(id="a", page_content="x y"), Document(id="a", page_content="z")], [("q one two", "a")]
        )
    w = NudgeEmbeddings(base, variant="NUDGE_N", solver_params={"metric": "mrr@10"})
    w.fit(docs, [(f"question {j} on doc", f"d{j % 9}") for j in range(30)])
    assert w.report_.val_metric == "mrr@10"


# ------------------------------------------------------------------------------------------ vector stores
def _hits(store, pairs, k=3):
    retriever = store.as_retriever(search_kwargs={"k": k})
    return sum(d in {doc.id for doc in retriever.invoke(q)} for q, d in pairs)


def test_inmemory_fit_in_place(base, docs, pairs, tmp_path):
    store = InMemoryVectorStore.from_documents(docs, base)
    before = snapshot(store)
    w = NudgeEmbeddings(base, gamma=0.3)
    out = w.fit_vectorstore(store, pairs)
    # written in place; the wrapper is now the store's embedding function (re-added documents keep their nudge),
    # and queries still go to the base model
    assert out is store and store.embeddings is w
    assert store.embeddings.embed_query("a question") == base.embed_query("a question")
    changed = {i for i, rec in store.store.items() if rec["vector"] != before[i]["vector"]}
    assert 0 < len(changed) == w.model_.n_moved_ and changed <= {d for _, d in pairs}
    for doc_id, rec in store.store.items():
        assert (rec["id"], rec["text"], rec["metadata"]) == (doc_id, before[doc_id]["text"], before[doc_id]["metadata"])
    # the vectors equal the fit on the same stored vectors (which reads them all)
    ref = NudgeEmbeddings(base, gamma=0.3).fit(docs, pairs)
    for doc_id in changed:
        np.testing.assert_allclose(store.store[doc_id]["vector"], ref.embeddings_[int(doc_id[1:])], atol=1e-6)
    # one report type: the core store report object (attributes, to_dict, a few-line str), kept by save/load
    report = w.report_
    assert isinstance(report, StoreFinetuneReport) and report.n_moved == report.written == len(changed)
    assert w.gamma_ == report.gamma == report.to_dict()["gamma"] == 0.3 and "InMemoryVectorStore" in report.store
    assert "rows written: " in str(report) and len(str(report).splitlines()) <= 6
    original = InMemoryVectorStore(embedding=base)
    original.store = copy.deepcopy(before)
    assert _hits(store, pairs) > _hits(original, pairs)  # the training questions find their documents more often
    # the moved documents are the lookup table: saved and applied to the original, it gives the same store
    assert sorted(w.document_ids_) == sorted(changed)
    w.save(tmp_path / "nudge.npz")
    loaded = NudgeEmbeddings.load(tmp_path / "nudge.npz", base)
    assert type(loaded.report_) is StoreFinetuneReport and loaded.report_ == report
    copied = loaded.nudge_vectorstore(original)
    assert set(copied.store) == set(store.store)
    for i, rec in store.store.items():  # (the copy path stores float32 values)
        np.testing.assert_array_equal(np.float32(copied.store[i]["vector"]), np.float32(rec["vector"]))
    assert NudgeEmbeddings.revert_vectorstore(store) == len(changed)
    assert snapshot(store) == before  # bit for bit (float64 lists, put back as they were)
    assert NudgeEmbeddings.revert_vectorstore(store) == 0


def test_inmemory_failed_write_rolls_back(base, docs, sup):
    from langchain_nudge.vectorstores._core import core_store

    store = InMemoryVectorStore.from_documents(docs, base)
    before = snapshot(store)
    core = core_store(store)
    core.batch_size = 4
    calls = sup.fail_on_batch(core, 2)
    ids = [f"d{i}" for i in range(10)]
    with pytest.raises(RuntimeError, match="injected"):
        core.write(ids, np.ones((10, DIM), dtype=np.float32))
    assert calls == [4, 4] and snapshot(store) == before
    with pytest.raises(Exception, match="not in InMemoryVectorStore"):
        core.write(["d1", "nope"], np.ones((2, DIM), dtype=np.float32))
    assert snapshot(store) == before


def test_add_documents_never_nudges(base, docs, pairs, monkeypatch):
    w = NudgeEmbeddings(base, gamma=0.3).fit(docs, pairs)
    nudged = w.build_vectorstore(docs)  # a store that embeds through the wrapper

    def no_fit(*args, **kwargs):
        raise AssertionError("the solver ran outside an explicit fit")

    monkeypatch.setattr(NudgeN, "fit", no_fit)
    new = Document(id="new", page_content="a brand new document", metadata={"k": 1})
    nudged.add_documents([new])
    assert nudged.store["new"]["vector"] == base.embed_documents([new.page_content])[0]
    # re-adding a fitted document keeps its nudged vector (a lookup, not a nudge)
    nudged.add_documents([docs[2]])
    assert nudged.store["d2"]["vector"] == w.embeddings_[2].tolist()
    plain = InMemoryVectorStore(embedding=w)
    plain.add_documents([new])
    assert plain.store["new"]["vector"] == base.embed_documents([new.page_content])[0]


def test_nudge_m_is_refused_for_cosine_only_stores(base, docs, pairs):
    store = InMemoryVectorStore.from_documents(docs, base)
    before = snapshot(store)
    w = NudgeEmbeddings(base, variant="nudge-m")
    with pytest.raises(ValueError, match="must be searched by inner product.*ranks by cosine; use nudge-n"):
        w.fit_vectorstore(store, pairs)
    assert w.model_ is None and snapshot(store) == before  # refused before any work
    w.fit(store, pairs)  # fitting itself is fine (e.g. to build a FAISS inner-product store)
    with pytest.raises(ValueError, match="cosine"):
        w.nudge_vectorstore(store)
    with pytest.raises(ValueError, match="cosine"):
        w.build_vectorstore(docs, InMemoryVectorStore)


def test_build_vectorstore(fitted, base, docs):
    extra = Document(id="extra", page_content="an extra document", metadata={"e": 1})
    store = fitted.build_vectorstore(docs + [extra])
    assert isinstance(store, InMemoryVectorStore) and store.embeddings is fitted
    assert store.store["d4"]["vector"] == fitted.embeddings_[4].tolist()
    np.testing.assert_allclose(store.store["extra"]["vector"], base.embed_documents([extra.page_content])[0], rtol=1e-6)
    assert store.store["extra"]["metadata"] == {"e": 1}


class _ListStore(VectorStore):
    """A minimal third-party store: documents and vectors in two lists."""

    def __init__(self, embedding):
        self.embedding, self.docs, self.vectors = embedding, [], []

    def add_texts(self, texts, metadatas=None, ids=None, **kwargs):
        texts = list(texts)
        ids = list(ids or [str(i + len(self.docs)) for i in range(len(texts))])
        self.vectors += self.embedding.embed_documents(texts)
        self.docs += [
            Document(id=i, page_content=t, metadata=m or {})
            for i, t, m in zip(ids, texts, metadatas or [{}] * len(texts))
        ]
        return ids

    def similarity_search(self, query, k=4, **kwargs):
        scores = np.asarray(self.vectors) @ np.asarray(self.embedding.embed_query(query))
        return [self.docs[i] for i in np.argsort(-scores)[:k]]

    @classmethod
    def from_texts(cls, texts, embedding, metadatas=None, **kwargs):
        store = cls(embedding)
        store.add_texts(texts, metadatas, **kwargs)
        return store


class _ListStoreAdapter(VectorStoreAdapter):
    name = "ListStore"

    def handles(self, store_cls):
        return issubclass(store_cls, _ListStore)

    def extract(self, store):
        return list(store.docs), np.asarray(store.vectors, dtype=np.float32).reshape(len(store.docs), -1)

    def rebuild(self, store, documents, vectors, embedding, variant):
        new = _ListStore(embedding)
        new.docs, new.vectors = list(documents), vectors.tolist()
        return new


def test_unsupported_store_and_register_adapter(base, docs, pairs, monkeypatch):
    store = _ListStore.from_texts([d.page_content for d in docs], base, ids=[d.id for d in docs])
    w = NudgeEmbeddings(base, gamma=0.3)
    with pytest.raises(TypeError, match="unsupported vector store _ListStore.*PGVector.*InMemoryVectorStore.*fit"):
        w.fit_vectorstore(store, pairs)
    with pytest.raises(TypeError, match="unsupported vector store _ListStore"):
        NudgeEmbeddings.revert_vectorstore(store)
    with pytest.raises(TypeError):
        register_adapter(object())
    from langchain_nudge.vectorstores import adapters

    monkeypatch.setattr(adapters, "_ADAPTERS", list(adapters._ADAPTERS))
    register_adapter(_ListStoreAdapter())
    with pytest.raises(TypeError, match="cannot be written in place"):  # fit_vectorstore never copies
        w.fit_vectorstore(store, pairs)
    nudged = w.fit(store, pairs).nudge_vectorstore(store)  # an adapter's store: a lookup table and a copy
    assert nudged is not store and [d.id for d in nudged.docs] == [d.id for d in docs]
    np.testing.assert_allclose(nudged.vectors, w.embeddings_)


def test_nudge_vectorstore_needs_a_fit(base, docs):
    with pytest.raises(NotFittedError):
        NudgeEmbeddings(base).nudge_vectorstore(InMemoryVectorStore.from_documents(docs, base))


class _UnitFake(DeterministicFakeEmbedding):
    """Deterministic fake vectors scaled to unit length (as real sentence embeddings are)."""

    def _get_embedding(self, seed: int) -> list[float]:
        return unit(super()._get_embedding(seed)).tolist()


def test_faiss_in_place(docs, pairs):
    import faiss
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy

    base = _UnitFake(size=DIM)
    store = FAISS.from_documents(docs, base)  # L2 by default: unit vectors rank as under cosine
    index, before = store.index, store.index.reconstruct_n(0, 40)
    w = NudgeEmbeddings(base, gamma=0.3)
    assert (
        w.fit_vectorstore(store, pairs) is store and store.index is index and store.embeddings is w
    )  # re-adds keep the nudge
    after = store.index.reconstruct_n(0, 40)
    pos = {d: j for j, d in store.index_to_docstore_id.items()}
    changed = {store.index_to_docstore_id[j] for j in np.flatnonzero(np.abs(after - before).max(axis=1) > 0)}
    assert 0 < len(changed) == w.model_.n_moved_ and changed <= {d for _, d in pairs}
    ref = NudgeEmbeddings(base, gamma=0.3).fit(docs, pairs)
    for doc_id in changed:
        np.testing.assert_allclose(after[pos[doc_id]], ref.embeddings_[int(doc_id[1:])], atol=1e-6)
    assert NudgeEmbeddings.revert_vectorstore(store) == len(changed)
    np.testing.assert_array_equal(store.index.reconstruct_n(0, 40), before)

    m = NudgeEmbeddings(base, variant="nudge-m", gamma=0.5)
    with pytest.raises(ValueError, match="inner product.*ranks by l2"):
        m.fit_vectorstore(store, pairs)
    np.testing.assert_array_equal(store.index.reconstruct_n(0, 40), before)
    ip_store = FAISS.from_documents(docs, base, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
    assert ip_store.index.metric_type == faiss.METRIC_INNER_PRODUCT
    m.fit_vectorstore(ip_store, pairs)
    norms = np.linalg.norm(ip_store.index.reconstruct_n(0, 40), axis=1)
    assert np.abs(norms[:20] - 1).max() > 0.05  # NUDGE-M vectors are not unit-norm, written as they are
    # a second fit on the NUDGE-M store is refused (its vectors are no longer unit-norm), until reverted
    with pytest.raises(ValueError, match="not unit-norm"):
        NudgeEmbeddings(base, gamma=0.3).fit_vectorstore(ip_store, pairs)
    assert NudgeEmbeddings.revert_vectorstore(ip_store) == m.model_.n_moved_
    np.testing.assert_array_equal(ip_store.index.reconstruct_n(0, 40), before)


def test_faiss_copies(base, docs, pairs):
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy

    store = FAISS.from_documents(docs, base)  # L2 by default
    m = NudgeEmbeddings(base, variant="nudge-m", gamma=0.5).fit(docs, pairs)
    with pytest.warns(UserWarning, match="MAX_INNER_PRODUCT"):
        nudged_m = m.nudge_vectorstore(store)
    assert nudged_m.distance_strategy == DistanceStrategy.MAX_INNER_PRODUCT and nudged_m.embeddings is m
    import faiss

    assert nudged_m.index.metric_type == faiss.METRIC_INNER_PRODUCT and not nudged_m._normalize_L2
    assert nudged_m.index_to_docstore_id == store.index_to_docstore_id
    for doc_id in store.index_to_docstore_id.values():
        a, b = store.docstore.search(doc_id), nudged_m.docstore.search(doc_id)
        assert (a.page_content, a.metadata) == (b.page_content, b.metadata) and b.id == doc_id
    np.testing.assert_allclose(nudged_m.index.reconstruct_n(0, 40), m.embeddings_, atol=1e-6)
    np.testing.assert_allclose(
        store.index.reconstruct_n(0, 40),
        np.asarray(base.embed_documents([d.page_content for d in docs]), dtype=np.float32),
    )
    ip_store = FAISS.from_documents(docs, base, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.nudge_vectorstore(ip_store)  # already inner product: no warning
    built = m.build_vectorstore(docs, FAISS)
    assert built.distance_strategy == DistanceStrategy.MAX_INNER_PRODUCT
    with pytest.raises(ValueError, match="only valid under inner product"):
        m.build_vectorstore(docs, FAISS, distance_strategy=DistanceStrategy.EUCLIDEAN_DISTANCE)
    with pytest.raises(ValueError, match="without documents"):
        m.build_vectorstore([], FAISS)


def test_faiss_import_error_names_the_pip_line(monkeypatch):
    for name in ("faiss", "langchain_community.vectorstores"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="pip install langchain-community faiss-cpu"):
        FAISSAdapter().check_variant("nudge-m")


# ------------------------------------------------------------------------------------------ persistence
def test_save_and_load(fitted, base, docs, tmp_path):
    path = tmp_path / "sub" / "nudge.npz"
    fitted.save(path)
    loaded = NudgeEmbeddings.load(path, base)
    assert loaded.is_fitted and loaded.variant == fitted.variant and loaded.report_ == fitted.report_
    np.testing.assert_array_equal(loaded.embeddings_, fitted.embeddings_)
    texts = [d.page_content for d in docs] + ["unseen"]
    assert loaded.embed_documents(texts) == fitted.embed_documents(texts)
    assert loaded.embed_documents(texts[:3], ids=["d0", "d1", "x"]) == fitted.embed_documents(
        texts[:3], ids=["d0", "d1", "x"]
    )
    assert loaded.document_ids_ == fitted.document_ids_ and loaded.model_ is None
    assert b"document number" not in path.read_bytes()  # texts are not stored, only their hashes
    with pytest.raises(NotFittedError):
        NudgeEmbeddings(base).save(tmp_path / "x.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a langchain-nudge file"):
        NudgeEmbeddings.load(tmp_path / "junk.npz", base)


def test_save_is_atomic(fitted, base, tmp_path, monkeypatch):
    path = tmp_path / "nudge.npz"
    fitted.save(path)
    good = path.read_bytes()

    def broken(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(path)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["nudge.npz"]


def test_a_fit_that_moves_nothing_writes_nothing_and_does_not_fail(base, docs, pairs):
    """gamma = 0 (fixed here; validation picks it when nothing beats no change): no row moves, nothing is written,
    and the fit still returns the store with its report (it used to fail reshaping an empty patch)."""
    store = InMemoryVectorStore.from_documents(docs, base)
    before = snapshot(store)
    w = NudgeEmbeddings(base, gamma=0.0)
    assert w.fit_vectorstore(store, pairs) is store
    assert w.report_.written == w.report_.n_moved == 0 and w.report_.revert == "nothing written"
    assert snapshot(store) == before and w.document_ids_ == []
