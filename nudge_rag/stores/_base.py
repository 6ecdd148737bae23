"""The :class:`VectorStore` protocol and :class:`BaseStore`, the safe-write machinery every backend shares.

A backend speaks its database's native ids and batch calls through six small hooks (``_fetch``, ``_put``,
``_scan``, ``_search`` and the originals side store ``_save_originals`` / ``_saved_ids`` / ``_iter_originals`` /
``_drop_originals``); :class:`BaseStore` turns them into validated, batched, rolled-back writes and a
bit-for-bit :meth:`~BaseStore.revert`.

Scores are "higher is better" in the store's own metric: cosine similarity, inner product, or the negative
squared L2 distance.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "VectorStore",
    "BaseStore",
    "SIMILARITIES",
    "StoreError",
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


class StoreError(RuntimeError):
    """A store refused an operation (missing ids, wrong layout, unsupported similarity, ...)."""


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

    def write(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Overwrite the vectors of existing ``ids``; all or nothing; originals kept for :meth:`revert`."""
        ...

    def revert(self) -> int:
        """Restore every row ever written to its original vector; returns the number of rows restored."""
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


class BaseStore:
    """Shared behaviour of the backends: validated batched writes, rollback and revert.

    Subclasses set ``similarity``, ``dim`` and ``batch_size`` and implement the hooks below. A backend whose
    database has transactions may override :meth:`write` and :meth:`revert` to use one.
    """

    similarity: str
    dim: int
    batch_size: int = DEFAULT_BATCH
    show_progress: bool = False
    #: True when the store rescales vectors to unit length on write (e.g. Qdrant's COSINE distance).
    normalizes_on_write: bool = False
    #: Queries whose ANN search returned fewer than min(k, count) rows and were answered exactly instead.
    ann_shortfalls: int = 0

    # ------------------------------------------------------------------ hooks
    def count(self) -> int:
        raise NotImplementedError

    def _fetch(self, ids: list[str]) -> np.ndarray:
        """(n, d) float32 vectors of one batch of ids, in order; raise StoreError naming missing ids."""
        raise NotImplementedError

    def _put(self, ids: list[str], vectors: np.ndarray) -> None:
        """Overwrite the vectors of one batch of existing ids (other fields untouched)."""
        raise NotImplementedError

    def _scan(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every (ids, (b, d) float32 vectors) of the store, in batches."""
        raise NotImplementedError

    def _search(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, list[list[str]]] | None:
        """Native top-k, or None when the store has no native search of this kind (exact -> brute force)."""
        return None

    def _save_originals(self, ids: list[str], vectors: np.ndarray) -> None:
        """Append rows (none already saved) to the side store of originals."""
        raise NotImplementedError

    def _saved_ids(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` already have a saved original."""
        raise NotImplementedError

    def _iter_originals(self, batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every saved (ids, originals) in batches."""
        raise NotImplementedError

    def _drop_originals(self) -> None:
        """Delete the side store of originals."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    def fetch(self, ids: Sequence[str]) -> np.ndarray:
        ids = [str(i) for i in ids]
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for b0 in range(0, len(ids), self.batch_size):
            out[b0 : b0 + self.batch_size] = self._fetch(ids[b0 : b0 + self.batch_size])
        return out

    def search(self, queries: np.ndarray, k: int, *, exact: bool = True) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k of each query (V, d), best first: exact, or (``exact=False``) the store's ANN index, which
        always yields min(k, count) rows per query (see :meth:`_complete`)."""
        q = check_queries(queries, self.dim)
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
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

    def write(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Overwrite the vectors of ``ids`` (n,) with ``vectors`` (n, d), all or nothing.

        The current vector of each row not written before is saved first in the originals side store, so
        :meth:`revert` restores the state before the first write. If a batch fails, the rows already written
        by this call are put back to their vectors before the call and the error is re-raised.
        """
        id_list = as_id_list(ids, "ids to write")
        new = check_vectors(vectors, len(id_list), self.dim)
        if not id_list:
            return
        before = self.fetch(id_list)  # raises on unknown ids, before anything is changed
        saved = self._saved_ids(id_list)
        fresh = [j for j, i in enumerate(id_list) if i not in saved]
        for b0 in range(0, len(fresh), self.batch_size):
            sel = fresh[b0 : b0 + self.batch_size]
            self._save_originals([id_list[j] for j in sel], before[sel])
        done = 0
        try:
            for b0 in progress(
                range(0, len(id_list), self.batch_size),
                total=-(-len(id_list) // self.batch_size),
                desc="write",
                enabled=self.show_progress,
            ):
                self._write_batch(id_list[b0 : b0 + self.batch_size], new[b0 : b0 + self.batch_size])
                done = b0 + self.batch_size
        except BaseException:
            for b0 in range(0, min(done + self.batch_size, len(id_list)), self.batch_size):
                self._put(id_list[b0 : b0 + self.batch_size], before[b0 : b0 + self.batch_size])
            raise

    def _write_batch(self, ids: list[str], vectors: np.ndarray) -> None:
        """One batch of :meth:`write` (the seam where tests inject a failure)."""
        self._put(ids, vectors)

    def revert(self) -> int:
        """Put every saved original back and delete the side store; returns the number of rows restored."""
        n = 0
        for ids, vecs in progress(
            self._iter_originals(self.batch_size), total=None, desc="revert", enabled=self.show_progress
        ):
            self._put(ids, vecs)
            n += len(ids)
        self._drop_originals()
        return n

    def describe(self) -> str:
        """One line naming the store (for reports)."""
        return f"{type(self).__name__}({self.dim}-d, {self.similarity})"

    def close(self) -> None:
        """Release connections (no-op unless the backend holds one)."""

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
