"""Read the stored vectors of a LangChain vector store and build a copy of it with other vectors.

These serve the lookup-table and copy paths of :class:`~langchain_nudge.NudgeEmbeddings`: ``fit(store)`` (which
reads every stored vector) and ``nudge_vectorstore`` / ``build_vectorstore`` (apply a saved fit to a copy).
``fit_vectorstore`` never copies: it writes the store itself (:mod:`._core`).

Two stores are supported out of the box: ``InMemoryVectorStore`` (langchain-core; always ranks by cosine
similarity) and ``FAISS`` (langchain-community, imported lazily), both read through the core in-process stores
(:func:`read_in_process`). :func:`register_adapter` adds others.
"""

from __future__ import annotations

import copy
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore

from langchain_nudge.vectorstores._core import core_store
from langchain_nudge.vectorstores._local import is_faiss, local_ids

__all__ = [
    "VectorStoreAdapter",
    "InMemoryVectorStoreAdapter",
    "FAISSAdapter",
    "register_adapter",
    "get_adapter",
    "read_source",
    "read_in_process",
    "FAISS_INSTALL_HINT",
]

FAISS_INSTALL_HINT = "pip install langchain-community faiss-cpu"

NUDGE_M_COSINE_MESSAGE = (
    "{store} always ranks documents by cosine similarity, which rescales every vector to unit length and so "
    "undoes NUDGE-M (its vectors are only valid under inner product). Use variant='nudge-n' (the default) with "
    "this store, or NUDGE-M with FAISS and DistanceStrategy.MAX_INNER_PRODUCT."
)


