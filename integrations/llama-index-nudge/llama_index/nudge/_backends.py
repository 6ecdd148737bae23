"""Which core store (:mod:`nudge_rag.stores`) serves a LlamaIndex vector store: one builder per vector-store class
(``SimpleVectorStore``: a :class:`~nudge_rag.stores.MemoryStore` over its ``embedding_dict``, changed in place; the
databases: their backends over the vector store's own client). Adding a store is one builder and one line below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nudge_rag import stores
from nudge_rag.stores import BaseStore, StoreError

__all__ = ["BUILDERS", "SUPPORTED_STORES", "core_store", "store_class_name"]


def store_class_name(vector_store: Any) -> str:
    """The store's class name (some stores' ``class_name()`` answers ``"base_component"``)."""
    return type(vector_store).__name__


def _simple(index: Any) -> BaseStore:
    vs = index.vector_store  # node id -> list of floats; the ledger is shared by every engine over this store
    return stores.MemoryStore(vs.data.embedding_dict, similarity="cosine", owner=vs, name="SimpleVectorStore")


def _qdrant(index: Any) -> BaseStore:
    vs = index.vector_store
    if vs.client is None:
        raise ValueError("QdrantVectorStore needs a synchronous `client` (QdrantClient) for NUDGE fine-tuning")
    vectors = vs.client.get_collection(vs.collection_name).config.params.vectors
    named = vs.dense_vector_name if isinstance(vectors, dict) and vs.dense_vector_name in vectors else None
    return stores.QdrantStore(vs.client, vs.collection_name, vector_name=named)


def _lancedb(index: Any) -> BaseStore:
    vs = index.vector_store  # LanceDBVectorStore searches with LanceDB's default metric, L2
    table = vs._table if vs._table is not None else vs._connection.open_table(vs.table_name)
    return stores.LanceDBStore(table, db=vs._connection, vector_column=vs.vector_column_name or "vector")


def _faiss(index: Any) -> BaseStore:
    faiss_index = index.vector_store._faiss_index
    by_position = index.index_struct.nodes_dict  # "0", "1", ... -> node id
    ids = [by_position.get(str(j)) for j in range(int(faiss_index.ntotal))]
    if any(i is None for i in ids):
        raise StoreError("the FAISS index holds vectors the index's nodes_dict does not name")
    core = stores.FaissStore(faiss_index, ids)
    core.ledger_owner = faiss_index  # one in-memory ledger per FAISS index, whichever engine writes it
    return core


def _pgvector(index: Any) -> BaseStore:
    """The table ``<schema>.data_<table_name>`` (ids in ``node_id``), over the store's own connection URL with
    the SQLAlchemy driver dropped. LlamaIndex always searches it by cosine distance."""
    vs = index.vector_store
    if vs.use_halfvec:
        raise NotImplementedError(
            "PGVectorStore(use_halfvec=True) stores half-precision vectors: NUDGE writes float32 vectors and its "
            "revert restores them bit for bit, which a halfvec column cannot hold; use a float32 (vector) table"
        )
    from sqlalchemy.engine import make_url

    url = vs._engine.url if vs._engine is not None else make_url(vs.connection_string)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    table = f"{vs.schema_name}.data_{vs.table_name}"
    return stores.PgVectorStore(dsn, table, id_column="node_id", vector_column="embedding", similarity="cosine")


def _duckdb(index: Any) -> BaseStore:
    """LlamaIndex's table (``node_id VARCHAR``, ``embedding FLOAT[d]``), over the store's own connection; it
    ranks by ``array_cosine_similarity``. Needs ``embed_dim`` (a ``FLOAT[]`` list column has no fixed size)."""
    vs = index.vector_store
    vs.client  # noqa: B018 - opens the store's shared connection
    return stores.DuckDBStore(
        vs._shared_conn, vs.table_name, id_column="node_id", vector_column="embedding", similarity="cosine"
    )


#: LlamaIndex vector store class -> the core store over it (given the index).
BUILDERS: dict[str, Callable[[Any], BaseStore]] = {
    "SimpleVectorStore": _simple,
    "QdrantVectorStore": _qdrant,
    "ChromaVectorStore": lambda index: stores.ChromaStore(index.vector_store._collection),
    "LanceDBVectorStore": _lancedb,
    "FaissVectorStore": _faiss,
    "PGVectorStore": _pgvector,
    # the primary key ``id`` is the node id; the metric is the collection's vector index's
    "MilvusVectorStore": lambda index: stores.MilvusStore(
        index.vector_store.client, index.vector_store.collection_name, vector_field=index.vector_store.embedding_field
    ),
    "DuckDBVectorStore": _duckdb,
}
SUPPORTED_STORES = tuple(BUILDERS)


def core_store(index: Any) -> BaseStore:
    """The core store over ``index.vector_store``; ``NotImplementedError`` naming the supported stores otherwise."""
    name = store_class_name(index.vector_store)
    if name not in BUILDERS:
        raise NotImplementedError(
            f"NUDGE fine-tuning does not support a {name}; supported vector stores: {', '.join(SUPPORTED_STORES)}"
        )
    return BUILDERS[name](index)
