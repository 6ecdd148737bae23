"""Re-tune a store from its users' feedback: :func:`retune_store` fits NUDGE on the feedback logged so far.

Each call reads only the events logged since the previous call and builds on the previous fit, whose state is
kept in a file beside the log (:func:`default_state_path`):

* **Insertion.** Per trained document the state keeps its *original* vector (what the store held before any
  nudge: the ledger's original when the row already holds a nudge-rag write) and the float64 sum of its training
  question vectors. New training events add their question vector to the sums of the documents they name (each
  (question, document) pair once), so only those documents get a new vector while gamma is unchanged, and only
  the new questions are embedded. Any NUDGE fit depends on the training questions only through these sums, so a
  fit on them (one pseudo-question per document, its vector the sum) equals the fit on every event at once.
* **Validation.** An event is held out when the SHA-1 of its question text falls in the first ``val_fraction``
  of the hash range: a question never switches sides. gamma is re-chosen on every held-out question so far (old
  and new); the previous gamma is kept unless the new one wins by more than ``min_win`` validation questions
  (then only the documents named by new events change), and gamma is 0 (every trained document back to its
  original) when no gamma beats no change.
* **Minimum evidence.** Nothing is fitted or written until ``min_new_events`` usable new events have arrived;
  the events wait in the log for the next call.
* **Safe writes.** Rows are written through :meth:`BaseStore.write <nudge_rag.stores.BaseStore.write>`
  (ledger, compare-and-set, ``kind="retune"``) under the store's writer lock, so ``store.revert()`` undoes
  every re-tune like any fit. A row whose vector changed since (re-ingested) is not written; its new vector
  becomes its original for the next call. A deleted row leaves the state.

Cost of a call: embedding the new questions, reading the vectors of the documents they newly name, one
competitor search per validation question (as any fit), and writing the rows whose vector changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import normalize_rows
from ..feedback import FeedbackEvent, FeedbackLog
from ..files import atomic_write
from ..finetune import DEFAULT_VAL_FRACTION, MIN_WIN_QUESTIONS, canonical_variant, make_model, validation_metric
from ..queries import QueryAnswers
from ._base import BaseStore, StoreError, VectorStore, same_vectors
from ._corpus import StoreCorpus
from ._finetune import StoreFinetuneReport, check_variant_fits_store

__all__ = ["RetuneReport", "retune_store", "default_state_path", "held_out", "DEFAULT_MIN_NEW_EVENTS"]

#: Usable new events needed before a re-tune fits and writes anything.
DEFAULT_MIN_NEW_EVENTS = 20
_STATE_VERSION = 1


def held_out(question: str, val_fraction: float = DEFAULT_VAL_FRACTION) -> bool:
    """Whether feedback on ``question`` is held out for validation: the first 8 hex digits of the SHA-1 of its
    text, as a fraction of 2**32, below ``val_fraction`` (stable across calls, processes and machines)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    return int(_key(question)[:8], 16) / 2**32 < val_fraction


def _key(question: str) -> str:
    return hashlib.sha1(question.encode("utf-8")).hexdigest()


def default_state_path(log: FeedbackLog, store: VectorStore) -> Path:
    """``<log file>.<12 hex digits naming the store>.retune.npz``: the re-tune state of this store, beside the log."""
    name = getattr(store, "_ledger_key", lambda: getattr(store, "label", type(store).__name__))()
    tag = hashlib.sha1(str(name).encode("utf-8")).hexdigest()[:12]
    return log.path.with_name(f"{log.path.name}.{tag}.retune.npz")


