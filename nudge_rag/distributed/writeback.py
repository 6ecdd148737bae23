"""The nudged corpus as a lazy Dask array, and writing it back shard by shard (atomically per shard)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ..files import atomic_write
from ..patch import Patch
from ._deps import require
from .client import compute, resolve_client
from .corpus import DaskCorpus, unit_block

__all__ = ["nudged_array", "patched_chunks", "write_npy_shards", "write_back"]


def nudged_array(array: Any, patch: Patch, *, normalize: bool = True, dtype: DTypeLike = np.float32) -> Any:
    """Lazy (N, d) Dask array: ``array`` with the rows of ``patch`` replaced by ``patch.new``.

    With ``normalize`` (default) every other row is unit-normalised too, so the result equals ``embeddings_`` of
    the same fit on an in-memory array. Without it, chunks holding no moved row are ``array``'s own chunks
    (cast to ``dtype``), untouched. Chunks keep the input's layout.
    """
    da, dask = require("dask.array"), require("dask")
    _check_patch(patch, array.shape)
    starts = np.r_[0, np.cumsum(array.chunks[0])].astype(np.int64)
    new = np.asarray(patch.new, dtype=dtype)
    out = []
    for c, blk in enumerate(array.to_delayed().ravel()):
        lo, hi = int(starts[c]), int(starts[c + 1])
        a, b = np.searchsorted(patch.rows, [lo, hi])
        shape = (hi - lo, array.shape[1])
        if a == b and not normalize:
            out.append(array[lo:hi].astype(dtype))
            continue
        task = dask.delayed(_patch_chunk, pure=True)(blk, lo, patch.rows[a:b] - lo, new[a:b], normalize, dtype)
        out.append(da.from_delayed(task, shape=shape, dtype=dtype))
    return da.concatenate(out, axis=0) if len(out) > 1 else out[0]


def patched_chunks(array: Any, patch: Patch) -> np.ndarray:
    """Indices of the row chunks of ``array`` that hold at least one row of ``patch``."""
    starts = np.r_[0, np.cumsum(array.chunks[0])]
    return np.unique(np.searchsorted(starts, patch.rows, side="right") - 1).astype(np.int64)


def _patch_chunk(
    chunk: np.ndarray, lo: int, rows: np.ndarray, new: np.ndarray, normalize: bool, dtype: np.dtype
) -> np.ndarray:
    out = unit_block(chunk, lo, dtype) if normalize else np.array(chunk, dtype=dtype, copy=True)
    out[rows] = new
    return out


def _check_patch(patch: Patch, shape: tuple[int, ...]) -> None:
    if not isinstance(patch, Patch):
        raise TypeError(f"patch must be a nudge_rag.patch.Patch, got {type(patch).__name__}")
    if patch.dim != shape[1]:
        raise ValueError(f"cannot apply a {patch.dim}-d patch to an array of shape {shape}")
    if len(patch) and (int(patch.rows.max()) >= shape[0] or int(patch.rows.min()) < 0):
        raise ValueError(f"patch names rows {int(patch.rows.min())}..{int(patch.rows.max())}, the array has {shape[0]}")


def write_npy_shards(
    array: Any,
    folder: str | os.PathLike[str],
    *,
    names: list[str] | None = None,
    chunks: np.ndarray | list[int] | None = None,
    client: object = None,
    progress: bool = False,
) -> list[Path]:
    """Write each row chunk of ``array`` as one ``.npy`` shard in ``folder``, atomically per shard, on the workers.

    ``names`` gives the file name of every chunk (default ``part-00000.npy``, ...); ``chunks`` restricts the write
    to those chunk indices. Workers write the files, so ``folder`` must be visible to them (a shared or local
    file system). Returns the paths written, in chunk order.
    """
    dask = require("dask")
    n_chunks = len(array.chunks[0])
    names = names if names is not None else [f"part-{c:05d}.npy" for c in range(n_chunks)]
    if len(names) != n_chunks:
        raise ValueError(f"{len(names)} shard names for {n_chunks} chunks")
    which = range(n_chunks) if chunks is None else [int(c) for c in chunks]
    root = Path(folder).resolve()
    root.mkdir(parents=True, exist_ok=True)
    blocks = array.to_delayed().ravel()
    paths = [root / names[c] for c in which]
    tasks = [dask.delayed(_write_npy, pure=False)(blocks[c], str(path)) for c, path in zip(which, paths)]
    if tasks:
        compute(resolve_client(client), dask.delayed(list)(tasks), progress=progress)
    return paths


def _write_npy(block: np.ndarray, path: str) -> str:
    arr = np.ascontiguousarray(block)
    atomic_write(path, lambda fh: np.save(fh, arr))
    return path


def write_back(
    corpus: DaskCorpus,
    patch: Patch,
    folder: str | os.PathLike[str] | None = None,
    *,
    normalize: bool = False,
    progress: bool = False,
) -> list[Path]:
    """Write the nudged corpus back in the layout it was opened from, shard by shard, on the workers.

    - ``.npy`` shards and Parquet files: one file per chunk, each replaced atomically (Parquet keeps every other
      column and the vector column's type). ``folder=None`` updates the files in place and rewrites only those
      holding moved rows; a new ``folder`` gets every file, under the same names.
    - Zarr: in place, only the row chunks holding moved rows are assigned (each Zarr chunk is written by zarr);
      a new ``folder`` gets a whole new Zarr array with the same chunks.

    ``normalize=True`` writes unit rows everywhere (as ``embeddings_`` of an in-memory fit) and so rewrites
    every shard. The stored dtype is kept. Returns the files (or the Zarr array) written. A corpus opened from
    files that were updated in place must be opened again to read the new vectors.
    """
    src = corpus.source
    if src is None:
        raise ValueError("write_back needs a corpus opened from files (open_corpus); for an array use write_npy_shards")
    if src.kind in ("npy", "parquet") and len(src.paths) != len(corpus.array.chunks[0]):
        raise ValueError(f"the corpus has {len(corpus.array.chunks[0])} chunks but {len(src.paths)} source files")
    nudged = nudged_array(corpus.array, patch, normalize=normalize, dtype=corpus.array.dtype)
    in_place = folder is None or Path(folder).resolve() == Path(src.root or "").resolve()
    chunks = patched_chunks(corpus.array, patch) if in_place and not normalize else np.arange(nudged.numblocks[0])
    if src.kind == "npy":
        names = [Path(p).name for p in src.paths]
        target = Path(src.paths[0]).parent if folder is None else Path(folder)
        return write_npy_shards(nudged, target, names=names, chunks=chunks, client=corpus.client, progress=progress)
    dask = require("dask")
    blocks = nudged.to_delayed().ravel()
    starts = np.r_[0, np.cumsum(nudged.chunks[0])].astype(np.int64)
    if src.kind == "parquet":
        root = Path(src.paths[0]).parent if folder is None else Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        paths = [root / Path(src.paths[c]).name for c in chunks]
        write = dask.delayed(_write_parquet, pure=False)
        tasks = [write(blocks[c], src.paths[c], str(path), src.column) for c, path in zip(chunks, paths)]
    elif src.kind == "zarr":
        if not in_place:
            require("zarr")
            compute(corpus.client, nudged.to_zarr(str(folder), compute=False, overwrite=True), progress=progress)
            return [Path(str(folder))]
        paths = [Path(src.paths[0])]
        write = dask.delayed(_write_zarr_rows, pure=False)
        tasks = [write(blocks[c], src.paths[0], int(starts[c])) for c in chunks]
    else:
        raise ValueError(f"write_back cannot write a corpus of kind {src.kind!r}")
    if tasks:
        compute(corpus.client, dask.delayed(list)(tasks), progress=progress)
    return paths


def _write_parquet(block: np.ndarray, src: str, dst: str, column: str) -> str:
    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    table = pq.read_table(src)
    idx = table.schema.get_field_index(column)
    field = table.schema.field(idx)
    arr = np.ascontiguousarray(block)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel()), arr.shape[1]).cast(field.type)
    table = table.set_column(idx, field, vectors)
    atomic_write(dst, lambda fh: pq.write_table(table, fh))
    return dst


def _write_zarr_rows(block: np.ndarray, path: str, lo: int) -> str:
    zarr = require("zarr")
    z = zarr.open_array(path, mode="r+")
    z[lo : lo + block.shape[0]] = block
    return path
