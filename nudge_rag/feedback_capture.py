"""Capture for a :class:`~nudge_rag.feedback.FeedbackLog` from a running app, shared by the framework hooks.

Two kinds of write, with different contracts:

* :meth:`FeedbackRecorder.retrieved` (called by a retrieval hook) logs an *impression*: the query and the ids the
  retriever returned, as a ``source="retrieved"`` event with no relevant document and grade 0. An impression is
  not relevance: :meth:`FeedbackLog.questions <nudge_rag.feedback.FeedbackLog.questions>` never turns it into a
  pair. It is handed to a background writer thread (batched appends, one commit per batch) and returns at once, so
  no fsync sits on the retrieval path; it never raises (a log error is a warning), and the last batch before a crash
  may be lost (flushed on :meth:`~FeedbackRecorder.close` and at exit). The recorder also keeps the most recent
  retrievals in memory so that a later judgement links to its query.
* :meth:`FeedbackRecorder.record_feedback` (the app's thumbs-up, click, citation) goes through the same writer,
  after every impression queued before it, and returns the event id only once the event is committed (durable, the
  log's contract); a log error is raised, since the app asked for an acknowledgement.
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .feedback import FeedbackLog

__all__ = ["FeedbackRecorder", "Retrieval", "FeedbackCaptureWarning"]


class FeedbackCaptureWarning(UserWarning):
    """A retrieval could not be logged (the app's retrieval itself is unaffected)."""


@dataclass(frozen=True)
class Retrieval:
    """One remembered retrieval: the query, the ids logged for it in rank order, the (d,) float32 query vector
    when the hook saw one, and ``aliases`` (other ids an app may name for a result, e.g. a chunk id -> its
    document id)."""

    query: str
    ids: tuple[str, ...]
    vector: np.ndarray | None = field(default=None, compare=False)
    aliases: Mapping[str, str] = field(default_factory=dict, compare=False)


_STOP = object()


class _Writer:
    """The one thread that appends to the log: drains the queue in batches of up to ``max_batch`` events."""

    def __init__(self, path: str | os.PathLike[str], max_batch: int, max_pending: int, linger: float) -> None:
        self.log = FeedbackLog(path)  # its own connection: the writes of this recorder all come from one thread
        self.queue: queue.Queue[Any] = queue.Queue(max_pending)
        self.max_batch = max_batch
        self.linger = linger
        self.errors = 0
        self.written = 0
        self.closed = False
        self.lock = threading.Lock()  # orders every put before the stop marker
        self.urgent = threading.Event()  # set by a put that must not wait for the linger
        self.thread = threading.Thread(target=self._run, name="nudge-rag-feedback-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self.queue.get()]
            # impressions only: sleep up to `linger` s (no wake-up per retrieval) and take what came meanwhile, so a
            # busy app costs one commit per batch; feedback, flush and close cut the sleep short (`urgent`)
            if batch[0] is not _STOP and batch[0][1] is None:
                self.urgent.wait(self.linger)
            self.urgent.clear()
            while len(batch) < self.max_batch and batch[-1] is not _STOP:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if any(item is _STOP for item in batch):
                stop = True
            self._write([item for item in batch if item is not _STOP and item[0] is not None])
            for item in batch:  # flush markers (event None) are answered after everything queued before them
                if item is not _STOP and item[0] is None:
                    item[1].set_result(0)
                self.queue.task_done()
        self.log.close()

    def _write(self, items: list[tuple[dict[str, Any], Future[int] | None]]) -> None:
        if not items:
            return
        try:
            ids = self.log.record_many([event for event, _ in items])
            results: list[int | BaseException] = list(ids)
        except Exception:  # find the bad event(s): the others still go in
            results = []
            for event, _ in items:
                try:
                    results.append(self.log.record_many([event])[0])
                except Exception as exc:
                    results.append(exc)
        for (event, future), result in zip(items, results):
            if isinstance(result, BaseException):
                self.errors += 1
                if future is None:
                    warnings.warn(
                        f"feedback log {self.log.path}: retrieval of {event['question']!r} not logged: {result!r}",
                        FeedbackCaptureWarning,
                        stacklevel=1,
                    )
                else:
                    future.set_exception(result)
            else:
                self.written += 1
                if future is not None:
                    future.set_result(result)

    def put(self, item: tuple[dict[str, Any] | None, Future[int] | None], *, block: bool = True) -> None:
        with self.lock:
            if self.closed:
                raise RuntimeError(f"the feedback recorder for {self.log.path} is closed")
            if item[1] is not None:  # before a put that may wait for room (the writer may be lingering), and after
                self.urgent.set()
            self.queue.put(item, block=block)
            if item[1] is not None:
                self.urgent.set()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.urgent.set()
            self.queue.put(_STOP)
            self.urgent.set()
        if threading.current_thread() is not self.thread:
            self.thread.join()


class FeedbackRecorder:
    """Logs an app's retrievals (impressions, in the background) and its users' judgements (durably) to a feedback
    log.

    Args:
        log: a :class:`~nudge_rag.feedback.FeedbackLog` or its path; the recorder appends through its own
            connection (the file may be shared with other recorders and processes).
        impressions: write each retrieval to the log (``source="retrieved"``, grade 0); ``False`` keeps retrievals
            in memory only, to link later feedback to its query.
        remember: how many recent retrievals are kept in memory (oldest forgotten first).
        max_batch: the most events one commit appends.
        linger: seconds the writer waits for more impressions before committing a batch of them (feedback is
            committed at once): the most a crash can lose of the impressions, plus one commit.
        max_pending: impressions waiting to be written beyond this are dropped (counted in ``dropped``, a warning)
            rather than let a stalled disk grow memory or block retrieval.
    """

    def __init__(
        self,
        log: FeedbackLog | str | os.PathLike[str],
        *,
        impressions: bool = True,
        remember: int = 4096,
        max_batch: int = 256,
        max_pending: int = 10_000,
        linger: float = 0.05,
    ) -> None:
        if remember < 1 or max_batch < 1 or max_pending < 1 or not 0 <= linger < 60:
            raise ValueError(
                "need remember, max_batch, max_pending >= 1 and 0 <= linger < 60 (seconds), got "
                f"remember={remember}, max_batch={max_batch}, max_pending={max_pending}, linger={linger}"
            )
        self.path = log.path if isinstance(log, FeedbackLog) else os.fspath(log)
        self.impressions = bool(impressions)
        self.remember = int(remember)
        self.dropped = 0
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, Retrieval] = OrderedDict()
        self._keys: OrderedDict[Hashable, str] = OrderedDict()
        self._writer = _Writer(self.path, int(max_batch), int(max_pending), float(linger))
        self._finalizer = weakref.finalize(self, self._writer.close)  # also runs at interpreter exit

    @property
    def errors(self) -> int:
        """Events the writer failed to append so far."""
        return self._writer.errors

    # ------------------------------------------------------------------ from the hooks
    def retrieved(
        self,
        query: str,
        ids: Iterable[object],
        *,
        vector: Sequence[float] | np.ndarray | None = None,
        key: Hashable | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        """Note that ``query`` returned ``ids`` (rank order; an id named twice is kept once); ``key`` (e.g. a run
        id) may later stand for the query in :meth:`record_feedback`. Never blocks on the disk and never raises:
        problems are warnings."""
        try:
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"the query must be a non-empty string, got {query!r}")
            vec = None if vector is None else np.array(vector, dtype=np.float32).ravel()
            got = Retrieval(query, tuple(dict.fromkeys(str(i) for i in ids)), vec, dict(aliases or {}))
            with self._lock:
                self._recent[query] = got
                self._recent.move_to_end(query)
                if key is not None:
                    self._keys[key] = query
                while len(self._recent) > self.remember:
                    self._recent.popitem(last=False)
                while len(self._keys) > self.remember:
                    self._keys.popitem(last=False)
            if self.impressions:
                event = dict(question=query, doc_ids=(), grade=0.0, source="retrieved", retrieved=got.ids, vector=vec)
                self._writer.put((event, None), block=False)
        except queue.Full:
            self.dropped += 1
            warnings.warn(f"feedback log {self.path}: writer behind, impression dropped", FeedbackCaptureWarning, 2)
        except Exception as exc:
            warnings.warn(f"feedback log {self.path}: retrieval not logged: {exc!r}", FeedbackCaptureWarning, 2)

    def last(self, query: str | Hashable) -> Retrieval | None:
        """The most recent remembered retrieval of a query text, or of a retrieval key (None when forgotten)."""
        with self._lock:
            text = query if isinstance(query, str) else self._keys.get(query)
            return None if text is None else self._recent.get(text)

    # ------------------------------------------------------------------ from the app
    def record_feedback(
        self,
        query: str | Hashable,
        doc_ids: Iterable[object] | str,
        *,
        grade: float = 1.0,
        source: str = "click",
        vector: Sequence[float] | np.ndarray | None = None,
        timeout: float | None = None,
    ) -> int:
        """Record that the documents ``doc_ids`` answer ``query`` (its text, or the key of a remembered retrieval);
        returns the event id once it is durable.

        The event carries the ids the query's last remembered retrieval returned and its query vector when
        ``vector`` is not given; an id that retrieval knows under an alias is logged as the id it stands for.
        ``grade``: > 0 relevant, 0 judged not relevant (``source="thumbs_down"``). Raises what the log raises
        (``ValueError`` for a bad event, ``sqlite3`` errors), ``TimeoutError`` past ``timeout`` seconds.
        """
        if not isinstance(query, str):
            seen = self.last(query)
            if seen is None:
                raise KeyError(f"no remembered retrieval has the key {query!r} (forgotten, or never retrieved)")
            query = seen.query
        seen = self.last(query)
        ids = [doc_ids] if isinstance(doc_ids, (str, int)) else list(doc_ids)
        names = [str(d) for d in ids]
        if seen is not None:
            names = list(dict.fromkeys(seen.aliases.get(d, d) for d in names))
            vector = seen.vector if vector is None else vector
        event = dict(question=query, doc_ids=names, grade=grade, source=source, vector=vector,
                     retrieved=seen.ids if seen is not None else ())  # fmt: skip
        future: Future[int] = Future()
        self._put(event, future)
        return future.result(timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued so far is written (or failed)."""
        future: Future[int] = Future()
        self._put(None, future)
        future.result(timeout)

    def _put(self, event: dict[str, Any] | None, future: Future[int]) -> None:
        self._writer.put((event, future))

    def close(self) -> None:
        """Write what is queued and stop the writer (also done at interpreter exit)."""
        self._finalizer()

    def __enter__(self) -> FeedbackRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
