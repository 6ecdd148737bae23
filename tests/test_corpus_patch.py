"""The Corpus seam and the Patch: a fit through any Corpus equals the in-memory fit; patches apply and revert."""

from __future__ import annotations

import numpy as np
import pytest

from nudge_rag import NudgeM, NudgeN
from nudge_rag._checks import normalize_rows
from nudge_rag.corpus import ArrayCorpus, Corpus
from nudge_rag.patch import Patch


class _RowCountingCorpus(ArrayCorpus):
    """An ArrayCorpus that records how many rows were fetched (a real protocol user, not a mock)."""

    def __init__(self, docs):
        super().__init__(docs)
        self.fetched = 0

    def fetch(self, rows):
        self.fetched += len(rows)
        return super().fetch(rows)


@pytest.mark.parametrize("cls", [NudgeN, NudgeM])
def test_corpus_fit_equals_array_fit(small_problem, cls):
    docs, train, val, _ = small_problem
    ref = cls().fit(docs, train, val)
    corpus = _RowCountingCorpus(ref.patch_.revert(ref.embeddings_))
    assert isinstance(corpus, Corpus)
    got = cls().fit(corpus, train, val)
    assert got.gamma_ == ref.gamma_
    np.testing.assert_array_equal(got.val_scores_, ref.val_scores_)
    np.testing.assert_array_equal(got.patch_.rows, ref.patch_.rows)
    np.testing.assert_array_equal(got.patch_.new, ref.patch_.new)
    assert not hasattr(got, "embeddings_") or got.embeddings_ is None
    assert corpus.fetched < docs.shape[0]  # only named rows were read


@pytest.mark.parametrize("cls", [NudgeN, NudgeM])
def test_patch_holds_exactly_the_moved_rows(small_problem, cls):
    docs, train, val, _ = small_problem
    model = cls().fit(docs, train, val)
    unit_docs = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    patch = model.patch_
    np.testing.assert_array_equal(patch.rows, model.moved_docs_)
    np.testing.assert_allclose(patch.apply(unit_docs), model.embeddings_, atol=1e-7)
    np.testing.assert_allclose(patch.revert(model.embeddings_), unit_docs, atol=1e-7)
    unchanged = np.setdiff1d(np.arange(docs.shape[0]), patch.rows)
    np.testing.assert_allclose(model.embeddings_[unchanged], unit_docs[unchanged], atol=1e-7)


def test_patch_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="disagree"):
        Patch(np.array([0, 1]), np.zeros((2, 3), np.float32), np.zeros((1, 3), np.float32))
    p = Patch(np.array([5]), np.ones((1, 3), np.float32), np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="row 5"):
        p.apply(np.zeros((3, 3), np.float32))
    assert p.with_ids([str(i) for i in range(6)]).ids == ("5",)


# ---------------------------------------------------------------------------------------------- one insert


class _ListCorpus:
    """A Corpus that is not an ArrayCorpus: rows kept as a list of unit vectors, grown by ``append``."""

    def __init__(self, rows):
        self.rows = [np.asarray(r, dtype=np.float32) for r in rows]

    @property
    def n_docs(self):
        return len(self.rows)

    @property
    def dim(self):
        return int(self.rows[0].size)

    def fetch(self, rows):
        return np.stack([self.rows[int(r)] for r in rows]) if len(rows) else np.zeros((0, self.dim), np.float32)

    def competitors(self, queries, exclude, k):
        return ArrayCorpus(np.stack(self.rows)).competitors(queries, exclude, k)

    def append(self, new):
        return _ListCorpus(self.rows + list(normalize_rows(new, "new")))


@pytest.mark.parametrize("cls", [NudgeN, NudgeM])
def test_insert_on_any_corpus_equals_insert_on_an_array(small_problem, cls):
    """The one insert (in the core) serves array fits and corpus fits alike, documents appended to the corpus."""
    docs, train, val, test = small_problem
    new_docs = docs[:10] + 0.05  # near copies of asked-about documents
    new_train = type(train).from_lists(test.embeddings[:20], (np.arange(20) % 10 + 60)[:, None].tolist())
    ref = cls().fit(docs, train, val).insert(new_docs, new_train, test).insert(None, train)
    corpus = _ListCorpus(normalize_rows(docs, "docs"))  # unit rows, as the array fit holds them
    got = cls().fit(corpus, train, val).insert(new_docs, new_train, test).insert(None, train)
    assert isinstance(got.corpus_, _ListCorpus) and got.corpus_.n_docs == 70 and got.n_documents_ == 70
    assert got.embeddings_ is None and ref.corpus_ is None
    assert got.gamma_ == ref.gamma_
    np.testing.assert_array_equal(got.val_scores_, ref.val_scores_)
    np.testing.assert_array_equal(got.patch_.rows, ref.patch_.rows)
    np.testing.assert_array_equal(got.patch_.new, ref.patch_.new)
    np.testing.assert_array_equal(got.patch_.apply(got.patch_.revert(ref.embeddings_)), ref.embeddings_)


