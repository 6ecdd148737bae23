"""A :class:`~nudge_rag.corpus.Corpus` over a row-chunked Dask array: the competitor scan as a Dask graph.

Exactness: the in-memory scan (:func:`nudge_rag.search.static_topk`) scores documents in blocks of
``DOC_BLOCK`` rows aligned at multiples of ``DOC_BLOCK``. A float32 matrix product is not bit-identical for every
block shape (OpenBLAS takes another code path for blocks of 1-4 columns), so the Dask scan scores *the same
aligned blocks* whatever the array's chunking: a block inside one chunk is scored by that chunk's task, a block
that straddles chunks is assembled from the (unit-normalised) pieces the chunk tasks hand over. Each block goes
through ``static_topk`` itself, so scores, rows and the tie rule are those of the in-memory fit, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .._checks import normalize_rows
from ..search import DOC_BLOCK, static_topk, topk_merge
from ._deps import require
from .client import compute, resolve_client

__all__ = ["DaskCorpus", "ShardSource", "unit_block"]

# Partial top-k lists merged per reduction task.
_FAN_IN = 8


@dataclass(frozen=True)
class ShardSource:
    """Where a corpus opened from files lives: ``kind`` (``npy``, ``zarr``, ``parquet``), its files and layout.

    ``paths`` holds one file per chunk (npy, parquet) or the one Zarr array; ``column`` the Parquet vector column.
    """

    kind: str
    paths: tuple[str, ...]
    column: str | None = None
    root: str | None = None
    extra: dict = field(default_factory=dict)


def unit_block(block: np.ndarray, offset: int, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Rows of ``block`` (r, d) at global row ``offset`` as unit rows in ``dtype`` (as the in-memory fit does).

    Raises ValueError naming the global row when a row is non-finite or zero.
    """
    arr = np.ascontiguousarray(block)
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"corpus rows must be float32 or float64, got {arr.dtype}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        raise ValueError(f"corpus contains NaN or inf at row {offset + int(np.flatnonzero(~finite)[0])}")
    try:
        return normalize_rows(arr, "corpus", np.dtype(dtype))
    except ValueError:
        zero = int(np.flatnonzero(~arr.any(axis=1))[0])
        raise ValueError(f"corpus has a zero vector at row {offset + zero}; cannot normalise") from None


