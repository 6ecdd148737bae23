"""Synthetic training questions: ask any LlamaIndex LLM to write questions that a node answers.

This module only drives LlamaIndex's LLM calls; the prompt (:func:`nudge_rag.generate.instruction_prompt`), the
parser (:func:`nudge_rag.generate.parse_questions`, re-exported here) and the offline local model
(:class:`~llama_index.nudge.local_llm.LocalQuestionLLM` over ``nudge_rag.generate.LocalGenerator``) are the
core's.

An LLM is called concurrently (``LLM.acomplete``, ``num_workers`` at a time), the synchronous, CPU-bound local
model in one batched forward pass per batch. Batching, parsing, save-per-batch, resume and progress are the core
loop's (:func:`nudge_rag.generate.ask_in_batches`): a killed run loses at most one batch; a chunk the LLM fails on
is counted and skipped.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.llms import LLM
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.nudge.dataset import EmbeddingQAFinetuneDataset
from llama_index.nudge.local_llm import LOCAL_QUESTION_PROMPT, LocalQuestionLLM

from nudge_rag.concurrent import gather_in_batches
from nudge_rag.generate import GeneratedQuestions as CoreGeneratedQuestions
from nudge_rag.generate import QuestionGenerationError, ask_in_batches, instruction_prompt, parse_questions

__all__ = [
    "DEFAULT_QUESTION_PROMPT",
    "GeneratedQuestions",
    "QuestionGenerationError",
    "generate_question_pairs",
    "parse_questions",
]


#: The core's instruction prompt with LlamaIndex's slots (one question per line in the answer).
DEFAULT_QUESTION_PROMPT = instruction_prompt("{context_str}", "{num_questions_per_chunk}")


def default_question_llm(llm: Any, prompt_template: Any) -> tuple[Any, Any]:
    """``llm`` when given, else ``Settings.llm`` when one is set, else the offline :class:`LocalQuestionLLM` with
    :data:`LOCAL_QUESTION_PROMPT` (replacing the default instruction prompt only; a custom prompt is kept)."""
    from llama_index.core.settings import Settings

    if llm is not None or Settings._llm is not None:
        return llm or Settings.llm, prompt_template
    default = isinstance(prompt_template, str) and prompt_template == DEFAULT_QUESTION_PROMPT
    return LocalQuestionLLM(), LOCAL_QUESTION_PROMPT if default else prompt_template


@dataclass
class GeneratedQuestions(CoreGeneratedQuestions):
    """Result of :func:`generate_question_pairs`: the core counters (:class:`nudge_rag.generate.GeneratedQuestions`;
    ``n_documents``: chunks asked about, resumed ones included; failures name node ids) and ``dataset``, the
    questions as an ``EmbeddingQAFinetuneDataset`` (with those an ``output_path`` already held)."""

    dataset: Any = None

    @property
    def n_chunks(self) -> int:
        """Chunks asked about in this call (resumed ones included)."""
        return self.n_documents


def generate_question_pairs(
    nodes: Sequence[BaseNode],
    llm: LLM | None = None,
    *,
    num_questions_per_chunk: int = 2,
    prompt_template: str | Any = DEFAULT_QUESTION_PROMPT,
    output_path: str | os.PathLike | None = None,
    num_workers: int = 4,
    batch_size: int = 8,
    show_progress: bool = False,
) -> GeneratedQuestions:
    """Ask ``llm`` for ``num_questions_per_chunk`` questions about each node (its text without metadata).

    Args:
        llm: any LlamaIndex LLM; default ``Settings.llm`` when set, else the offline
            :class:`~llama_index.nudge.local_llm.LocalQuestionLLM` (cached in ``$NUDGE_RAG_MODEL_DIR`` when set).
        prompt_template: a string or ``PromptTemplate`` with ``{context_str}`` and ``{num_questions_per_chunk}``.
        output_path: JSON file (``EmbeddingQAFinetuneDataset`` layout) written atomically after every batch; chunks
            it already has questions for are skipped, so a killed run resumes and loses at most one batch.
        num_workers: concurrent ``LLM.acomplete`` calls (the local model runs one batched forward pass instead).
        batch_size: chunks per batch, i.e. between two saves of ``output_path``.
        show_progress: a tqdm bar in chunks.

    Returns:
        :class:`GeneratedQuestions`: the dataset and counters (failures are counted, not raised).

    Raises:
        QuestionGenerationError: no chunk got a usable question (neither now nor in a resumed file).

    Example:
        >>> result = generate_question_pairs(nodes, llm=my_llm, num_questions_per_chunk=3, output_path="qa.json")
        >>> result.n_failed, len(result.dataset.queries)
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive integer, got {num_workers!r}")
    if isinstance(prompt_template, str) and "{context_str}" not in prompt_template:
        raise ValueError("prompt_template must contain {context_str}")
    llm, prompt_template = default_question_llm(llm, prompt_template)
    n_q, path = num_questions_per_chunk, None if output_path is None else Path(output_path)
    done = EmbeddingQAFinetuneDataset.from_json(str(path)) if path is not None and path.exists() else None
    queries, corpus, relevant = (done.queries, done.corpus, done.relevant_docs) if done else ({}, {}, {})
    ids, texts = [n.node_id for n in nodes], [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
    text_of = dict(zip(ids, texts))

    def prompt_of(text: str) -> str:
        if isinstance(prompt_template, str):  # str.replace: braces in the chunk text stay literal
            return prompt_template.replace("{num_questions_per_chunk}", str(n_q)).replace("{context_str}", text)
        return prompt_template.format(context_str=text, num_questions_per_chunk=n_q)  # a LlamaIndex template

    def save(new: list[tuple[str, str]]) -> None:  # the whole file after every batch: a kill loses at most one
        for q, node_id in new:
            qid = next(f"q{i}" for i in itertools.count(len(queries)) if f"q{i}" not in queries)
            queries[qid], relevant[qid], corpus[node_id] = q, [node_id], text_of[node_id]
        if path is not None:
            EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant).save_json(str(path))

    saved = [(q, d) for qid, q in queries.items() for d in relevant.get(qid, [])]
    result = ask_in_batches(
        ids, texts, lambda batch: _ask_batch(llm, [prompt_of(t) for t in batch], num_workers),
        n_questions=n_q, batch_size=batch_size, saved=saved, save=save, show_progress=show_progress, unit="chunk",
        result=GeneratedQuestions(),
    )  # fmt: skip
    assert isinstance(result, GeneratedQuestions)
    result.dataset = EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant)
    result.n_questions = len(queries)
    return result


def _ask_batch(llm: Any, prompts: list[str], num_workers: int) -> list[str | BaseException]:
    """The LLM's answer text (or the exception it raised) per prompt."""
    if isinstance(llm, LocalQuestionLLM):  # synchronous and CPU-bound: one batched forward pass, no fake async
        try:
            return list(llm.complete_batch(prompts))
        except Exception as exc:  # noqa: BLE001 - an LLM failure is counted, not fatal
            return [exc] * len(prompts)

    async def ask(prompt: str) -> str | BaseException:
        try:
            return str(getattr(response := await llm.acomplete(prompt), "text", response))
        except Exception as exc:  # noqa: BLE001 - an LLM failure is counted, not fatal
            return exc

    return gather_in_batches(ask, prompts, batch=num_workers)
