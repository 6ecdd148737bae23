"""Synthetic training questions: ask any LlamaIndex LLM to write questions that a node answers.

This module only drives LlamaIndex's LLM calls; the prompt (:func:`nudge_rag.generate.instruction_prompt`), the
parser (:func:`nudge_rag.generate.parse_questions`, re-exported here) and the offline local model
(:class:`~llama_index.nudge.local_llm.LocalQuestionLLM` over ``nudge_rag.generate.LocalGenerator``) are the
core's.

An LLM that is not the local model is called concurrently (``LLM.acomplete``, at most ``num_workers`` at a time).
The local model is synchronous and CPU-bound, so it is called synchronously, one batched forward pass per batch.
The batching, parsing, save-per-batch, resume and progress are the core loop's
(:func:`nudge_rag.generate.ask_in_batches`): a killed run loses at most one batch and resumes where it stopped; a
chunk for which the LLM fails or answers nothing usable is counted and skipped instead of stopping the run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.async_utils import asyncio_run
from llama_index.core.llms import LLM
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.nudge.dataset import EmbeddingQAFinetuneDataset
from llama_index.nudge.local_llm import LocalQuestionLLM, default_question_llm

from nudge_rag.files import atomic_write_text
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


def _load_progress(path: Path | None) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    if path is None or not path.exists():
        return {}, {}, {}
    data = json.loads(path.read_text(encoding="utf-8"))
    relevant = {k: list(v) for k, v in data.get("relevant_docs", {}).items()}
    return dict(data.get("queries", {})), dict(data.get("corpus", {})), relevant


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
    """Ask ``llm`` for ``num_questions_per_chunk`` questions about each node.

    Args:
        nodes: the chunks to write questions about (their text without metadata is shown to the LLM).
        llm: any LlamaIndex LLM; defaults to ``Settings.llm`` when set, else the offline local model
            (:class:`~llama_index.nudge.local_llm.LocalQuestionLLM`, cached in ``$NUDGE_RAG_MODEL_DIR`` when set).
        num_questions_per_chunk: questions requested per chunk (at least 1).
        prompt_template: a string or LlamaIndex ``PromptTemplate`` with ``{context_str}`` and
            ``{num_questions_per_chunk}``.
        output_path: JSON file (``EmbeddingQAFinetuneDataset`` layout) written atomically after every completed
            batch; when it exists, chunks that already have questions in it are skipped, so a stopped or killed
            run resumes and loses at most one batch.
        num_workers: concurrent ``LLM.acomplete`` calls within a batch. Ignored for the local model
            (``LocalQuestionLLM``), which is synchronous and CPU-bound: it runs one batched forward pass per batch.
        batch_size: chunks per batch, i.e. between two saves of ``output_path``.
        show_progress: a progress bar in chunks (tqdm), advanced as each chunk's answer arrives.

    Returns:
        :class:`GeneratedQuestions` with the dataset and counters (failures are counted, not raised).

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
    queries, corpus, relevant = _load_progress(path)
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
            layout = {"queries": queries, "corpus": corpus, "relevant_docs": relevant, "mode": "text"}
            atomic_write_text(path, json.dumps(layout, indent=1))

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

    async def run_all() -> list[str | BaseException]:
        gate = asyncio.Semaphore(num_workers)

        async def ask(prompt: str) -> str | BaseException:
            try:
                async with gate:
                    response = await llm.acomplete(prompt)
                return str(getattr(response, "text", response))
            except Exception as exc:  # noqa: BLE001 - an LLM failure is counted, not fatal
                return exc

        return list(await asyncio.gather(*(ask(p) for p in prompts)))

    return asyncio_run(run_all())
