"""A feedback log: what an app's users said about the documents retrieved for their questions, kept for re-tuning.

Each event holds the question text, optionally its query vector (so a re-tune need not re-embed), the document
id(s) judged relevant, a grade (> 0 relevant, 0 judged not relevant), a source (``"click"``, ``"thumbs_up"``,
``"cited"``, ``"thumbs_down"``, ...), the ids the retriever returned, and the time. The log is append-only and
lives in a SQLite file (the standard library): every :meth:`FeedbackLog.record` is one committed transaction in
WAL mode with ``synchronous=FULL``, so an event is durable once ``record`` returns (a ``kill -9`` right after loses
nothing acknowledged), and several app processes may append to one file at once.

:meth:`FeedbackLog.questions` groups the relevant events into :class:`~nudge_rag.finetune.Questions` (one question
per distinct text, its answers the union of the documents judged relevant, the highest grade kept), the form every
fit of the library takes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .finetune import Questions

__all__ = ["FeedbackEvent", "FeedbackLog", "FEEDBACK_SOURCES", "MARKER"]

#: Sources with a conventional meaning; any other non-empty string is accepted too.
FEEDBACK_SOURCES = ("click", "thumbs_up", "thumbs_down", "cited", "label", "retrieved")
MARKER = "nudge-rag feedback log v1"


@dataclass(frozen=True)
class FeedbackEvent:
    """One recorded event. ``vector``: the question's (d,) float32 query vector, or None."""

    id: int
    at: float
    question: str
    doc_ids: tuple[str, ...]
    grade: float
    source: str
    retrieved: tuple[str, ...] = ()
    vector: np.ndarray | None = field(default=None, compare=False)


def _check(question: object, doc_ids: object, grade: object, source: object) -> tuple[str, tuple[str, ...], float]:
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"a feedback event needs a non-empty question text, got {question!r}")
    if isinstance(doc_ids, (str, int)):
        doc_ids = (doc_ids,)
    if not isinstance(doc_ids, Iterable):
        raise TypeError(f"doc_ids must be a document id or a list of them, got {type(doc_ids).__name__}")
    ids = tuple(str(d) for d in doc_ids)
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a non-empty string such as {FEEDBACK_SOURCES[:4]}, got {source!r}")
    if source != "retrieved" and not ids:
        raise ValueError("a feedback event must name at least one document id (source='retrieved' logs a query only)")
    g = float(grade)  # type: ignore[arg-type]
    if not np.isfinite(g) or g < 0:
        raise ValueError(f"grade must be a finite number >= 0 (0: judged not relevant), got {grade!r}")
    return question, ids, g


class FeedbackLog:
    """An append-only, crash-safe log of feedback events in the SQLite file ``path`` (created if missing, 0600).

    Args:
        path: the log file; several processes may append to it at once.
        timeout: seconds an append waits for another process's append to commit.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:  # another process created it first
                pass
        self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._init()

    def _init(self) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute(
                "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "
                "question TEXT NOT NULL, doc_ids TEXT NOT NULL, grade REAL NOT NULL, source TEXT NOT NULL, "
                "retrieved TEXT NOT NULL, vector BLOB)"
            )
            c.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = c.execute("SELECT value FROM meta WHERE name = 'marker'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('marker', ?)", [MARKER])
            elif row[0] != MARKER:
                raise ValueError(f"{self.path} is not a nudge-rag feedback log (marker {row[0]!r})")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    # ------------------------------------------------------------------ appending
    def record(
        self,
        question: str,
        doc_ids: Sequence[object] | str,
        *,
        grade: float = 1.0,
        source: str = "thumbs_up",
        vector: Sequence[float] | np.ndarray | None = None,
        retrieved: Iterable[object] = (),
        at: float | None = None,
    ) -> int:
        """Append one event and return its id once it is durable (committed)."""
        return self.record_many([dict(question=question, doc_ids=doc_ids, grade=grade, source=source,
                                      vector=vector, retrieved=retrieved, at=at)])[0]  # fmt: skip

    def record_many(self, events: Iterable[dict[str, Any]]) -> list[int]:
        """Append several events (dicts with :meth:`record`'s arguments) in one transaction; their ids."""
        rows = []
        for e in events:
            source = e.get("source", "thumbs_up")
            q, ids, g = _check(e.get("question"), e.get("doc_ids", ()), e.get("grade", 1.0), source)
            vec = e.get("vector")
            blob = None
            if vec is not None:
                arr = np.asarray(vec, dtype=np.float32).ravel()
                if arr.size == 0 or not np.isfinite(arr).all():
                    raise ValueError("a feedback vector must be non-empty and finite")
                blob = arr.astype("<f4").tobytes()
            retrieved = json.dumps([str(r) for r in e.get("retrieved", ())])
            at = float(e["at"]) if e.get("at") is not None else time.time()
            rows.append((at, q, json.dumps(list(ids)), g, source, retrieved, blob))
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            out = []
            for r in rows:
                cur = c.execute(
                    "INSERT INTO events (at, question, doc_ids, grade, source, retrieved, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    r,
                )
                out.append(int(cur.lastrowid or 0))
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return out

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def last_id(self) -> int:
        """The id of the newest event (0 when empty)."""
        return int(self._conn.execute("SELECT COALESCE(max(id), 0) FROM events").fetchone()[0])

    def iter_events(self, *, after: int = 0, until: int | None = None, batch: int = 4096) -> Iterator[FeedbackEvent]:
        """Events with ``after < id <= until``, oldest first."""
        last = int(after)
        stop = self.last_id() if until is None else int(until)
        while last < stop:
            rows = self._conn.execute(
                "SELECT id, at, question, doc_ids, grade, source, retrieved, vector FROM events "
                "WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (last, stop, int(batch)),
            ).fetchall()
            if not rows:
                return
            for r in rows:
                vec = None if r[7] is None else np.frombuffer(r[7], dtype="<f4").astype(np.float32)
                yield FeedbackEvent(
                    int(r[0]), float(r[1]), r[2], tuple(json.loads(r[3])), float(r[4]), r[5],
                    tuple(json.loads(r[6])), vec,
                )  # fmt: skip
            last = int(rows[-1][0])

    def events(self, *, after: int = 0, until: int | None = None) -> list[FeedbackEvent]:
        """:meth:`iter_events` as a list."""
        return list(self.iter_events(after=after, until=until))

    def questions(self, *, after: int = 0, until: int | None = None, min_grade: float = 0.0) -> Questions:
        """Relevant events (grade > ``min_grade``, naming documents) grouped by question text: one question per
        distinct text, its answers the union of the documents judged relevant, each with its highest grade."""
        per: dict[str, dict[str, float]] = {}
        for e in self.iter_events(after=after, until=until):
            if e.grade <= min_grade or not e.doc_ids:
                continue
            answers = per.setdefault(e.question, {})
            for d in e.doc_ids:
                answers[d] = max(e.grade, answers.get(d, 0.0))
        texts = tuple(per)
        return Questions(
            texts,
            tuple(tuple(per[t]) for t in texts),
            tuple(tuple(per[t].values()) for t in texts),
            tuple(f"f{j}" for j in range(len(texts))),
        )

    def vectors(self, *, after: int = 0, until: int | None = None) -> dict[str, np.ndarray]:
        """question text -> the latest query vector recorded with it (texts recorded without one are left out)."""
        out: dict[str, np.ndarray] = {}
        for e in self.iter_events(after=after, until=until):
            if e.vector is not None:
                out[e.question] = e.vector
        return out

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> FeedbackLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
