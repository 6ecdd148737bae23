"""Open a corpus that lives in files as a :class:`DaskCorpus`: ``.npy`` shards, a Zarr array or Parquet files.

Every opener reads metadata only; vectors are read by the workers, chunk by chunk (one chunk per shard file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require
from .corpus import DaskCorpus, ShardSource

__all__ = ["open_corpus", "open_npy_shards", "open_zarr", "open_parquet", "DEFAULT_VECTOR_COLUMN"]

DEFAULT_VECTOR_COLUMN = "embedding"


def open_corpus(
    path: str | os.PathLike[str],
    *,
    column: str = DEFAULT_VECTOR_COLUMN,
    client: object = None,
    progress: bool = False,
) -> DaskCorpus:
    """A :class:`DaskCorpus` over the vectors at ``path``, recognised by its layout.

    - a folder of ``*.npy`` files (each (n_i, d); memory-mapped; rows in file-name order), or one ``.npy`` file;
    - a Zarr array (a folder with ``zarr.json`` or ``.zarray``);
    - a ``.parquet`` file or a folder of them, with the vectors in list column ``column`` (default ``embedding``).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"corpus path does not exist: {p}")
    if p.is_dir() and ((p / "zarr.json").exists() or (p / ".zarray").exists()):
        return open_zarr(p, client=client, progress=progress)
    if p.suffix == ".parquet" or (p.is_dir() and any(p.glob("*.parquet"))):
        return open_parquet(p, column=column, client=client, progress=progress)
    if p.suffix == ".npy" or (p.is_dir() and any(p.glob("*.npy"))):
        return open_npy_shards(p, client=client, progress=progress)
    raise ValueError(f"{p}: not a folder of .npy shards, a Zarr array or Parquet files")


def _files(p: Path, suffix: str) -> list[Path]:
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.suffix == suffix and not f.name.startswith("."))
    if not files:
        raise ValueError(f"{p}: no {suffix} files")
    return files


def open_npy_shards(path: str | os.PathLike[str], *, client: object = None, progress: bool = False) -> DaskCorpus:
    """``.npy`` shards (a folder, in file-name order, or one file) as one (N, d) array, one chunk per shard."""
    da, dask = require("dask.array"), require("dask")
    p = Path(path)
    files = _files(p, ".npy")
    parts = []
    dim = dtype = None
    for f in files:
        shard = np.load(f, mmap_mode="r")  # header only
        if shard.ndim != 2:
            raise ValueError(f"{f}: shard must be 2-D (rows x dimension), got shape {shard.shape}")
        if dim is None:
            dim, dtype = shard.shape[1], shard.dtype
        if shard.shape[1] != dim or shard.dtype != dtype:
            raise ValueError(f"{f}: shard is {shard.shape[1]}-d {shard.dtype}, the first shard is {dim}-d {dtype}")
        token = dask.base.tokenize(str(f.resolve()), os.path.getmtime(f), shard.shape)
        load = dask.delayed(_load_npy, pure=True)(str(f.resolve()), dask_key_name=f"npy-shard-{token}")
        parts.append(da.from_delayed(load, shape=shard.shape, dtype=shard.dtype))
        del shard
    array = da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    src = ShardSource("npy", tuple(str(f.resolve()) for f in files), root=str(p.resolve()))
    return DaskCorpus(array, client, source=src, progress=progress)


def _load_npy(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def open_zarr(path: str | os.PathLike[str], *, client: object = None, progress: bool = False) -> DaskCorpus:
    """A 2-D Zarr array (chunked by rows; column chunks are merged) as a :class:`DaskCorpus`."""
    da = require("dask.array")
    require("zarr")
    p = Path(path)
    array = da.from_zarr(str(p))
    if array.ndim != 2:
        raise ValueError(f"{p}: the Zarr array must be 2-D (rows x dimension), got shape {array.shape}")
    return DaskCorpus(
        array, client, source=ShardSource("zarr", (str(p.resolve()),), root=str(p.resolve())), progress=progress
    )


def open_parquet(
    path: str | os.PathLike[str], *, column: str = DEFAULT_VECTOR_COLUMN, client: object = None, progress: bool = False
) -> DaskCorpus:
    """Parquet files (one file or a folder, in file-name order) whose ``column`` holds equal-length float lists.

    One chunk per file; the vector dtype is float32 when the list values are float32, else float64.
    """
    da, dask = require("dask.array"), require("dask")
    pq = require("pyarrow.parquet")
    p = Path(path)
    files = _files(p, ".parquet")
    parts = []
    dim = dtype = None
    for f in files:
        pf = pq.ParquetFile(f)
        if column not in pf.schema_arrow.names:
            raise ValueError(f"{f}: no column {column!r} (columns: {', '.join(pf.schema_arrow.names)})")
        n = pf.metadata.num_rows
        if dim is None:
            first = _vectors(pf.read_row_group(0, columns=[column]).column(column), f, column)
            dim, dtype = first.shape[1], first.dtype
        token = dask.base.tokenize(str(f.resolve()), os.path.getmtime(f), column)
        load = dask.delayed(_load_parquet, pure=True)(
            str(f.resolve()), column, dim, dask_key_name=f"parquet-shard-{token}"
        )
        parts.append(da.from_delayed(load, shape=(n, dim), dtype=dtype))
    array = da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    src = ShardSource("parquet", tuple(str(f.resolve()) for f in files), column=column, root=str(p.resolve()))
    return DaskCorpus(array, client, source=src, progress=progress)


def _load_parquet(path: str, column: str, dim: int) -> np.ndarray:
    pq = require("pyarrow.parquet")
    out = _vectors(pq.read_table(path, columns=[column]).column(column), Path(path), column)
    if out.shape[1] != dim:
        raise ValueError(f"{path}: vectors in {column!r} are {out.shape[1]}-d, the first file's are {dim}-d")
    return out


def _vectors(col: Any, f: Path, column: str) -> np.ndarray:
    """(n, d) array from a pyarrow (chunked) list / fixed-size-list column of equal-length float lists."""
    pa = require("pyarrow")
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)):
        raise ValueError(f"{f}: column {column!r} must hold float lists, got {arr.type}")
    if arr.null_count:
        raise ValueError(f"{f}: column {column!r} has {arr.null_count} null vector(s)")
    n = len(arr)
    if pa.types.is_fixed_size_list(arr.type):
        lengths = np.full(n, arr.type.list_size)
    else:
        lengths = np.diff(np.asarray(arr.offsets))
    if n and (lengths != lengths[0]).any():
        raise ValueError(f"{f}: vectors in {column!r} have different lengths ({lengths.min()}..{lengths.max()})")
    values = np.asarray(arr.flatten())
    if values.dtype not in (np.float32, np.float64):
        raise ValueError(f"{f}: column {column!r} must hold float32 or float64 values, got {values.dtype}")
    return values.reshape(n, int(lengths[0]) if n else 0)
