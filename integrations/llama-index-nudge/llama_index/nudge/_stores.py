"""Reading and rewriting the vectors a ``VectorStoreIndex`` stores, one adapter per vector store.

Every adapter captures what the store holds (node ids, their vectors, their nodes) and rewrites a set of
vectors in place; a write that fails part way puts the original vectors back before the error propagates.
Supported: the default ``SimpleVectorStore`` and ``QdrantVectorStore`` (server, cloud or local mode).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from llama_index.core.schema import BaseNode

logger = logging.getLogger(__name__)

COSINE = "cosine"
INNER_PRODUCT = "inner_product"
EUCLIDEAN = "euclidean"


class StoreWriteError(RuntimeError):
    """Writing nudged vectors failed; ``restored`` says whether the original vectors were put back."""

    def __init__(self, message: str, restored: bool) -> None:
        super().__init__(message)
        self.restored = restored


@dataclass
class Snapshot:
    """What the store holds: parallel lists over its entries."""

    node_ids: list[str]
    store_ids: list[str]
    vectors: list[Any]  # list of floats, or None when the entry has no vector


class VectorStoreAdapter(ABC):
    """Store-specific capture and in-place rewrite of document vectors."""

    store_name: str
    similarity: str

    def __init__(self, index: Any) -> None:
        self.index = index
        self.vector_store = index.vector_store

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Current entries of the store, in a stable order."""

    @abstractmethod
    def get_nodes(self, node_ids: Sequence[str]) -> list[BaseNode]:
        """The nodes (text and metadata) with these ids, in that order."""

    @abstractmethod
    def _write_batch(
        self, store_ids: Sequence[str], vectors: Sequence[list[float] | None], node_ids: Sequence[str]
    ) -> None:
        """Write vectors for existing entries (``None`` removes an entry's vector)."""

    write_batch_size = 256

    def write(
        self,
        store_ids: Sequence[str],
        node_ids: Sequence[str],
        new: np.ndarray,
        old: Sequence[list[float] | None],
    ) -> None:
        """Replace the vectors of ``store_ids`` by the rows of ``new``; on failure restore ``old``."""
        done = 0
        try:
            for b0 in range(0, len(store_ids), self.write_batch_size):
                b1 = min(b0 + self.write_batch_size, len(store_ids))
                done = b1  # a failing batch may be partly applied: restore it too
                self._write_batch(store_ids[b0:b1], [row.tolist() for row in new[b0:b1]], node_ids[b0:b1])
        except Exception as exc:
            restored = self.put_back(store_ids[:done], old[:done], node_ids[:done])
            state = (
                "the original vectors were restored"
                if restored
                else ("restoring the original vectors ALSO failed; the store may hold a mix of old and new vectors")
            )
            raise StoreWriteError(
                f"writing nudged vectors to the {self.store_name} failed ({type(exc).__name__}: {exc}); {state}",
                restored,
            ) from exc

    def put_back(self, store_ids: Sequence[str], old: Sequence[list[float] | None], node_ids: Sequence[str]) -> bool:
        """Write the ``old`` vectors back; ``False`` (and a logged error) when that fails too."""
        try:
            for b0 in range(0, len(store_ids), self.write_batch_size):
                b1 = b0 + self.write_batch_size
                self._write_batch(store_ids[b0:b1], list(old[b0:b1]), node_ids[b0:b1])
            return True
        except Exception:  # pragma: no cover - reported through StoreWriteError.restored
            logger.exception("restoring the original vectors failed")
            return False


class SimpleStoreAdapter(VectorStoreAdapter):
    """The in-memory ``SimpleVectorStore`` (cosine similarity); nodes live in the index's docstore."""

    store_name = "SimpleVectorStore"
    similarity = COSINE

    def snapshot(self) -> Snapshot:
        emb = self.vector_store.data.embedding_dict
        store_ids, node_ids, vectors = [], [], []
        for store_id, node_id in self.index.index_struct.nodes_dict.items():
            store_ids.append(store_id)
            node_ids.append(node_id)
            vectors.append(emb.get(store_id))
        return Snapshot(node_ids, store_ids, vectors)

    def get_nodes(self, node_ids: Sequence[str]) -> list[BaseNode]:
        return list(self.index.docstore.get_nodes(list(node_ids)))

    def _write_batch(self, store_ids, vectors, node_ids) -> None:
        data = self.vector_store.data
        missing = [i for i, s in enumerate(store_ids) if s not in data.embedding_dict and vectors[i] is not None]
        if missing:  # entries without a vector: add them the way the store adds nodes (metadata, ref doc)
            nodes = self.get_nodes([node_ids[i] for i in missing])
            copies = []
            for i, node in zip(missing, nodes):
                copy = node.model_copy()
                copy.embedding = vectors[i]
                copies.append(copy)
            self.vector_store.add(copies)
        for store_id, vec in zip(store_ids, vectors):
            if vec is None:
                data.embedding_dict.pop(store_id, None)
                data.text_id_to_ref_doc_id.pop(store_id, None)
                data.metadata_dict.pop(store_id, None)
            else:
                data.embedding_dict[store_id] = vec


