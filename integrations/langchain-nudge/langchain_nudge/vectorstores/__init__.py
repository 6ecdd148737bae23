"""Reading and rewriting the stored vectors of LangChain vector stores (InMemoryVectorStore, FAISS, ...)."""

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
