"""In-process LangChain stores (``InMemoryVectorStore``, FAISS) as :mod:`nudge_rag.stores` stores, written in place.

``InMemoryVectorStore`` is a core :class:`~nudge_rag.stores.MemoryStore` over its records; a FAISS store is a core
:class:`~nudge_rag.stores.FaissStore` over its live index. Their ledger is in memory, shared by every core store
over the same LangChain object, so ``revert_vectorstore`` works from any later call; it does not survive the
process (a store saved with ``dump`` / ``save_local`` after a write holds the nudged vectors).
"""

from __future__ import annotations

from typing import Any

from nudge_rag.stores import BaseStore, FaissStore, MemoryStore

__all__ = ["local_store", "local_ids", "is_faiss"]


def is_faiss(store: Any) -> bool:
    """Whether ``store`` (an instance or a class) is a ``langchain_community`` FAISS store (without importing
    langchain-community)."""
    cls = store if isinstance(store, type) else type(store)
    return any(
        c.__name__ == "FAISS" and c.__module__.startswith("langchain_community.vectorstores") for c in cls.__mro__
    )


def local_ids(store: Any) -> list[str] | None:
    """The ids of an ``InMemoryVectorStore`` (its records) or a FAISS store (index order); None for other stores."""
    from langchain_core.vectorstores import InMemoryVectorStore

    if isinstance(store, InMemoryVectorStore):
        return [str(k) for k in store.store]
    if is_faiss(store):
        return [str(store.index_to_docstore_id[j]) for j in range(int(store.index.ntotal))]
    return None


def local_store(store: Any) -> BaseStore | None:
    """The core store over an ``InMemoryVectorStore`` or a FAISS store (None for any other store)."""
    from langchain_core.vectorstores import InMemoryVectorStore

    if isinstance(store, InMemoryVectorStore):
        if not store.store:
            raise ValueError("the InMemoryVectorStore holds no documents")
        return MemoryStore(store.store, field="vector", owner=store, name="InMemoryVectorStore")
    if is_faiss(store):
        core = FaissStore(store.index, local_ids(store))
        core.ledger_owner = store  # one in-memory ledger per LangChain store, whichever core store writes it
        return core
    return None
