""":class:`StoreCorpus`: a :class:`~nudge_rag.corpus.Corpus` over a vector store, read by id, never whole.

Local rows are handed out on first sight: the ids named by the pairs first (:meth:`StoreCorpus.rows_of`),
then any id a competitor search returns. Only vectors that the fit reads are held in memory, so a fit costs
O(moved documents x d + validation queries x k) whatever the store's size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from .._checks import normalize_rows
from ._base import VectorStore, as_id_list, progress

__all__ = ["StoreCorpus"]

#: Queries per competitor search call.
_QUERY_BATCH = 256


class StoreCorpus:
    """A :class:`~nudge_rag.corpus.Corpus` reading ``store`` by id.

    Args:
        store: a :class:`~nudge_rag.stores.VectorStore`.
        ids: ids to number first (rows 0 .. len(ids) - 1), usually every id the pairs name.
        exact: exact competitor search (default; the fit then equals the in-memory fit) or the store's ANN index.
        scan: exact search as one streamed pass over the whole store, scored here (excluded ids skipped),
            instead of the store's own exact search per query; faster for many queries on a large store
            whose exact search is a sequential scan per query (pgvector, LanceDB) or a scan anyway (Chroma,
            HNSW / IVF indexes). None (default): the store's own preference (``store.prefers_scan``).
        margin: extra candidates asked for per query, so that the store's own rounding near the k-th place
            cannot change the result: candidates are re-scored exactly (cosine of unit vectors, float32).
        show_progress: tqdm bars on fetch and search.

    Competitor search asks the store for the top-(k + margin + c) of each query, where c grows (doubling)
    until at least k + margin of the results are not excluded (or the store has no more); excluded ids are
    dropped. Ties are broken by the smaller local row, as in the in-memory fit.
    """

    def __init__(
        self,
        store: VectorStore,
        ids: Sequence[str] = (),
        *,
        exact: bool = True,
        margin: int = 4,
        scan: bool | None = None,
        show_progress: bool = False,
    ) -> None:
        self.store = store
        self.exact = exact
        self.scan = bool(getattr(store, "prefers_scan", False)) if scan is None else bool(scan)
        self.margin = int(margin)
        self.show_progress = show_progress
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._cache: dict[int, np.ndarray] = {}
        self._raw: dict[int, np.ndarray] = {}  # the vectors as stored: what a compare-and-set write expects
        self._n_docs: int | None = None
        self.stats: dict[str, float] = {
            "fetched": 0,
            "searched_queries": 0,
            "search_calls": 0,
            "search_k_max": 0,
            "fetch_seconds": 0.0,
            "search_seconds": 0.0,
        }
        self.rows_of(as_id_list(ids, "corpus ids"))

    # ------------------------------------------------------------------ ids <-> rows
    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """(n,) int64 local rows of ``ids``, numbering unseen ids next."""
        out = np.empty(len(ids), dtype=np.int64)
        for j, i in enumerate(ids):
            key = str(i)
            row = self._row.get(key)
            if row is None:
                row = self._row[key] = len(self._ids)
                self._ids.append(key)
            out[j] = row
        return out

    def ids_of(self, rows: np.ndarray) -> list[str]:
        """Store ids of local ``rows``."""
        return [self._ids[int(r)] for r in np.asarray(rows).ravel()]

    @property
    def ids(self) -> list[str]:
        """Every id numbered so far, by row."""
        return list(self._ids)

    # ------------------------------------------------------------------ Corpus protocol
    @property
    def n_docs(self) -> int:
        if self._n_docs is None:
            self._n_docs = int(self.store.count())
        return max(self._n_docs, len(self._ids))

    @property
    def dim(self) -> int:
        return int(self.store.dim)

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        """(r, d) float32 unit rows, read from the store once and kept."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        missing = np.unique(rows[[int(r) not in self._cache for r in rows]]) if rows.size else rows
        if missing.size:
            if int(missing.max()) >= len(self._ids) or int(missing.min()) < 0:
                raise IndexError(f"row {int(missing.max())} is not a row of this corpus ({len(self._ids)} rows)")
            t0 = time.perf_counter()
            vecs = self.store.fetch(self.ids_of(missing))
            self.stats["fetch_seconds"] += time.perf_counter() - t0
            unit = normalize_rows(vecs, "store vectors", np.float32)
            for r, v, raw in zip(missing, unit, vecs):
                self._cache[int(r)] = v
                self._raw[int(r)] = raw
            self.stats["fetched"] += int(missing.size)
        if rows.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[int(r)] for r in rows])

    def stored(self, rows: np.ndarray) -> np.ndarray:
        """(r, d) float32 vectors of ``rows`` exactly as the store held them when the fit read them."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        self.fetch(rows)
        if rows.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._raw[int(r)] for r in rows])

    def read_rows(self) -> np.ndarray:
        """(r,) int64 every row read so far (named documents and the competitor candidates re-scored)."""
        return np.fromiter(self._raw, dtype=np.int64, count=len(self._raw))

    def competitors(self, queries: np.ndarray, exclude: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, dtype=np.float32)
        excluded = {self._ids[int(r)] for r in np.asarray(exclude).ravel() if int(r) < len(self._ids)}
        out_s = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        out_i = np.full((q.shape[0], k), -1, dtype=np.int64)
        if self.scan:
            scan_search = getattr(self.store, "scan_search", None)
            if scan_search is None:
                raise TypeError(f"{type(self.store).__name__} has no scan_search; use scan=False")
            t0 = time.perf_counter()
            _, hits = scan_search(q, k + self.margin, frozenset(excluded))
            self.stats["search_seconds"] += time.perf_counter() - t0
            self.stats["search_calls"] += 1
            self.stats["searched_queries"] += int(q.shape[0])
            self.stats["search_k_max"] = max(self.stats["search_k_max"], k + self.margin)
            return self._rescore(q, hits, k)
        starts = range(0, q.shape[0], _QUERY_BATCH)
        for v0 in progress(starts, total=len(starts), desc="competitors", enabled=self.show_progress):
            s, i = self._competitors_block(q[v0 : v0 + _QUERY_BATCH], excluded, k)
            out_s[v0 : v0 + s.shape[0]] = s
            out_i[v0 : v0 + s.shape[0]] = i
        return out_s, out_i

    # ------------------------------------------------------------------ helpers
    def _competitors_block(self, q: np.ndarray, excluded: set[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        want = k + self.margin
        ask = min(want + min(len(excluded), want), self.n_docs)
        pending = np.arange(q.shape[0])
        found: list[list[str]] = [[] for _ in range(q.shape[0])]
        while pending.size:
            t0 = time.perf_counter()
            _, hits = self.store.search(q[pending], ask, exact=self.exact)
            self.stats["search_seconds"] += time.perf_counter() - t0
            self.stats["search_calls"] += 1
            self.stats["searched_queries"] += int(pending.size)
            self.stats["search_k_max"] = max(self.stats["search_k_max"], ask)
            retry = []
            for p, ids in zip(pending, hits):
                kept = [i for i in ids if i not in excluded]
                found[int(p)] = kept
                if len(kept) < want and len(ids) >= ask and ask < self.n_docs:
                    retry.append(int(p))
            pending = np.asarray(retry, dtype=np.int64)
            ask = min(2 * ask, self.n_docs)
        return self._rescore(q, found, k)

    def _rescore(self, q: np.ndarray, found: list[list[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of each query's candidate ids, re-scored exactly."""
        # exact re-scoring of the candidates: cosine of unit vectors, ties by the smaller local row
        width = max((len(f) for f in found), default=0)
        cand = np.full((q.shape[0], max(width, 1)), -1, dtype=np.int64)
        for r, f in enumerate(found):
            if f:
                cand[r, : len(f)] = self.rows_of(f)
        valid = cand >= 0
        uniq = np.unique(cand[valid])
        vecs = self.fetch(uniq) if uniq.size else np.zeros((0, self.dim), dtype=np.float32)
        pos = np.searchsorted(uniq, np.where(valid, cand, uniq[0] if uniq.size else 0))
        scores = np.full(cand.shape, -np.inf, dtype=np.float32)
        if uniq.size:
            full = q @ vecs.T  # (b, u): u <= b * width, small
            scores = np.where(valid, np.take_along_axis(full, pos, axis=1), -np.inf).astype(np.float32)
        order = np.lexsort((np.where(valid, cand, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
        top_s = np.take_along_axis(scores, order, axis=1)
        top_i = np.where(np.isfinite(top_s), np.take_along_axis(cand, order, axis=1), -1)
        if top_s.shape[1] < k:
            pad = k - top_s.shape[1]
            top_s = np.pad(top_s, ((0, 0), (0, pad)), constant_values=-np.inf)
            top_i = np.pad(top_i, ((0, 0), (0, pad)), constant_values=-1)
        return top_s.astype(np.float32), top_i.astype(np.int64)
