"""Synthetic training questions: ask any LlamaIndex LLM to write questions that a node answers.

This module only drives LlamaIndex's LLM calls; the prompt (:func:`nudge_rag.generate.instruction_prompt`), the
parser (:func:`nudge_rag.generate.parse_questions`, re-exported here) and the offline local model
(:class:`~llama_index.nudge.local_llm.LocalQuestionLLM` over ``nudge_rag.generate.LocalGenerator``) are the
core's.

An LLM that is not the local model is called concurrently (``LLM.acomplete``, at most ``num_workers`` at a time).
The local model is synchronous and CPU-bound, so it is called synchronously, one batched forward pass per batch.
Progress is saved after every batch of chunks (default 8), so an interrupted or killed run loses at most one batch
and resumes where it stopped; a chunk for which the LLM fails or answers nothing usable is counted and skipped
instead of stopping the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llama_index.core.async_utils import asyncio_run
from llama_index.core.llms import LLM
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.nudge.dataset import EmbeddingQAFinetuneDataset
from llama_index.nudge.local_llm import LocalQuestionLLM, default_question_llm

from nudge_rag.files import atomic_write_text
from nudge_rag.generate import instruction_prompt, parse_questions

__all__ = [
    "DEFAULT_QUESTION_PROMPT",
    "GeneratedQuestions",
    "QuestionGenerationError",
    "generate_question_pairs",
    "parse_questions",
]

logger = logging.getLogger(__name__)

#: The core's instruction prompt with LlamaIndex's slots (one question per line in the answer).
DEFAULT_QUESTION_PROMPT = instruction_prompt("{context_str}", "{num_questions_per_chunk}")


class QuestionGenerationError(ValueError):
    """The LLM produced no usable question for any chunk."""


@dataclass
class GeneratedQuestions:
    """Result of :func:`generate_question_pairs`.

    Attributes:
        dataset: the questions, as an ``EmbeddingQAFinetuneDataset`` (corpus = the chunks that got questions).
        n_chunks: chunks asked about in this call (including resumed ones).
        n_resumed: chunks skipped because ``output_path`` already held their questions.
        n_succeeded: chunks that got at least one usable question in this call.
        n_short: of those, chunks that got fewer questions than requested.
        n_failed: chunks for which the LLM raised or returned nothing usable.
        n_questions: questions in ``dataset``.
        failures: ``{"node_id", "reason"}`` for each failed chunk (first 100).
    """

    dataset: Any
    n_chunks: int = 0
    n_resumed: int = 0
    n_succeeded: int = 0
    n_short: int = 0
    n_failed: int = 0
    n_questions: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (without the dataset)."""
        out = asdict(self)
        out.pop("dataset")
        return out


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
    n_q = num_questions_per_chunk
    if isinstance(n_q, bool) or not isinstance(n_q, int) or n_q < 1:
        raise ValueError(f"num_questions_per_chunk must be a positive integer, got {num_questions_per_chunk!r}")
    for name, value in (("batch_size", batch_size), ("num_workers", num_workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(prompt_template, str) and "{context_str}" not in prompt_template:
        raise ValueError("prompt_template must contain {context_str}")
    llm, prompt_template = default_question_llm(llm, prompt_template)
    path = None if output_path is None else Path(output_path)
    queries, corpus, relevant = _load_progress(path)
    done = {n for docs in relevant.values() for n in docs}
    result = GeneratedQuestions(dataset=None, n_chunks=len(nodes))
    todo = []
    for node in nodes:
        if node.node_id in done:
            result.n_resumed += 1
        else:
            todo.append(node)

    def prompt_of(text: str) -> str:
        if isinstance(prompt_template, str):  # str.replace: braces in the chunk text stay literal
            prompt = prompt_template.replace("{num_questions_per_chunk}", str(n_q))
            return prompt.replace("{context_str}", text)
        return prompt_template.format(context_str=text, num_questions_per_chunk=n_q)  # a LlamaIndex template

    bar = _progress_bar(len(todo)) if show_progress and todo else None
    counter = len(queries)
    try:
        for b0 in range(0, len(todo), batch_size):
            batch = todo[b0 : b0 + batch_size]
            texts = [n.get_content(metadata_mode=MetadataMode.NONE) for n in batch]
            answers = _ask_batch(llm, [prompt_of(t) if t.strip() else None for t in texts], num_workers, bar)
            for node, text, answer in zip(batch, texts, answers):
                if isinstance(answer, BaseException) or answer is None:
                    reason = "empty chunk text" if answer is None else f"{type(answer).__name__}: {answer}"
                    questions: list[str] | None = None
                else:
                    questions = parse_questions(answer, n_q, passage=text)
                    reason = "no usable question in the LLM answer"
                if not questions:
                    result.n_failed += 1
                    if len(result.failures) < 100:
                        result.failures.append({"node_id": node.node_id, "reason": reason})
                    continue
                result.n_succeeded += 1
                result.n_short += len(questions) < n_q
                corpus[node.node_id] = text
                for q in questions:
                    while f"q{counter}" in queries:
                        counter += 1
                    queries[f"q{counter}"] = q
                    relevant[f"q{counter}"] = [node.node_id]
            if path is not None:  # after every completed batch: a kill loses at most this one
                layout = {"queries": queries, "corpus": corpus, "relevant_docs": relevant, "mode": "text"}
                atomic_write_text(path, json.dumps(layout, indent=1))
    finally:
        if bar is not None:
            bar.close()
    if result.n_failed:
        logger.warning("question generation failed for %d of %d chunks", result.n_failed, len(todo))
    if not queries:
        first = result.failures[0]["reason"] if result.failures else "no chunks given"
        raise QuestionGenerationError(
            f"the LLM returned no usable question for any of {len(nodes)} chunk(s) (first failure: {first}); "
            "check the LLM and the prompt template"
        )
    result.dataset = EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant)
    result.n_questions = len(queries)
    return result


def _progress_bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="generating questions", unit="chunk", file=sys.stderr)


def _ask_batch(llm: Any, prompts: list[str | None], num_workers: int, bar: Any) -> list[str | BaseException | None]:
    """The LLM's answer text (or the exception it raised) per prompt; ``None`` for a chunk without text."""
    if isinstance(llm, LocalQuestionLLM):  # synchronous and CPU-bound: one batched forward pass, no fake async
        asked = [p for p in prompts if p is not None]
        try:
            texts: list[str | BaseException] = list(llm.complete_batch(asked)) if asked else []
        except Exception as exc:  # noqa: BLE001 - an LLM failure is counted, not fatal
            texts = [exc] * len(asked)
        it = iter(texts)
        out = [None if p is None else next(it) for p in prompts]
        if bar is not None:
            bar.update(len(prompts))
        return out

    async def run_all() -> list[str | BaseException | None]:
        gate = asyncio.Semaphore(num_workers)

        async def ask(prompt: str | None) -> str | BaseException | None:
            try:
                if prompt is None:
                    return None
                async with gate:
                    response = await llm.acomplete(prompt)
                return str(getattr(response, "text", response))
            except Exception as exc:  # noqa: BLE001 - an LLM failure is counted, not fatal
                return exc
            finally:
                if bar is not None:
                    bar.update(1)

        return list(await asyncio.gather(*(ask(p) for p in prompts)))

    return asyncio_run(run_all())
