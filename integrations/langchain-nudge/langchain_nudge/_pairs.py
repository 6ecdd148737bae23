"""Question-document pairs: the accepted input forms and their resolution to corpus rows (grouping and the
validation carve are :mod:`nudge_rag.finetune`'s)."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.documents import Document

from nudge_rag.finetune import Questions, group_pairs

__all__ = [
    "DocumentRef",
    "QuestionPairsInput",
    "content_key",
    "Corpus",
    "normalize_pairs",
    "resolve_pairs",
    "document_pairs",
    "rows_by_document",
    "to_chunks",
]

#: A document named by a pair: its id, or the ``Document`` itself (matched by id when set, else by content).
DocumentRef = str | Document

#: What ``NudgeEmbeddings.fit`` accepts as questions: ``(question, doc)`` / ``(question, doc, relevance)`` tuples,
#: a mapping ``question -> doc id(s)``, or a :class:`~langchain_nudge.GeneratedQuestions`.
QuestionPairsInput = Any


def content_key(text: str) -> bytes:
    """SHA-256 of a document's exact ``page_content`` (UTF-8): the key of content matching."""
    return hashlib.sha256(text.encode("utf-8")).digest()


@dataclass
class Corpus:
    """The documents a fit runs on: ids (``None`` where a document has none) and content keys, row-aligned."""

    ids: list[str | None]
    keys: list[bytes]

    def __post_init__(self) -> None:
        self.id_pos: dict[str, int] = {}
        for row, doc_id in enumerate(self.ids):
            if doc_id is None:
                continue
            if doc_id in self.id_pos:
                raise ValueError(f"duplicate document id {doc_id!r} in the source documents")
            self.id_pos[doc_id] = row
        self.key_rows: dict[bytes, list[int]] = {}
        for row, key in enumerate(self.keys):
            self.key_rows.setdefault(key, []).append(row)

    @classmethod
    def from_documents(cls, documents: Sequence[Document]) -> Corpus:
        return cls([d.id or None for d in documents], [content_key(d.page_content) for d in documents])

    def __len__(self) -> int:
        return len(self.ids)

    def row_of(self, ref: DocumentRef, where: str) -> int:
        """Row of the document ``ref`` names; ``ValueError`` when it names none (or several)."""
        if isinstance(ref, str):
            if ref not in self.id_pos:
                raise ValueError(
                    f"{where} names unknown document id {ref!r} (not among the {len(self)} source documents)"
                )
            return self.id_pos[ref]
        if ref.id:
            if ref.id not in self.id_pos:
                raise ValueError(
                    f"{where} names unknown document id {ref.id!r} (not among the {len(self)} source documents)"
                )
            return self.id_pos[ref.id]
        rows = self.key_rows.get(content_key(ref.page_content), [])
        if not rows:
            preview = ref.page_content[:60].replace("\n", " ")
            raise ValueError(
                f"{where} names a document without id whose content matches no source document: {preview!r}"
            )
        if len(rows) > 1:
            raise ValueError(
                f"{where} names a document without id whose content matches {len(rows)} source documents; "
                "give the document an id"
            )
        return rows[0]


def normalize_pairs(questions: QuestionPairsInput, name: str) -> list[tuple[str, DocumentRef, float]]:
    """``(question, document ref, relevance)`` triples from any accepted input form (see ``fit``)."""
    if questions is None:
        raise ValueError(f"{name}: no question-document pairs given")
    pairs_attr = getattr(questions, "pairs", None)
    if pairs_attr is not None and not isinstance(questions, (Mapping, str)):
        questions = pairs_attr
    if isinstance(questions, str):
        raise TypeError(f"{name} must be pairs (question, document id), a mapping or GeneratedQuestions, not a string")
    items: Iterable[Any]
    if isinstance(questions, Mapping):
        items = []
        for q, docs in questions.items():
            if isinstance(docs, (str, Document)):
                items.append((q, docs))
            elif isinstance(docs, Mapping):
                items.extend((q, d, rel) for d, rel in docs.items())
            else:
                items.extend((q, d) for d in docs)
    else:
        items = questions
    out: list[tuple[str, DocumentRef, float]] = []
    for n, pair in enumerate(items):
        if not isinstance(pair, (tuple, list)) or len(pair) not in (2, 3):
            raise ValueError(
                f"{name} pair {n} must be (question, document) or (question, document, relevance), got {pair!r}"
            )
        question, ref = pair[0], pair[1]
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"{name} pair {n}: the question must be a non-empty string, got {question!r}")
        if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
            ref = str(ref)
        if not isinstance(ref, (str, Document)):
            raise TypeError(
                f"{name} pair {n}: the document must be an id (str) or a Document, got {type(ref).__name__}"
            )
        rel = 1.0
        if len(pair) == 3:
            try:
                rel = float(pair[2])
            except (TypeError, ValueError):
                raise ValueError(f"{name} pair {n}: relevance must be a number, got {pair[2]!r}") from None
            if not np.isfinite(rel):
                raise ValueError(f"{name} pair {n}: relevance must be finite, got {pair[2]!r}")
        out.append((question, ref, rel))
    if not out:
        raise ValueError(f"{name}: the set of question-document pairs is empty")
    return out


