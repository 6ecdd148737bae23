"""Database-backed LangChain vector stores fine-tuned where they live, through :mod:`nudge_rag.stores`.

The core store is built from the LangChain store's own client; a fit reads only the vectors the pairs name
(by document id) and one competitor search per validation question, and writes back only the moved vectors,
by id. ``store.revert()`` on the core store (:func:`core_store`) restores the originals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nudge_rag.finetune import FinetuneResult, Questions
from nudge_rag.stores import BaseStore, StoreError, fit_store

__all__ = ["DATABASE_STORES", "core_store", "fit_in_store"]

#: LangChain vector stores written in place, by the class name of their module's store.
DATABASE_STORES = ("QdrantVectorStore", "Chroma", "Milvus")


def core_store(store: Any) -> BaseStore | None:
    """The core store over a LangChain ``store`` (None when it is not a database store handled here)."""
    from nudge_rag import stores

    mro = {c.__name__: c.__module__ for c in type(store).__mro__}
    if mro.get("QdrantVectorStore", "").startswith("langchain_qdrant"):
        vectors = store.client.get_collection(store.collection_name).config.params.vectors
        named = store.vector_name if isinstance(vectors, dict) else None
        return stores.QdrantStore(store.client, store.collection_name, vector_name=named)
    if mro.get("Chroma", "").startswith("langchain_chroma"):
        return stores.ChromaStore(store._collection, client=store._client)
    if mro.get("Milvus", "").startswith("langchain_milvus"):
        field = store._vector_field if isinstance(store._vector_field, str) else None
        return stores.MilvusStore(store.client, store.collection_name, vector_field=field)
    return None


def fit_in_store(
    store: BaseStore,
    train: Questions,
    val: Questions | None,
    *,
    embed_queries: Callable[[list[str]], np.ndarray],
    **solver_args: Any,
) -> tuple[FinetuneResult, list[str]]:
    """Fit on ``store`` (:func:`nudge_rag.stores.fit_store`: pairs name its document ids) and write only the moved
    vectors back, by id.

    Returns the fit and the ids written. ``ValueError`` (nothing written) when the pairs name unknown ids or a
    non-cosine store holds vectors that are not unit-norm.
    """
    try:
        fit = fit_store(store, train, val, embed_queries=embed_queries, **solver_args)
    except StoreError as exc:
        raise ValueError(str(exc)) from None
    patch = fit.patch
    t = time.perf_counter()
    written = list(patch.ids or ())
    if written:
        store.write(written, patch.new)
    fit.result.report.seconds["store_write"] = time.perf_counter() - t
    return fit.result, written
