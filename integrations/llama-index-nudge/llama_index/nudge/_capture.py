"""Embedding for the engine: nodes without a vector (in batches) and questions (batched or concurrent)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, MetadataMode

from nudge_rag.concurrent import QUERY_BATCH_SIZE, embed_questions

__all__ = ["embed_missing", "embed_queries", "batched_query_method", "QUERY_BATCH_SIZE", "node_text"]


def node_text(node: BaseNode) -> str:
    """The text a node is embedded from."""
    return node.get_content(metadata_mode=MetadataMode.EMBED)


def embed_missing(
    stored: Sequence[Any],
    dim: int | None,
    nodes_of: Callable[[list[int]], Sequence[BaseNode]],
    embed_model: BaseEmbedding,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 vectors: stored ones as given, missing ones (``None``) embedded in one batched call from the
    nodes ``nodes_of(rows)``; (n,) bool mask of the embedded rows. ``ValueError`` on mixed dimensions (``dim``:
    the one expected), non-finite values or all-zero vectors."""
    vecs, missing = list(stored), np.array([v is None for v in stored], dtype=bool)
    if rows := np.flatnonzero(missing).tolist():
        texts = [node_text(n) for n in nodes_of(rows)]
        for i, v in zip(rows, embed_model.get_text_embedding_batch(texts, show_progress=show_progress)):
            vecs[i] = v
    dims = Counter(len(v) for v in vecs)
    dims.update({} if dim is None else {dim: 0})  # the expected dimension, counted 0 times
    if len(dims) > 1:
        desc = ", ".join(f"{n} vector(s) of dimension {d}" for d, n in sorted(dims.items()))
        raise ValueError(f"mixed embedding dimensions: {desc}. All vectors must come from the same embed model.")
    out = np.asarray(vecs, dtype=np.float32).reshape(len(vecs), next(iter(dims), 0))
    if not np.isfinite(out).all():
        raise ValueError("the index holds non-finite (NaN/inf) vector values")
    zero = np.flatnonzero(~out.any(axis=1))
    if zero.size:
        raise ValueError(f"{zero.size} document vector(s) are all zeros (first: row {int(zero[0])})")
    return out, missing


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
    """(len(texts), dim) float32 query vectors from the base embed model, texts in ``known`` (text -> vector) not
    embedded: :func:`nudge_rag.concurrent.embed_questions` over :func:`batched_query_method` when the model has
    one, else ``aget_query_embedding`` run concurrently, ``batch_size`` at a time."""
    return embed_questions(
        texts, dim, batch=batched_query_method(embed_model), one_async=embed_model.aget_query_embedding, known=known,
        batch_size=batch_size, show_progress=show_progress, hint=": use the embed model the index was built with",
    )  # fmt: skip
