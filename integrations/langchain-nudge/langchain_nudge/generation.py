"""Synthetic training questions: ask any LangChain chat model or LLM for questions that a document answers.

Documents are sent in batches (``Runnable.batch`` / ``abatch`` with bounded concurrency). Models that implement
``with_structured_output`` return a parsed :class:`QuestionList`; for the others the prompt asks for JSON and the
answer is parsed leniently by the core parser, :func:`nudge_rag.generate.parse_questions` (re-exported here as
:func:`parse_questions`: code fences, prose around the JSON, numbered lists of questions). The prompt wording is
the core's too (:func:`nudge_rag.generate.instruction_prompt`); this module only drives LangChain's calls.
A document for which the model raises or answers nothing usable is counted and skipped, never fatal; only a run
that yields no question at all raises :class:`QuestionGenerationError`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseLanguageModel
from langchain_core.prompts import BasePromptTemplate, ChatPromptTemplate
from langchain_core.runnables import Runnable
from langchain_core.vectorstores import VectorStore
from pydantic import BaseModel, Field

from langchain_nudge._pairs import DocumentRef
from nudge_rag.generate import append_pairs, instruction_prompt, parse_questions, read_saved_pairs

__all__ = [
    "DEFAULT_QUESTION_PROMPT",
    "QuestionList",
    "GeneratedQuestions",
    "QuestionGenerationError",
    "generate_questions",
    "agenerate_questions",
    "parse_questions",
]

logger = logging.getLogger(__name__)

#: The core's instruction prompt (``nudge_rag.generate.instruction_prompt``, JSON answer) as a chat prompt.
DEFAULT_QUESTION_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You write search questions for a retrieval benchmark. Each question must be answerable from the "
            "given passage alone, make sense without seeing the passage, and use the wording a user would type.",
        ),
        (
            "human",
            instruction_prompt("<document>", "<num_questions>", json_output=True)
            .replace("{", "{{")
            .replace("}", "}}")
            .replace("<document>", "{document}")
            .replace("<num_questions>", "{num_questions}"),
        ),
    ]
)


class QuestionList(BaseModel):
    """Questions that a passage answers (the structured output asked of the model)."""

    questions: list[str] = Field(description="Distinct questions answered by the passage, one string each")


class QuestionGenerationError(ValueError):
    """The model produced no usable question for any document."""


@dataclass
class GeneratedQuestions:
    """Result of :func:`generate_questions`; pass it (or its ``pairs``) to ``NudgeEmbeddings.fit``.

    Attributes:
        pairs: ``(question, document)`` pairs; the document is its id, or the ``Document`` when it has none.
        n_documents: documents asked about.
        n_succeeded: documents that got at least one usable question.
        n_short: of those, documents that got fewer questions than requested.
        n_failed: documents without any question (``n_errors + n_unparseable + n_empty + n_skipped``).
        n_errors: the model raised (rate limit, timeout, ...).
        n_unparseable: the answer held nothing parseable (junk, empty, malformed JSON).
        n_empty: the answer parsed but held no usable question.
        n_skipped: documents with empty text (not sent to the model).
        n_resumed: documents skipped because ``output_path`` already held their questions (in ``pairs`` too).
        n_questions: questions in ``pairs``.
        failures: ``{"document", "reason"}`` for the first 100 failed documents.
    """

    pairs: list[tuple[str, DocumentRef]] = field(default_factory=list)
    n_documents: int = 0
    n_succeeded: int = 0
    n_short: int = 0
    n_failed: int = 0
    n_errors: int = 0
    n_unparseable: int = 0
    n_empty: int = 0
    n_skipped: int = 0
    n_resumed: int = 0
    n_questions: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (without the pairs)."""
        out = asdict(self)
        out.pop("pairs")
        return out

    def _fail(self, ref: DocumentRef, kind: str, reason: str) -> None:
        self.n_failed += 1
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.failures) < 100:
            name = ref if isinstance(ref, str) else f"<document without id: {ref.page_content[:40]!r}>"
            self.failures.append({"document": name, "reason": reason[:300]})


# ---------------------------------------------------------------------------------------------- generation
def _documents_of(documents: Sequence[Document] | VectorStore) -> list[Document]:
    if isinstance(documents, VectorStore):
        from langchain_nudge.vectorstores.adapters import get_adapter

        return get_adapter(documents).extract(documents)[0]
    docs = list(documents)
    for n, doc in enumerate(docs):
        if not isinstance(doc, Document):
            raise TypeError(f"documents[{n}] must be a langchain_core Document, got {type(doc).__name__}")
    return docs


