"""The documents an engine fits on: node ids and vectors as the store holds them (nodes without one are
embedded with the base model in batches), and which of them a fit must rewrite."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.nudge._stores import COSINE
from tqdm.auto import tqdm

from nudge_rag.concurrent import gather_in_batches
from nudge_rag.finetune import check_question_vectors

__all__ = [
    "Captured",
    "capture_nodes",
    "capture_store",
    "capture_additions",
    "Additions",
    "recapture_store",
    "check_unique",
    "embed_missing",
    "embed_queries",
    "batched_query_method",
    "question_vector_map",
    "QUERY_BATCH_SIZE",
    "rows_to_write",
    "node_text",
]

# A stored vector counts as unchanged when it differs from the target by less than this (relative L2).
_SAME_TOL = 1e-6


def node_text(node: BaseNode) -> str:
    """The text a node is embedded from."""
    return node.get_content(metadata_mode=MetadataMode.EMBED)


def check_unique(ids: Sequence[str], what: str) -> None:
    """``ValueError`` naming the first node id that ``ids`` holds twice."""
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ValueError(f"{what} hold node id {dup!r} more than once")


class Captured:
    """Captured documents: parallel lists over the solver rows."""

    def __init__(self, node_ids, store_ids, stored, vectors, missing, get_nodes) -> None:
        self.node_ids: list[str] = list(node_ids)
        self.store_ids: list[str] = list(store_ids)
        self.stored: list[Any] = list(stored)  # as the store holds them (None: no vector)
        self.vectors: np.ndarray = vectors  # (N, d) float32, missing ones embedded
        self.missing: np.ndarray = np.asarray(missing, dtype=bool)
        self._get_nodes = get_nodes

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def nodes(self, rows: Sequence[int] | None = None) -> list[BaseNode]:
        return list(self._get_nodes(list(range(len(self.node_ids))) if rows is None else list(rows)))


def embed_missing(
    stored: Sequence[Any],
    dim: int | None,
    nodes_of: Callable[[list[int]], Sequence[BaseNode]],
    embed_model: BaseEmbedding,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 vectors: stored ones as given, missing ones (``None``) embedded in batches from the
    nodes ``nodes_of(rows)``; (n,) bool mask of the embedded rows. Checks dimensions and values."""
    missing = np.array([v is None for v in stored], dtype=bool)
    dims: dict[int, int] = {}
    for v in stored:
        if v is not None:
            dims[len(v)] = dims.get(len(v), 0) + 1
    if dim is not None:
        dims.setdefault(dim, 0)
    if len(dims) > 1:
        desc = ", ".join(f"{n} vector(s) of dimension {d}" for d, n in sorted(dims.items()))
        raise ValueError(
            f"mixed embedding dimensions: {desc}. All document vectors must come from the same embed model."
        )
    if not len(stored):
        return np.zeros((0, dim or 0), dtype=np.float32), missing
    rows = np.flatnonzero(missing)
    fresh: list[list[float]] = []
    if rows.size:
        texts = [node_text(n) for n in nodes_of(rows.tolist())]
        fresh = embed_model.get_text_embedding_batch(texts, show_progress=show_progress)
        if len({len(v) for v in fresh} | set(dims)) > 1:
            raise ValueError(
                f"mixed embedding dimensions: the embed model produces {sorted({len(v) for v in fresh})} "
                f"but the index stores vectors of dimension {sorted(dims)}"
            )
    d = len(fresh[0]) if fresh else next(iter(dims))
    out = np.empty((len(stored), d), dtype=np.float32)
    if rows.size:
        out[rows] = np.asarray(fresh, dtype=np.float32)
    for i in np.flatnonzero(~missing):
        out[i] = stored[i]
    if not np.isfinite(out).all():
        raise ValueError("the index holds non-finite (NaN/inf) vector values")
    zero = np.flatnonzero(~out.any(axis=1))
    if zero.size:
        raise ValueError(f"{zero.size} document vector(s) are all zeros (first: row {int(zero[0])})")
    return out, missing


