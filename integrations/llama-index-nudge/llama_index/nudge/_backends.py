"""Which core store (:mod:`nudge_rag.stores`) serves a LlamaIndex vector store, built from the store's own client.

A database-backed index is fine-tuned where it lives: the fit reads only the vectors that the pairs name and
one competitor search per validation question, and writes back only the moved vectors, by node id
(:func:`fit_in_store`). The in-memory ``SimpleVectorStore`` keeps the in-memory path of :mod:`._stores`.
"""

from __future__ import annotations

from typing import Any

from nudge_rag.finetune import FinetuneResult, Questions
from nudge_rag.stores import BaseStore, StoreCorpus, StoreError, fit_store

__all__ = ["DATABASE_STORES", "SUPPORTED_STORES", "core_store", "fit_in_store", "store_class_name"]

#: LlamaIndex vector stores fine-tuned in the database, with the core backend that serves each.
DATABASE_STORES = {
    "QdrantVectorStore": "QdrantStore",
    "ChromaVectorStore": "ChromaStore",
    "LanceDBVectorStore": "LanceDBStore",
    "FaissVectorStore": "FaissStore",
    "PGVectorStore": "PgVectorStore",
    "MilvusVectorStore": "MilvusStore",
}
SUPPORTED_STORES = ("SimpleVectorStore", *DATABASE_STORES)


def store_class_name(vector_store: Any) -> str:
    """The store's class name (some stores' ``class_name()`` answers ``"base_component"``)."""
    return type(vector_store).__name__


def unsupported(name: str) -> NotImplementedError:
    return NotImplementedError(
        f"NUDGE fine-tuning does not support a {name}; supported vector stores: {', '.join(SUPPORTED_STORES)}"
    )


def core_store(index: Any) -> BaseStore | None:
    """The core store over ``index.vector_store`` (None for ``SimpleVectorStore``, fitted in memory).

    Raises ``NotImplementedError`` naming the supported stores for any other store.
    """
    from nudge_rag import stores

    vs = index.vector_store
    name = store_class_name(vs)
    if name == "SimpleVectorStore":
        return None
    if name == "QdrantVectorStore":
        if vs.client is None:
            raise ValueError("QdrantVectorStore needs a synchronous `client` (QdrantClient) for NUDGE fine-tuning")
        vectors = vs.client.get_collection(vs.collection_name).config.params.vectors
        named = vs.dense_vector_name if isinstance(vectors, dict) and vs.dense_vector_name in vectors else None
        return stores.QdrantStore(vs.client, vs.collection_name, vector_name=named)
    if name == "ChromaVectorStore":
        return stores.ChromaStore(vs._collection)
    if name == "LanceDBVectorStore":
        table = vs._table if vs._table is not None else vs._connection.open_table(vs.table_name)
        # LanceDBVectorStore searches with LanceDB's default metric, L2
        return stores.LanceDBStore(table, db=vs._connection, vector_column=vs.vector_column_name or "vector")
    if name == "FaissVectorStore":
        faiss_index = vs._faiss_index
        by_position = index.index_struct.nodes_dict  # "0", "1", ... -> node id
        ids = [by_position.get(str(j)) for j in range(int(faiss_index.ntotal))]
        if any(i is None for i in ids):
            raise StoreError("the FAISS index holds vectors the index's nodes_dict does not name")
        core = stores.FaissStore(faiss_index, ids)
        core.ledger_owner = faiss_index  # one in-memory ledger per FAISS index, whichever engine writes it
        return core
    if name == "PGVectorStore":
        return _pg_store(vs)
    if name == "MilvusVectorStore":
        # the primary key ``id`` is the node id; the metric is the collection's vector index's
        return stores.MilvusStore(vs.client, vs.collection_name, vector_field=vs.embedding_field)
    raise unsupported(name)


def _pg_store(vs: Any) -> BaseStore:
    """The core pgvector store over a ``PGVectorStore``'s table ``<schema>.data_<table_name>`` (ids in ``node_id``).

    The connection comes from the store's own engine (its URL keeps the password) or connection string, with the
    SQLAlchemy driver dropped (``postgresql+psycopg2://`` -> ``postgresql://``, read by psycopg 3). LlamaIndex
    always searches by cosine distance (an HNSW index of ``hnsw_kwargs`` only speeds that up), so the store is
    cosine whatever the index's operator class.
    """
    from nudge_rag import stores

    if vs.use_halfvec:
        raise NotImplementedError(
            "PGVectorStore(use_halfvec=True) stores half-precision vectors: NUDGE writes float32 vectors and its "
            "revert restores them bit for bit, which a halfvec column cannot hold; use a float32 (vector) table"
        )
    from sqlalchemy.engine import make_url

    engine = vs._engine  # None until the store first connects
    url = engine.url if engine is not None else make_url(vs.connection_string)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return stores.PgVectorStore(
        dsn,
        f"{vs.schema_name}.data_{vs.table_name}",
        id_column="node_id",
        vector_column="embedding",
        similarity="cosine",
    )


def fit_in_store(
    store: BaseStore, train: Questions, val: Questions | None, *, embed_queries: Any, **solver_args: Any
) -> tuple[FinetuneResult, StoreCorpus]:
    """Fit on ``store`` (:func:`nudge_rag.stores.fit_store`: node ids are the store's ids) and write only the patch
    back, by id (``store.write`` keeps the originals for ``store.revert``).

    ``solver_args`` go to :func:`nudge_rag.finetune.finetune_pairs`. Raises ``ValueError`` when the pairs name
    node ids the store does not hold or the store holds non-unit vectors; nothing is written then.
    """
    try:
        fit = fit_store(store, train, val, embed_queries=embed_queries, **solver_args)
    except StoreError as exc:
        raise ValueError(str(exc)) from None
    from llama_index.nudge._stores import StoreWriteError

    try:
        fit.write(store)  # all or nothing: a failed batch is rolled back
    except Exception as exc:
        raise StoreWriteError(
            f"writing nudged vectors to the {store.describe()} failed ({type(exc).__name__}: {exc}); "
            "the original vectors were restored",
            True,
        ) from exc
    return fit.result, fit.corpus