def _runnable(llm: Any, prompt: BasePromptTemplate, structured_output: bool | None) -> Runnable:
    if not isinstance(llm, (BaseLanguageModel, Runnable)):
        raise TypeError(f"llm must be a LangChain chat model, LLM or Runnable, got {type(llm).__name__}")
    missing = set(prompt.input_variables) - {"document", "num_questions"}
    if missing:
        raise ValueError(f"prompt may only use the variables 'document' and 'num_questions', it also needs {missing}")
    if structured_output is not False and hasattr(llm, "with_structured_output"):
        try:
            return prompt | llm.with_structured_output(QuestionList)
        except NotImplementedError:
            if structured_output:
                raise
            logger.debug("%s has no structured output; asking for JSON in the prompt", type(llm).__name__)
    elif structured_output:
        raise NotImplementedError(f"{type(llm).__name__} has no with_structured_output")
    return prompt | llm


def _setup(documents, llm, questions_per_document, prompt, batch_size, max_concurrency, structured_output, path):
    n_q = questions_per_document
    if isinstance(n_q, bool) or not isinstance(n_q, int) or n_q < 1:
        raise ValueError(f"questions_per_document must be a positive integer, got {questions_per_document!r}")
    for name, value in (("batch_size", batch_size), ("max_concurrency", max_concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    docs = _documents_of(documents)
    from langchain_nudge.llms import LocalQuestionLLM, default_question_llm  # llm=None: the offline local model

    llm, prompt, structured_output = default_question_llm(llm, prompt, structured_output)
    chain = _runnable(llm, prompt or DEFAULT_QUESTION_PROMPT, structured_output)
    result = GeneratedQuestions(n_documents=len(docs))
    saved: dict[str, list[str]] = {}
    if path is not None:
        without_id = sum(not doc.id for doc in docs)
        if without_id:
            raise ValueError(f"output_path resumes by document id, but {without_id} document(s) have no id")
        for q, d in read_saved_pairs(path):
            saved.setdefault(d, []).append(q)
    todo: list[tuple[DocumentRef, dict[str, Any]]] = []
    for doc in docs:
        ref: DocumentRef = doc.id if doc.id else doc
        if isinstance(ref, str) and ref in saved:  # done by an earlier run
            result.n_resumed += 1
            result.pairs.extend((q, ref) for q in saved[ref])
            result.n_questions += len(saved[ref])
        elif not doc.page_content.strip():
            result._fail(ref, "n_skipped", "empty document text")
        else:
            todo.append((ref, {"document": doc.page_content, "num_questions": n_q}))
    # the local model is synchronous and CPU-bound: no concurrency, one batched forward pass per batch
    config: dict[str, Any] = {} if isinstance(llm, LocalQuestionLLM) else {"max_concurrency": max_concurrency}
    return chain, result, todo, config


def _record(result: GeneratedQuestions, ref: DocumentRef, output: Any, n_q: int, passage: str | None = None) -> None:
    if isinstance(output, OutputParserException):
        result._fail(ref, "n_unparseable", f"{type(output).__name__}: {output}")
        return
    if isinstance(output, BaseException):
        result._fail(ref, "n_errors", f"{type(output).__name__}: {output}")
        return
    questions = parse_questions(output, n_q, passage=passage)
    if questions is None:
        result._fail(ref, "n_unparseable", f"nothing parseable in the answer: {str(output)[:120]!r}")
    elif not questions:
        result._fail(ref, "n_empty", "the answer held no usable question")
    else:
        result.n_succeeded += 1
        result.n_short += len(questions) < n_q
        result.pairs.extend((q, ref) for q in questions)
        result.n_questions += len(questions)


def _after_batch(result, batch, outputs, n_q, path, bar) -> None:
    """Record a completed batch, append its pairs to ``path`` (flushed: a kill loses at most the next batch)."""
    start = len(result.pairs)
    for (ref, inputs), out in zip(batch, outputs):
        _record(result, ref, out, n_q, inputs["document"])
    if path is not None:
        append_pairs(path, [(q, str(ref)) for q, ref in result.pairs[start:]])
    if bar is not None:
        bar.update(len(batch))


def _progress_bar(total: int, show: bool) -> Any:
    if not show or not total:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="generating questions", unit="document", file=sys.stderr)


def _failed_wholesale(outputs: list[Any]) -> bool:
    """Whether a whole batch failed with one and the same exception.

    That happens when a model's ``batch`` ignores ``return_exceptions`` (e.g. ``FakeListChatModel``), or when
    ``RunnableSequence.batch`` hands one step's exception to every input: the documents are then retried one by
    one so that a single failure does not sink the others.
    """
    return len(outputs) > 1 and isinstance(outputs[0], BaseException) and all(o is outputs[0] for o in outputs)


def _finish(result: GeneratedQuestions) -> GeneratedQuestions:
    logger.info("question generation: %s", result.stats())
    if result.n_questions == 0:
        first = result.failures[0]["reason"] if result.failures else "no documents"
        raise QuestionGenerationError(
            f"the model produced no usable question for any of the {result.n_documents} document(s) "
            f"({result.n_errors} errors, {result.n_unparseable} unparseable, {result.n_empty} empty, "
            f"{result.n_skipped} skipped; first failure: {first})"
        )
    return result


def generate_questions(
    documents: Sequence[Document] | VectorStore,
    llm: BaseLanguageModel | Runnable,
    *,
    questions_per_document: int = 2,
    prompt: BasePromptTemplate | None = None,
    batch_size: int = 8,
    max_concurrency: int = 4,
    structured_output: bool | None = None,
    output_path: str | os.PathLike | None = None,
    show_progress: bool = False,
) -> GeneratedQuestions:
    """Ask ``llm`` for ``questions_per_document`` questions about each document.

    Args:
        documents: the documents (their ``page_content`` is shown to the model), or a supported vector store.
        llm: any LangChain chat model or LLM (or a Runnable taking the prompt's output).
        questions_per_document: questions requested per document.
        prompt: a prompt template with the variables ``document`` and ``num_questions``
            (default :data:`DEFAULT_QUESTION_PROMPT`).
        batch_size: documents per ``batch`` call, i.e. between two saves to ``output_path``.
        max_concurrency: concurrent model calls within a batch. The offline local model
            (:class:`~langchain_nudge.llms.LocalQuestionLLM`) is synchronous and CPU-bound: its ``batch`` runs one
            batched forward pass whatever this value (``abatch`` runs it in a worker thread).
        structured_output: ``None`` uses ``llm.with_structured_output(QuestionList)`` where the model implements
            it and JSON prompting otherwise; ``True`` requires it; ``False`` never uses it.
        output_path: pairs JSONL file (``{"query", "doc_id"}`` per line, read by ``nudge_rag.data.load_pairs``)
            appended and flushed after every completed batch. When it exists, documents whose id is in it are not
            asked again (their saved pairs are returned), so a stopped or killed run resumes and loses at most one
            batch. Needs documents with ids.
        show_progress: a progress bar in documents (tqdm), advanced after each batch.

    Returns:
        :class:`GeneratedQuestions`: the pairs and counters (failures are counted, not raised).

    Raises:
        QuestionGenerationError: no document got a usable question.

    Example:
        >>> result = generate_questions(docs, ChatOpenAI(model="gpt-4o-mini"), questions_per_document=3)
        >>> embeddings.fit(docs, result)
    """
    path = None if output_path is None else Path(output_path)
    chain, result, todo, config = _setup(
        documents, llm, questions_per_document, prompt, batch_size, max_concurrency, structured_output, path
    )
    bar = _progress_bar(len(todo), show_progress)
    for b0 in range(0, len(todo), batch_size):
        batch = todo[b0 : b0 + batch_size]
        inputs = [inp for _, inp in batch]
        try:
            outputs = chain.batch(inputs, config=config, return_exceptions=True)
        except Exception as exc:  # noqa: BLE001
            outputs = [exc] * len(inputs)
        if _failed_wholesale(outputs):  # one document's failure sank the batch: isolate per document
            outputs = []
            for inp in inputs:
                try:
                    outputs.append(chain.invoke(inp))
                except Exception as exc:  # noqa: BLE001 - counted, not fatal
                    outputs.append(exc)
        _after_batch(result, batch, outputs, questions_per_document, path, bar)
        logger.debug("generated questions for %d/%d documents", min(b0 + batch_size, len(todo)), len(todo))
    if bar is not None:
        bar.close()
    return _finish(result)


async def agenerate_questions(
    documents: Sequence[Document] | VectorStore,
    llm: BaseLanguageModel | Runnable,
    *,
    questions_per_document: int = 2,
    prompt: BasePromptTemplate | None = None,
    batch_size: int = 8,
    max_concurrency: int = 4,
    structured_output: bool | None = None,
    output_path: str | os.PathLike | None = None,
    show_progress: bool = False,
) -> GeneratedQuestions:
    """Async :func:`generate_questions` (``Runnable.abatch``; same arguments, same saving and resuming)."""
    path = None if output_path is None else Path(output_path)
    chain, result, todo, config = _setup(
        documents, llm, questions_per_document, prompt, batch_size, max_concurrency, structured_output, path
    )
    bar = _progress_bar(len(todo), show_progress)
    for b0 in range(0, len(todo), batch_size):
        batch = todo[b0 : b0 + batch_size]
        inputs = [inp for _, inp in batch]
        try:
            outputs = await chain.abatch(inputs, config=config, return_exceptions=True)
        except Exception as exc:  # noqa: BLE001
            outputs = [exc] * len(inputs)
        if _failed_wholesale(outputs):
            outputs = []
            for inp in inputs:
                try:
                    outputs.append(await chain.ainvoke(inp))
                except Exception as exc:  # noqa: BLE001 - counted, not fatal
                    outputs.append(exc)
        _after_batch(result, batch, outputs, questions_per_document, path, bar)
    if bar is not None:
        bar.close()
    return _finish(result)
