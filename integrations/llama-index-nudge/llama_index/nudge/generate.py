"""Synthetic training questions: ask any LlamaIndex LLM to write questions that a node answers.

Calls run concurrently (``LLM.acomplete`` through LlamaIndex's ``run_jobs``), progress is saved after every
batch of chunks so an interrupted run resumes where it stopped, and a chunk for which the LLM fails or
answers nothing usable is counted and skipped instead of stopping the run.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llama_index.core.async_utils import asyncio_run, run_jobs
from llama_index.core.llms import LLM
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.nudge.dataset import EmbeddingQAFinetuneDataset

__all__ = [
    "DEFAULT_QUESTION_PROMPT",
    "GeneratedQuestions",
    "QuestionGenerationError",
    "generate_question_pairs",
    "generate_for_nodes",
    "parse_questions",
]

logger = logging.getLogger(__name__)

DEFAULT_QUESTION_PROMPT = """\
Below is a passage from a document collection.

---------------------
{context_str}
---------------------

Write {num_questions_per_chunk} distinct questions that a user could ask and that this passage answers. \
Use only the passage, not prior knowledge. Each question must make sense on its own, without the passage. \
Write one question per line, with no numbering and no other text.
"""

_PREFIX = re.compile(r"^\s*(?:[-*\u2022>]+|\(?\d{1,3}[.):\]]|(?:q|question)\s*\d*\s*[:.)-])\s*", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]{2,}")
# a line counts as a question when it ends with "?" or opens like one (interrogative or task verb)
_OPENERS = frozenset(
    "what which who whom whose when where why how is are was were do does did can could should would will "
    "has have had in according describe explain list name identify compare summarize summarise define give "
    "find state outline".split()
)


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


def parse_questions(text: str, limit: int, *, min_words: int = 3) -> list[str]:
    """Questions in an LLM answer: one per line, numbering/bullets removed, preambles and junk dropped.

    A line is kept when it has at least ``min_words`` words and ends with ``?`` or starts with a question
    word or task verb ("What ...", "Describe ..."); lines ending with ``:`` (preambles) and repeats are dropped.
    """
    out: list[str] = []
    seen: set[str] = set()
    for raw in str(text).splitlines():
        line = _PREFIX.sub("", raw.strip()).strip().strip('"').strip("'").strip()
        words = _WORD.findall(line)
        if not line or line.endswith(":") or len(words) < min_words:
            continue
        if not line.endswith("?") and words[0].casefold() not in _OPENERS:
            continue
        key = line.casefold()
        if key in seen:
            continue
        seen.add(key)
        out.append(line)
        if len(out) == limit:
            break
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
    batch_size: int = 64,
    show_progress: bool = False,
) -> GeneratedQuestions:
    """Ask ``llm`` for ``num_questions_per_chunk`` questions about each node.

    Args:
        nodes: the chunks to write questions about (their text without metadata is shown to the LLM).
        llm: any LlamaIndex LLM; defaults to ``Settings.llm`` when set, else the offline local model (local_llm.py).
        num_questions_per_chunk: questions requested per chunk (at least 1).
        prompt_template: a string or LlamaIndex ``PromptTemplate`` with ``{context_str}`` and
            ``{num_questions_per_chunk}``.
        output_path: JSON file (``EmbeddingQAFinetuneDataset`` layout) saved after every batch; when it
            exists, chunks that already have questions in it are skipped, so a stopped run resumes.
        num_workers: concurrent LLM calls (``LLM.acomplete``).
        batch_size: chunks per batch between two saves of ``output_path``.
        show_progress: show a progress bar per batch.

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
    if isinstance(prompt_template, str) and "{context_str}" not in prompt_template:
        raise ValueError("prompt_template must contain {context_str}")
    from llama_index.nudge.local_llm import default_question_llm  # no LLM configured: the offline local model

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

    async def ask(node: BaseNode) -> tuple[BaseNode, str, list[str] | None, str]:
        text = node.get_content(metadata_mode=MetadataMode.NONE)
        if not text.strip():
            return node, text, None, "empty chunk text"
        if isinstance(prompt_template, str):  # str.replace: braces in the chunk text stay literal
            prompt = prompt_template.replace("{num_questions_per_chunk}", str(num_questions_per_chunk))
            prompt = prompt.replace("{context_str}", text)
        else:  # a LlamaIndex prompt template
            prompt = prompt_template.format(context_str=text, num_questions_per_chunk=num_questions_per_chunk)
        try:
            response = await llm.acomplete(prompt)
        except Exception as exc:  # noqa: BLE001 - an LLM failure is counted, not fatal
            return node, text, None, f"{type(exc).__name__}: {exc}"
        questions = parse_questions(getattr(response, "text", str(response)), num_questions_per_chunk)
        return node, text, questions, "" if questions else "no usable question in the LLM answer"

    counter = len(queries)
    for b0 in range(0, len(todo), batch_size):
        batch = todo[b0 : b0 + batch_size]
        answers = asyncio_run(run_jobs([ask(n) for n in batch], show_progress=show_progress, workers=num_workers))
        for node, text, questions, reason in answers:
            if not questions:
                result.n_failed += 1
                if len(result.failures) < 100:
                    result.failures.append({"node_id": node.node_id, "reason": reason})
                continue
            result.n_succeeded += 1
            result.n_short += len(questions) < num_questions_per_chunk
            corpus[node.node_id] = text
            for q in questions:
                while f"q{counter}" in queries:
                    counter += 1
                queries[f"q{counter}"] = q
                relevant[f"q{counter}"] = [node.node_id]
        if path is not None:
            from nudge_rag.files import atomic_write_text

            atomic_write_text(
                path,
                json.dumps({"queries": queries, "corpus": corpus, "relevant_docs": relevant, "mode": "text"}, indent=1),
            )
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


def generate_for_nodes(
    nodes_of: Any,
    node_row: dict[str, int],
    generate_for: Sequence[str] | None,
    llm: LLM,
    num_questions_per_chunk: int,
    **kwargs: Any,
) -> GeneratedQuestions:
    """:func:`generate_question_pairs` about the nodes ``generate_for`` (default: all); ``nodes_of(rows)`` gives
    the nodes of solver rows, ``node_row`` maps node ids to rows (``ValueError`` naming unknown ids)."""
    if generate_for is not None:
        unknown = [n for n in generate_for if n not in node_row]
        if unknown:
            raise ValueError(f"generate_for names {len(unknown)} node id(s) not in the index (first: {unknown[0]!r})")
    nodes = nodes_of(None if generate_for is None else [node_row[n] for n in generate_for])
    return generate_question_pairs(nodes, llm, num_questions_per_chunk=num_questions_per_chunk, **kwargs)