class VectorStoreAdapter:
    """How to read the vectors of one kind of vector store and write a nudged copy of it.

    Subclass it and :func:`register_adapter` an instance to support another store.
    """

    #: Human-readable name used in messages.
    name: str = "vector store"

    def handles(self, store_cls: type) -> bool:
        """Whether this adapter handles stores of class ``store_cls``."""
        raise NotImplementedError

    def check_variant(self, variant: str, store: VectorStore | None = None, **build_kwargs: Any) -> None:
        """Raise ``ValueError`` when vectors of ``variant`` ("nudge-n"/"nudge-m") cannot be searched correctly."""

    def extract(self, store: VectorStore) -> tuple[list[Document], np.ndarray]:
        """All documents of ``store`` (with their ids) and their stored vectors, row-aligned ((0, 0) if empty)."""
        raise NotImplementedError

    def rebuild(
        self, store: VectorStore, documents: list[Document], vectors: np.ndarray, embedding: Embeddings, variant: str
    ) -> VectorStore:
        """A new store like ``store`` holding ``documents`` with ``vectors`` and querying through ``embedding``."""
        raise NotImplementedError

    def build(
        self,
        store_cls: type,
        documents: list[Document],
        vectors: np.ndarray,
        embedding: Embeddings,
        variant: str,
        **kwargs: Any,
    ) -> VectorStore:
        """A new store of class ``store_cls`` holding ``documents`` with ``vectors``."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------- in-memory
class InMemoryVectorStoreAdapter(VectorStoreAdapter):
    """``langchain_core.vectorstores.InMemoryVectorStore`` (and subclasses): cosine similarity only."""

    name = "InMemoryVectorStore"

    def handles(self, store_cls: type) -> bool:
        return isinstance(store_cls, type) and issubclass(store_cls, InMemoryVectorStore)

    def check_variant(self, variant: str, store: VectorStore | None = None, **build_kwargs: Any) -> None:
        if variant == "nudge-m":
            raise ValueError(NUDGE_M_COSINE_MESSAGE.format(store=self.name))

    def extract(self, store: VectorStore) -> tuple[list[Document], np.ndarray]:
        return read_in_process(store)

    def _fill(self, new: InMemoryVectorStore, documents: list[Document], vectors: np.ndarray) -> InMemoryVectorStore:
        for doc, vec in zip(documents, vectors):
            doc_id = doc.id or str(uuid.uuid4())
            new.store[doc_id] = {
                "id": doc_id,
                "vector": vec.tolist(),
                "text": doc.page_content,
                "metadata": copy.deepcopy(doc.metadata),
            }
        return new

    def rebuild(self, store, documents, vectors, embedding, variant):
        self.check_variant(variant)
        return self._fill(type(store)(embedding=embedding), documents, vectors)

    def build(self, store_cls, documents, vectors, embedding, variant, **kwargs):
        self.check_variant(variant)
        return self._fill(store_cls(embedding=embedding, **kwargs), documents, vectors)


# ---------------------------------------------------------------------------------------------- FAISS
def _import_faiss() -> tuple[Any, Any, Any, Any]:
    try:
        import faiss
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy
    except ImportError as exc:
        raise ImportError(f"FAISS support needs langchain-community and faiss: {FAISS_INSTALL_HINT}") from exc
    return faiss, FAISS, InMemoryDocstore, DistanceStrategy


class FAISSAdapter(VectorStoreAdapter):
    """``langchain_community.vectorstores.FAISS``: NUDGE-M copies always use inner product.

    langchain-community and faiss are imported only when a FAISS store is actually handled.
    """

    name = "FAISS"

    def handles(self, store_cls: type) -> bool:
        return isinstance(store_cls, type) and is_faiss(store_cls)

    def check_variant(self, variant: str, store: VectorStore | None = None, **build_kwargs: Any) -> None:
        if variant != "nudge-m":
            return
        _, _, _, strategy_enum = _import_faiss()
        strategy = build_kwargs.get("distance_strategy")
        if strategy is not None and strategy != strategy_enum.MAX_INNER_PRODUCT:
            raise ValueError(
                f"NUDGE-M vectors are only valid under inner product; build FAISS with "
                f"distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT (got {strategy})"
            )
        if build_kwargs.get("normalize_L2"):
            raise ValueError("NUDGE-M vectors must not be L2-normalised: do not pass normalize_L2=True")

    def extract(self, store: VectorStore) -> tuple[list[Document], np.ndarray]:
        return read_in_process(store)

    def _new_store(self, FAISS, InMemoryDocstore, index, embedding, documents, vectors, **kwargs):
        ids = [d.id or str(uuid.uuid4()) for d in documents]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate document ids; FAISS needs unique ids")
        docstore = InMemoryDocstore(
            {
                i: Document(id=i, page_content=d.page_content, metadata=copy.deepcopy(d.metadata))
                for i, d in zip(ids, documents)
            }
        )
        store = FAISS(embedding, index, docstore, dict(enumerate(ids)), **kwargs)
        if len(documents):
            block = np.ascontiguousarray(vectors, dtype=np.float32)
            if store._normalize_L2:
                block = block.copy()
                import faiss

                faiss.normalize_L2(block)
            index.add(block)
        return store

    def rebuild(self, store, documents, vectors, embedding, variant):
        faiss, FAISS, InMemoryDocstore, strategy_enum = _import_faiss()
        old = store.index
        dim = int(old.d)
        strategy = store.distance_strategy
        normalize = bool(store._normalize_L2)
        ip_metric = faiss.METRIC_INNER_PRODUCT
        if variant == "nudge-m" and (strategy != strategy_enum.MAX_INNER_PRODUCT or old.metric_type != ip_metric):
            warnings.warn(
                f"NUDGE-M vectors are only valid under inner product: the nudged FAISS copy uses "
                f"DistanceStrategy.MAX_INNER_PRODUCT (flat inner-product index) instead of {strategy}",
                UserWarning,
                stacklevel=3,
            )
            index = faiss.IndexFlatIP(dim)
            strategy, normalize = strategy_enum.MAX_INNER_PRODUCT, False
        else:
            if variant == "nudge-m":
                normalize = False
            try:
                index = faiss.clone_index(old)
                index.reset()
            except RuntimeError:
                index = faiss.IndexFlat(dim, old.metric_type)
        return self._new_store(
            FAISS,
            InMemoryDocstore,
            index,
            embedding,
            documents,
            vectors,
            relevance_score_fn=store.override_relevance_score_fn,
            normalize_L2=normalize,
            distance_strategy=strategy,
        )

    def build(self, store_cls, documents, vectors, embedding, variant, **kwargs):
        faiss, _, InMemoryDocstore, strategy_enum = _import_faiss()
        self.check_variant(variant, **kwargs)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError("cannot build a FAISS store without documents (its dimension is unknown)")
        strategy = kwargs.pop("distance_strategy", None)
        if strategy is None:
            strategy = strategy_enum.MAX_INNER_PRODUCT if variant == "nudge-m" else strategy_enum.EUCLIDEAN_DISTANCE
        dim = int(vectors.shape[1])
        index = faiss.IndexFlatIP(dim) if strategy == strategy_enum.MAX_INNER_PRODUCT else faiss.IndexFlatL2(dim)
        return self._new_store(
            store_cls, InMemoryDocstore, index, embedding, documents, vectors, distance_strategy=strategy, **kwargs
        )


# ---------------------------------------------------------------------------------------------- registry
_ADAPTERS: list[VectorStoreAdapter] = [InMemoryVectorStoreAdapter(), FAISSAdapter()]


def register_adapter(adapter: VectorStoreAdapter) -> None:
    """Support another vector store class: ``adapter`` is consulted before the built-in ones."""
    if not isinstance(adapter, VectorStoreAdapter):
        raise TypeError(f"adapter must be a VectorStoreAdapter, got {type(adapter).__name__}")
    _ADAPTERS.insert(0, adapter)


def get_adapter(store_or_cls: VectorStore | type) -> VectorStoreAdapter:
    """The adapter for a vector store (instance or class); ``TypeError`` for unsupported stores."""
    cls = store_or_cls if isinstance(store_or_cls, type) else type(store_or_cls)
    for adapter in _ADAPTERS:
        if adapter.handles(cls):
            return adapter
    supported = ", ".join(a.name for a in _ADAPTERS)
    raise TypeError(
        f"unsupported vector store {cls.__name__}: its stored vectors cannot be read or replaced (supported: "
        f"{supported}). Pass its documents (a list of Document) to NudgeEmbeddings.fit, or register_adapter() one."
    )


def read_in_process(store: VectorStore) -> tuple[list[Document], np.ndarray]:
    """Every document of an ``InMemoryVectorStore`` or FAISS store (ids set, metadata copied) and its stored
    vector, row-aligned; the vectors are read through the core in-process store (:mod:`._local`)."""
    ids = local_ids(store) or []
    if not ids:
        return [], np.zeros((0, 0), dtype=np.float32)
    found = store.get_by_ids(ids)  # in the order asked, missing ones left out (both stores)
    if len(found) != len(ids):
        raise ValueError(f"{type(store).__name__} returns {len(found)} documents for its {len(ids)} ids")
    docs = [Document(id=i, page_content=d.page_content, metadata=copy.deepcopy(d.metadata)) for i, d in zip(ids, found)]
    with core_store(store) as core:  # type: ignore[union-attr]  # an in-process store always has one
        return docs, core.fetch(ids)


# ---------------------------------------------------------------------------------------------- reading a source
def read_source(source: VectorStore | Sequence[Document], base: Embeddings) -> tuple[list[Document], np.ndarray]:
    """The documents a fit runs on and their vectors (row-aligned).

    A vector store's stored vectors are read as they are (through its adapter); a list of ``Document`` is
    embedded once with ``base``. Empty sources and malformed inputs raise with a clear message.
    """
    if isinstance(source, VectorStore):
        adapter = get_adapter(source)
        emb = getattr(source, "embeddings", None)
        if type(emb).__name__ == "NudgeEmbeddings" and getattr(emb, "is_fitted", False):
            warnings.warn(
                "this vector store already holds nudged vectors (its embeddings are a fitted NudgeEmbeddings); "
                "fitting on it nudges them again. Fit on the original store to start from the base vectors.",
                UserWarning,
                stacklevel=3,
            )
        docs, vectors = adapter.extract(source)
    elif isinstance(source, (list, tuple)):
        docs = list(source)
        for n, doc in enumerate(docs):
            if not isinstance(doc, Document):
                raise TypeError(f"source[{n}] must be a langchain_core Document, got {type(doc).__name__}")
        vectors = np.zeros((0, 0), dtype=np.float32)
        if docs:
            raw = base.embed_documents([d.page_content for d in docs])
            if len(raw) != len(docs):
                raise ValueError(f"the base embeddings returned {len(raw)} vectors for {len(docs)} documents")
            vectors = np.asarray(raw, dtype=np.float32)
    else:
        raise TypeError(f"source must be a vector store or a list of Document, got {type(source).__name__}")
    if not docs:
        raise ValueError("the source holds no documents")
    if vectors.ndim != 2 or vectors.shape[0] != len(docs):
        raise ValueError(f"expected one vector per document, got an array of shape {vectors.shape}")
    return docs, vectors
