"""Feedback capture for LlamaIndex: an instrumentation event handler that logs each retrieval, and
``record_feedback`` for the app's thumbs-up, clicks and citations, into a :class:`nudge_rag.feedback.FeedbackLog`.

Example:
    >>> feedback = FeedbackEventHandler("feedback.sqlite").attach()   # the root dispatcher: every retriever
    >>> response = index.as_query_engine().query("does vitamin D prevent fractures?")
    >>> feedback.record_feedback("does vitamin D prevent fractures?", response.source_nodes[0], source="cited")

A retrieval (``RetrievalEndEvent``: its query and returned nodes) logs an *impression* (``source="retrieved"``,
grade 0, no relevant document): what the user was shown, never a pair for a re-tune (see
:mod:`nudge_rag.feedback_capture`). It is written in the background; ``impressions=False`` keeps it in memory only.
By default ids name documents (a node's ``ref_doc_id``, else its node id), so the log survives re-chunking and a
re-tune resolves them to the current nodes (``Questions.by_document``); a clicked node id is logged as its document.
The query vector is kept when the retriever embedded a ``QueryBundle`` it was given (a query engine does).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.dispatcher import Dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle

from nudge_rag.feedback import FeedbackLog
from nudge_rag.feedback_capture import FeedbackCaptureWarning, FeedbackRecorder, Retrieval

__all__ = ["FeedbackEventHandler", "FeedbackCaptureWarning"]


class FeedbackEventHandler(BaseEventHandler):
    """Logs every retrieval the dispatcher reports; attach with :meth:`attach`.

    Args:
        log: a :class:`~nudge_rag.feedback.FeedbackLog`, its path, or a
            :class:`~nudge_rag.feedback_capture.FeedbackRecorder` to share with other hooks.
        by_document: log a node's ``ref_doc_id`` (its node id when it has none); ``False``: node ids.
        impressions, remember: see :class:`~nudge_rag.feedback_capture.FeedbackRecorder` (when ``log`` is not one).

    Never raises into the app (the dispatcher would drop it silently): a log error is a
    :class:`FeedbackCaptureWarning`.
    """

    recorder: FeedbackRecorder
    by_document: bool = True
    owns_recorder: bool = True

    def __init__(
        self,
        log: FeedbackRecorder | FeedbackLog | str | os.PathLike[str],
        *,
        by_document: bool = True,
        impressions: bool = True,
        remember: int = 4096,
    ) -> None:
        own = not isinstance(log, FeedbackRecorder)
        rec = FeedbackRecorder(log, impressions=impressions, remember=remember) if own else log  # type: ignore[arg-type]
        super().__init__(recorder=rec, by_document=by_document, owns_recorder=own)  # type: ignore[call-arg]

    @classmethod
    def class_name(cls) -> str:
        return "NudgeFeedbackEventHandler"

    def _id(self, node: BaseNode) -> str:
        return str(node.ref_doc_id) if self.by_document and node.ref_doc_id is not None else node.node_id

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if not isinstance(event, RetrievalEndEvent):
            return
        try:
            q = event.str_or_query_bundle
            vector = q.embedding if isinstance(q, QueryBundle) else None
            nodes = [n.node for n in event.nodes]
            ids = [self._id(n) for n in nodes]
            aliases = {n.node_id: self._id(n) for n in nodes if self._id(n) != n.node_id}
            text = q.query_str if isinstance(q, QueryBundle) else q
            self.recorder.retrieved(text, ids, vector=vector, aliases=aliases)
        except Exception as exc:  # the dispatcher swallows handler errors silently: say it
            warnings.warn(f"retrieval not logged: {exc!r}", FeedbackCaptureWarning, stacklevel=2)

    def attach(self, dispatcher: Dispatcher | None = None) -> FeedbackEventHandler:
        """Add this handler to ``dispatcher`` (default: the root one, which every retriever reports to)."""
        (dispatcher or get_dispatcher()).add_event_handler(self)
        return self

    def detach(self, dispatcher: Dispatcher | None = None) -> None:
        """Remove this handler from ``dispatcher`` (default: the root one)."""
        d = dispatcher or get_dispatcher()
        d.event_handlers[:] = [h for h in d.event_handlers if h is not self]

    def record_feedback(
        self,
        query: str,
        nodes: NodeWithScore | BaseNode | str | Iterable[NodeWithScore | BaseNode | str],
        *,
        grade: float = 1.0,
        source: str = "click",
        vector: Sequence[float] | np.ndarray | None = None,
        timeout: float | None = None,
    ) -> int:
        """Record that ``nodes`` (nodes, or node / document ids) answer ``query``; the event id once durable.

        ``source``: ``"click"``, ``"thumbs_up"``, ``"cited"``, ...; ``grade`` 0 with ``"thumbs_down"`` records a
        judged-irrelevant one. Errors are raised (an acknowledged event must be durable).
        """
        items = [nodes] if isinstance(nodes, (NodeWithScore, BaseNode, str)) else list(nodes)
        ids = [self._id(n.node if isinstance(n, NodeWithScore) else n) if not isinstance(n, str) else n for n in items]
        return self.recorder.record_feedback(query, ids, grade=grade, source=source, vector=vector, timeout=timeout)

    def last(self, query: str) -> Retrieval | None:
        """The most recent remembered retrieval of ``query``."""
        return self.recorder.last(query)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every retrieval seen so far is written."""
        self.recorder.flush(timeout)

    def close(self) -> None:
        """Detach from the root dispatcher, write what is queued and stop (a shared recorder is left open)."""
        self.detach()
        if self.owns_recorder:
            self.recorder.close()