def rows_to_write(candidates: np.ndarray, stored: Sequence[Any], targets: np.ndarray, similarity: str) -> np.ndarray:
    """The candidate rows whose stored vector (``None``: none) does not already search like its target row.

    ``candidates`` (m,) rows, ``targets`` (m, d) their new vectors; only these rows are compared (under
    cosine the store compares directions only). Returns a (m,) bool mask.
    """
    if candidates.size == 0:
        return np.zeros(0, dtype=bool)
    none = np.array([stored[r] is None for r in candidates], dtype=bool)
    old = np.zeros(targets.shape, dtype=np.float64)
    for j, r in enumerate(candidates):
        if not none[j]:
            old[j] = stored[r]
    new = targets.astype(np.float64)
    if similarity == COSINE:
        old = old / np.maximum(np.linalg.norm(old, axis=1, keepdims=True), 1e-30)
        new = new / np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-30)
    diff = np.linalg.norm(old - new, axis=1)
    return none | (diff > _SAME_TOL * np.maximum(np.linalg.norm(new, axis=1), 1.0))


Embed = Callable[
    [Sequence[Any], "int | None", Callable[[list[int]], Sequence[BaseNode]]], tuple[np.ndarray, np.ndarray]
]


def capture_nodes(nodes: Sequence[BaseNode], embed: Embed) -> Captured:
    """Nodes given to the engine (to build an index from): their ``embedding`` where set, else embedded."""
    empty = [n.node_id for n in nodes if not node_text(n).strip()]
    if empty:
        raise ValueError(f"{len(empty)} node(s) have no text to index (first: {empty[0]!r})")
    ids, get = [n.node_id for n in nodes], lambda rows: [nodes[i] for i in rows]
    vectors, missing = embed([n.embedding for n in nodes], None, get)
    return Captured(ids, ids, [n.embedding for n in nodes], vectors, missing, get)


def capture_store(adapter: Any, embed: Embed) -> Captured:
    """What the index's vector store holds (rows in the store's stable order); entries without a vector embedded."""
    snap = adapter.snapshot()
    if not snap.node_ids:
        raise ValueError(f"the index is empty: the {adapter.store_name} holds no node")
    check_unique(snap.node_ids, f"the {adapter.store_name}")
    get = lambda rows: adapter.get_nodes([snap.node_ids[i] for i in rows])  # noqa: E731
    vectors, missing = embed(snap.vectors, None, get)
    return Captured(snap.node_ids, snap.store_ids, snap.vectors, vectors, missing, get)


def recapture_store(adapter: Any, row_ids: list[str], base: np.ndarray) -> tuple[Captured, set[str]]:
    """For a refit: the rows of the last fit (``row_ids``, vectors ``base`` as first captured) with what the
    store holds now, and the ids of nodes deleted since (no vector any more: never written again)."""
    snap = adapter.snapshot()
    check_unique(snap.node_ids, f"the {adapter.store_name}")
    pos = {nid: i for i, nid in enumerate(snap.node_ids)}
    known = set(row_ids)
    if any(n not in known for n in pos):
        raise ValueError(
            "the index holds other nodes than when it was fine-tuned; use insert() to add nodes and "
            "pairs, or build a new engine on an index with the original vectors"
        )
    order = [pos.get(n) for n in row_ids]
    stored = [None if j is None else snap.vectors[j] for j in order]
    cap = Captured(
        row_ids,
        [None if j is None else snap.store_ids[j] for j in order],
        stored,
        base,
        np.zeros(len(order), dtype=bool),
        lambda rows: adapter.get_nodes([row_ids[i] for i in rows]),
    )
    return cap, {n for n, v in zip(row_ids, stored) if v is None}


#: Questions per batched (or concurrent) call of the embed model while embedding questions.
QUERY_BATCH_SIZE = 256