@dataclass
class RetuneReport(StoreFinetuneReport):
    """A :class:`~nudge_rag.stores.StoreFinetuneReport` of one re-tune, with what it did with the feedback.

    Attributes:
        applied: whether a fit ran (False: too little new evidence, nothing written).
        reason: why nothing was applied, or how gamma was decided.
        events_from, events_to: the log ids read (``events_from < id <= events_to``).
        events_new: events read; events_used: those that became training or validation pairs, of which
            events_held_out went to validation; events_skipped_unknown: events naming no document the store
            holds (unknown ids, deleted documents); events_skipped_not_relevant: grade 0 or no document named.
        unknown_ids_sample: up to 10 unknown document ids.
        docs_dropped: trained documents that left the state because their row was deleted.
        questions_embedded: new question texts embedded by ``embed`` (the others came with vectors in the log).
        docs_touched: trained documents whose question sums changed; rows_changed: rows whose target vector
            changed (what the write tried), written/skipped in :class:`StoreFinetuneReport`'s fields.
        gamma_previous, gamma_best: the gamma of the previous re-tune, and the best on validation now.
        totals: cumulative counts over every applied re-tune (train/val questions, trained documents, events).
        state_path: the state file.
    """

    applied: bool = False
    reason: str = ""
    events_from: int = 0
    events_to: int = 0
    events_new: int = 0
    events_used: int = 0
    events_held_out: int = 0
    events_skipped_unknown: int = 0
    events_skipped_not_relevant: int = 0
    unknown_ids_sample: list[str] = field(default_factory=list)
    docs_dropped: int = 0
    questions_embedded: int = 0
    docs_touched: int = 0
    rows_changed: int = 0
    gamma_previous: float | None = None
    gamma_best: float | None = None
    totals: dict[str, int] = field(default_factory=dict)
    state_path: str = ""


