"""The fitted state of a NUDGE estimator, defined once: its fields and their validation.

:meth:`NudgeN.to_state <nudge_rag.NudgeN.to_state>` produces a dict with exactly :data:`STATE_FIELDS` (plus
``class`` and ``params``); :func:`restore_state` checks every field and rebuilds the estimator. The file
format (:mod:`nudge_rag.persistence`) only moves these fields to and from disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import check_gamma
from ._nudge import TrainAggregate
from .patch import Patch
from .queries import QueryAnswers

__all__ = ["STATE_FIELDS", "FittedStateError", "restore_state"]


class FittedStateError(ValueError):
    """A fitted state (e.g. read from a file) that is incomplete, malformed or inconsistent."""


#: field -> (accepted dtype kinds, ndim, optional). ``embeddings`` is absent for a corpus fit; the ``val_*``
#: fields are present together or not at all (``val_ids`` optional among them).
STATE_FIELDS: dict[str, tuple[str, int, bool]] = {
    "embeddings": ("f", 2, True),  # (N, d) nudged vectors, in the params' dtype
    "n_documents": ("iu", 0, False),  # N
    "n_features_in": ("iu", 0, False),  # d
    "gamma": ("f", 0, False),
    "gammas": ("f", 1, False),  # ascending candidates, gammas[0] == 0
    "val_scores": ("f", 1, True),  # validation metric at each of gammas, in [0, 1]
    "train_docs": ("iu", 1, False),  # (M,) sorted rows with training queries
    "train_sums": ("f", 2, False),  # (M, d) float64 sums of their training queries
    "train_base": ("f", 2, False),  # (M, d) their unit rows before the fit
    "patch_rows": ("iu", 1, False),  # (m,) rows that moved, a subset of train_docs
    "patch_new": ("f", 2, False),  # (m, d) their nudged vectors
    "patch_old": ("f", 2, False),  # (m, d) their rows before the fit
    "val_embeddings": ("f", 2, True),
    "val_indptr": ("iu", 1, True),
    "val_indices": ("iu", 1, True),
    "val_relevance": ("f", 1, True),
    "val_ids": ("U", 1, True),
}
_VAL_FIELDS = ("val_embeddings", "val_indptr", "val_indices", "val_relevance")
_UNIT_TOL = 1e-3


def restore_state(cls: type[Any], state: dict[str, Any]) -> Any:
    """A fitted ``cls`` (NudgeN or NudgeM) from ``state``; raises :class:`FittedStateError` naming the problem."""
    if not isinstance(state, dict):
        raise FittedStateError(f"a fitted state must be a dict, got {type(state).__name__}")
    model = _model_from_params(cls, state.get("params"))
    f = {name: _field(state, name, *spec) for name, spec in STATE_FIELDS.items()}
    n, d = int(f["n_documents"]), int(f["n_features_in"])
    if n < 1 or d < 1:
        raise FittedStateError(f"n_documents and n_features_in must be >= 1, got {n} and {d}")
    dtype = model._out_dtype()
    emb = f["embeddings"]
    if emb is not None:
        _shape(emb, "embeddings", (n, d))
        _dtype(emb, "embeddings", dtype)
    try:
        gamma = check_gamma(float(f["gamma"]), upper=cls.gamma_upper)
    except ValueError as exc:
        raise FittedStateError(f"gamma: {exc}") from None
    gammas = np.asarray(f["gammas"], dtype=np.float64)
    if gammas.size == 0 or gammas[0] != 0 or (np.diff(gammas) <= 0).any() or not np.isfinite(gammas).all():
        raise FittedStateError("gammas must be finite, strictly increasing and start at 0")
    scores = f["val_scores"]
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != gammas.shape or not ((scores >= 0) & (scores <= 1)).all():
            raise FittedStateError(f"val_scores must hold one score in [0, 1] per gamma ({gammas.size})")
        if gamma not in gammas:
            raise FittedStateError(f"gamma {gamma!r} is not one of gammas, so it has no validation score")
    docs = _rows(f["train_docs"], "train_docs", n)
    m_all = docs.size
    sums, base = f["train_sums"], f["train_base"]
    _shape(sums, "train_sums", (m_all, d))
    _shape(base, "train_base", (m_all, d))
    _dtype(base, "train_base", dtype)
    if base.size and (np.abs(np.linalg.norm(base.astype(np.float64), axis=1) - 1) > _UNIT_TOL).any():
        raise FittedStateError("train_base rows must be unit-norm (they are the normalised documents)")
    rows = _rows(f["patch_rows"], "patch_rows", n)
    pos = np.searchsorted(docs, rows)
    if rows.size and ((pos >= m_all).any() or (docs[np.minimum(pos, m_all - 1)] != rows).any()):
        raise FittedStateError("patch_rows must be a subset of train_docs")
    new, old = f["patch_new"], f["patch_old"]
    _shape(new, "patch_new", (rows.size, d))
    _shape(old, "patch_old", (rows.size, d))
    _dtype(new, "patch_new", dtype)
    if not np.array_equal(old, base[pos]):
        raise FittedStateError("patch_old differs from train_base at the patched rows")
    if emb is not None and not np.array_equal(new, emb[rows]):
        raise FittedStateError("patch_new differs from embeddings at the patched rows")
    val = _val(f, n, d)
    model._assign(
        embeddings=emb,
        n_documents=n,
        n_features_in=d,
        gamma=gamma,
        gammas=gammas,
        val_scores=scores,
        agg=TrainAggregate(docs, np.asarray(sums, dtype=np.float64)),
        base=base,
        patch=Patch(rows, new, old),
        val=val,
    )
    return model


def _model_from_params(cls: type[Any], params: object) -> Any:
    names = set(cls._param_names)
    if not isinstance(params, dict) or set(params) != names:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise FittedStateError(f"params must name exactly {sorted(names)} for {cls.__name__}, got {got}")
    p = dict(params)
    try:
        p["dtype"] = np.dtype(p["dtype"]).type
        if p.get("gammas") is not None:
            p["gammas"] = np.asarray(p["gammas"], dtype=np.float64)
        model = cls(**p)
        model._validate_params()
    except (TypeError, ValueError) as exc:
        raise FittedStateError(f"invalid parameter: {exc}") from None
    return model


def _field(state: dict[str, Any], name: str, kinds: str, ndim: int, optional: bool) -> Any:
    if name not in state or state[name] is None:
        if optional:
            return None
        raise FittedStateError(f"missing field {name!r}")
    value = state[name]
    if ndim == 0 and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise FittedStateError(f"{name} must be an array, got {type(value).__name__}")
    if value.dtype.kind not in kinds:
        raise FittedStateError(f"{name} has dtype {value.dtype}, expected {_KIND_NAMES[kinds]}")
    if value.ndim != ndim:
        raise FittedStateError(f"{name} must have {ndim} dimension(s), got shape {value.shape}")
    if value.dtype.kind == "f" and not _all_finite(value):
        raise FittedStateError(f"{name} contains NaN or inf")
    return value[()] if ndim == 0 else value


_KIND_NAMES = {"f": "a float dtype", "iu": "an integer dtype", "U": "strings"}


def _all_finite(x: np.ndarray, chunk: int = 1 << 16) -> bool:
    if x.size == 0:
        return True
    flat = x.reshape(x.shape[0], -1) if x.ndim else x.reshape(1)
    return all(np.isfinite(flat[i : i + chunk]).all() for i in range(0, flat.shape[0], chunk))


def _shape(x: np.ndarray, name: str, shape: tuple[int, ...]) -> None:
    if x.shape != shape:
        raise FittedStateError(f"{name} has shape {x.shape}, expected {shape}")


def _dtype(x: np.ndarray, name: str, dtype: np.dtype) -> None:
    if x.dtype != dtype:
        raise FittedStateError(f"{name} has dtype {x.dtype} but the model's dtype parameter is {np.dtype(dtype).name}")


def _rows(x: np.ndarray, name: str, n: int) -> np.ndarray:
    rows = x.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise FittedStateError(f"{name} must lie in [0, {n}), got values from {rows.min()} to {rows.max()}")
    if (np.diff(rows) <= 0).any():
        raise FittedStateError(f"{name} must be strictly increasing")
    return rows


def _val(f: dict[str, Any], n: int, d: int) -> QueryAnswers | None:
    present = [k for k in _VAL_FIELDS if f[k] is not None]
    if not present:
        if f["val_ids"] is not None:
            raise FittedStateError("val_ids given without validation queries")
        return None
    if len(present) != len(_VAL_FIELDS):
        raise FittedStateError(f"incomplete validation queries: missing {sorted(set(_VAL_FIELDS) - set(present))}")
    emb, indptr = f["val_embeddings"], f["val_indptr"].astype(np.int64)
    indices, rel = f["val_indices"].astype(np.int64), f["val_relevance"]
    if emb.shape[1] != d:
        raise FittedStateError(f"val_embeddings have dimension {emb.shape[1]}, expected {d}")
    if (
        indptr.shape != (emb.shape[0] + 1,)
        or indptr[0] != 0
        or indptr[-1] != indices.size
        or (np.diff(indptr) < 0).any()
    ):
        raise FittedStateError("val_indptr is not a valid CSR pointer for val_embeddings and val_indices")
    if rel.shape != indices.shape:
        raise FittedStateError(f"val_relevance has shape {rel.shape}, expected {indices.shape}")
    ids = None if f["val_ids"] is None else tuple(f["val_ids"].tolist())
    try:
        val = QueryAnswers._validated(emb, indptr, indices, rel.astype(np.float32), ids)
        val.check_documents(n, "val")
    except (ValueError, IndexError) as exc:
        raise FittedStateError(f"validation queries: {exc}") from None
    return val