@pytest.mark.parametrize("cls", [NudgeN, NudgeM])
def test_insert_equals_refit_with_gamma_fixed(small_problem, cls):
    docs, train, val, test = small_problem
    model = cls().fit(_ListCorpus(normalize_rows(docs, "docs")), train, val).insert(train=test)
    refit = cls(gamma=model.gamma_).fit(_ListCorpus(normalize_rows(docs, "docs")), train.concat(test), val)
    np.testing.assert_array_equal(model.train_sums_, refit.train_sums_)  # summed in pair order, bit for bit
    np.testing.assert_array_equal(model.patch_.new, refit.patch_.new)


def test_insert_into_a_corpus_that_cannot_grow(small_problem):
    docs, train, val, _ = small_problem
    model = NudgeN().fit(_RowCountingCorpus(docs), train, val)  # an ArrayCorpus: it can append
    model.insert(docs[:2])
    assert model.corpus_.n_docs == 62

    class Fixed(_ListCorpus):
        append = None

    fixed = NudgeN().fit(Fixed(docs), train, val)
    with pytest.raises(NotImplementedError, match="Fixed cannot append documents"):
        fixed.insert(docs[:2])
    assert fixed.corpus_.n_docs == 60
    fixed.corpus_ = None  # e.g. loaded from a file after a corpus fit
    with pytest.raises(NotImplementedError, match="neither embeddings_ nor corpus_"):
        fixed.insert(train=train)


# ---------------------------------------------------------------------------------------------- adapter registry


class _Lazy:
    """A foreign array type that a (test) extension teaches fit to read."""

    def __init__(self, docs):
        self.docs = docs


def test_registered_adapter_lets_fit_read_a_foreign_type(small_problem, monkeypatch):
    import nudge_rag.corpus as corpus_module

    monkeypatch.setattr(corpus_module, "_ADAPTERS", [])
    docs, train, val, _ = small_problem
    with pytest.raises(TypeError, match="got _Lazy; .*register_corpus_adapter"):
        NudgeN().fit(_Lazy(docs), train, val)
    made = []

    def factory(x):
        made.append(x)
        return ArrayCorpus(normalize_rows(x.docs, "docs"))

    corpus_module.register_corpus_adapter(_Lazy, factory)
    corpus_module.register_corpus_adapter(_Lazy, factory)  # idempotent
    assert len(corpus_module._ADAPTERS) == 1
    got = NudgeN().fit(_Lazy(docs), train, val)
    ref = NudgeN().fit(docs, train, val)
    assert got.gamma_ == ref.gamma_ and len(made) == 1
    np.testing.assert_array_equal(got.patch_.new, ref.patch_.new)


def test_registered_predicate(monkeypatch):
    import nudge_rag.corpus as corpus_module

    monkeypatch.setattr(corpus_module, "_ADAPTERS", [])
    inner = ArrayCorpus(np.eye(3))
    corpus_module.register_corpus_adapter(lambda x: x == "the corpus", lambda x: inner)
    assert corpus_module.as_corpus("the corpus") is inner
    assert corpus_module.as_corpus(inner) is inner  # a Corpus as is
    with pytest.raises(TypeError, match="got str"):
        corpus_module.as_corpus("another")
    with pytest.raises(TypeError, match="type or predicate"):
        corpus_module.register_corpus_adapter(3, lambda x: inner)


def test_the_core_never_imports_the_distributed_package():
    """Fits, inserts, saves and store code run without nudge_rag.distributed being imported (runtime twin of the
    source check in test_architecture.py)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, nudge_rag, nudge_rag.stores, nudge_rag.files\n"
        "from nudge_rag import NudgeN, QueryAnswers\n"
        "d = np.eye(4, dtype=np.float32) + 0.1\n"
        "qa = QueryAnswers.from_lists(d[:2] + 0.2, [[0], [1]])\n"
        "m = NudgeN().fit(nudge_rag.ArrayCorpus(d), qa, qa).insert(d[:1], qa, qa)\n"
        "print(sorted(k for k in sys.modules if k.startswith('nudge_rag.distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