# ---------------------------------------------------------------------------------------------- state
@dataclass
class _State:
    """What a re-tune keeps between calls (see the module docstring)."""

    store: str
    dim: int
    variant: str
    doc_field: str | None
    val_fraction: float
    last_event: int = 0
    gamma: float | None = None
    totals: dict[str, int] = field(default_factory=dict)
    doc_ids: list[str] = field(default_factory=list)  # trained documents (store ids), one row each below
    sums: np.ndarray | None = None  # (M, d) float64 sums of their training question vectors
    original: np.ndarray | None = None  # (M, d) float32 their vectors before any nudge, as stored
    written: np.ndarray | None = None  # (M, d) float32 what the store should hold now (original or our write)
    pairs: set[str] = field(default_factory=set)  # "<question key> <doc id>" training pairs already summed
    train_vec: dict[str, np.ndarray] = field(default_factory=dict)  # question key -> (d,) float32
    val_vec: dict[str, np.ndarray] = field(default_factory=dict)  # question key -> (d,) float32, held out
    val_answers: dict[str, dict[str, float]] = field(default_factory=dict)  # question key -> doc id -> grade
    doc_of: dict[str, str] = field(default_factory=dict)  # with doc_field: trained chunk id -> its document id

    def drop(self, gone: set[str]) -> None:
        """Forget the trained rows ``gone`` (deleted from the store)."""
        if not gone:
            return
        sums, original, written = self.arrays()
        keep = np.array([c not in gone for c in self.doc_ids], dtype=bool)
        self.doc_ids = [c for c in self.doc_ids if c not in gone]
        self.sums, self.original, self.written = sums[keep], original[keep], written[keep]
        self.pairs = {p for p in self.pairs if p.split(" ", 1)[1] not in gone}
        self.doc_of = {c: d for c, d in self.doc_of.items() if c not in gone}

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.dim
        return (
            self.sums if self.sums is not None else np.zeros((0, d), np.float64),
            self.original if self.original is not None else np.zeros((0, d), np.float32),
            self.written if self.written is not None else np.zeros((0, d), np.float32),
        )

    def save(self, path: Path) -> None:
        sums, original, written = self.arrays()
        meta = {
            "version": _STATE_VERSION,
            "store": self.store,
            "dim": self.dim,
            "variant": self.variant,
            "doc_field": self.doc_field,
            "val_fraction": self.val_fraction,
            "last_event": self.last_event,
            "gamma": self.gamma,
            "totals": self.totals,
            "val_answers": self.val_answers,
            "doc_of": self.doc_of,
        }
        tk, vk = sorted(self.train_vec), sorted(self.val_vec)
        arrays = {
            "meta": np.array(json.dumps(meta)),
            "doc_ids": np.array(self.doc_ids, dtype=str),
            "sums": sums,
            "original": original,
            "written": written,
            "pairs": np.array(sorted(self.pairs), dtype=str),
            "train_keys": np.array(tk, dtype=str),
            "train_vecs": _stack([self.train_vec[k] for k in tk], self.dim),
            "val_keys": np.array(vk, dtype=str),
            "val_vecs": _stack([self.val_vec[k] for k in vk], self.dim),
        }
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        atomic_write(path, lambda fh: fh.write(buf.getvalue()))

    @classmethod
    def load(cls, path: Path) -> _State:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") != _STATE_VERSION:
                    raise ValueError(f"version {meta.get('version')!r}")
                st = cls(meta["store"], int(meta["dim"]), meta["variant"], meta["doc_field"], meta["val_fraction"])
                st.last_event, st.gamma, st.totals = int(meta["last_event"]), meta["gamma"], dict(meta["totals"])
                st.val_answers = {k: dict(v) for k, v in meta["val_answers"].items()}
                st.doc_of = dict(meta["doc_of"])
                st.doc_ids = [str(i) for i in z["doc_ids"]]
                st.sums, st.original, st.written = z["sums"], z["original"], z["written"]
                st.pairs = {str(p) for p in z["pairs"]}
                st.train_vec = dict(zip((str(k) for k in z["train_keys"]), z["train_vecs"]))
                st.val_vec = dict(zip((str(k) for k in z["val_keys"]), z["val_vecs"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a nudge-rag re-tune state file ({exc})") from None
        return st


def _stack(rows: list[np.ndarray], dim: int) -> np.ndarray:
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)


# ---------------------------------------------------------------------------------------------- corpus
class _OriginalCorpus(StoreCorpus):
    """A :class:`StoreCorpus` that reads the given documents' *original* vectors instead of what the store
    holds now (their nudged vectors): the base every re-tune nudges from."""

    def __init__(self, store: VectorStore, ids: Sequence[str], originals: dict[str, np.ndarray]) -> None:
        super().__init__(store, ids)
        self._orig = originals  # id -> (d,) float32 unit vector

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).ravel()
        ids = self.ids_of(rows)
        known = np.fromiter((i in self._orig for i in ids), dtype=bool, count=len(ids))
        out = np.empty((rows.size, self.dim), dtype=np.float32)
        if (~known).any():
            out[~known] = super().fetch(rows[~known])
        for j in np.flatnonzero(known):
            out[j] = self._orig[ids[j]]
        return out


# ---------------------------------------------------------------------------------------------- helpers
def _present(store: VectorStore, ids: list[str]) -> dict[str, np.ndarray]:
    """The current vectors of those of ``ids`` the store holds (absent ids left out)."""
    if not ids:
        return {}
    if isinstance(store, BaseStore):
        out: dict[str, np.ndarray] = {}
        with store._translate("fetch"):
            for b0 in range(0, len(ids), store.batch_size):
                out.update(store._get(ids[b0 : b0 + store.batch_size]))
        return {i: np.asarray(v, dtype=np.float32) for i, v in out.items()}
    got: dict[str, np.ndarray] = {}
    for i in ids:  # a bare VectorStore: fetch raises on an unknown id
        try:
            got[i] = store.fetch([i])[0]
        except StoreError:
            continue
    return got


def _originals(store: VectorStore, current: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The original (pre-nudge) vector of each row: the ledger's original where the row still holds what
    nudge-rag wrote last, else its current vector."""
    ledger = getattr(store, "ledger", None)
    records = ledger.records(list(current)) if ledger is not None and current else {}
    out = {}
    for i, v in current.items():
        r = records.get(i)
        ours = r is not None and bool(same_vectors(v[None], np.asarray(r.written, np.float32)[None])[0])
        out[i] = np.asarray(r.original if ours and r is not None else v, dtype=np.float32)
    return out


@dataclass
class _NewEvents:
    train: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (key, text, chunk ids), event order
    val: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # question key -> logged vector
    resolved: dict[str, list[str]] = field(default_factory=dict)  # document id named -> its current chunk ids
    named: list[str] = field(default_factory=list)  # every document id the relevant events name
    unknown: list[str] = field(default_factory=list)
    skipped_unknown: int = 0
    not_relevant: int = 0


def _read_events(
    events: list[FeedbackEvent], store: VectorStore, st: _State, doc_field: str | None, min_grade: float
) -> _NewEvents:
    """Sort new events into training / validation pairs naming store ids (documents resolved to their chunks)."""
    out = _NewEvents()
    relevant = [e for e in events if e.grade > min_grade and e.doc_ids]
    out.not_relevant = len(events) - len(relevant)
    named = list(dict.fromkeys(d for e in relevant for d in e.doc_ids))
    if doc_field is not None:
        chunks_of = getattr(store, "chunks_of", None)
        if chunks_of is None:
            raise NotImplementedError(f"{type(store).__name__} cannot map document ids to chunks (doc_field)")
        resolved: dict[str, list[str]] = chunks_of(doc_field, named)
    else:
        known = set(st.doc_ids)
        fresh = [d for d in named if d not in known]
        here = _present(store, fresh)
        resolved = {d: [d] for d in named if d in known or d in here}
    for e in relevant:
        chunks: dict[str, float] = {}
        for d in e.doc_ids:
            if d not in resolved:
                out.unknown.append(d)
            for c in resolved.get(d, ()):
                chunks[c] = max(e.grade, chunks.get(c, 0.0))
        if not chunks:
            out.skipped_unknown += 1
            continue
        k = _key(e.question)
        if e.vector is not None:
            out.vectors[k] = e.vector
        if held_out(e.question, st.val_fraction):
            out.val.append((k, e.question, chunks))
        else:
            out.train.append((k, e.question, list(chunks)))
    out.unknown = list(dict.fromkeys(out.unknown))
    out.resolved, out.named = resolved, named
    return out


# ---------------------------------------------------------------------------------------------- retune
def retune_store(
    store: VectorStore,
    log: FeedbackLog | str | Path,
    *,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    state: str | Path | None = None,
    variant: str = "nudge-n",
    metric: str | None = None,
    min_new_events: int = DEFAULT_MIN_NEW_EVENTS,
    min_win: int = MIN_WIN_QUESTIONS,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    doc_field: str | None = None,
    min_grade: float = 0.0,
    write: bool = True,
    store_name: str | None = None,
) -> RetuneReport:
    """Fit NUDGE on the feedback in ``log`` accumulated so far, building on the previous re-tune of ``store``.

    Args:
        store: a :class:`~nudge_rag.stores.VectorStore` whose ids (or, with ``doc_field``, whose chunks'
            document ids) the feedback names.
        log: a :class:`~nudge_rag.feedback.FeedbackLog` or its path.
        embed: question texts -> (n, d) float32 base-model query vectors, for events logged without a vector.
        state: the state file (default :func:`default_state_path`); created on the first call.
        variant: ``"nudge-n"`` or ``"nudge-m"`` (inner-product stores); fixed by the first call.
        metric: NUDGE-N's validation metric (default recall@1).
        min_new_events: usable new events needed before anything is fitted or written.
        min_win: the previous gamma is kept unless the best one wins by more than this many validation questions.
        val_fraction: share of question texts held out for validation (by hash; fixed by the first call).
        doc_field: the chunks' metadata field naming their document: feedback then names documents
            (:meth:`BaseStore.chunks_of <nudge_rag.stores.BaseStore.chunks_of>`, resolved at each call).
        min_grade: events with grade <= this are not relevance (default 0: thumbs-down and query-only logs).
        write: False for a dry run (fit and report; neither the store nor the state changes).

    Returns:
        a :class:`RetuneReport`; ``store.revert()`` undoes every re-tune written.
    """
    if not isinstance(min_new_events, int) or min_new_events < 1:
        raise ValueError(f"min_new_events must be a positive integer, got {min_new_events!r}")
    variant = canonical_variant(variant)
    check_variant_fits_store(variant, store)
    held_out("", val_fraction)  # validates val_fraction
    own = not isinstance(log, FeedbackLog)
    flog = FeedbackLog(log) if not isinstance(log, FeedbackLog) else log
    try:
        path = Path(state) if state is not None else default_state_path(flog, store)
        lock = getattr(store, "locked", None)
        if write and lock is not None:
            with lock():
                return _retune(store, flog, path, embed, variant, metric, min_new_events, min_win, val_fraction,
                               doc_field, min_grade, write, store_name)  # fmt: skip
        return _retune(store, flog, path, embed, variant, metric, min_new_events, min_win, val_fraction,
                       doc_field, min_grade, write, store_name)  # fmt: skip
    finally:
        if own:
            flog.close()


def _retune(
    store: VectorStore,
    log: FeedbackLog,
    path: Path,
    embed: Callable[[list[str]], np.ndarray] | None,
    variant: str,
    metric: str | None,
    min_new_events: int,
    min_win: int,
    val_fraction: float,
    doc_field: str | None,
    min_grade: float,
    write: bool,
    store_name: str | None,
) -> RetuneReport:
    t0 = time.perf_counter()
    label = str(getattr(store, "label", type(store).__name__))
    if path.exists():
        st = _State.load(path)
        if st.store != label or st.dim != store.dim:
            raise ValueError(f"{path} is the re-tune state of {st.store!r} ({st.dim}-d), not of {label!r}")
        if st.variant != variant or st.doc_field != doc_field or st.val_fraction != val_fraction:
            raise ValueError(
                f"{path} was built with variant={st.variant!r}, doc_field={st.doc_field!r}, "
                f"val_fraction={st.val_fraction}: re-tune with the same settings, or start a new state file"
            )
    else:
        st = _State(label, int(store.dim), variant, doc_field, float(val_fraction))
    _reconcile(store, st)
    report = RetuneReport(
        variant=variant,
        similarity=store.similarity,
        store=store_name or getattr(store, "describe", lambda: label)(),
        store_similarity=store.similarity,
        state_path=str(path),
        gamma_previous=st.gamma,
        gamma=st.gamma,
        totals=dict(st.totals),
    )
    last = log.last_id()
    events = log.events(after=st.last_event, until=last)
    report.events_from, report.events_to, report.events_new = st.last_event, last, len(events)
    new = _read_events(events, store, st, doc_field, min_grade)
    report.events_used = len(new.train) + len(new.val)
    report.events_held_out = len(new.val)
    report.events_skipped_unknown = new.skipped_unknown
    report.events_skipped_not_relevant = new.not_relevant
    report.unknown_ids_sample = new.unknown[:10]
    report.seconds["read_log"] = time.perf_counter() - t0
    if report.events_used < min_new_events:
        report.reason = (
            f"minimum evidence: {report.events_used} usable new event(s) since event {st.last_event}, fewer than "
            f"min_new_events={min_new_events}; nothing written (they count towards the next re-tune)"
        )
        report.revert = "nothing written"
        return report

    # question vectors: the log's, else the state's (a known question), else embedded
    t1 = time.perf_counter()
    texts = {k: q for k, q, _ in new.train} | {k: q for k, q, _ in new.val}
    have = st.train_vec.keys() | st.val_vec.keys()
    need = [k for k in texts if k not in have and k not in new.vectors]
    if need and embed is None:
        raise ValueError(
            f"{len(need)} new question(s) were logged without a vector (first: {texts[need[0]]!r}); pass embed="
        )
    vec: dict[str, np.ndarray] = {
        k: st.train_vec[k] if k in st.train_vec else st.val_vec[k] for k in texts if k in have
    }
    vec.update({k: v for k, v in new.vectors.items() if k not in vec})
    if need:
        assert embed is not None
        got = np.asarray(embed([texts[k] for k in need]), dtype=np.float32)
        if got.shape != (len(need), store.dim):
            raise ValueError(f"embed returned shape {got.shape}, expected ({len(need)}, {store.dim})")
        vec.update(zip(need, got))
    report.questions_embedded = len(need)
    report.seconds["embed_questions"] = time.perf_counter() - t1

    # pairs by document: trained chunks that a named document no longer has, and that are gone, leave the state
    t2 = time.perf_counter()
    dropped_before = 0
    if doc_field is not None:
        named = set(new.named)
        stale = [c for c, doc in st.doc_of.items() if doc in named and c not in new.resolved.get(doc, ())]
        gone_chunks = set(stale) - set(_present(store, stale))
        dropped_before = len(gone_chunks)
        st.drop(gone_chunks)
        st.doc_of.update({c: doc for doc, cs in new.resolved.items() for c in cs})

    # insertion: new training pairs add their question vector to their documents' sums (each pair once)
    sums, original, written = st.arrays()
    row = {d: j for j, d in enumerate(st.doc_ids)}
    fresh = list(dict.fromkeys(c for _, _, cs in new.train for c in cs if c not in row))
    current = _present(store, fresh)
    gone = [c for c in fresh if c not in current]  # deleted between resolving and now
    base_new = _originals(store, {c: current[c] for c in fresh if c in current})
    ids = st.doc_ids + [c for c in fresh if c in current]
    row = {d: j for j, d in enumerate(ids)}
    d = int(store.dim)
    sums = np.concatenate([sums, np.zeros((len(ids) - len(st.doc_ids), d), np.float64)])
    original = np.concatenate([original, _stack([base_new[c] for c in ids[len(st.doc_ids) :]], d)])
    written = np.concatenate([written, _stack([current[c] for c in ids[len(st.doc_ids) :]], d)])
    pairs = set(st.pairs)
    touched: set[str] = set()
    for k, _, cs in new.train:
        for c in cs:
            p = f"{k} {c}"
            if c in row and p not in pairs:
                pairs.add(p)
                sums[row[c]] += vec[k]
                touched.add(c)
    val_vec = dict(st.val_vec)
    val_answers = {k: dict(v) for k, v in st.val_answers.items()}
    for k, _, answers in new.val:
        val_vec.setdefault(k, vec[k])
        merged = val_answers.setdefault(k, {})
        for c, g in answers.items():
            merged[c] = max(g, merged.get(c, 0.0))
    train_vec = dict(st.train_vec)
    train_vec.update({k: vec[k] for k, _, _ in new.train if k not in train_vec})
    report.docs_touched = len(touched)
    trained = np.flatnonzero(np.linalg.norm(sums, axis=1) > 0)

    # validation questions whose answers still exist
    val_ids = sorted({c for a in val_answers.values() for c in a} - set(ids))
    val_here = set(_present(store, val_ids)) | set(ids)
    vkeys = [k for k in sorted(val_answers) if any(c in val_here for c in val_answers[k])]
    report.seconds["prepare"] = time.perf_counter() - t2
    if trained.size == 0 or not vkeys:
        report.reason = "no training pairs yet" if trained.size == 0 else "no held-out feedback yet to choose gamma"
        report.revert = "nothing written"
        return report

    # fit: one pseudo-question per trained document (its vector the sum), on the original vectors
    t3 = time.perf_counter()
    unit = normalize_rows(original, "original vectors", np.float32) if len(ids) else original
    corpus = _OriginalCorpus(store, ids, dict(zip(ids, unit)))
    pseudo = QueryAnswers.from_lists(sums[trained], [[int(r)] for r in trained])
    vrows = [[c for c in val_answers[k] if c in val_here] for k in vkeys]
    val_qa = QueryAnswers.from_lists(
        np.stack([val_vec[k] for k in vkeys]).astype(np.float32),
        [corpus.rows_of(a).tolist() for a in vrows],
        [[val_answers[k][c] for c in a] for k, a in zip(vkeys, vrows)],
    )
    model = best_model = make_model(variant, metric=metric).fit(corpus, pseudo, val_qa)
    n_val = len(val_qa)
    best, base_score = float(model.gamma_), float(model.val_base_score_ or 0.0)
    best_score = float(model.val_score_ or 0.0)
    report.gamma_best = best
    gamma, how = best, f"gamma {best:.4g} is the best on {n_val} validation question(s)"
    score = best_score
    if st.gamma is not None and st.gamma != best and st.gamma > 0:
        kept_score = _score_at(model, float(st.gamma))
        if kept_score is None:  # not on the curve measured (NUDGE-M's breakpoints): measure it
            kept_score = float(make_model(variant, gamma=st.gamma).fit(corpus, pseudo, val_qa).val_score_ or 0.0)
        if kept_score > base_score and (best_score - kept_score) * n_val <= min_win:
            model = make_model(variant, gamma=st.gamma, metric=metric).fit(corpus, pseudo, None)  # no search
            gamma, score = float(st.gamma), kept_score
            how = (
                f"kept gamma {gamma:.4g}: the best on validation, {best:.4g}, wins by "
                f"{round((best_score - kept_score) * n_val)} of {n_val} question(s), not more than min_win={min_win}"
            )
    if gamma > 0 and score <= base_score:
        model, gamma = make_model(variant, gamma=0.0, metric=metric).fit(corpus, pseudo, None), 0.0
        how = f"gamma = 0: no gamma beats no change on {n_val} validation question(s)"
    report.reason = how
    report.seconds["fit"] = time.perf_counter() - t3

    # targets: nudged rows, every other trained row back to its original
    target = original.copy()
    patch = model.patch_
    target[patch.rows] = patch.new
    diff = np.flatnonzero(~same_vectors(target, written))
    report.rows_changed = int(diff.size)
    _fill(report, best_model, corpus, len(train_vec), len(pairs), len(vkeys))
    report.gamma, report.n_moved, report.val_score = gamma, int(model.n_moved_), score if gamma > 0 else base_score
    report.applied = True
    if not write:
        report.revert = "dry run: nothing written"
        return report

    # compare-and-set write of the changed rows (the row must hold what we wrote last, or its original)
    t4 = time.perf_counter()
    change = [ids[j] for j in diff]
    now = _present(store, change)
    keep_rows, expected = [], []
    dropped = set(gone)
    for j, c in zip(diff, change):
        v = now.get(c)
        if v is None:
            dropped.add(c)
        elif same_vectors(v[None], target[j][None])[0]:
            written[j] = target[j]  # already there (an earlier call was interrupted after its write)
        elif same_vectors(v[None], written[j][None])[0] or same_vectors(v[None], original[j][None])[0]:
            keep_rows.append(int(j))
            expected.append(v)
        else:  # re-ingested (or written by another fit) since: its original from now on is what the ledger says
            original[j], written[j] = _originals(store, {c: v})[c], v
            report.skipped_changed += 1
            report.skipped_ids_sample.append(c)
    if keep_rows:
        kw: dict[str, Any] = {"kind": "retune", "note": f"feedback events {st.last_event + 1}..{last}"}
        kw = kw if isinstance(store, BaseStore) else {}
        res = store.write([ids[j] for j in keep_rows], target[keep_rows], expected=np.stack(expected), **kw)
        done = set(res.written)
        for r in keep_rows:
            if ids[r] in done:
                written[r] = target[r]
        dropped.update(res.missing)
        report.skipped_changed += len(res.changed)
        report.skipped_missing = len(res.missing)
        report.written, report.generation = len(res.written), int(res.generation)
        report.written_ids_sample = list(res.written[:10])
        report.skipped_ids_sample += list(res.changed[:10])
    report.skipped_ids_sample = report.skipped_ids_sample[:10]
    report.seconds["write"] = time.perf_counter() - t4

    # the new state: dropped (deleted) rows leave it
    keep = np.array([c not in dropped for c in ids], dtype=bool)
    report.docs_dropped = dropped_before + int((~keep).sum())
    st.doc_ids = [c for c, k in zip(ids, keep) if k]
    st.sums, st.original, st.written = sums[keep], original[keep], written[keep]
    st.pairs = {p for p in pairs if p.split(" ", 1)[1] not in dropped}
    trained_ids = set(st.doc_ids)
    st.doc_of = {c: doc for c, doc in st.doc_of.items() if c in trained_ids}
    st.train_vec, st.val_vec, st.val_answers = train_vec, val_vec, val_answers
    st.gamma, st.last_event = gamma, last
    tot = st.totals
    for name, n in (
        ("events_used", report.events_used),
        ("events_held_out", report.events_held_out),
        ("events_skipped_unknown", report.events_skipped_unknown),
        ("events_skipped_not_relevant", report.events_skipped_not_relevant),
        ("retunes", 1),
    ):
        tot[name] = int(tot.get(name, 0)) + int(n)
    tot.update(train_questions=len(train_vec), val_questions=len(vkeys), trained_docs=len(st.doc_ids))
    report.totals = dict(tot)
    st.save(path)
    report.revert = "store.revert()" if report.written else "nothing written"
    report.seconds["total"] = time.perf_counter() - t0
    return report


def _reconcile(store: VectorStore, st: _State) -> None:
    """Rows the state believes hold our write but whose ledger record is gone or holds another vector (the store
    was reverted, or another fit wrote them): believed to hold their original again. The compare-and-set write
    checks that belief before anything is written."""
    ledger = getattr(store, "ledger", None)
    if ledger is None or not st.doc_ids:
        return
    sums, original, written = st.arrays()
    moved = np.flatnonzero(~same_vectors(written, original))
    if moved.size == 0:
        return
    records = ledger.records([st.doc_ids[j] for j in moved])
    for j in moved:
        r = records.get(st.doc_ids[j])
        if r is None or not same_vectors(np.asarray(r.written, np.float32)[None], written[j][None])[0]:
            written[j] = original[j]
    st.written = written


def _score_at(model: Any, gamma: float) -> float | None:
    """The validation score of a fitted NUDGE-N ``model`` at ``gamma`` read off its measured curve (None when
    ``gamma`` is not one of the candidates measured, or for NUDGE-M, whose curve holds only its breakpoints)."""
    if model.variant != "nudge-n" or model.val_scores_ is None:
        return None
    j = int(np.searchsorted(model.gammas_, gamma))
    if j < len(model.gammas_) and np.isclose(model.gammas_[j], gamma, rtol=0, atol=1e-12):
        return float(model.val_scores_[j])
    return None


def _fill(report: RetuneReport, model: Any, corpus: StoreCorpus, n_train_q: int, n_pairs: int, n_val_q: int) -> None:
    """The fitted-model fields of the report (the validation curve of ``model``, the best fit)."""
    report.refresh(model)
    report.similarity = model.similarity_
    report.val_metric = validation_metric(model)
    report.dimension = int(model.n_features_in_)
    report.n_train_questions, report.n_train_pairs = n_train_q, n_pairs
    report.n_val_questions, report.val_source = n_val_q, "given"
    report.vectors_read = int(corpus.stats["fetched"])
    report.search = {
        k: int(v) for k, v in corpus.stats.items() if k not in ("fetched", "fetch_seconds", "search_seconds")
    }
    report.search_strategy = "one streamed scan" if corpus.scan else "per query"