class QdrantStoreAdapter(VectorStoreAdapter):
    """``QdrantVectorStore``: vectors are rewritten with ``update_vectors`` (payloads stay as they are)."""

    store_name = "Qdrant collection"
    _page = 256

    def __init__(self, index: Any) -> None:
        super().__init__(index)
        vs = self.vector_store
        self.client = vs.client
        if self.client is None:
            raise ValueError("QdrantVectorStore needs a synchronous `client` (QdrantClient) for NUDGE fine-tuning")
        self.collection = vs.collection_name
        self.store_name = f"Qdrant collection {self.collection!r}"
        self._nodes: dict[str, BaseNode] = {}
        self.vector_name: str | None = None
        self.distance = None
        self.exists = bool(self.client.collection_exists(self.collection))
        if self.exists:
            self._read_config()
        self.similarity = {"Cosine": COSINE, "Dot": INNER_PRODUCT, "Euclid": EUCLIDEAN}.get(
            str(getattr(self.distance, "value", self.distance)), COSINE if not self.exists else "unsupported"
        )

    def _read_config(self) -> None:
        vectors = self.client.get_collection(self.collection).config.params.vectors
        if isinstance(vectors, dict):
            name = self.vector_store.dense_vector_name
            if name not in vectors:
                if len(vectors) != 1:
                    raise ValueError(
                        f"Qdrant collection {self.collection!r} has dense vectors {sorted(vectors)} but the "
                        f"vector store uses {name!r}"
                    )
                name = next(iter(vectors))
            self.vector_name, params = name, vectors[name]
        else:
            self.vector_name, params = None, vectors
        self.distance = params.distance

    def snapshot(self) -> Snapshot:
        if not self.exists:
            return Snapshot([], [], [])
        with_vectors: Any = [self.vector_name] if self.vector_name else True
        store_ids, node_ids, vectors = [], [], []
        self._nodes = {}
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection, limit=self._page, offset=offset, with_payload=True, with_vectors=with_vectors
            )
            nodes = self.vector_store.parse_to_query_result(points).nodes
            for point, node in zip(points, nodes):
                vec = point.vector
                if isinstance(vec, dict):
                    vec = vec.get(self.vector_name or "")
                node.embedding = None
                store_ids.append(str(point.id))
                node_ids.append(node.node_id)
                vectors.append(None if vec is None else list(vec))
                self._nodes[node.node_id] = node
            if offset is None:
                break
        return Snapshot(node_ids, store_ids, vectors)

    def get_nodes(self, node_ids: Sequence[str]) -> list[BaseNode]:
        if any(n not in self._nodes for n in node_ids):
            self.snapshot()
        return [self._nodes[n] for n in node_ids]

    def _write_batch(self, store_ids, vectors, node_ids) -> None:
        from qdrant_client.http import models as rest

        points, cleared = [], []
        for store_id, vec in zip(store_ids, vectors):
            if vec is None:
                cleared.append(store_id)
            else:
                vector = {self.vector_name: vec} if self.vector_name else vec
                points.append(rest.PointVectors(id=store_id, vector=vector))
        if points:
            self.client.update_vectors(collection_name=self.collection, points=points, wait=True)
        if cleared and self.vector_name:
            self.client.delete_vectors(collection_name=self.collection, vectors=[self.vector_name], points=cleared)


def make_adapter(index: Any) -> VectorStoreAdapter:
    """The adapter for ``index.vector_store``; ``NotImplementedError`` for stores not supported yet."""
    vs = index.vector_store
    name = vs.class_name() if hasattr(vs, "class_name") else type(vs).__name__
    if name == "SimpleVectorStore":
        return SimpleStoreAdapter(index)
    if name == "QdrantVectorStore":
        return QdrantStoreAdapter(index)
    raise NotImplementedError(
        f"NUDGE fine-tuning cannot update a {name} in place yet; supported vector stores: SimpleVectorStore "
        "(the default) and QdrantVectorStore. Build the index with one of them, or pass the nodes (with their "
        "embeddings) instead of the index."
    )