class DaskCorpus:
    """Document vectors in a row-chunked (N, d) float32/float64 ``dask.array.Array``, read on a Dask cluster.

    Args:
        array: (N, d) Dask array; column chunks are merged (one chunk spans all d columns).
        client: a ``distributed.Client``, a scheduler address, or None (the active client, else a LocalCluster).
        source: the files the array was opened from (set by :func:`nudge_rag.distributed.open_corpus`).
        progress: show Dask's progress bar while the competitor scan runs.

    Only the requested rows (``fetch``) and (V, k) scores and rows (``competitors``) reach the client; the
    client never holds the N x d matrix. Rows are unit-normalised in float32 on the workers.

    Example:
        >>> corpus = DaskCorpus(dask.array.from_zarr("vectors.zarr"))
        >>> model = NudgeN().fit(corpus, train, val)
        >>> nudged = nudged_array(corpus.array, model.patch_)   # lazy (N, d)
    """

    def __init__(
        self, array: Any, client: object = None, *, source: ShardSource | None = None, progress: bool = False
    ) -> None:
        da = require("dask.array")
        if not isinstance(array, da.Array):
            raise TypeError(f"array must be a dask.array.Array, got {type(array).__name__}")
        if array.ndim != 2:
            raise ValueError(f"the corpus array must be 2-D (rows x dimension), got shape {array.shape}")
        if array.dtype not in (np.float32, np.float64):
            raise TypeError(f"the corpus array must have dtype float32 or float64, got {array.dtype}")
        if any(np.isnan(c) for c in array.shape) or array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"the corpus array needs known, non-zero shape, got {array.shape}")
        if len(array.chunks[1]) > 1:
            array = array.rechunk({1: -1})
        self.array = array
        self.source = source
        self.progress = progress
        self._client_arg = client
        self._client: Any = None

    # ------------------------------------------------------------------ Corpus protocol
    @property
    def n_docs(self) -> int:
        return int(self.array.shape[0])

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` the work runs on (resolved on first use)."""
        if self._client is None:
            self._client = resolve_client(self._client_arg)
        return self._client

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        """(r, d) float32 unit rows for ``rows`` (r,) int64, in that order; only those rows are read."""
        rows = np.asarray(rows)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise ValueError(f"rows must be a 1-D integer array, got shape {rows.shape} dtype {rows.dtype}")
        rows = rows.astype(np.int64, copy=False)
        if rows.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if rows.min() < 0 or rows.max() >= self.n_docs:
            bad = int(rows[(rows < 0) | (rows >= self.n_docs)][0])
            raise IndexError(f"row {bad} is out of range for a corpus of {self.n_docs} documents")
        uniq, inverse = np.unique(rows, return_inverse=True)
        raw = np.asarray(compute(self.client, self.array[uniq]))
        unit = unit_block(raw, 0)  # row-wise, so equal to the rows the workers normalise
        return unit[inverse.ravel()]

    def competitors(self, queries: np.ndarray, exclude: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of ``queries`` (V, d) among rows not in ``exclude`` (sorted int64), scanned on the cluster.

        Returns (V, k) float32 scores best first (``-inf`` padding) and (V, k) int64 rows (-1 padding), equal
        to :func:`~nudge_rag.search.static_topk` on the in-memory unit rows.
        """
        queries = np.ascontiguousarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (V, {self.dim}), got shape {queries.shape}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        exclude = np.asarray(exclude, dtype=np.int64)
        graph = competitor_graph(self.array, queries, exclude, int(k))
        return compute(self.client, graph, progress=self.progress)

    # ------------------------------------------------------------------ growing the corpus
    def append(self, new: Any) -> DaskCorpus:
        """A corpus of these documents followed by ``new`` (X, d) rows (a NumPy or Dask array: new chunks)."""
        da = require("dask.array")
        if isinstance(new, np.ndarray):
            new = da.from_array(new, chunks=(max(1, min(new.shape[0], self.array.chunksize[0])), -1))
        if not isinstance(new, da.Array) or new.ndim != 2 or new.shape[1] != self.dim:
            raise ValueError(
                f"new documents must be an (X, {self.dim}) NumPy or Dask array, got {getattr(new, 'shape', new)!r}"
            )
        out = DaskCorpus(
            da.concatenate([self.array, new.rechunk({1: -1})], axis=0), self._client_arg, progress=self.progress
        )
        out._client = self._client
        return out

    def __repr__(self) -> str:
        src = f", source={self.source.kind}:{self.source.root}" if self.source else ""
        return f"DaskCorpus({self.n_docs} x {self.dim} {self.array.dtype}, {len(self.array.chunks[0])} chunks{src})"


# ---------------------------------------------------------------------------------------------- the scan graph
def competitor_graph(array: Any, queries: np.ndarray, exclude: np.ndarray, k: int) -> Any:
    """A ``dask.delayed`` of (V, k) scores and rows: per-chunk top-k over aligned blocks, then a tree merge."""
    dask = require("dask")
    n = int(array.shape[0])
    starts = np.r_[0, np.cumsum(array.chunks[0])].astype(np.int64)
    blocks = array.to_delayed().ravel()
    q = dask.delayed(queries, name=f"nudge-queries-{dask.base.tokenize(queries)}")
    chunk_task = dask.delayed(_chunk_topk, pure=True, nout=2)
    partial: list[Any] = []
    pieces: dict[int, list[Any]] = {}
    for c, blk in enumerate(blocks):
        lo, hi = int(starts[c]), int(starts[c + 1])
        if hi == lo:
            continue
        cut = _straddling(lo, hi, n)
        top, parts = chunk_task(blk, lo, q, _local(exclude, lo, hi), k, cut)
        partial.append(top)
        for j, b in enumerate(cut):
            pieces.setdefault(b, []).append(parts[j])
    block_task = dask.delayed(_pieces_topk, pure=True)
    for b, plist in sorted(pieces.items()):
        bs, be = b * DOC_BLOCK, min((b + 1) * DOC_BLOCK, n)
        partial.append(block_task(plist, bs, q, _local(exclude, bs, be), k))
    merge = dask.delayed(_merge, pure=True)
    while len(partial) > 1:
        partial = [merge(partial[i : i + _FAN_IN], k) for i in range(0, len(partial), _FAN_IN)]
    return partial[0]


def _straddling(lo: int, hi: int, n: int) -> list[int]:
    """Aligned blocks that rows [lo, hi) touch but do not cover wholly (at most the first and the last)."""
    out = []
    for b in sorted({lo // DOC_BLOCK, (hi - 1) // DOC_BLOCK}):
        bs, be = b * DOC_BLOCK, min((b + 1) * DOC_BLOCK, n)
        if bs < lo or be > hi:
            out.append(b)
    return out


def _local(exclude: np.ndarray, lo: int, hi: int) -> np.ndarray:
    a, b = np.searchsorted(exclude, [lo, hi])
    return exclude[a:b] - lo


def _chunk_topk(
    chunk: np.ndarray, lo: int, queries: np.ndarray, exclude: np.ndarray, k: int, cut: list[int]
) -> tuple[tuple[np.ndarray, np.ndarray], list[np.ndarray]]:
    """Top-k over the aligned blocks inside rows [lo, lo + len(chunk)); unit pieces of the blocks in ``cut``."""
    hi = lo + chunk.shape[0]
    top = _empty(queries.shape[0], k)
    pieces = []
    b_first, b_last = lo // DOC_BLOCK, (hi - 1) // DOC_BLOCK
    for b in range(b_first, b_last + 1):
        s, e = max(b * DOC_BLOCK, lo), min((b + 1) * DOC_BLOCK, hi)
        unit = unit_block(chunk[s - lo : e - lo], s)
        if b in cut:
            pieces.append(unit)
            continue
        a, z = np.searchsorted(exclude, [s - lo, e - lo])
        top = _merge([top, _scored(queries, unit, exclude[a:z] - (s - lo), k, s)], k)
    return top, pieces


def _pieces_topk(
    pieces: list[np.ndarray], bs: int, queries: np.ndarray, exclude: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k over one aligned block at row ``bs`` assembled from consecutive unit pieces."""
    return _scored(queries, np.concatenate(pieces, axis=0), exclude, k, bs)


def _scored(
    queries: np.ndarray, unit: np.ndarray, exclude: np.ndarray, k: int, offset: int
) -> tuple[np.ndarray, np.ndarray]:
    s, i = static_topk(queries, unit, exclude, k)
    return s, np.where(i >= 0, i + offset, -1)


def _empty(v: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((v, k), -np.inf, dtype=np.float32), np.full((v, k), -1, dtype=np.int64)


def _merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of several (V, k) partial lists (ties: smaller row)."""
    s = np.concatenate([p[0] for p in parts], axis=1)
    i = np.concatenate([p[1] for p in parts], axis=1)
    s, i = topk_merge(s, i, k)
    return s.astype(np.float32, copy=False), i.astype(np.int64, copy=False)
