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
from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseLanguageModel
from langchain_core.prompts import BasePromptTemplate, ChatPromptTemplate
from langchain_core.runnables import Runnable
from langchain_core.vectorstores import VectorStore
from pydantic import BaseModel, Field

from langchain_nudge._pairs import DocumentRef
from nudge_rag.generate import (
    GeneratedQuestions,
    QuestionGenerationError,
    aask_in_batches,
    ask_in_batches,
    instruction_prompt,
    parse_questions,
)

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


def _setup(documents, llm, n_q, prompt, max_concurrency, structured_output, output_path, show_progress):
    """(chain, document refs, texts, batch config, the core loop's options)."""
    if isinstance(n_q, bool) or not isinstance(n_q, int) or n_q < 1:
        raise ValueError(f"questions_per_document must be a positive integer, got {n_q!r}")
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
    docs = _documents_of(documents)
    from langchain_nudge.llms import LocalQuestionLLM, default_question_llm  # llm=None: the offline local model

    llm, prompt, structured_output = default_question_llm(llm, prompt, structured_output)
    chain = _runnable(llm, prompt or DEFAULT_QUESTION_PROMPT, structured_output)
    refs: list[DocumentRef] = [doc.id if doc.id else doc for doc in docs]
    options = dict(
        n_questions=n_q, path=output_path, show_progress=show_progress, unparseable=(OutputParserException,),
        unit="document",
    )  # fmt: skip
    # the local model is synchronous and CPU-bound: no concurrency, one batched forward pass per batch
    config: dict[str, Any] = {} if isinstance(llm, LocalQuestionLLM) else {"max_concurrency": max_concurrency}
    return chain, refs, [doc.page_content for doc in docs], config, options


def _failed_wholesale(outputs: list[Any]) -> bool:
    """Whether a whole batch failed with one and the same exception.

    That happens when a model's ``batch`` ignores ``return_exceptions`` (e.g. ``FakeListChatModel``), or when
    ``RunnableSequence.batch`` hands one step's exception to every input: the documents are then retried one by
    one so that a single failure does not sink the others.
    """
    return len(outputs) > 1 and isinstance(outputs[0], BaseException) and all(o is outputs[0] for o in outputs)


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
    chain, refs, texts, config, options = _setup(
        documents, llm, questions_per_document, prompt, max_concurrency, structured_output, output_path, show_progress
    )

    def ask(batch: list[str]) -> list[Any]:
        inputs = [{"document": t, "num_questions": questions_per_document} for t in batch]
        try:
            outputs = chain.batch(inputs, config=config, return_exceptions=True)
        except Exception as exc:  # noqa: BLE001
            outputs = [exc] * len(inputs)
        if not _failed_wholesale(outputs):
            return outputs
        outputs = []  # one document's failure sank the batch: isolate per document
        for inp in inputs:
            try:
                outputs.append(chain.invoke(inp))
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                outputs.append(exc)
        return outputs

    return ask_in_batches(refs, texts, ask, batch_size=batch_size, **options)


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
    chain, refs, texts, config, options = _setup(
        documents, llm, questions_per_document, prompt, max_concurrency, structured_output, output_path, show_progress
    )

    async def ask(batch: list[str]) -> list[Any]:
        inputs = [{"document": t, "num_questions": questions_per_document} for t in batch]
        try:
            outputs = await chain.abatch(inputs, config=config, return_exceptions=True)
        except Exception as exc:  # noqa: BLE001
            outputs = [exc] * len(inputs)
        if not _failed_wholesale(outputs):
            return outputs
        outputs = []
        for inp in inputs:
            try:
                outputs.append(await chain.ainvoke(inp))
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                outputs.append(exc)
        return outputs

    return await aask_in_batches(refs, texts, ask, batch_size=batch_size, **options)