def new_store_similarity(vector_store: Any) -> tuple[str, str]:
    """(similarity, store name) a store will use for an index built from nodes (before any collection exists)."""
    name = vector_store.class_name() if hasattr(vector_store, "class_name") else type(vector_store).__name__
    if name == "SimpleVectorStore":
        return COSINE, "SimpleVectorStore"
    if name == "QdrantVectorStore":
        client = getattr(vector_store, "client", None)
        if client is not None and client.collection_exists(vector_store.collection_name):
            raise ValueError(
                f"Qdrant collection {vector_store.collection_name!r} already exists; to fine-tune what it holds, "
                "pass VectorStoreIndex.from_vector_store(...) instead of nodes"
            )
        config = getattr(vector_store, "_dense_config", None)
        distance = str(getattr(getattr(config, "distance", None), "value", "Cosine"))
        sim = {"Cosine": COSINE, "Dot": INNER_PRODUCT, "Euclid": EUCLIDEAN}.get(distance, distance)
        return sim, f"Qdrant collection {vector_store.collection_name!r}"
    raise NotImplementedError(
        f"NUDGE fine-tuning cannot build into a {name} yet; supported: SimpleVectorStore and QdrantVectorStore"
    )


def check_store_similarity(similarity: str, store_name: str, variant: str) -> None:
    """``ValueError`` when the store's distance cannot serve the variant's vectors."""
    if similarity not in (COSINE, INNER_PRODUCT, EUCLIDEAN):
        raise ValueError(f"the {store_name} uses a distance NUDGE cannot support ({similarity})")
    if variant == "nudge-m" and similarity != INNER_PRODUCT:
        raise ValueError(
            f"NUDGE-M vectors are not unit-norm and rank correctly only under inner product, but the "
            f"{store_name} searches by {similarity}. Use variant='nudge-n' (the default; unit-norm vectors, "
            "correct under cosine), or a Qdrant collection created for dot product, e.g. "
            "QdrantVectorStore(..., dense_config=VectorParams(size=dim, distance=Distance.DOT))."
        )


def _with_vectors(nodes: Sequence[BaseNode], vectors: np.ndarray) -> list[BaseNode]:
    copies = []
    for node, vec in zip(nodes, vectors):
        c = node.model_copy()
        c.embedding = vec.tolist()
        copies.append(c)
    return copies


def build_index(nodes, vectors: np.ndarray, storage_context, embed_model, show_progress: bool = False) -> Any:
    """A new ``VectorStoreIndex`` over copies of ``nodes`` holding ``vectors`` (the nodes are not modified)."""
    from llama_index.core import VectorStoreIndex

    return VectorStoreIndex(
        nodes=_with_vectors(nodes, vectors),
        storage_context=storage_context,
        embed_model=embed_model,
        show_progress=show_progress,
    )


def write_changes(
    adapter: VectorStoreAdapter,
    index: Any,
    similarity: str,
    cap: Any,
    model: Any,
    candidates: np.ndarray,
    deleted: set[str],
    new_nodes: Sequence[BaseNode] = (),
    new_vectors: np.ndarray | None = None,
) -> int:
    """Write the rows of ``model.embeddings_`` among ``candidates`` (patch rows, rows without a vector) that
    the store does not already hold, never a deleted node's; then insert ``new_nodes`` with ``new_vectors``.
    Both are undone on failure. Returns the number of vectors written."""
    from llama_index.nudge._capture import rows_to_write

    rows = np.unique(np.asarray(candidates, dtype=np.int64))
    if similarity != COSINE:  # the store compares lengths too: write what the solver unit-normalised
        rows = np.union1d(rows, np.flatnonzero(np.abs(np.linalg.norm(cap.vectors, axis=1) - 1) > 1e-6))
    rows = np.array([r for r in rows if cap.node_ids[r] not in deleted], dtype=np.int64)
    rows = rows[rows_to_write(rows, cap.stored, model.embeddings_[rows], similarity)]
    w_store, w_nodes = [cap.store_ids[i] for i in rows], [cap.node_ids[i] for i in rows]
    w_old = [cap.stored[i] for i in rows]
    adapter.write(w_store, w_nodes, model.embeddings_[rows], w_old)
    if new_nodes:
        try:
            index.insert_nodes(_with_vectors(new_nodes, new_vectors))
        except Exception:
            try:
                index.delete_nodes([n.node_id for n in new_nodes], delete_from_docstore=True)
            except Exception:  # pragma: no cover - best effort
                logger.exception("could not remove partly inserted nodes")
            adapter.put_back(w_store, w_old, w_nodes)
            raise
    return int(rows.size) + len(new_nodes)
