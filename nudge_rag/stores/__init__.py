"""Fine-tune document vectors where they live: a small protocol over vector databases, and its backends.

A NUDGE fit needs only the vectors that training pairs name and each validation query's best competitors,
which is a search the store already answers. :class:`StoreCorpus` exposes a :class:`VectorStore` as a
:class:`~nudge_rag.corpus.Corpus`; :func:`finetune_store` fits and writes only the moved rows back,
compare-and-set against what the fit read, recording each row's original and written vector in the store's
ledger: ``store.revert()`` undoes exactly what nudge-rag wrote, ``store.status()`` says how the store stands and
``store.reapply()`` restores nudges a re-index undid. One writer at a time per store. :func:`retune_store` re-tunes
a store from its users' feedback (:class:`~nudge_rag.feedback.FeedbackLog`), building on the previous re-tune.

Backends (each imported only when used; ``pip install "nudge-rag[stores]"``):

==============  ==========================================  =============================================
scheme          class                                       built from a client
==============  ==========================================  =============================================
postgresql://   :class:`~.pgvector.PgVectorStore`           ``PgVectorStore(conn_or_dsn, table=...)``
qdrant://       :class:`~.qdrant.QdrantStore`               ``QdrantStore(client=QdrantClient, collection=)``
chroma://       :class:`~.chroma.ChromaStore`               ``ChromaStore(collection=chroma Collection)``
milvus://       :class:`~.milvus.MilvusStore`               ``MilvusStore(client=MilvusClient, collection=)``
lancedb://      :class:`~.lancedb.LanceDBStore`             ``LanceDBStore(table=lancedb Table)``
faiss://        :class:`~.faiss.FaissStore`                 ``FaissStore(index, ids)``
(in process)    :class:`~.memory.MemoryStore`               ``MemoryStore(mapping id -> vector or record)``
==============  ==========================================  =============================================

Only NumPy is imported with this package.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._base import (
    SIMILARITIES,
    BaseStore,
    ReapplyResult,
    RevertResult,
    StoreError,
    StoreLockedError,
    StoreStatus,
    VectorStore,
    WriteResult,
    as_id_list,
)
from ._corpus import StoreCorpus
from ._ledger import Ledger, LedgerRecord, SqliteLedger
from ._registry import BACKENDS, StoreURI, open_store, parse_uri

__all__ = [
    "VectorStore",
    "BaseStore",
    "StoreError",
    "StoreLockedError",
    "WriteResult",
    "RevertResult",
    "ReapplyResult",
    "StoreStatus",
    "Ledger",
    "LedgerRecord",
    "SqliteLedger",
    "SIMILARITIES",
    "as_id_list",
    "StoreCorpus",
    "StoreURI",
    "BACKENDS",
    "open_store",
    "parse_uri",
    "finetune_store",
    "StoreFinetuneReport",
    "StoreFit",
    "fit_store",
    "insert_store",
    "check_unit_norm",
    "check_variant_fits_store",
    "retune_store",
    "RetuneReport",
    "PgVectorStore",
    "QdrantStore",
    "ChromaStore",
    "MilvusStore",
    "LanceDBStore",
    "FaissStore",
    "SQLiteStore",
    "DuckDBStore",
    "TypesenseStore",
    "MemoryStore",
]

_LAZY = {
    "PgVectorStore": "pgvector",
    "QdrantStore": "qdrant",
    "ChromaStore": "chroma",
    "MilvusStore": "milvus",
    "LanceDBStore": "lancedb",
    "FaissStore": "faiss",
    "SQLiteStore": "sqlite",
    "DuckDBStore": "duckdb",
    "TypesenseStore": "typesense",
    "MemoryStore": "memory",
    "finetune_store": "_finetune",
    "StoreFinetuneReport": "_finetune",
    "StoreFit": "_finetune",
    "fit_store": "_finetune",
    "insert_store": "_finetune",
    "check_unit_norm": "_finetune",
    "check_variant_fits_store": "_finetune",
    "retune_store": "_retune",
    "RetuneReport": "_retune",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
