"""`nudge_rag.stores.fit_store`, the one store fit path of the CLI and both adapters, on real SciFact in FAISS."""

from __future__ import annotations

import numpy as np
import pytest

from nudge_rag.stores import StoreError, check_unit_norm, fit_store

faiss = pytest.importorskip("faiss")

pytestmark = pytest.mark.integration


def _store(docs: np.ndarray, ids: list[str]):
    from nudge_rag.stores import FaissStore

    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(np.ascontiguousarray(docs, dtype=np.float32))
    return FaissStore(index, ids)


def test_fit_store_equals_the_in_memory_fit_and_writes_nothing(scifact_ids, reference_fit):
    s = scifact_ids
    model, moved = reference_fit
    store = _store(s.docs, s.ids)
    before = store.fetch(sorted(moved))
    fit = fit_store(store, s.train_q, s.val_q, embed_queries=s.vectors)
    assert fit.result.model.gamma_ == pytest.approx(model.gamma_)
    patch = fit.patch
    assert sorted(patch.ids) == sorted(moved)
    got = dict(zip(patch.ids, patch.new))
    np.testing.assert_allclose(
        np.stack([got[i] for i in sorted(moved)]), np.stack([moved[i] for i in sorted(moved)]), atol=1e-5
    )
    np.testing.assert_array_equal(store.fetch(sorted(moved)), before)  # a fit alone never writes
    named = {d for q in (s.train_q, s.val_q) for a in q.answers for d in a}
    assert set(fit.corpus.ids) >= named  # the solver rows are the store ids the pairs name (+ competitors read)


def test_fit_store_names_an_unknown_id(scifact_ids):
    s = scifact_ids
    store = _store(s.docs[:50], s.ids[:50])  # most named documents are missing
    with pytest.raises(StoreError, match="the pairs name documents the store does not hold"):
        fit_store(store, s.train_q, s.val_q, embed_queries=s.vectors)


def test_inner_product_store_with_non_unit_vectors_is_refused(scifact_ids):
    s = scifact_ids
    scaled = s.docs.copy()
    first = sorted({d for a in s.train_q.answers for d in a})[0]
    scaled[s.ids.index(first)] *= 1.5  # e.g. an earlier NUDGE-M write that was never reverted
    store = _store(scaled, s.ids)
    with pytest.raises(StoreError, match=rf"not unit-norm \(first: id '{first}', norm 1.5"):
        fit_store(store, s.train_q, s.val_q, embed_queries=s.vectors)
    check_unit_norm(store, s.ids[:3], s.docs[:3])  # unit rows pass


def test_a_non_unit_competitor_is_refused_too(scifact_ids, reference_fit):
    """Only a document no pair names is scaled, but it is a validation query's top competitor: an inner-product
    store ranks it otherwise than the fit would assume, so the fit is refused (before anything is written) rather
    than reporting validation scores the store's own search would not reproduce."""
    from nudge_rag import search

    s = scifact_ids
    named = {d for q in (s.train_q, s.val_q) for a in q.answers for d in a}
    _, top = search(s.val.embeddings, s.docs, k=5, similarity="inner_product")
    rival = next(s.ids[int(j)] for j in top.ravel() if s.ids[int(j)] not in named)
    scaled = s.docs.copy()
    scaled[s.ids.index(rival)] *= 1.2
    store = _store(scaled, s.ids)
    with pytest.raises(StoreError, match=rf"not unit-norm \(first: id '{rival}'"):
        fit_store(store, s.train_q, s.val_q, embed_queries=s.vectors)
    assert store.status().rows == 0


def test_nudge_m_is_refused_on_a_cosine_store(scifact_ids):
    from nudge_rag.stores import QdrantStore

    qdrant_client = pytest.importorskip("qdrant_client")
    from qdrant_client import models

    client = qdrant_client.QdrantClient(location=":memory:")
    client.create_collection(
        "c", vectors_config=models.VectorParams(size=int(scifact_ids.docs.shape[1]), distance="Cosine")
    )
    store = QdrantStore(client, "c")
    with pytest.raises(StoreError, match="NUDGE-M output is not unit-norm"):
        fit_store(store, scifact_ids.train_q, None, embed_queries=scifact_ids.vectors, variant="nudge-m")


def test_finetune_store_takes_solver_params_and_insert_store_equals_a_refit(scifact_ids):
    """``params=`` reaches the solver; ``insert_store`` adds the other half of the pairs with gamma fixed, writes
    only what changed, and the store then holds what one fit on all pairs (same gamma) gives."""
    from nudge_rag.stores import finetune_store, insert_store

    s = scifact_ids
    store = _store(s.docs, s.ids)
    half = len(s.train_q) // 2
    first, second = s.train_q.subset(np.arange(half)), s.train_q.subset(np.arange(half, len(s.train_q)))
    report, model = finetune_store(store, first, s.val_q, embed_queries=s.vectors, params={"smoothing": 0.05})
    assert model.smoothing == 0.05 and report.written == len(model.patch_) > 0 and report.revert == "store.revert()"
    before = store.fetch(s.ids)
    vecs = np.stack([s.vectors[t] for t in second.texts])
    new, corpus, written = insert_store(store, model, model.corpus_.ids, second, train_vectors=vecs)
    assert new is not model and new.gamma_ == model.gamma_ and written
    changed = {s.ids[i] for i in np.flatnonzero((store.fetch(s.ids) != before).any(axis=1))}
    assert changed <= set(written)  # nothing outside the write moved
    n_q, n_pairs, n_written = report.n_train_questions, report.n_train_pairs, report.written
    entry = report.record_insert(new, second, None, written, added=[written[0], "new-doc"])
    assert entry == {
        "n_train_questions": len(second), "n_val_questions": 0, "val_score": new.val_score_,
        "val_base_score": new.val_base_score_, "n_written": len(set(written)) + 1,
    }  # fmt: skip
    assert report.n_train_questions == n_q + len(second) and report.n_train_pairs == n_pairs + second.n_pairs
    assert report.written == n_written + len(set(written)) + 1 and report.n_moved == new.n_moved_
    dry, _ = finetune_store(store, first, s.val_q, embed_queries=s.vectors, write=False, params={"metric": "ndcg@10"})
    assert dry.val_metric == "ndcg@10"  # a "metric" entry in params is the metric

    _, refit = finetune_store(
        _store(s.docs, s.ids), s.train_q, s.val_q, embed_queries=s.vectors, gamma=model.gamma_,
        params={"smoothing": 0.05}, write=False,
    )  # fmt: skip
    expected = dict(zip(refit.corpus_.ids_of(refit.patch_.rows), refit.patch_.new))
    np.testing.assert_allclose(
        store.fetch(sorted(expected)), np.stack([expected[i] for i in sorted(expected)]), atol=1e-6
    )