def _is_huggingface(embed_model: BaseEmbedding) -> bool:
    """``HuggingFaceEmbedding`` (llama-index-embeddings-huggingface) with its own query method and no cache."""
    # the class that defines the query method must be HuggingFaceEmbedding itself (not a subclass that changes it)
    owner = next((c for c in type(embed_model).__mro__ if "_get_query_embedding" in vars(c)), None)
    return (
        owner is not None
        and owner.__name__ == "HuggingFaceEmbedding"
        and owner.__module__.startswith("llama_index.embeddings.huggingface")
        and not embed_model.embeddings_cache
        and callable(getattr(embed_model, "_embed", None))
    )


def batched_query_method(embed_model: BaseEmbedding) -> Callable[[list[str]], list[Any]] | None:
    """The model's batched *query* embedding call, or ``None`` when it has none.

    LlamaIndex's ``BaseEmbedding`` has no batch twin of ``get_query_embedding`` (``get_text_embedding_batch``
    embeds with the document instruction, ``get_agg_embedding_from_queries`` calls the query method once per
    query). ``HuggingFaceEmbedding`` embeds a query as ``_embed([query], prompt_name="query")``: the same call
    on a list is its batched query path (same instruction, same normalisation).
    """
    if _is_huggingface(embed_model):
        return lambda texts: embed_model._embed(list(texts), prompt_name="query")  # type: ignore[attr-defined]
    return None


def embed_queries(
    embed_model: BaseEmbedding,
    texts: list[str],
    dim: int,
    *,
    known: Mapping[str, Any] | None = None,
    show_progress: bool = False,
    batch_size: int = QUERY_BATCH_SIZE,
) -> np.ndarray:
    """(len(texts), dim) float32 query vectors from the base embed model (``ValueError`` on another size).

    Texts found in ``known`` (precomputed question vectors: text -> vector) are not embedded. The others are
    embedded with the model's query method: in batches of ``batch_size`` where the model has a batched query
    call (:func:`batched_query_method`), else by ``aget_query_embedding`` run concurrently, ``batch_size``
    questions at a time. A tqdm bar counts the questions when ``show_progress``.
    """
    known = known or {}
    vecs: list[Any] = [known.get(t) for t in texts]
    todo = [i for i, v in enumerate(vecs) if v is None]
    if todo:
        pending = [texts[i] for i in todo]
        batched = batched_query_method(embed_model)
        with tqdm(total=len(pending), desc="Embedding questions", unit="q", disable=not show_progress) as bar:
            if batched is not None:
                fresh: list[Any] = []
                for i in range(0, len(pending), batch_size):
                    fresh += batched(pending[i : i + batch_size])
                    bar.update(min(batch_size, len(pending) - i))
            else:
                fresh = gather_in_batches(embed_model.aget_query_embedding, pending, batch=batch_size, done=bar.update)
        for i, v in zip(todo, fresh):
            vecs[i] = v
    given = sorted({len(known[t]) for t in texts if t in known} - {dim})
    if given:
        raise ValueError(
            f"the precomputed question vectors have dimension {given} but the index stores vectors of dimension {dim}"
        )
    bad = sorted({len(v) for v in vecs} - {dim})
    if bad:
        raise ValueError(
            f"the embed model produces query vectors of dimension {bad} but the index stores vectors of "
            f"dimension {dim}: use the embed model the index was built with"
        )
    return np.asarray(vecs, dtype=np.float32).reshape(len(vecs), dim)


