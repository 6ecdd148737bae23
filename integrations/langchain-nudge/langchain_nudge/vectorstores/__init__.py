"""Reading and rewriting the stored vectors of LangChain vector stores.

``fit_vectorstore`` writes PGVector, Qdrant, Chroma, Milvus, FAISS and InMemoryVectorStore in place, by id
(``_core``, ``_local``); the adapters here read a store whole and build nudged copies (``nudge_vectorstore``,
``build_vectorstore``, and stores of a :func:`register_adapter` adapter).
"""

from langchain_nudge.vectorstores.adapters import (
    FAISSAdapter,
    InMemoryVectorStoreAdapter,
    VectorStoreAdapter,
    get_adapter,
    register_adapter,
)

__all__ = [
    "VectorStoreAdapter",
    "InMemoryVectorStoreAdapter",
    "FAISSAdapter",
    "get_adapter",
    "register_adapter",
]
