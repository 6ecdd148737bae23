"""Reading and rewriting the stored vectors of LangChain vector stores.

``fit_vectorstore`` writes PGVector, Qdrant, Chroma, Milvus, FAISS, SQLiteVec (through
:func:`sqlitevec_connection`), DuckDB, Typesense and InMemoryVectorStore in place, by id, through
:mod:`nudge_rag.stores` (``_core``, ``_local``); the adapters here read a store whole and build nudged copies for
``fit(store)``, ``nudge_vectorstore`` and ``build_vectorstore`` (never for ``fit_vectorstore``).
"""

from langchain_nudge.vectorstores.adapters import (
    FAISSAdapter,
    InMemoryVectorStoreAdapter,
    VectorStoreAdapter,
    get_adapter,
    register_adapter,
)
from langchain_nudge.vectorstores.sqlitevec import sqlitevec_connection

__all__ = [
    "VectorStoreAdapter",
    "InMemoryVectorStoreAdapter",
    "FAISSAdapter",
    "get_adapter",
    "register_adapter",
    "sqlitevec_connection",
]
