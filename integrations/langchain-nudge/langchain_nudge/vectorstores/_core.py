"""LangChain vector stores fine-tuned where they live, through :mod:`nudge_rag.stores`.

The core store is built from the LangChain store's own client (PGVector, Qdrant, Chroma, Milvus) or over its
in-process vectors (FAISS, InMemoryVectorStore: :mod:`._local`); a fit reads only the vectors the pairs name
(by document id) and one competitor search per validation question, and writes back only the moved vectors,
by id. ``store.revert()`` on the core store (:func:`core_store`) restores the originals.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from langchain_core.documents import Document

from langchain_nudge._pairs import QuestionPairsInput, document_pairs, normalize_pairs, to_chunks
from nudge_rag.finetune import FinetuneResult, Questions, group_pairs
from nudge_rag.stores import BaseStore, StoreError, StoreFinetuneReport, fit_store

__all__ = [
    "IN_PLACE_STORES",
    "core_store",
    "fit_in_place",
    "documents_by_id",
    "revert_in_place",
    "status_in_place",
    "reapply_in_place",
    "bind_embeddings",
    "EMBEDDING_ATTRIBUTES",
    "pairs_by_id",
    "store_questions",
    "unsupported_store",
]

#: LangChain vector stores written in place: class name and package.
IN_PLACE_STORES = (
    ("PGVector", "langchain-postgres"),
    ("QdrantVectorStore", "langchain-qdrant"),
    ("Chroma", "langchain-chroma"),
    ("Milvus", "langchain-milvus"),
    ("FAISS", "langchain-community"),
    ("SQLiteVec", "langchain-community"),
    ("DuckDB", "langchain-community"),
    ("Typesense", "langchain-community"),
    ("InMemoryVectorStore", "langchain-core"),
)

# langchain-postgres DistanceStrategy value -> core similarity
_PG_SIMILARITY = {"cosine": "cosine", "inner": "inner_product", "l2": "l2"}


def _pgvector(store: Any) -> BaseStore:
    from nudge_rag import stores

    engine = store._engine if store._engine is not None else store._async_engine
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    strategy = getattr(store._distance_strategy, "value", store._distance_strategy)
    return stores.PgVectorStore(
        url, "langchain_pg_embedding", collection=store.collection_name, similarity=_PG_SIMILARITY[str(strategy)]
    )


def _sqlitevec(store: Any) -> BaseStore:
    """``SQLiteVec`` searches its ``<table>_vec`` vec0 table (rowid, ``text_embedding``): that table is fitted and
    written; the ``text_embedding`` blob of ``<table>`` only feeds the insert trigger and keeps the base vector."""
    from nudge_rag import stores

    from .sqlitevec import APSWConnection

    conn = store._connection
    if not isinstance(conn, APSWConnection):
        raise TypeError(
            f"SQLiteVec over a {type(conn).__module__}.{type(conn).__name__} connection cannot be written in place: "
            "the core store writes through APSW, and sqlite-vec loaded into two SQLite libraries in one process "
            "crashes it. Build the store with connection=langchain_nudge.vectorstores.sqlitevec_connection(path)"
        )
    return stores.SQLiteStore(conn.apsw, f"{store._table}_vec", id_column="rowid", vector_column="text_embedding")


def _duckdb(store: Any) -> BaseStore:
    """``DuckDB`` ranks by cosine over its ``vector_key`` column: the ``FLOAT[]`` list column LangChain creates
    (searched exactly by the core store) or a ``FLOAT[d]`` array column of a table created beforehand."""
    from nudge_rag import stores

    return stores.DuckDBStore(
        store._connection,
        store._table_name,
        id_column=store._id_key,
        vector_column=store._vector_key,
        similarity="cosine",
    )


def core_store(store: Any) -> BaseStore | None:
    """The core store over a LangChain ``store`` (None when it is not one of :data:`IN_PLACE_STORES`).

    A PGVector core store holds its own connection: close it (``with core_store(store) as core: ...``).
    """
    from nudge_rag import stores

    from ._local import local_store

    local = local_store(store)
    if local is not None:
        return local
    mro = {c.__name__: c.__module__ for c in type(store).__mro__}
    if mro.get("PGVector", "").startswith("langchain_postgres"):
        return _pgvector(store)
    if mro.get("QdrantVectorStore", "").startswith("langchain_qdrant"):
        vectors = store.client.get_collection(store.collection_name).config.params.vectors
        named = store.vector_name if isinstance(vectors, dict) else None
        return stores.QdrantStore(store.client, store.collection_name, vector_name=named)
    if mro.get("Chroma", "").startswith("langchain_chroma"):
        return stores.ChromaStore(store._collection, client=store._client)
    if mro.get("Milvus", "").startswith("langchain_milvus"):
        field = store._vector_field if isinstance(store._vector_field, str) else None
        return stores.MilvusStore(store.client, store.collection_name, vector_field=field)
    community = {name for name, module in mro.items() if module.startswith("langchain_community.vectorstores")}
    if "SQLiteVec" in community:
        return _sqlitevec(store)
    if "DuckDB" in community:
        return _duckdb(store)
    if "Typesense" in community:
        return stores.TypesenseStore(store._typesense_client, store._typesense_collection_name, vector_field="vec")
    return None


def unsupported_store(store: Any) -> TypeError:
    """The one error for a store that is neither written in place nor handled by a registered adapter."""
    names = [f"{name} ({package})" for name, package in IN_PLACE_STORES]
    return TypeError(
        f"unsupported vector store {type(store).__name__}: its stored vectors cannot be written in place "
        f"(supported: {', '.join(names)}). Pass its documents (a list of Document) to NudgeEmbeddings.fit for a "
        "lookup table, or fit the database itself through nudge_rag.stores."
    )


def pairs_by_id(pairs: QuestionPairsInput, name: str) -> Questions:
    """``pairs`` grouped by question, each answer named by its store id (a ``Document`` by its ``id``)."""
    out = []
    for n, (question, doc, rel) in enumerate(normalize_pairs(pairs, name)):
        doc_id = doc.id if isinstance(doc, Document) else doc
        if doc_id is None:
            raise ValueError(
                f"{name} pair {n} names a Document without an id; stores written in place match by id (pass the "
                "ids given to add_documents, or the ids the store assigned)"
            )
        out.append((question, str(doc_id), rel))
    return group_pairs(out)


def store_questions(core: BaseStore, pairs: QuestionPairsInput, name: str, doc_field: str | None) -> Questions:
    """``pairs`` grouped by question, each answer a store id: named directly (``doc_field`` None), or a document
    whose chunks carry its id in the metadata field ``doc_field``, resolved now to its current chunks
    (:meth:`nudge_rag.stores.BaseStore.chunks_of`; a document without a chunk is skipped and counted, see
    :func:`langchain_nudge._pairs.to_chunks`). ``NotImplementedError`` naming the store where it has no metadata
    lookup."""
    if doc_field is None:
        return pairs_by_id(pairs, name)
    docs = document_pairs(normalize_pairs(pairs, name), doc_field, name)
    named = sorted({str(d) for a in docs.answers for d in a})
    return to_chunks(docs, core.chunks_of(doc_field, named), doc_field, name)


def fit_in_place(
    core: BaseStore,
    questions: QuestionPairsInput,
    validation: QuestionPairsInput | None,
    doc_field: str | None = None,
    **solver_args: Any,
) -> tuple[FinetuneResult, list[str], np.ndarray]:
    """Fit on ``core`` (:func:`nudge_rag.stores.fit_store`; pairs in any accepted form, answers named by store id,
    or by document id with ``doc_field``: :func:`store_questions`) and write only the moved vectors back, by id,
    compare-and-set against what the fit read; closes ``core``.

    Returns the fit (its report a :class:`~nudge_rag.stores.StoreFinetuneReport`), the ids written and their
    (n, d) float32 vectors (rows changed or deleted by another client meanwhile are skipped, and reported).
    ``ValueError`` (nothing written) when the pairs name unknown ids or a non-cosine store holds vectors that are
    not unit-norm.
    """
    with core:
        train = store_questions(core, questions, "questions", doc_field)
        val = None if validation is None else store_questions(core, validation, "validation", doc_field)
        try:
            fit = fit_store(core, train, val, report_cls=StoreFinetuneReport, **solver_args)
        except StoreError as exc:
            raise ValueError(str(exc)) from None
        written = fit.write(core)
        report = fit.result.report
        assert isinstance(report, StoreFinetuneReport)
        report.store, report.store_similarity = core.describe(), core.similarity
    report.vectors_read = int(fit.corpus.stats["fetched"])
    report.revert = "NudgeEmbeddings.revert_vectorstore(store)" if written else "nothing written"
    if fit.write_result is not None:
        report.record_write(fit.write_result)
    patch = fit.patch
    row = {d: j for j, d in enumerate(patch.ids or ())}
    vectors = np.asarray(patch.new, dtype=np.float32).reshape(-1, report.dimension)  # (0, d) when nothing moved
    return fit.result, written, vectors[[row[i] for i in written]]


def documents_by_id(store: Any, ids: list[str]) -> list[Document] | None:
    """The documents of ``ids``, in that order, from ``store.get_by_ids``; None where the store cannot return them.

    Called after a successful write, so a store that fails to return them (langchain-chroma raises a validation
    error for documents stored without metadata) costs only the lookup table, with a warning, never the fit.
    """
    try:
        found = store.get_by_ids(ids)
    except NotImplementedError:
        return None
    except Exception as exc:  # the store's own bug or limitation, after our write succeeded
        found = _chroma_documents(store, ids)
        if found is not None:
            return found
        warnings.warn(
            f"{type(store).__name__}.get_by_ids failed ({type(exc).__name__}: {str(exc)[:200]}); the store was "
            "written, but the moved documents are not kept for save()/nudge_vectorstore()",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    by_id = {str(d.id if d.id is not None else d.metadata.get("_id")): d for d in found}  # qdrant: metadata["_id"]
    return [by_id[i] for i in ids] if all(i in by_id for i in ids) else None


def _chroma_documents(store: Any, ids: list[str]) -> list[Document] | None:
    """langchain-chroma's ``get_by_ids`` refuses documents stored without metadata; its ``get`` does not."""
    if not type(store).__module__.startswith("langchain_chroma"):
        return None
    got = store.get(ids=ids, include=["documents", "metadatas"])
    metas = got.get("metadatas") or [None] * len(got["ids"])
    by_id = {
        i: Document(id=i, page_content=t or "", metadata=m or {})
        for i, t, m in zip(got["ids"], got["documents"], metas)
    }
    return [by_id[i] for i in ids] if all(i in by_id for i in ids) else None


