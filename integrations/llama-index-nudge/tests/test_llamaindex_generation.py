"""Question generation with deterministic in-process LLMs (LlamaIndex ``CustomLLM`` subclasses that read
the passage out of the prompt), and fine-tuning on generated questions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from llama_index.core import Settings, VectorStoreIndex
from llama_index.nudge import (
    EmbeddingQAFinetuneDataset,
    NudgeFinetuneEngine,
    QuestionGenerationError,
    generate_question_pairs,
)
from llama_index.nudge.generate import parse_questions


def test_parse_questions_strips_numbering_and_drops_junk():
    text = (
        "Here are 3 questions:\n1. What does the trial measure?\n2) Which drug lowered blood pressure?\n"
        "- ??\n\n* How many patients were enrolled?\nQ4: Which drug lowered blood pressure?\nok"
    )
    assert parse_questions(text, 5) == [
        "What does the trial measure?",
        "Which drug lowered blood pressure?",
        "How many patients were enrolled?",
    ]
    assert parse_questions(text, 2) == ["What does the trial measure?", "Which drug lowered blood pressure?"]
    assert parse_questions("Sure!\n\n--\n1. ??", 2) == []


def test_questions_come_from_the_chunk_text(scifact, llms):
    llm = llms.sentence()
    nodes = scifact.nodes(range(3))
    result = generate_question_pairs(nodes, llm, num_questions_per_chunk=3)
    assert llm.calls == 3 and result.n_succeeded == 3 and result.n_failed == 0
    by_node: dict[str, list[str]] = {}
    for qid, text in result.dataset.queries.items():
        by_node.setdefault(result.dataset.relevant_docs[qid][0], []).append(text)
    for node in nodes:
        questions = by_node[node.node_id]
        assert len(questions) == 3 and len(set(questions)) == 3
        for q in questions:  # each question asks about words of its own chunk
            words = q.removeprefix("What does the study report about ").rstrip("?").split()
            assert len(words) >= 3 and all(w in node.get_content() for w in words)


def test_failures_are_counted_and_the_run_resumes(scifact, llms, tmp_path):
    nodes = scifact.nodes(range(30))
    path = tmp_path / "questions.json"
    flaky = llms.flaky()
    first = generate_question_pairs(
        nodes, flaky, num_questions_per_chunk=2, output_path=path, batch_size=8, num_workers=4
    )
    assert flaky.calls == 30 and flaky.junk > 0 and flaky.errors > 0
    assert first.n_failed == flaky.junk + flaky.errors and first.n_succeeded == 30 - first.n_failed > 0
    reasons = {f["reason"] for f in first.failures}
    assert any("429" in r for r in reasons) and "no usable question in the LLM answer" in reasons
    saved = EmbeddingQAFinetuneDataset.from_json(str(path))  # loadable, LlamaIndex layout
    assert saved.queries == first.dataset.queries and len(saved.corpus) == first.n_succeeded

    good = llms.sentence()
    second = generate_question_pairs(nodes, good, num_questions_per_chunk=2, output_path=path, batch_size=8)
    assert good.calls == first.n_failed  # only the failed chunks are asked again
    assert second.n_resumed == first.n_succeeded and second.n_failed == 0
    assert set(second.dataset.corpus) == {n.node_id for n in nodes}
    assert all(second.dataset.queries[q] == t for q, t in first.dataset.queries.items())
    assert json.loads(path.read_text())["queries"] == second.dataset.queries


async def test_generation_inside_a_running_event_loop(scifact, llms):
    result = generate_question_pairs(scifact.nodes(range(4)), llms.sentence(), num_questions_per_chunk=1)
    assert result.n_questions == 4


@pytest.mark.integration  # the real model embeds the questions live
def test_engine_generates_questions_with_settings_llm(scifact, embed_model, llms, tmp_path):
    """Questions about 40 of 1000 chunks, 2 each, written by the LLM in Settings and embedded live."""
    index = VectorStoreIndex(scifact.nodes(), embed_model=embed_model)
    chosen = [scifact.node_of[d] for d in sorted({d for _, d in scifact.train_pairs_raw})[:40]]
    before = {k: list(v) for k, v in index.vector_store.data.embedding_dict.items()}
    llm = llms.sentence()
    old = Settings._llm
    try:
        Settings.llm = llm
        engine = NudgeFinetuneEngine(
            index,
            num_questions_per_chunk=2,
            generate_for=chosen,
            generation_path=tmp_path / "qa.json",
            val_fraction=0.25,
        )
        report = engine.finetune()
    finally:
        Settings._llm = old
    assert llm.calls == 40 and embed_model.live_queries == 80
    assert engine.generation["n_succeeded"] == 40 and engine.generation["n_questions"] == 80
    assert report.n_train_questions == 60 and report.n_val_questions == 20
    assert report.val_score > report.val_base_score  # a store fit reports the validation metric it chose on
    after = index.vector_store.data.embedding_dict
    assert sum(not np.allclose(before[k], after[k]) for k in before) == report.n_moved > 0
    assert (tmp_path / "qa.json").is_file()


def test_an_llm_with_nothing_usable_is_an_error(scifact, embed_model, llms, helpers):
    index = VectorStoreIndex(scifact.nodes(range(12)), embed_model=embed_model)
    before = helpers.snapshot_simple(index)
    llm = llms.junk()
    with pytest.raises(QuestionGenerationError, match="no usable question for any of 12"):
        NudgeFinetuneEngine(index, llm=llm).finetune()
    assert llm.calls == 12
    assert helpers.snapshot_simple(index) == before
