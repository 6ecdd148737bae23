"""The fitted state of a ``NudgeEmbeddings`` (an immutable lookup table) and its portable file format."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nudge_rag._files import atomic_write

__all__ = ["FittedState", "save_state", "load_state", "atomic_write", "FORMAT", "FORMAT_VERSION"]

FORMAT = "langchain-nudge"
FORMAT_VERSION = 1
_AMBIGUOUS = -1


@dataclass(frozen=True, eq=False)
class FittedState:
    """Nudged vectors of the fitted documents, keyed by document id and by content hash.

    ``embeddings`` row i belongs to the document with id ``ids[i]`` (``None``: matched by content only) and
    content hash ``keys[i]``. Replaced as a whole on every fit, so a failed fit leaves the previous one intact.
    """

    variant: str
    similarity: str
    ids: tuple[str | None, ...]
    keys: np.ndarray  # (N, 32) uint8 SHA-256 of page_content
    embeddings: np.ndarray  # (N, d) float32, read-only
    report: dict[str, Any]
    gammas: np.ndarray | None = None
    val_scores: np.ndarray | None = None
    id_pos: dict[str, int] = field(init=False, repr=False)
    key_pos: dict[bytes, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.embeddings.shape[0]
        if len(self.ids) != n or self.keys.shape != (n, 32):
            raise ValueError(f"inconsistent fitted state: {n} vectors, {len(self.ids)} ids, keys {self.keys.shape}")
        self.embeddings.setflags(write=False)
        id_pos = {d: i for i, d in enumerate(self.ids) if d is not None}
        key_pos: dict[bytes, int] = {}
        for i in range(n):
            key = self.keys[i].tobytes()
            j = key_pos.get(key)
            if j is None:
                key_pos[key] = i
            elif j != _AMBIGUOUS and not np.array_equal(self.embeddings[i], self.embeddings[j]):
                key_pos[key] = _AMBIGUOUS  # same text, different nudged vectors: content alone cannot tell
        object.__setattr__(self, "id_pos", id_pos)
        object.__setattr__(self, "key_pos", key_pos)

    @property
    def dimension(self) -> int:
        return int(self.embeddings.shape[1])

    def lookup(self, keys: list[bytes], ids: list[str | None] | None) -> np.ndarray:
        """Row of each document in the table, -1 where it must be embedded by the base model.

        A known id matches when the content is unchanged (a changed document gets the base vector); a missing
        or unknown id falls back to exact content, unless several fitted documents share that content with
        different nudged vectors.
        """
        rows = np.full(len(keys), -1, dtype=np.int64)
        for n, key in enumerate(keys):
            doc_id = None if ids is None else ids[n]
            if doc_id is not None and doc_id in self.id_pos:
                row = self.id_pos[doc_id]
                if self.keys[row].tobytes() == key:
                    rows[n] = row
                continue
            row = self.key_pos.get(key, -1)
            rows[n] = max(row, -1)
        return rows


def _json_bytes(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def save_state(state: FittedState, path: str | os.PathLike, extra_meta: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` as a portable ``.npz`` (no pickle), atomically."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "variant": state.variant,
        "similarity": state.similarity,
        "n_documents": int(state.embeddings.shape[0]),
        "dimension": state.dimension,
        "report": state.report,
        **extra_meta,
    }
    arrays: dict[str, np.ndarray] = {
        "meta": _json_bytes(meta),
        "ids": _json_bytes(list(state.ids)),
        "keys": state.keys,
        "embeddings": np.ascontiguousarray(state.embeddings),
    }
    if state.gammas is not None:
        arrays["gammas"] = state.gammas
    if state.val_scores is not None:
        arrays["val_scores"] = state.val_scores
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_state(path: str | os.PathLike) -> tuple[FittedState, dict[str, Any]]:
    """Read a file written by :func:`save_state`; returns the state and the file's metadata."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a langchain-nudge file: {exc}") from exc
    with data:
        if "meta" not in data.files:
            raise ValueError(f"{path} is not a langchain-nudge file (no metadata)")
        meta = json.loads(data["meta"].tobytes().decode("utf-8"))
        if meta.get("format") != FORMAT or int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported format {meta.get('format')!r} v{meta.get('format_version')}")
        ids = json.loads(data["ids"].tobytes().decode("utf-8"))
        state = FittedState(
            variant=meta["variant"],
            similarity=meta["similarity"],
            ids=tuple(ids),
            keys=np.array(data["keys"], dtype=np.uint8),
            embeddings=np.array(data["embeddings"], dtype=np.float32),
            report=dict(meta.get("report") or {}),
            gammas=np.array(data["gammas"]) if "gammas" in data.files else None,
            val_scores=np.array(data["val_scores"]) if "val_scores" in data.files else None,
        )
    if state.embeddings.shape != (meta["n_documents"], meta["dimension"]):
        raise ValueError(
            f"{path}: vectors have shape {state.embeddings.shape}, "
            f"metadata says ({meta['n_documents']}, {meta['dimension']})"
        )
    return state, meta
