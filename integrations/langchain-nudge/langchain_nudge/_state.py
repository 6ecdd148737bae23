"""The fitted state of a ``NudgeEmbeddings`` (an immutable lookup table) and its portable file format."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from langchain_nudge._pairs import content_key
from nudge_rag.files import atomic_write

__all__ = [
    "FittedState",
    "known_dimension",
    "StateFileError",
    "save_state",
    "load_state",
    "atomic_write",
    "FORMAT",
    "FORMAT_VERSION",
    "match_rows",
    "merge_vectors",
    "as_float_list",
]

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

    def lookup(self, keys: list[bytes], ids: list[str | None] | None, *, strict: bool = False) -> np.ndarray:
        """Row of each document in the table, -1 where it must be embedded by the base model, -2 where its
        content alone matches several fitted documents with different nudged vectors (base vector too).

        A known id matches when the content is unchanged (a changed document gets the base vector). A missing
        id falls back to exact content; so does an unknown id unless ``strict`` (then: base vector), which the
        vector-store paths use because they know every document's id.
        """
        rows = np.full(len(keys), -1, dtype=np.int64)
        for n, key in enumerate(keys):
            doc_id = None if ids is None else ids[n]
            if doc_id is not None and (strict or doc_id in self.id_pos):
                row = self.id_pos.get(doc_id, -1)
                if row >= 0 and self.keys[row].tobytes() == key:
                    rows[n] = row
                continue
            row = self.key_pos.get(key)
            rows[n] = -1 if row is None else (-2 if row == _AMBIGUOUS else row)
        return rows


_AMBIGUOUS_WARNING = (
    "{n} text(s) match several fitted documents that share this content but have different nudged vectors; "
    "they get the base model's vector. Pass ids=... (or use nudge_vectorstore / build_vectorstore, which know "
    "the ids) to get each document's own nudged vector."
)


def as_float_list(vector: Any) -> list[float]:
    """A vector as a list of Python floats (what LangChain's embeddings return)."""
    return [float(x) for x in vector]


def match_rows(
    state: FittedState | None, texts: Sequence[str], ids: Sequence[str | None] | None, *, strict: bool = False
) -> np.ndarray:
    """(n,) int64 row of each text in ``state`` (:meth:`FittedState.lookup`), -1 where the base model embeds it.

    Texts whose content matches fitted documents with different nudged vectors get -1 and a ``UserWarning``.
    """
    if ids is not None and len(ids) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(ids)} ids")
    if state is None:
        return np.full(len(texts), -1, dtype=np.int64)
    id_list = None if ids is None else [None if i is None else str(i) for i in ids]
    rows = state.lookup([content_key(t) for t in texts], id_list, strict=strict)
    ambiguous = int((rows == -2).sum())
    if ambiguous:
        warnings.warn(_AMBIGUOUS_WARNING.format(n=ambiguous), UserWarning, stacklevel=4)
    return np.maximum(rows, -1)


def merge_vectors(state: FittedState | None, rows: np.ndarray, base_vectors: Sequence[Any]) -> list[list[float]]:
    """One vector per row: the nudged one where ``rows >= 0``, else the next of ``base_vectors`` (in order)."""
    misses = np.flatnonzero(rows < 0)
    if len(base_vectors) != len(misses):
        raise ValueError(f"the base embeddings returned {len(base_vectors)} vectors for {len(misses)} texts")
    out: list[list[float]] = [[] for _ in range(len(rows))]
    for i, vec in zip(misses, base_vectors):
        out[i] = as_float_list(vec)
        if state is not None and len(out[i]) != state.dimension:
            raise ValueError(
                f"dimension mismatch: the base embeddings return {len(out[i])}-dimensional vectors but the "
                f"nudged vectors have {state.dimension}; wrap the model the vectors were fitted with"
            )
    if state is not None:
        for i in np.flatnonzero(rows >= 0):
            out[i] = state.embeddings[rows[i]].tolist()
    return out


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


