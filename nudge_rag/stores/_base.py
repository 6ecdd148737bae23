"""The :class:`VectorStore` protocol and :class:`BaseStore`, the safe-write machinery every backend shares.

A backend speaks its database's native ids and batch calls through a few small hooks (``count``, ``_get``,
``_put``, ``_scan``, ``_search`` and where its ledger lives); :class:`BaseStore` turns them into validated,
batched, compare-and-set writes recorded in a :mod:`ledger <nudge_rag.stores._ledger>`, a revert that undoes only
what nudge-rag wrote, :meth:`~BaseStore.status`, :meth:`~BaseStore.reapply` and one writer at a time.

The guarantees (every backend):

* a row is overwritten only while it still holds the vector the fit read (rows changed or deleted since are
  skipped, counted and named in the :class:`WriteResult`); a write that fails half-way puts back what it wrote;
* revert restores a row only while it still holds the vector nudge-rag wrote, never re-inserts a deleted row and
  never blocks on one; the ledger keeps lineage across fits (a row changed between two fits gets the newer
  vector as its original);
* a second writer on the same store gets :class:`StoreLockedError` naming the holder;
* every backend exception on these paths becomes a one-line :class:`StoreError` naming the store and operation,
  with any secret of the store's URI scrubbed.

Stores with transactions (PostgreSQL) check, write and record in one transaction with the rows locked. Elsewhere
each batch is re-read right before it is written: a write by another client between that read and the write
(milliseconds) is the remaining race window, and is overwritten.

Scores are "higher is better" in the store's own metric: cosine similarity, inner product, or the negative
squared L2 distance.
"""

from __future__ import annotations

import contextlib
import time
import warnings
import weakref
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._errors import StoreError, StoreLockedError
from ._ledger import Ledger, LedgerRecord, SqliteLedger, default_ledger_dir

__all__ = [
    "VectorStore",
    "BaseStore",
    "SIMILARITIES",
    "StoreError",
    "StoreLockedError",
    "WriteResult",
    "RevertResult",
    "ReapplyResult",
    "StoreStatus",
    "same_vectors",
    "progress",
    "as_id_list",
    "check_vectors",
    "check_queries",
]

SIMILARITIES = ("cosine", "inner_product", "l2")
#: Rows per batch for reads and writes unless a backend says otherwise.
DEFAULT_BATCH = 1024
#: Queries per batch for brute-force search over a scan.
_SCAN_QUERY_BLOCK = 1024


