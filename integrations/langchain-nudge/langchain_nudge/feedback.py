"""Feedback capture for LangChain: a callback handler that logs each retrieval, and ``record_feedback`` for the app's
thumbs-up, clicks and citations, into a :class:`nudge_rag.feedback.FeedbackLog` that a re-tune reads.

Example:
    >>> feedback = FeedbackCallbackHandler("feedback.sqlite")
    >>> retriever = store.as_retriever().with_config(callbacks=[feedback])  # or invoke(q, config={"callbacks": [..]})
    >>> docs = retriever.invoke("does vitamin D prevent fractures?")
    >>> feedback.record_feedback("does vitamin D prevent fractures?", docs[2], source="click")  # durable on return

What a retrieval logs: an *impression* (``source="retrieved"``, grade 0, no relevant document, the returned ids in
rank order). It says what the user was shown, not what was relevant, so a re-tune never uses it as a pair
(:meth:`FeedbackLog.questions <nudge_rag.feedback.FeedbackLog.questions>` skips it); it is written in the background
(see :mod:`nudge_rag.feedback_capture`). ``impressions=False`` keeps retrievals in memory only. A later
``record_feedback`` for the same query (its text, or the retrieval's ``run_id``) carries the returned ids, and the
query vector when one is known: :class:`FeedbackRetriever` embeds the query itself so the log keeps it, or the app
passes ``vector=``. The handler adds no embedding call to a retrieval.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import numpy as np
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field

from nudge_rag.feedback import FeedbackLog
from nudge_rag.feedback_capture import FeedbackCaptureWarning, FeedbackRecorder, Retrieval

__all__ = ["FeedbackCallbackHandler", "FeedbackRetriever", "FeedbackCaptureWarning"]


class FeedbackCallbackHandler(BaseCallbackHandler):
    """Logs every retrieval it sees (``on_retriever_start`` / ``on_retriever_end``, matched by ``run_id``).

    Args:
        log: a :class:`~nudge_rag.feedback.FeedbackLog`, its path, or a
            :class:`~nudge_rag.feedback_capture.FeedbackRecorder` to share with other hooks.
        id_key: a metadata key holding the id to log for a document (e.g. the id of the document a chunk came
            from, so feedback names documents); documents without it are logged by ``Document.id``. By default,
            ``Document.id``. A document with neither is left out of the log (a warning).
        impressions, remember: see :class:`~nudge_rag.feedback_capture.FeedbackRecorder` (when ``log`` is not one).

    The handler never raises into the app (a log error is a :class:`FeedbackCaptureWarning`) and never blocks a
    retrieval on the disk, so it runs inline in async chains too.
    """

    run_inline: bool = True  # only enqueues: no executor hop needed in async chains
    raise_error: bool = False

    def __init__(
        self,
        log: FeedbackRecorder | FeedbackLog | str | os.PathLike[str],
        *,
        id_key: str | None = None,
        impressions: bool = True,
        remember: int = 4096,
    ) -> None:
        self._owns_recorder = not isinstance(log, FeedbackRecorder)
        self.recorder: FeedbackRecorder = (
            log
            if isinstance(log, FeedbackRecorder)
            else FeedbackRecorder(log, impressions=impressions, remember=remember)
        )
        self.id_key = id_key
        self._queries: dict[UUID, str] = {}
        self._vectors: dict[UUID, list[float]] = {}  # from a FeedbackRetriever, until its run ends
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ ids
    def doc_id(self, doc: Document) -> str | None:
        """The id logged for ``doc``: ``metadata[id_key]`` when set and present, else ``Document.id`` (or None)."""
        if self.id_key is not None and doc.metadata.get(self.id_key) is not None:
            return str(doc.metadata[self.id_key])
        return None if doc.id is None else str(doc.id)

    def _names(self, docs: Iterable[Any]) -> list[str]:
        out = []
        for d in docs:
            name = self.doc_id(d) if isinstance(d, Document) else str(d)
            if name is None:
                raise ValueError(f"document has no id and no {self.id_key!r} metadata: {d.page_content[:60]!r}")
            out.append(name)
        return out

    # ------------------------------------------------------------------ callbacks
    def on_retriever_start(self, serialized: dict[str, Any], query: str, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._queries[run_id] = query

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._queries.pop(run_id, None)
            self._vectors.pop(run_id, None)

    def on_retriever_end(self, documents: Sequence[Document], *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            query = self._queries.pop(run_id, None)
            vector = self._vectors.pop(run_id, None)
        if query is not None:  # else the start was not seen (handler attached mid-run)
            self._log(query, documents, run_id, vector)

    def _log(self, query: str, documents: Sequence[Document], run_id: UUID, vector: Any) -> None:
        try:
            ids, aliases, missing = [], {}, 0
            for doc in documents:
                name = self.doc_id(doc)
                if name is None:
                    missing += 1
                    continue
                ids.append(name)
                if doc.id is not None and str(doc.id) != name:
                    aliases[str(doc.id)] = name
            if missing:
                warnings.warn(
                    f"{missing} retrieved document(s) have no id (Document.id or metadata {self.id_key!r}): "
                    "left out of the feedback log",
                    FeedbackCaptureWarning,
                    stacklevel=3,
                )
            self.recorder.retrieved(query, ids, vector=vector, key=run_id, aliases=aliases)
        except Exception as exc:  # a callback must not break the app's retrieval
            warnings.warn(f"retrieval not logged: {exc!r}", FeedbackCaptureWarning, stacklevel=3)

    # ------------------------------------------------------------------ the app's feedback
    def record_feedback(
        self,
        query: str | UUID,
        docs: Document | str | Iterable[Document | str],
        *,
        grade: float = 1.0,
        source: str = "click",
        vector: Sequence[float] | np.ndarray | None = None,
        timeout: float | None = None,
    ) -> int:
        """Record that ``docs`` (documents or their ids) answer ``query`` (its text, or the ``run_id`` of the
        retrieval that returned them, e.g. ``retriever.invoke(q, run_id=...)``); the event id once it is durable.

        ``source``: ``"click"``, ``"thumbs_up"``, ``"cited"``, ...; ``grade`` 0 with ``"thumbs_down"`` records a
        judged-irrelevant document. Errors are raised (an acknowledged event must be durable): ``KeyError`` for an
        unknown ``run_id``, ``ValueError`` for a bad event or a document without an id.
        """
        items = [docs] if isinstance(docs, (Document, str)) else list(docs)
        return self.recorder.record_feedback(
            query, self._names(items), grade=grade, source=source, vector=vector, timeout=timeout
        )

    def last(self, query: str | UUID) -> Retrieval | None:
        """The most recent remembered retrieval of a query text or ``run_id``."""
        return self.recorder.last(query)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every retrieval seen so far is written."""
        self.recorder.flush(timeout)

    def close(self) -> None:
        """Write what is queued and stop (a shared recorder passed in is left open)."""
        if self._owns_recorder:
            self.recorder.close()


class FeedbackRetriever(BaseRetriever):
    """A similarity retriever over ``vectorstore`` that embeds each query itself, once, so that the feedback log
    keeps the query vector (a re-tune need not re-embed the questions).

    It returns ``vectorstore.similarity_search_by_vector(embeddings.embed_query(query), **search_kwargs)``, which is
    what the store's own similarity search does (same single embedding call). Each retrieval is logged through
    ``feedback`` whether or not that handler is also among the run's callbacks (never twice).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    vectorstore: VectorStore
    feedback: FeedbackCallbackHandler
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        embeddings = self.vectorstore.embeddings
        if embeddings is None:
            raise ValueError(f"{type(self.vectorstore).__name__} exposes no embeddings to embed the query with")
        vector = embeddings.embed_query(query)
        docs = self.vectorstore.similarity_search_by_vector(vector, **self.search_kwargs)
        if any(h is self.feedback for h in run_manager.handlers):
            with self.feedback._lock:  # its on_retriever_end logs it with the documents
                self.feedback._vectors[run_manager.run_id] = vector
        else:
            self.feedback._log(query, docs, run_manager.run_id, vector)
        return docs