class StateFileError(ValueError):
    """A file handed to :func:`load_state` is not a valid langchain-nudge file (the message names it)."""


def load_state(path: str | os.PathLike, dimension: int | None = None) -> tuple[FittedState, dict[str, Any]]:
    """Read and validate a file written by :func:`save_state`; returns the state and the file's metadata.

    ``dimension``, when known, is the base model's vector size: a file of another size is refused. Any
    problem raises :class:`StateFileError` naming the file and what is wrong.
    """

    def bad(what: str) -> StateFileError:
        return StateFileError(f"{path} is not a langchain-nudge file: {what}")

    with open(path, "rb") as fh:  # FileNotFoundError / PermissionError name the file themselves
        try:
            data = np.load(fh, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise bad(f"a plain .npy array of shape {getattr(data, 'shape', '?')}, not a .npz archive")
            missing = [k for k in ("meta", "ids", "keys", "embeddings") if k not in data.files]
            if missing:
                raise bad(f"missing {', '.join(missing)}")
            meta = json.loads(data["meta"].tobytes().decode("utf-8"))
            ids = json.loads(data["ids"].tobytes().decode("utf-8"))
            keys, emb = data["keys"], data["embeddings"]
            gammas = np.array(data["gammas"]) if "gammas" in data.files else None
            val_scores = np.array(data["val_scores"]) if "val_scores" in data.files else None
        except StateFileError:
            raise
        except Exception as exc:  # damaged: BadZipFile, zlib.error, EOFError, UnicodeDecodeError, JSONDecodeError...
            raise bad(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(f"unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise bad(f"format version {meta.get('format_version')} is newer than this package reads ({FORMAT_VERSION})")
    if meta.get("variant") not in ("nudge-n", "nudge-m") or meta.get("similarity") not in ("cosine", "inner_product"):
        raise bad(f"variant {meta.get('variant')!r} / similarity {meta.get('similarity')!r}")
    if emb.ndim != 2 or emb.dtype.kind != "f" or emb.shape[0] == 0 or not np.isfinite(emb).all():
        raise bad(f"embeddings must be a non-empty finite 2-D float array, got shape {emb.shape} dtype {emb.dtype}")
    if emb.shape != (meta.get("n_documents"), meta.get("dimension")):
        n, d = meta.get("n_documents"), meta.get("dimension")
        raise bad(f"vectors have shape {emb.shape}, metadata says ({n}, {d})")
    bad_ids = not isinstance(ids, list) or len(ids) != emb.shape[0]
    if bad_ids or any(i is not None and not isinstance(i, str) for i in ids):
        raise bad(f"ids must be {emb.shape[0]} strings or nulls")
    if keys.dtype != np.uint8 or keys.shape != (emb.shape[0], 32):
        raise bad(f"content hashes must be ({emb.shape[0]}, 32) uint8, got {keys.shape} {keys.dtype}")
    if dimension is not None and emb.shape[1] != dimension:
        raise bad(f"it holds {emb.shape[1]}-dimensional vectors but the base embeddings return {dimension}")
    try:
        state = FittedState(
            variant=meta["variant"],
            similarity=meta["similarity"],
            ids=tuple(ids),
            keys=np.array(keys, dtype=np.uint8),
            embeddings=np.array(emb, dtype=np.float32),
            report=dict(meta.get("report") or {}),
            gammas=gammas,
            val_scores=val_scores,
        )
    except ValueError as exc:
        raise bad(str(exc)) from None
    return state, meta


def known_dimension(emb: Any) -> int | None:
    """The vector size ``emb`` declares without an embedding call, or ``None``."""
    for name in ("size", "dimensions", "dimension"):
        value = getattr(emb, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    client = getattr(emb, "client", None) or getattr(emb, "_client", None)
    get_dim = getattr(client, "get_sentence_embedding_dimension", None)
    if callable(get_dim):
        value = get_dim()
        return int(value) if isinstance(value, int) else None
    return None