def question_vector_map(question_vectors: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """Precomputed question vectors (text -> vector) checked and copied as float32; ``{}`` for ``None``."""
    return {t: v.astype(np.float32) for t, v in check_question_vectors(question_vectors).items()}


@dataclass
class Additions:
    """What an ``insert`` adds to the last fit's rows: nodes inserted into the index directly since then
    ("adopted") and the new nodes, in solver row order after the old rows."""

    existing: Captured  # old + adopted rows, with what the store holds now (``vectors``: as captured)
    deleted: set[str]  # old rows whose node was deleted since (never written again)
    row_ids: list[str]  # old + adopted + new
    adopted_missing: np.ndarray  # (a,) bool: adopted nodes that had no vector (embedded)
    new_nodes: list[BaseNode]
    new_vectors: np.ndarray  # (n, d) as given or embedded
    n_embedded: int
    extra: np.ndarray | None  # (a + n, d) vectors of the rows added to the solver, None if none

    @property
    def counts(self) -> dict[str, int]:
        """Node counts for the report's ``inserts`` entry."""
        n_adopted = len(self.adopted_missing)
        return {"n_new_nodes": len(self.new_nodes), "n_adopted_nodes": n_adopted, "n_embedded_nodes": self.n_embedded}

    def targets(self, model: Any, previous: Any) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the store that may need rewriting after ``previous.inserted(...) -> model`` (both models'
        patch rows, adopted rows that had no vector), and the vectors of the new nodes: as they came unless
        NUDGE moved them."""
        n_ex, n_old = len(self.existing.node_ids), len(self.existing.node_ids) - len(self.adopted_missing)
        moved = np.r_[model.patch_.rows, previous.patch_.rows]
        candidates = np.r_[moved[moved < n_ex], n_old + np.flatnonzero(self.adopted_missing)]
        new_out = self.new_vectors.copy()
        is_new = model.patch_.rows >= n_ex
        new_out[model.patch_.rows[is_new] - n_ex] = model.patch_.new[is_new]
        return candidates, new_out


def capture_additions(
    adapter: Any, row_ids: list[str], base: np.ndarray, nodes: Sequence[BaseNode] | None, embed: Embed
) -> Additions:
    """Validate ``nodes`` and capture everything ``insert`` needs (``ValueError`` before any write)."""
    snap = adapter.snapshot()
    check_unique(snap.node_ids, f"the {adapter.store_name}")
    where = {nid: i for i, nid in enumerate(snap.node_ids)}
    deleted = {n for n in row_ids if n not in where or snap.vectors[where[n]] is None}
    known = set(row_ids)
    adopted = [i for i, nid in enumerate(snap.node_ids) if nid not in known]
    new_nodes = list(nodes or [])
    if not all(isinstance(n, BaseNode) for n in new_nodes):
        raise TypeError("nodes must be LlamaIndex nodes (BaseNode)")
    check_unique([n.node_id for n in new_nodes], "the new nodes")
    clash = [n.node_id for n in new_nodes if n.node_id in where or n.node_id in known]
    if clash:
        raise ValueError(f"{len(clash)} new node id(s) already exist in the index (first: {clash[0]!r})")
    empty = [n.node_id for n in new_nodes if not node_text(n).strip()]
    if empty:
        raise ValueError(f"{len(empty)} new node(s) have no text to index (first: {empty[0]!r})")
    dim = base.shape[1]
    adopted_ids = [snap.node_ids[i] for i in adopted]
    get = lambda rows: adapter.get_nodes([adopted_ids[i] for i in rows])  # noqa: E731
    adopted_vecs, adopted_missing = embed([snap.vectors[i] for i in adopted], dim, get)
    new_vecs, new_missing = embed([n.embedding for n in new_nodes], dim, lambda rows: [new_nodes[i] for i in rows])
    old = row_ids + adopted_ids
    existing = Captured(
        old,
        [snap.store_ids[where[r]] if r in where else None for r in old],
        [snap.vectors[where[r]] if r in where else None for r in old],
        np.concatenate([base, adopted_vecs]),
        np.zeros(len(old), dtype=bool),
        get,
    )
    extra = np.concatenate([adopted_vecs, new_vecs]) if adopted or new_nodes else None
    n_embedded = int(adopted_missing.sum() + new_missing.sum())
    return Additions(
        existing, deleted, old + [n.node_id for n in new_nodes], adopted_missing, new_nodes, new_vecs, n_embedded, extra
    )
