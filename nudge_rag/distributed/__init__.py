"""Corpora on disk and on a Dask cluster: ``pip install 'nudge-rag[distributed]'``.

A NUDGE fit reads only the trained documents' rows and each validation query's top-k among the documents
that do not move; :class:`DaskCorpus` runs that scan as a Dask graph on a ``distributed`` cluster, so
``NudgeN().fit(dask_array, train, val)`` works on corpora larger than one machine's memory. Importing this
package needs NumPy only; Dask is imported when a corpus is created.

Example:
    >>> corpus = open_corpus("vectors/")                  # .npy shards, a Zarr array or Parquet files
    >>> model = NudgeN().fit(corpus, train, val)          # the scan runs on the cluster
    >>> write_back(corpus, model.patch_)                  # rewrites only the shards holding moved rows
"""

import sys
from typing import Any

from ..corpus import register_corpus_adapter
from .corpus import DaskCorpus, ShardSource
from .open import DEFAULT_VECTOR_COLUMN, open_corpus, open_npy_shards, open_parquet, open_zarr
from .writeback import nudged_array, patched_chunks, write_back, write_npy_shards

__all__ = [
    "DaskCorpus",
    "ShardSource",
    "open_corpus",
    "open_npy_shards",
    "open_zarr",
    "open_parquet",
    "DEFAULT_VECTOR_COLUMN",
    "nudged_array",
    "patched_chunks",
    "write_npy_shards",
    "write_back",
]


def _is_dask_array(x: Any) -> bool:
    """Whether ``x`` is a ``dask.array.Array``, without importing Dask (no instance exists before it is)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)


register_corpus_adapter(_is_dask_array, DaskCorpus)  # fit(dask_array, ...) reads through a DaskCorpus
