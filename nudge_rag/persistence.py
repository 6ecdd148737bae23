"""Save and load fitted estimators as portable ``.npz`` files (no pickle), written atomically."""

from __future__ import annotations

import json
import os

import numpy as np

from ._files import atomic_write
from .patch import Patch
from .queries import QueryAnswers

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def save(model, path: str | os.PathLike) -> None:
    """Write a fitted :class:`~nudge_rag.NudgeN` / :class:`~nudge_rag.NudgeM` to ``path``.

    The file holds the nudged vectors, gamma, the validation curve, the training aggregates needed by
    ``insert`` and metadata (variant, similarity, dimension, parameters) as JSON.
    """
    model._check_fitted()
    params = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in model.get_params().items()}
    params["dtype"] = np.dtype(params.get("dtype", np.float32)).name
    meta = {
        "format": "nudge-rag",
        "format_version": FORMAT_VERSION,
        "variant": model.variant,
        "class": type(model).__name__,
        "similarity": model.similarity_,
        "gamma": model.gamma_,
        "n_documents": int(model.embeddings_.shape[0]),
        "dimension": model.n_features_in_,
        "n_moved": model.n_moved_,
        "val_score": model.val_score_,
        "val_base_score": model.val_base_score_,
        "params": params,
    }
    arrays = {
        "embeddings": model.embeddings_,
        "moved_docs": model.moved_docs_,
        "gammas": model.gammas_,
        "train_docs": model.train_docs_,
        "train_sums": model.train_sums_,
        "train_base": model.train_base_,
        "meta": np.array(json.dumps(meta)),
    }
    if model.val_scores_ is not None:
        arrays["val_scores"] = model.val_scores_
    if model.val_ is not None:
        val = model.val_
        arrays.update(
            val_embeddings=val.embeddings, val_indptr=val.indptr, val_indices=val.indices, val_relevance=val.relevance
        )
        if val.ids is not None:
            arrays["val_ids"] = np.array(val.ids, dtype=str)
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load(path: str | os.PathLike):
    """Read a file written by :func:`save`; returns a fitted estimator ready for search or ``insert``."""
    from .estimators import NudgeM, NudgeN

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a nudge-rag model file: {exc}") from exc
    with data:
        if "meta" not in data.files:
            raise ValueError(f"{path} is not a nudge-rag model file (no metadata)")
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != "nudge-rag" or meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported format {meta.get('format')!r} v{meta.get('format_version')}")
        cls = {"NudgeN": NudgeN, "NudgeM": NudgeM}[meta["class"]]
        params = dict(meta["params"])
        params["dtype"] = np.dtype(params["dtype"]).type
        if params.get("gammas") is not None:
            params["gammas"] = np.asarray(params["gammas"])
        model = cls(**params)
        val = None
        if "val_embeddings" in data.files:
            ids = tuple(data["val_ids"].tolist()) if "val_ids" in data.files else None
            val = QueryAnswers(
                data["val_embeddings"], data["val_indptr"], data["val_indices"], data["val_relevance"], ids
            )
        model.embeddings_ = data["embeddings"]
        model.gamma_ = float(meta["gamma"])
        model.gammas_ = data["gammas"]
        model.val_scores_ = data["val_scores"] if "val_scores" in data.files else None
        model.val_score_ = meta["val_score"]
        model.val_base_score_ = meta["val_base_score"]
        model.moved_docs_ = data["moved_docs"]
        model.n_moved_ = int(meta["n_moved"])
        model.similarity_ = meta["similarity"]
        model.n_features_in_ = int(meta["dimension"])
        model.train_docs_ = data["train_docs"]
        model.train_sums_ = data["train_sums"]
        model.train_base_ = data["train_base"]
        model.val_ = val
        model.n_documents_ = int(meta["n_documents"])
        pos = np.searchsorted(model.train_docs_, model.moved_docs_)
        model.patch_ = Patch(model.moved_docs_, model.embeddings_[model.moved_docs_], model.train_base_[pos])
    if model.embeddings_.shape != (meta["n_documents"], meta["dimension"]):
        raise ValueError(f"{path}: embeddings have shape {model.embeddings_.shape}, metadata says "
                         f"({meta['n_documents']}, {meta['dimension']})")
    return model
