"""The Corpus seam and the Patch: a fit through any Corpus equals the in-memory fit; patches apply and revert."""

from __future__ import annotations

import numpy as np
import pytest

from nudge_rag import NudgeM, NudgeN
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