def resolve_pairs(pairs: list[tuple[str, DocumentRef, float]], corpus: Corpus, name: str) -> Questions:
    """Map each pair's document to its corpus row, then group by question text (:func:`nudge_rag.finetune.group_pairs`:
    first-seen order, relevance <= 0 is not an answer, a question left without an answer is dropped).

    No answer at all is an error.
    """
    rows = [(q, corpus.row_of(ref, f"{name} pair {n}"), rel) for n, (q, ref, rel) in enumerate(pairs)]
    out = group_pairs(rows)
    if len(out) == 0:
        raise ValueError(f"{name}: no pair has a positive relevance")
    return out


def document_pairs(pairs: list[tuple[str, DocumentRef, float]], doc_field: str, name: str) -> Questions:
    """Pairs naming *documents* grouped by question, each answer the document id (a ``Document`` names the value
    of its ``metadata[doc_field]``)."""
    out = []
    for n, (question, ref, rel) in enumerate(pairs):
        doc: Any = ref
        if isinstance(ref, Document):
            doc = ref.metadata.get(doc_field)
            if doc is None:
                raise ValueError(f"{name} pair {n} names a Document without metadata[{doc_field!r}] (doc_field)")
        out.append((question, str(doc), rel))
    return group_pairs(out)


def rows_by_document(documents: Sequence[Document], doc_field: str) -> dict[str, list[int]]:
    """Document id -> rows of ``documents`` (its chunks) whose ``metadata[doc_field]`` is that id (as a string)."""
    out: dict[str, list[int]] = {}
    for row, doc in enumerate(documents):
        value = doc.metadata.get(doc_field)
        if value is not None:
            out.setdefault(str(value), []).append(row)
    return out


def to_chunks(questions: Questions, chunks: Mapping[str, Sequence[Hashable]], doc_field: str, name: str) -> Questions:
    """``questions`` (answers naming documents) with each document replaced by its current ``chunks`` (document id
    -> chunk ids or rows, read at fit time) through :meth:`nudge_rag.finetune.Questions.by_document`.

    A document without a chunk (deleted, or never added) gives no answer: its pairs are skipped, with a
    ``UserWarning`` naming it, and questions left without any answer are dropped and counted (``n_dropped``, the
    report's ``n_dropped_questions``). ``ValueError`` when no question is left.
    """
    named = list(dict.fromkeys(str(d) for a in questions.answers for d in a))
    missing = [d for d in named if not chunks.get(d)]
    out = questions.by_document({d: list(chunks.get(d, ())) for d in named})
    if missing:
        skipped = sum(str(d) in set(missing) for a in questions.answers for d in a)
        shown = ", ".join(repr(d) for d in missing[:5])
        warnings.warn(
            f"{name}: {len(missing)} of the {len(named)} document ids the pairs name have no chunk with "
            f"metadata[{doc_field!r}] equal to them (deleted?): {shown}; their {skipped} pair(s) were skipped, "
            f"{out.n_dropped - questions.n_dropped} question(s) left without an answer were dropped",
            UserWarning,
            stacklevel=4,
        )
    if len(out) == 0:
        raise ValueError(
            f"{name}: none of the {len(named)} documents the pairs name has a chunk (doc_field={doc_field!r})"
        )
    return out