def revert_in_place(store: Any) -> int:
    """Restore the originals of a LangChain ``store`` written in place; returns the number of rows restored."""
    with _core_of(store) as core:
        return core.revert().restored


def status_in_place(store: Any) -> Any:
    """How a LangChain ``store`` stands against the ledger of this library's writes (a ``StoreStatus``)."""
    with _core_of(store) as core:
        return core.status()


def reapply_in_place(store: Any) -> Any:
    """Write the nudge again on rows a re-index put back to their original vector (a ``ReapplyResult``)."""
    with _core_of(store) as core:
        return core.reapply()


def _core_of(store: Any) -> BaseStore:
    core = core_store(store)
    if core is None:
        raise unsupported_store(store)
    return core


#: Where LangChain stores keep the embedding function they call on ``add_documents`` / ``add_texts``.
EMBEDDING_ATTRIBUTES = ("_embedding_function", "embedding_function", "_embeddings", "embeddings", "embedding",
                        "embedding_func")  # fmt: skip


def bind_embeddings(store: Any, base: Any, nudged: Any) -> str | None:
    """Make ``nudged`` the embedding function ``store`` calls when documents are added, where the store holds
    ``base`` under one of :data:`EMBEDDING_ATTRIBUTES`; returns the attribute set, or None when there is none."""
    for name in EMBEDDING_ATTRIBUTES:
        declared = getattr(type(store), name, None)
        if isinstance(declared, property) and declared.fset is None:
            continue  # a read-only view of another attribute (InMemoryVectorStore.embeddings -> .embedding)
        if getattr(store, name, None) is base or getattr(store, name, None) is nudged:
            setattr(store, name, nudged)
            return name
    return None
