"""NudgeEmbeddings equals the solver on the same pairs; id-exact matching on store paths; validated files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_nudge import NudgeEmbeddings

from nudge_rag import NudgeN, QueryAnswers

N, D = 60, 16


class TableEmbeddings(Embeddings):
    """Known texts get their vector from a table: distinct deterministic vectors with a learnable structure."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.table[t].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table[text].tolist()


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    centers = unit(rng.standard_normal((6, D)))
    docs = unit(centers[np.arange(N) % 6] + 0.3 * rng.standard_normal((N, D)))
    offsets = unit(rng.standard_normal((N, D)))
    answers = rng.integers(0, 30, 150)
    queries = unit(docs[answers] + 0.8 * offsets[answers] + 0.4 * rng.standard_normal((150, D)))
    texts = [f"question {j} about document {a}" for j, a in enumerate(answers)]
    documents = [Document(id=f"d{i}", page_content=f"text of document {i}") for i in range(N)]
    table = dict(zip(texts, queries)) | {d.page_content: docs[i] for i, d in enumerate(documents)}
    pairs = [(t, f"d{a}") for t, a in zip(texts, answers)]
    return docs, queries, answers, pairs, documents, TableEmbeddings(table)


def test_wrapper_equals_nudge_n_on_the_same_pairs(problem):
    docs, queries, answers, pairs, documents, base = problem
    w = NudgeEmbeddings(base).fit(documents, pairs[:120], validation=pairs[120:])
    model = NudgeN().fit(
        docs,
        QueryAnswers.from_lists(queries[:120], [[int(a)] for a in answers[:120]]),
        QueryAnswers.from_lists(queries[120:], [[int(a)] for a in answers[120:]]),
    )
    assert w.gamma_ == model.gamma_ > 0 and w.report_.n_moved == model.n_moved_
    np.testing.assert_allclose(w.embeddings_, model.embeddings_, atol=1e-6)


def test_wrapper_carves_validation_by_the_core_rule(problem):
    docs, queries, answers, pairs, documents, base = problem
    w = NudgeEmbeddings(base).fit(documents, pairs)  # default: 10% carved with seed 0
    val = np.sort(np.random.RandomState(0).permutation(150)[:15])
    qa = QueryAnswers.from_lists(queries, [[int(a)] for a in answers])
    model = NudgeN().fit(docs, qa.subset(np.setdiff1d(np.arange(150), val)), qa.subset(val))
    assert w.report_.val_source == "carved" and w.report_.n_val_questions == 15
    assert w.gamma_ == model.gamma_
    np.testing.assert_allclose(w.embeddings_, model.embeddings_, atol=1e-6)


def test_store_paths_match_by_id_only():
    base = DeterministicFakeEmbedding(size=D)
    docs = [Document(id=f"d{i}", page_content=f"document number {i}") for i in range(20)]
    w = NudgeEmbeddings(base, gamma=0.3).fit(
        docs, [(f"question on {i} {j}", f"d{i}") for i in range(10) for j in (0, 1)]
    )
    store = InMemoryVectorStore(embedding=base)
    store.add_documents(docs)
    store.add_documents([Document(id="copy-of-d2", page_content=docs[2].page_content)])  # same text, new id
    nudged = w.nudge_vectorstore(store)
    assert nudged.store["d2"]["vector"] == w.embeddings_[2].tolist()
    plain = base.embed_documents([docs[2].page_content])[0]
    np.testing.assert_allclose(nudged.store["copy-of-d2"]["vector"], plain, rtol=1e-6)  # base vector (stored)
    assert not np.allclose(nudged.store["copy-of-d2"]["vector"], w.embeddings_[2], atol=1e-3)
    built = w.build_vectorstore([docs[2], Document(id="another-copy", page_content=docs[2].page_content)])
    assert built.store["d2"]["vector"] == w.embeddings_[2].tolist()
    np.testing.assert_allclose(built.store["another-copy"]["vector"], plain, rtol=1e-6)


def test_text_only_matching_warns_when_shared_text_loses_its_nudge():
    base = DeterministicFakeEmbedding(size=D)
    docs = [Document(id="a", page_content="same text"), Document(id="b", page_content="same text")]
    docs += [Document(id=f"o{i}", page_content=f"other {i}") for i in range(5)]
    w = NudgeEmbeddings(base, gamma=0.5).fit(docs, [("a question about a", "a"), ("one about o1", "o1")])
    with pytest.warns(UserWarning, match="share this content but have different nudged vectors"):
        vec = w.embed_documents(["same text"])  # what a store's add_documents does: texts only
    assert vec == base.embed_documents(["same text"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert w.embed_documents(["same text"], ids=["a"]) == [w.embeddings_[0].tolist()]
        w.embed_documents(["other 1", "never seen"])  # unambiguous: no warning


def test_load_refuses_a_file_of_another_dimension_and_names_damaged_files(tmp_path):
    docs = [Document(id=f"d{i}", page_content=f"document number {i}") for i in range(10)]
    w = NudgeEmbeddings(DeterministicFakeEmbedding(size=384), gamma=0.2).fit(docs, [("q about d1", "d1")])
    path = tmp_path / "nudge.npz"
    w.save(path)
    with pytest.raises(ValueError, match=r"nudge.npz.*384-dimensional vectors but the base embeddings return 64"):
        NudgeEmbeddings.load(path, DeterministicFakeEmbedding(size=64))
    assert NudgeEmbeddings.load(path, DeterministicFakeEmbedding(size=384)).is_fitted
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    plain = tmp_path / "plain.npz"
    with open(plain, "wb") as fh:
        np.save(fh, np.zeros((3, 4)))
    for bad in (damaged, plain):
        with pytest.raises(ValueError, match=f"{bad.name} is not a langchain-nudge file"):
            NudgeEmbeddings.load(bad, DeterministicFakeEmbedding(size=384))
    # a base model that does not tell its size: the first vector of another size is refused
    loaded = NudgeEmbeddings.load(path, _Opaque(64))
    with pytest.raises(ValueError, match="dimension mismatch: the base embeddings return 64-dimensional query"):
        loaded.embed_query("anything")


class _Opaque(Embeddings):
    def __init__(self, d: int) -> None:
        self._d = d

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[1.0] * self._d for _ in texts]

    def embed_query(self, text: str) -> list[float]:
        return [1.0] * self._d
