"""Save and load fitted estimators as portable ``.npz`` files (no pickle), written atomically.

This module only does file I/O: the fields of a fitted model and their validation are defined once, by the
estimators (:data:`nudge_rag.estimators.STATE_FIELDS`, ``to_state`` / ``from_state``). It depends on the
estimators, never the other way round; ``model.save(path)`` reaches :func:`save` through a hook set here.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from .estimators import FittedStateError, NudgeM, NudgeN, _NudgeBase
from .files import atomic_write

__all__ = ["save", "load", "FORMAT_VERSION", "ModelFileError"]

#: 2: the fitted-state fields as arrays (patch included); 1 (still read): vectors plus metadata.
FORMAT_VERSION = 2
_CLASSES: dict[str, type[Any]] = {"NudgeN": NudgeN, "NudgeM": NudgeM}


class ModelFileError(ValueError):
    """A file handed to :func:`load` is not a valid nudge-rag model; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem


def save(model: Any, path: str | os.PathLike) -> None:
    """Write a fitted :class:`~nudge_rag.NudgeN` / :class:`~nudge_rag.NudgeM` to ``path``.

    The file holds every fitted-state field as an array and, as JSON metadata, the class, parameters and a
    readable summary (variant, similarity, gamma, scores). Works for array and corpus fits alike.
    """
    state = model.to_state()
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in state.items() if k not in ("class", "params")}
    meta = {
        "format": "nudge-rag",
        "format_version": FORMAT_VERSION,
        "class": state["class"],
        "params": state["params"],
        "variant": model.variant,
        "similarity": model.similarity_,
        "gamma": model.gamma_,
        "n_documents": model.n_documents_,
        "dimension": model.n_features_in_,
        "n_moved": model.n_moved_,
        "val_score": model.val_score_,
        "val_base_score": model.val_base_score_,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load(path: str | os.PathLike) -> Any:
    """Read a file written by :func:`save`; returns a fitted estimator ready for search or ``insert``.

    Every field is validated (types, shapes, finiteness, ranges, consistency); any problem raises
    :class:`ModelFileError` (a ``ValueError``) naming the file and what is wrong.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(path, f"not a nudge-rag model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ModelFileError(path, "not a nudge-rag model file: a plain .npy array, not an .npz archive")
    with data:
        if "meta" not in data.files:
            raise ModelFileError(path, "not a nudge-rag model file (no metadata)")
        try:
            members = {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise ModelFileError(path, f"damaged archive member ({type(exc).__name__}: {exc})") from None
    meta = _meta(path, members.pop("meta"))
    cls = _CLASSES.get(meta.get("class"))  # type: ignore[arg-type]
    if cls is None:
        raise ModelFileError(path, f"unknown model class {meta.get('class')!r} (expected NudgeN or NudgeM)")
    state: dict[str, Any] = dict(members) if meta["format_version"] >= 2 else _from_v1(path, meta, members)
    state.update({"class": meta["class"], "params": meta.get("params")})
    try:
        return cls.from_state(state)
    except FittedStateError as exc:
        raise ModelFileError(path, str(exc)) from None


def _meta(path: str | os.PathLike, raw: np.ndarray) -> dict[str, Any]:
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ModelFileError(path, f"metadata must be a JSON string, got a {raw.dtype} array of shape {raw.shape}")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ModelFileError(path, f"metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "nudge-rag":
        raise ModelFileError(path, "not a nudge-rag model file (metadata has no nudge-rag format tag)")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise ModelFileError(path, f"unsupported format version {version!r} (this version reads 1 to {FORMAT_VERSION})")
    return meta


def _from_v1(path: str | os.PathLike, meta: dict[str, Any], m: dict[str, np.ndarray]) -> dict[str, Any]:
    """The fitted state of a version-1 file (vectors, moved rows and scalars in the metadata)."""
    try:
        emb, moved, docs, base = m["embeddings"], m["moved_docs"], m["train_docs"], m["train_base"]
        state: dict[str, Any] = {k: v for k, v in m.items() if k not in ("moved_docs",)}
        state.update(
            n_documents=meta["n_documents"],
            n_features_in=meta["dimension"],
            gamma=meta["gamma"],
            patch_rows=moved,
            patch_new=emb[moved],
            patch_old=base[np.searchsorted(docs, moved)],
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ModelFileError(path, f"incomplete version-1 model file ({type(exc).__name__}: {exc})") from None
    return state


_NudgeBase._file_writer = save