@runtime_checkable
class VectorStore(Protocol):
    """Document vectors in a database, addressed by the database's own ids (as ``str``)."""

    @property
    def similarity(self) -> str:
        """``"cosine"``, ``"inner_product"`` or ``"l2"``: how the store ranks documents."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension d."""
        ...

    def count(self) -> int:
        """Number of documents in the store."""
        ...

    def fetch(self, ids: Sequence[str]) -> np.ndarray:
        """(n, d) float32 vectors of ``ids`` as stored, in that order; unknown ids raise :class:`StoreError`."""
        ...

    def search(self, queries: np.ndarray, k: int, *, exact: bool = True) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k of each query (V, d): ((V, k) float32 scores best first, -inf padded; ids per query)."""
        ...

    def write(self, ids: Sequence[str], vectors: np.ndarray, *, expected: np.ndarray | None = None) -> WriteResult:
        """Overwrite the vectors of ``ids`` that still hold ``expected`` (default: what they hold now); recorded
        in the ledger for :meth:`revert`."""
        ...

    def revert(self) -> RevertResult:
        """Restore the original vector of every row still holding what nudge-rag wrote."""
        ...


def progress(it: Iterable[Any], *, total: int | None, desc: str, enabled: bool) -> Iterable[Any]:
    """``it`` wrapped in a tqdm bar when ``enabled`` and tqdm is installed; else ``it`` unchanged."""
    if not enabled:
        return it
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return it
    return tqdm(it, total=total, desc=desc, leave=False)


def as_id_list(ids: Iterable[object], what: str = "ids") -> list[str]:
    """``ids`` as a list of ``str``; duplicates raise ``ValueError``."""
    out = [str(i) for i in ids]
    if len(set(out)) != len(out):
        seen: set[str] = set()
        dup = next(i for i in out if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ValueError(f"{what} contain duplicates (first: {dup!r})")
    return out


def check_queries(queries: object, dim: int) -> np.ndarray:
    """``queries`` as a (V, dim) float32 array of finite values (V >= 1)."""
    arr = np.asarray(queries)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"queries must be a non-empty 2-D (V, {dim}) array, got shape {arr.shape}")
    return check_vectors(arr, arr.shape[0], dim, "queries")


def check_vectors(vectors: object, n: int, dim: int, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous (n, dim) float32 array of finite values (a new array, never a view)."""
    arr = np.asarray(vectors)
    if arr.dtype.kind != "f":
        raise TypeError(f"{what} must be floating point, got dtype {arr.dtype}")
    if arr.shape != (n, dim):
        raise ValueError(f"{what} must have shape ({n}, {dim}) to match the ids and the store, got {arr.shape}")
    out = np.array(arr, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(out).all():
        raise ValueError(f"{what} contain NaN or inf")
    return out


#: Rows hold "the same vector" when every element agrees to within this much relative to the row's largest
#: element: it absorbs a store's float32 renormalisation on write (Qdrant COSINE), never a re-embedding.
SAME_RTOL = 1e-6


def same_vectors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) bool: row i of ``a`` equals row i of ``b`` up to float32 rounding (:data:`SAME_RTOL`)."""
    a = np.asarray(a, dtype=np.float32).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float32).reshape(len(b), -1)
    scale = np.maximum(1.0, np.abs(b).max(axis=1, initial=0.0))
    return np.asarray(np.abs(a - b).max(axis=1, initial=0.0) <= SAME_RTOL * scale)


def _sample(ids: list[str], k: int = 10) -> list[str]:
    return list(ids[:k])


@dataclass
class WriteResult:
    """What a :meth:`BaseStore.write` did: rows written, rows skipped because another client changed
    (``changed``) or deleted (``missing``) them since they were read, and the ledger generation."""

    written: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    generation: int = 0

    @property
    def skipped(self) -> int:
        return len(self.changed) + len(self.missing)

    def summary(self) -> str:
        """One line: counts, with up to 10 skipped ids."""
        out = f"wrote {len(self.written)} rows (generation {self.generation})"
        if self.changed:
            out += f"; skipped {len(self.changed)} changed since the fit read them (e.g. {_sample(self.changed, 5)})"
        if self.missing:
            out += f"; skipped {len(self.missing)} deleted since (e.g. {_sample(self.missing, 5)})"
        return out


@dataclass(eq=False)
class RevertResult:
    """What :meth:`BaseStore.revert` did. ``restored``: rows put back to their original; ``already``: rows that
    held their original already; ``changed``: rows whose vector changed since our write (left alone);
    ``missing``: rows deleted since (skipped, never re-inserted). Compares equal to the int ``restored``."""

    restored: int = 0
    already: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (int, np.integer)):
            return self.restored == int(other)
        if isinstance(other, RevertResult):
            return (self.restored, self.already, self.changed, self.missing) == (
                other.restored,
                other.already,
                other.changed,
                other.missing,
            )
        return NotImplemented

    def __int__(self) -> int:
        return self.restored

    def summary(self) -> str:
        out = f"restored {self.restored} original vectors"
        if self.already:
            out += f"; {self.already} held their original already"
        if self.changed:
            out += f"; left {len(self.changed)} changed since nudge-rag wrote them (e.g. {_sample(self.changed, 5)})"
        if self.missing:
            out += f"; skipped {len(self.missing)} deleted since (e.g. {_sample(self.missing, 5)})"
        return out


@dataclass
class ReapplyResult:
    """What :meth:`BaseStore.reapply` did: ``reapplied`` rows that held their recorded original again (a re-index
    wrote the same base vector) and got the nudged vector back; ``nudged`` rows that still held it; ``changed``
    rows with new content (left alone); ``missing`` rows deleted since."""

    reapplied: int = 0
    nudged: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    generation: int = 0

    def summary(self) -> str:
        return (
            f"reapplied {self.reapplied} nudges (generation {self.generation}); {self.nudged} still nudged; "
            f"{len(self.changed)} rows have new content (left alone); {len(self.missing)} deleted"
        )


@dataclass
class StoreStatus:
    """How a store stands against its ledger.

    ``nudged``: rows still holding the vector nudge-rag wrote; ``overwritten``: rows whose vector changed since
    (re-ingested or re-embedded), of which ``reapplicable`` hold the recorded original again; ``missing``: rows
    deleted since; ``generations``: the write generations, oldest first.
    """

    store: str
    ledger: str
    rows: int = 0
    nudged: int = 0
    overwritten: int = 0
    reapplicable: int = 0
    missing: int = 0
    generations: list[dict[str, Any]] = field(default_factory=list)
    overwritten_ids_sample: list[str] = field(default_factory=list)
    missing_ids_sample: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "ledger": self.ledger,
            "rows": self.rows,
            "nudged": self.nudged,
            "overwritten": self.overwritten,
            "reapplicable": self.reapplicable,
            "missing": self.missing,
            "generations": self.generations,
            "overwritten_ids_sample": self.overwritten_ids_sample,
            "missing_ids_sample": self.missing_ids_sample,
        }

    def __str__(self) -> str:
        last = self.generations[-1] if self.generations else None
        gen = f"; last generation {last['number']} ({last['kind']}, {last['rows']} rows)" if last else ""
        return (
            f"{self.store}: {self.rows} rows in the ledger: {self.nudged} nudged, {self.overwritten} overwritten "
            f"since ({self.reapplicable} hold their original again: `reapply` restores their nudge), "
            f"{self.missing} deleted{gen}"
        )


class BaseStore:
    """Shared behaviour of the backends: validated, compare-and-set, ledgered writes; revert; status; reapply.

    Subclasses set ``similarity``, ``dim`` and ``batch_size`` and implement the hooks below. Where the ledger
    lives: :meth:`_ledger_home` (a path beside the store, or None for an in-process store), overridden by
    :meth:`use_ledger`; a database with transactions overrides :meth:`_open_ledger` and :meth:`_atomic`.
    """

    similarity: str
    dim: int
    batch_size: int = DEFAULT_BATCH
    show_progress: bool = False
    #: True when the store rescales vectors to unit length on write (e.g. Qdrant's COSINE distance).
    normalizes_on_write: bool = False
    #: Queries whose ANN search returned fewer than min(k, count) rows and were answered exactly instead.
    ann_shortfalls: int = 0
    #: True when exact competitor search is faster as one streamed :meth:`scan_search` than by the store's own
    #: exact search (a sequential scan per query, or none at all): :class:`StoreCorpus` then scans by default.
    prefers_scan: bool = False
    #: True when :meth:`_atomic` is a real transaction (a failed write then rolls back by itself).
    transactional: bool = False
    #: Secret strings (password, token, api key) to scrub from every message (set by ``open_store``).
    secrets: tuple[str, ...] = ()
    _ledger: Ledger | None = None
    _ledger_path: Path | None = None

    # ------------------------------------------------------------------ hooks
    def count(self) -> int:
        raise NotImplementedError

    def _get(self, ids: list[str], *, lock: bool = False) -> dict[str, np.ndarray]:
        """The current vectors of those of ``ids`` that exist (one batch; absent ids are left out). ``lock``:
        inside :meth:`_atomic`, lock the rows until it ends (stores with transactions)."""
        raise NotImplementedError

    def _put(self, ids: list[str], vectors: np.ndarray) -> Collection[str] | None:
        """Overwrite the vectors of one batch of existing ids (other fields untouched; never an insert).

        Returns the ids the database reported as no longer there (deleted since they were read), where it tells;
        None when every row was written."""
        raise NotImplementedError

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every (ids, (b, d) float32 vectors) of the store, in batches."""
        raise NotImplementedError

    def _search(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, list[list[str]]] | None:
        """Native top-k, or None when the store has no native search of this kind (exact -> brute force)."""
        return None

    def _ledger_home(self) -> Path | None:
        """The ledger file beside the store (None: an in-memory ledger, for in-process stores)."""
        return None

    def _ledger_key(self) -> str:
        """What names this store inside its ledger (a collection or table name)."""
        return self.label

    #: For an in-process store: the object holding its vectors (a framework store; hashable or not, weakly
    #: referenceable). Every store object over the same owner shares one in-memory ledger, so a revert from a
    #: later call still finds what was written; the ledger is dropped when the owner is garbage-collected.
    ledger_owner: Any = None
    #: How the ledger keeps vectors: "<f4" (float32), or "<f8" for stores whose vectors are Python floats.
    ledger_dtype: str = "<f4"

    def _open_ledger(self) -> Ledger:
        path = self._ledger_path if self._ledger_path is not None else self._ledger_home()
        if path is None and self.ledger_owner is not None:
            key = id(self.ledger_owner)  # by identity: an owner may be unhashable (a pydantic model)
            ledger = _MEMORY_LEDGERS.get(key)
            if ledger is None:
                ledger = SqliteLedger(None, self._ledger_key(), self.dim, dtype=self.ledger_dtype)
                _MEMORY_LEDGERS[key] = ledger
                weakref.finalize(self.ledger_owner, _MEMORY_LEDGERS.pop, key, None)  # dropped with the owner
            return ledger
        mode = 0o600  # a ledger beside a store is created no wider than the store's own file or folder
        if path is not None and path.name.endswith(_LEDGER_SUFFIX):
            base = path.with_name(path.name[: -len(_LEDGER_SUFFIX)])
            mode = (base.stat().st_mode & 0o666 if base.exists() else 0) or 0o600
        return SqliteLedger(path, self._ledger_key(), self.dim, dtype=self.ledger_dtype, mode=mode)

    def _atomic(self) -> contextlib.AbstractContextManager[Any]:
        """One transaction around a whole write / revert / reapply, where the store has them."""
        return contextlib.nullcontext()

    #: True when :meth:`_put` changes a buffer that only :meth:`_flush` makes durable (a FAISS index file): then
    #: revert forgets ledger rows only after the flush, so a kill -9 never loses an original.
    buffered: bool = False

    def _flush(self) -> None:
        """Make the rows put so far durable (write / revert / reapply call it once at the end)."""

    @property
    def label(self) -> str:
        """A short name of the store for messages (no secrets, no server round trip)."""
        return type(self).__name__

    # ------------------------------------------------------------------ the ledger
    def use_ledger(self, path: str | Path) -> None:
        """Keep this store's ledger in the SQLite file ``path`` (before the first write, revert or status)."""
        if self._ledger is not None:
            raise StoreError(f"{self.label}: the ledger is already open ({self._ledger.describe()})")
        self._ledger_path = Path(path)

    def save_ledger(self, path: str | Path) -> bool:
        """Copy an in-process store's ledger (in memory, or the file :meth:`use_ledger` named) into the SQLite file
        ``path`` atomically, so another process can still revert. Returns False, copying nothing, when the ledger
        lives beside the store or in its database (durable there already) or is ``path`` itself."""
        ledger = self.ledger
        if not isinstance(ledger, SqliteLedger) or (ledger.path is not None and self._ledger_path is None):
            return False
        if ledger.path is not None and ledger.path.resolve() == Path(path).resolve():
            return False
        ledger.backup(path)
        return True

    @property
    def ledger(self) -> Ledger:
        """This store's :class:`~nudge_rag.stores._ledger.Ledger` (opened on first use)."""
        if self._ledger is None:
            with self._translate("open the ledger"):
                self._ledger = self._open_ledger()
        return self._ledger

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this store's writer lock (re-entrant): what a fit-then-write holds from its first read."""
        with contextlib.ExitStack() as stack:
            with self._translate("lock"):  # only taking the lock is translated, not the caller's body
                stack.enter_context(self.ledger.lock(self.label))
            yield

    @contextlib.contextmanager
    def _translate(self, op: str) -> Iterator[None]:
        """Backend exceptions -> one-line :class:`StoreError` naming the store and ``op``, secrets scrubbed."""
        try:
            yield
        except StoreError as exc:
            clean = self.scrub(str(exc))
            if clean != str(exc):
                raise type(exc)(clean) from None
            raise
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except Exception as exc:
            cause = " ".join((str(exc) or type(exc).__name__).split())
            raise StoreError(self.scrub(f"{self.label}: {op} failed: {type(exc).__name__}: {cause}")) from exc

    def scrub(self, text: str) -> str:
        """``text`` with every secret of this store replaced by ``***``."""
        for s in self.secrets:
            if s:
                text = text.replace(s, "***")
        return text

    # ------------------------------------------------------------------ reads
    def fetch(self, ids: Sequence[str]) -> np.ndarray:
        """(n, d) float32 vectors of ``ids`` as stored, in that order; unknown ids raise :class:`StoreError`."""
        ids = [str(i) for i in ids]
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        with self._translate("fetch"):
            for b0 in range(0, len(ids), self.batch_size):
                part = ids[b0 : b0 + self.batch_size]
                got = self._get(part)
                missing = [i for i in part if i not in got]
                if missing:
                    raise StoreError(f"{len(missing)} id(s) not in {self.label} (first: {missing[0]!r})")
                out[b0 : b0 + len(part)] = np.stack([got[i] for i in part]) if part else out[b0:b0]
        return out

    def present(self, ids: Iterable[object]) -> set[str]:
        """Which of ``ids`` the store holds (read in batches; an absent id raises nothing). A batch the backend
        rejects (e.g. an id Qdrant cannot parse) is re-read one id at a time, a rejected id counting as absent;
        :class:`StoreError` when every one is rejected (the store itself failed)."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        found: set[str] = set()

        def read(batch: list[str]) -> set[str]:
            with self._translate("present"):
                return set(self._get(batch)) & set(batch)

        for b0 in range(0, len(wanted), self.batch_size):
            part = wanted[b0 : b0 + self.batch_size]
            try:
                found |= read(part)
            except StoreError:
                rejected = 0
                for i in part:
                    try:
                        found |= read([i])
                    except StoreError:
                        rejected += 1
                if rejected == len(part):
                    raise
        return found

    def search(self, queries: np.ndarray, k: int, *, exact: bool = True) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k of each query (V, d), best first: exact, or (``exact=False``) the store's ANN index, which
        always yields min(k, count) rows per query (see :meth:`_complete`)."""
        q = check_queries(queries, self.dim)
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        with self._translate("search"):
            native = self._search(q, int(k), exact)
            if native is None:
                if not exact:
                    raise StoreError(f"{type(self).__name__} has no approximate (ANN) search; use exact=True")
                return self.scan_search(q, int(k))
            return native if exact else self._complete(q, int(k), native)

    def _complete(
        self, queries: np.ndarray, k: int, found: tuple[np.ndarray, list[list[str]]]
    ) -> tuple[np.ndarray, list[list[str]]]:
        """ANN results with every query holding min(k, count) rows: the queries whose index search came back
        short (an HNSW ``ef`` / IVF ``nprobe`` / ``topk`` cap, a post-filter) are answered by exact search,
        counted in :attr:`ann_shortfalls` and reported by one ``RuntimeWarning`` per call."""
        scores, ids = found
        expected = min(k, self.count())
        short = np.flatnonzero(np.fromiter((len(r) < expected for r in ids), dtype=bool, count=len(ids)))
        if short.size == 0:
            return scores, ids
        self.ann_shortfalls += int(short.size)
        warnings.warn(
            f"{type(self).__name__}: the ANN index returned fewer than {expected} rows for {short.size} of "
            f"{len(ids)} queries (k={k}); those queries were answered by exact search",
            RuntimeWarning,
            stacklevel=3,
        )
        exact = self._search(queries[short], k, True)
        ex_s, ex_ids = exact if exact is not None else self.scan_search(queries[short], k)
        out_s = np.full((len(ids), k), -np.inf, dtype=np.float32)
        out_s[:, : scores.shape[1]] = scores[:, :k]
        out_ids = list(ids)
        for j, p in enumerate(short):
            out_s[p] = -np.inf
            out_s[p, : ex_s.shape[1]] = ex_s[j, :k]
            out_ids[int(p)] = ex_ids[j]
        return out_s, out_ids

    def scan_search(
        self, queries: np.ndarray, k: int, exclude: set[str] | frozenset[str] = frozenset()
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Exact top-k by brute force over one streamed scan of the store (memory O(V k + batch d)), ids in
        ``exclude`` left out."""
        from ..search import RunningTopK

        q = queries.astype(np.float32, copy=False)
        starts = range(0, q.shape[0], _SCAN_QUERY_BLOCK)
        tops = [RunningTopK(q[v0 : v0 + _SCAN_QUERY_BLOCK].shape[0], k) for v0 in starts]
        names: dict[int, str] = {}  # only the ids that are (or were recently) in some top-k
        seen = 0
        total = self.count()
        for ids, vecs in progress(
            self._scan(self.batch_size), total=-(-total // self.batch_size), desc="scan", enabled=self.show_progress
        ):
            cols = np.arange(seen, seen + len(ids), dtype=np.int64)
            if exclude:
                keep = np.fromiter((i not in exclude for i in ids), dtype=bool, count=len(ids))
                cols, vecs = cols[keep], vecs[keep]
            for t, v0 in zip(tops, starts):
                t.push(self.score(q[v0 : v0 + _SCAN_QUERY_BLOCK], vecs), cols)
            live = np.unique(np.concatenate([t.index.ravel() for t in tops]))
            for j in live[live >= seen]:
                names[int(j)] = ids[int(j) - seen]
            if len(names) > 4 * live.size + 4096:
                names = {int(j): names[int(j)] for j in live if j >= 0}
            seen += len(ids)
        scores = np.concatenate([t.scores for t in tops]).astype(np.float32, copy=False)
        index = np.concatenate([t.index for t in tops])
        return scores, [[names[int(j)] for j in row if j >= 0] for row in index]

    def score(self, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """(V, n) float32 scores of ``queries`` against ``vectors`` in the store's metric (higher is better)."""
        q = queries.astype(np.float32, copy=False)
        v = vectors.astype(np.float32, copy=False)
        if self.similarity == "inner_product":
            return q @ v.T
        if self.similarity == "cosine":
            qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
            vn = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30)
            return qn @ vn.T
        d2 = (q * q).sum(1)[:, None] - 2 * (q @ v.T) + (v * v).sum(1)[None, :]
        return -d2

    # ------------------------------------------------------------------ writes
    def write(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        *,
        expected: np.ndarray | None = None,
        kind: str = "fit",
        note: str = "",
    ) -> WriteResult:
        """Overwrite the vectors of ``ids`` (n,) with ``vectors`` (n, d) where each row still holds ``expected``
        (n, d) (the vectors the fit read; default: what the rows hold when this call reads them).

        Rows changed or deleted since are skipped and reported in the :class:`WriteResult`. Each written row is
        recorded in the ledger (original, written, generation) before it is overwritten. If a batch fails, the
        rows this call wrote are put back and their ledger records restored, then a :class:`StoreError` is raised.
        Unknown ids raise before anything is written.
        """
        id_list = as_id_list(ids, "ids to write")
        new = check_vectors(vectors, len(id_list), self.dim)
        exp = None if expected is None else check_vectors(expected, len(id_list), self.dim, "expected vectors")
        result = WriteResult()
        if not id_list:
            return result
        with self._translate("write"), self.ledger.lock(self.label):
            if exp is None:
                exp = self.fetch(id_list)  # unknown ids raise here, before anything is written
            result.generation = self.ledger.new_generation(kind, note)
            undo: list[tuple[list[str], np.ndarray, dict[str, LedgerRecord]]] = []
            starts = range(0, len(id_list), self.batch_size)
            try:
                with self._atomic():
                    for b0 in progress(starts, total=len(starts), desc="write", enabled=self.show_progress):
                        sl = slice(b0, b0 + self.batch_size)
                        self._write_batch(id_list[sl], new[sl], exp[sl], result, undo)
                    if result.written:
                        self._flush()
                    with self.ledger.transaction():
                        self.ledger.finish(result.generation, len(result.written))
            except BaseException:
                if not self.transactional:
                    self._undo(undo)
                raise
        return result

    def _write_batch(
        self,
        ids: list[str],
        vectors: np.ndarray,
        expected: np.ndarray | None = None,
        result: WriteResult | None = None,
        undo: list[tuple[list[str], np.ndarray, dict[str, LedgerRecord]]] | None = None,
    ) -> None:
        """One compare-and-set batch of :meth:`write` (the seam where tests inject a failure): re-read the rows
        (locked where the store has transactions), keep those still holding ``expected``, record them in the
        ledger, then overwrite them."""
        result = result if result is not None else WriteResult()
        current = self._get(ids, lock=True)
        present = np.fromiter((i in current for i in ids), dtype=bool, count=len(ids))
        ok = present.copy()
        if present.any():
            cur = np.stack([current[i] for i in ids if i in current])
            exp = expected[present] if expected is not None else cur
            ok[present] = same_vectors(cur, exp)
        result.missing.extend(i for i, p in zip(ids, present) if not p)
        result.changed.extend(i for i, p, o in zip(ids, present, ok) if p and not o)
        keep = [i for i, o in zip(ids, ok) if o]
        if not keep:
            return
        new = vectors[ok]
        cur_keep = np.stack([current[i] for i in keep])
        prev = self.ledger.records(keep)
        now = time.time()
        records = []
        for j, i in enumerate(keep):
            p = prev.get(i)
            # lineage: the original stays the first one while the row still holds what we wrote last time
            still_ours = p is not None and bool(same_vectors(cur_keep[j : j + 1], p.written[None])[0])
            original = p.original if still_ours and p is not None else cur_keep[j]
            records.append(LedgerRecord(i, original, new[j], result.generation, now))
        if undo is not None:
            undo.append((keep, cur_keep, prev))
        with self.ledger.transaction():  # committed before the rows change: a kill leaves the ledger ahead
            self.ledger.put(records)
        gone = set(self._put(keep, new) or ())
        if gone:  # deleted between the re-read and the write, and the database said so: not ours to record
            with self.ledger.transaction():
                self.ledger.delete([i for i in keep if i in gone])
                self.ledger.put([p for i, p in prev.items() if i in gone])
            result.missing.extend(i for i in keep if i in gone)
        result.written.extend(i for i in keep if i not in gone)

    def _undo(self, undo: list[tuple[list[str], np.ndarray, dict[str, LedgerRecord]]]) -> None:
        """Put back what a failed write changed (rows, then their ledger records), newest batch first."""
        for keep, before, prev in reversed(undo):
            for b0 in range(0, len(keep), self.batch_size):
                self._put(keep[b0 : b0 + self.batch_size], before[b0 : b0 + self.batch_size])
            with self.ledger.transaction():
                self.ledger.delete([i for i in keep if i not in prev])
                self.ledger.put(list(prev.values()))

    # ------------------------------------------------------------------ revert, status, reapply
    def _classify(self, records: list[LedgerRecord], lock: bool) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """(current vectors, id -> "nudged" / "original" / "changed" / "missing") of ``records``' rows."""
        ids = [r.id for r in records]
        current = self._get(ids, lock=lock)
        state: dict[str, str] = {}
        for r in records:
            v = current.get(r.id)
            if v is None:
                state[r.id] = "missing"
            elif same_vectors(v[None], r.written[None])[0]:
                state[r.id] = "nudged"
            elif same_vectors(v[None], r.original[None])[0]:
                state[r.id] = "original"
            else:
                state[r.id] = "changed"
        return current, state

    def revert(self) -> RevertResult:
        """Put the original back on every ledger row that still holds the vector nudge-rag wrote, then forget
        the store's ledger rows. Rows changed since are left alone, deleted rows are skipped (never
        re-inserted); both are reported in the :class:`RevertResult`."""
        out = RevertResult()
        forget: list[str] = []
        with self._translate("revert"), self.ledger.lock(self.label), self._atomic():
            for records in progress(
                self.ledger.iter_records(self.batch_size), total=None, desc="revert", enabled=self.show_progress
            ):
                _, state = self._classify(records, lock=True)
                back = [r for r in records if state[r.id] == "nudged"]
                if back:
                    self._put([r.id for r in back], np.stack([r.original for r in back]))
                out.restored += len(back)
                out.already += sum(state[r.id] == "original" for r in records)
                out.changed.extend(r.id for r in records if state[r.id] == "changed")
                out.missing.extend(r.id for r in records if state[r.id] == "missing")
                if self.buffered:
                    forget.extend(r.id for r in records)
                    continue
                with self.ledger.transaction():  # after the rows: a kill leaves records whose rows are original
                    self.ledger.delete([r.id for r in records])
            if forget:
                self._flush()
                with self.ledger.transaction():
                    self.ledger.delete(forget)
        return out

    def status(self) -> StoreStatus:
        """How the store stands against its ledger (read only; no lock taken)."""
        with self._translate("status"):
            st = StoreStatus(store=self.label, ledger=self.ledger.describe())
            for records in self.ledger.iter_records(self.batch_size):
                _, state = self._classify(records, lock=False)
                for r in records:
                    s = state[r.id]
                    st.rows += 1
                    if s == "nudged":
                        st.nudged += 1
                    elif s == "missing":
                        st.missing += 1
                        if len(st.missing_ids_sample) < 10:
                            st.missing_ids_sample.append(r.id)
                    else:
                        st.overwritten += 1
                        st.reapplicable += s == "original"
                        if len(st.overwritten_ids_sample) < 10:
                            st.overwritten_ids_sample.append(r.id)
            st.generations = [
                {"number": g.number, "kind": g.kind, "at": g.at, "rows": g.rows, "note": g.note}
                for g in self.ledger.generations()
            ]
        return st

    def reapply(self) -> ReapplyResult:
        """Write the nudged vector again on ledger rows whose current vector equals the recorded original (a
        re-index wrote the same base vector again); rows with new content are left alone and reported."""
        out = ReapplyResult()
        with self._translate("reapply"), self.ledger.lock(self.label):
            out.generation = self.ledger.new_generation("reapply")
            with self._atomic():
                for records in self.ledger.iter_records(self.batch_size):
                    _, state = self._classify(records, lock=True)
                    again = [r for r in records if state[r.id] == "original"]
                    out.nudged += sum(state[r.id] == "nudged" for r in records)
                    out.changed.extend(r.id for r in records if state[r.id] == "changed")
                    out.missing.extend(r.id for r in records if state[r.id] == "missing")
                    if not again:
                        continue
                    now = time.time()
                    with self.ledger.transaction():
                        self.ledger.put([LedgerRecord(r.id, r.original, r.written, out.generation, now) for r in again])
                    self._put([r.id for r in again], np.stack([r.written for r in again]))
                    out.reapplied += len(again)
                if out.reapplied:
                    self._flush()
                with self.ledger.transaction():
                    self.ledger.finish(out.generation, out.reapplied)
        return out

    # ------------------------------------------------------------------ documents
    #: True when the backend implements :meth:`_chunks` (a chunk-to-document metadata field can be read).
    supports_doc_field: bool = False

    def chunks_of(self, doc_field: str, doc_ids: Iterable[object]) -> dict[str, list[str]]:
        """Document id -> the store ids of its current chunks (sorted), read from the metadata field
        ``doc_field`` of each chunk (values compared as strings). Documents without a chunk are left out.

        Pairs and feedback name documents; a store holds chunks: this resolves one to the other at fit time, so
        re-chunked documents keep their pairs. Backends without metadata filters raise ``NotImplementedError``.
        """
        if not self.supports_doc_field:
            raise NotImplementedError(
                f"{type(self).__name__} ({self.label}) cannot map document ids to chunks by a metadata field "
                "(doc_field); supported: MemoryStore, ChromaStore, QdrantStore, LanceDBStore. Name chunk ids instead"
            )
        if not isinstance(doc_field, str) or not doc_field:
            raise ValueError(f"doc_field must be a non-empty metadata field name, got {doc_field!r}")
        wanted = list(dict.fromkeys(str(d) for d in doc_ids))
        found: dict[str, set[str]] = {}
        with self._translate("read document ids"):
            for b0 in range(0, len(wanted), self.batch_size):
                part = wanted[b0 : b0 + self.batch_size]
                keep = set(part)
                for chunk, doc in self._chunks(doc_field, part):
                    if str(doc) in keep:
                        found.setdefault(str(doc), set()).add(str(chunk))
        return {d: sorted(found[d]) for d in wanted if d in found}

    def _chunks(self, doc_field: str, doc_ids: list[str]) -> Iterable[tuple[str, object]]:
        """(chunk id, document id) of every chunk whose ``doc_field`` is one of ``doc_ids`` (one batch)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ misc
    def describe(self) -> str:
        """One line naming the store (for reports)."""
        return f"{self.label} ({self.dim}-d, {self.similarity})"

    def close(self) -> None:
        """Release connections (the ledger's too)."""
        self._close_ledger()

    def _close_ledger(self) -> None:
        ledger, self._ledger = self._ledger, None
        if isinstance(ledger, SqliteLedger) and ledger.path is not None:
            ledger.close()

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def server_ledger_path(scheme: str, host: str, port: int | None, name: str) -> Path:
    """The default ledger file of a store on a server: one per (scheme, host, port, collection) in
    :func:`~nudge_rag.stores._ledger.default_ledger_dir`."""
    import hashlib

    tag = hashlib.sha1(f"{scheme}://{host}:{port}/{name}".encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{scheme}-{host}-{port}-{name}")[:80]
    return default_ledger_dir() / f"{safe}-{tag}.sqlite"


_LEDGER_SUFFIX = ".nudge-ledger.sqlite"
#: ``id()`` of an in-process owner object (which must support weak references) -> its in-memory ledger
_MEMORY_LEDGERS: dict[int, SqliteLedger] = {}


def beside(path: str | Path) -> Path:
    """The ledger file beside a store on disk: ``<path>.nudge-ledger.sqlite``."""
    p = Path(path)
    return p.with_name(p.name + _LEDGER_SUFFIX) if p.name else p / _LEDGER_SUFFIX
