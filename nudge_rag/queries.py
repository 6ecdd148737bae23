"""``QueryAnswers``: query embeddings with ragged answer lists (CSR layout) and graded relevance."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ._checks import as_matrix

__all__ = ["QueryAnswers"]


@dataclass(frozen=True, eq=False)
class QueryAnswers:
    """Queries and the documents that answer them.

    Attributes:
        embeddings: (Q, d) float32/float64 query embeddings (used as given, not normalised).
        indptr: (Q + 1,) int64; the answers of query i are ``indices[indptr[i]:indptr[i + 1]]``.
        indices: (nnz,) int64 document row numbers.
        relevance: (nnz,) float32 graded relevance (> 0) of each answer; 1.0 when not graded.
        ids: optional query ids, one per row.

    Every query has at least one answer and no query lists a document twice. Build instances with
    :meth:`from_lists` or :meth:`from_pairs`, which validate.
    """

    embeddings: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    relevance: np.ndarray
    ids: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_lists(
        cls,
        embeddings: np.ndarray,
        answers: Sequence[Sequence[int]],
        relevance: Sequence[Sequence[float]] | None = None,
        *,
        ids: Sequence[str] | None = None,
        on_duplicates: str = "raise",
    ) -> QueryAnswers:
        """Build from one list of document row numbers per query.

        ``on_duplicates="merge"`` keeps the first occurrence of a repeated document in a query's list
        (with its relevance); the default raises.
        """
        emb = as_matrix(embeddings, "query embeddings")
        if isinstance(answers, (str, bytes)) or not hasattr(answers, "__len__"):
            raise TypeError(f"answers must be a list of answer lists, one per query, got {type(answers).__name__}")
        if len(answers) != emb.shape[0]:
            raise ValueError(f"got {emb.shape[0]} query embeddings but {len(answers)} answer lists")
        lists = [_as_int_list(a, i) for i, a in enumerate(answers)]
        lengths = np.fromiter((len(a) for a in lists), dtype=np.int64, count=len(lists))
        indices = np.asarray([x for a in lists for x in a], dtype=np.int64)
        if relevance is None:
            rel = np.ones(indices.size, dtype=np.float32)
        else:
            if len(relevance) != len(answers) or any(len(r) != len(a) for r, a in zip(relevance, lists)):
                raise ValueError("relevance must have the same ragged shape as answers")
            rel = np.asarray([float(x) for r in relevance for x in r], dtype=np.float32)
        indptr = np.zeros(len(answers) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        if on_duplicates == "merge":
            indptr, indices, rel = _merge_duplicates(indptr, indices, rel)
        elif on_duplicates != "raise":
            raise ValueError(f"on_duplicates must be 'raise' or 'merge', got {on_duplicates!r}")
        return cls._validated(emb, indptr, indices, rel, ids)

    @classmethod
    def from_pairs(
        cls,
        embeddings: np.ndarray,
        query_ids: Sequence[str],
        pairs: Iterable[tuple],
        doc_ids: Sequence[str],
        *,
        drop_empty: bool = False,
    ) -> QueryAnswers:
        """Build from id-based ``(query_id, doc_id)`` or ``(query_id, doc_id, relevance)`` pairs.

        Row i of ``embeddings`` belongs to ``query_ids[i]``. Pairs with relevance <= 0 are not answers.
        A query without any answer raises, unless ``drop_empty=True`` drops its row (``ids`` tells
        which rows remain).
        """
        emb = as_matrix(embeddings, "query embeddings")
        qids = [str(q) for q in query_ids]
        if len(qids) != emb.shape[0]:
            raise ValueError(f"got {emb.shape[0]} query embeddings but {len(qids)} query ids")
        q_pos = _position_map(qids, "query id")
        d_pos = _position_map([str(d) for d in doc_ids], "document id")
        per_query: list[dict[int, float]] = [{} for _ in qids]
        for n, pair in enumerate(pairs):
            if len(pair) not in (2, 3):
                raise ValueError(f"pair {n} must be (query_id, doc_id) or (query_id, doc_id, relevance), got {pair!r}")
            qid, did = str(pair[0]), str(pair[1])
            rel = _pair_relevance(pair[2], n) if len(pair) == 3 else 1.0
            if qid not in q_pos:
                raise ValueError(f"pair {n} names unknown query id {qid!r}")
            if did not in d_pos:
                raise ValueError(f"pair {n} names unknown document id {did!r}")
            if rel <= 0:
                continue
            answers = per_query[q_pos[qid]]
            answers[d_pos[did]] = max(rel, answers.get(d_pos[did], 0.0))
        keep = [i for i, a in enumerate(per_query) if a]
        if len(keep) != len(qids):
            if not drop_empty:
                missing = [qids[i] for i, a in enumerate(per_query) if not a]
                raise ValueError(
                    f"{len(missing)} query(ies) have no relevant document (first: {missing[0]!r}); "
                    "pass drop_empty=True to drop them"
                )
            if not keep:
                raise ValueError("no query has a relevant document")
        return cls.from_lists(
            emb[keep],
            [list(per_query[i]) for i in keep],
            [list(per_query[i].values()) for i in keep],
            ids=[qids[i] for i in keep],
        )

    @classmethod
    def _validated(
        cls, emb: np.ndarray, indptr: np.ndarray, indices: np.ndarray, rel: np.ndarray, ids: Iterable[object] | None
    ) -> QueryAnswers:
        n_q = emb.shape[0]
        if ids is not None:
            ids = tuple(str(i) for i in ids)
            if len(ids) != n_q:
                raise ValueError(f"got {n_q} query embeddings but {len(ids)} ids")
        counts = np.diff(indptr)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(
                f"{empty.size} query(ies) have an empty answer list (first at row {int(empty[0])}); "
                "every query needs at least one relevant document"
            )
        if indices.size and indices.min() < 0:
            raise ValueError(f"answer index must be >= 0, got {int(indices.min())}")
        if not np.isfinite(rel).all() or (rel <= 0).any():
            raise ValueError("relevance values must be finite and > 0")
        if indices.size:
            rows = np.repeat(np.arange(n_q, dtype=np.int64), counts)
            key = np.stack([rows, indices])
            order = np.lexsort(key[::-1])
            dup = (np.diff(rows[order]) == 0) & (np.diff(indices[order]) == 0)
            if dup.any():
                i = int(np.flatnonzero(dup)[0])
                raise ValueError(
                    f"query {int(rows[order][i])} lists document {int(indices[order][i])} more than once "
                    "(use on_duplicates='merge' to keep one)"
                )
        return cls(emb, indptr, indices, rel, ids)

    # ------------------------------------------------------------------ accessors
    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return int(self.embeddings.shape[1])

    @property
    def n_pairs(self) -> int:
        """Number of (query, answer) pairs."""
        return int(self.indices.size)

    def answers_of(self, i: int) -> np.ndarray:
        """Document rows answering query ``i`` (int64)."""
        return self.indices[self.indptr[i] : self.indptr[i + 1]]

    def answer_lists(self) -> list[list[int]]:
        """Answers as plain Python lists (the reference ``q_ans_indx`` format)."""
        return [self.answers_of(i).tolist() for i in range(len(self))]

    def pair_rows(self) -> np.ndarray:
        """(nnz,) int64 query row of each answer entry."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr))

    def max_index(self) -> int:
        """Largest document row referenced (-1 when there are no answers)."""
        return int(self.indices.max()) if self.indices.size else -1

    def check_documents(self, n_docs: int, name: str) -> None:
        """Raise when an answer points past ``n_docs`` documents."""
        top = self.max_index()
        if top >= n_docs:
            raise IndexError(f"{name} names document row {top} but there are only {n_docs} documents")

    def subset(self, rows: Sequence[int] | np.ndarray) -> QueryAnswers:
        """The queries at ``rows`` (in that order), as a new ``QueryAnswers``."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        take = _ranges(starts, stops)
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(stops - starts, out=indptr[1:])
        ids = None if self.ids is None else tuple(self.ids[i] for i in rows)
        return QueryAnswers._validated(self.embeddings[rows], indptr, self.indices[take], self.relevance[take], ids)

    def concat(self, other: QueryAnswers) -> QueryAnswers:
        """These queries followed by ``other``'s."""
        if other.dim != self.dim:
            raise ValueError(f"cannot concatenate queries of dimension {self.dim} and {other.dim}")
        ids = None if self.ids is None or other.ids is None else self.ids + other.ids
        emb = np.concatenate([self.embeddings, other.embeddings.astype(self.embeddings.dtype, copy=False)])
        return QueryAnswers._validated(
            emb,
            np.concatenate([self.indptr, other.indptr[1:] + self.indptr[-1]]),
            np.concatenate([self.indices, other.indices]),
            np.concatenate([self.relevance, other.relevance]),
            ids,
        )

    @classmethod
    def from_reference(cls, data: dict, name: str, *, on_duplicates: str = "raise") -> QueryAnswers:
        """Build from the reference dict format ``{"q_embs": (Q, d) array, "q_ans_indx": [[int, ...], ...]}``."""
        if not isinstance(data, dict) or "q_embs" not in data or "q_ans_indx" not in data:
            raise TypeError(f"{name} must be a dict with keys 'q_embs' and 'q_ans_indx', got {type(data).__name__}")
        return cls.from_lists(data["q_embs"], data["q_ans_indx"], on_duplicates=on_duplicates)


_MAX_ROW = int(np.iinfo(np.int64).max)


def _as_int_list(a: object, i: int) -> list[int]:
    """Answer list ``i`` as Python ints: a flat sequence of non-bool integers that fit in int64."""
    if isinstance(a, (str, bytes)) or not isinstance(a, (Sequence, np.ndarray)):
        raise TypeError(f"answers[{i}] must be a list of document rows, got {type(a).__name__} {a!r}")
    if isinstance(a, np.ndarray) and a.ndim != 1:
        raise TypeError(f"answers[{i}] must be a flat list of document rows, got an array of shape {a.shape}")
    out = []
    for x in a:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise TypeError(f"answers[{i}] must hold integers (document rows), got {x!r}")
        if not -_MAX_ROW <= int(x) <= _MAX_ROW:
            raise ValueError(f"answers[{i}] names document row {int(x)}, which is out of range")
        out.append(int(x))
    return out


def _pair_relevance(value: object, n: int) -> float:
    if isinstance(value, bool):
        raise ValueError(f"pair {n} has relevance {value!r}, not a number")
    try:
        rel = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"pair {n} has relevance {value!r}, not a number") from None
    if not np.isfinite(rel):
        raise ValueError(f"pair {n} has relevance {value!r}; it must be finite")
    return rel


def _position_map(ids: list[str], what: str) -> dict[str, int]:
    pos = {v: i for i, v in enumerate(ids)}
    if len(pos) != len(ids):
        seen: set[str] = set()
        for v in ids:  # only on the error path: name the first repeated value
            if v in seen:
                raise ValueError(f"duplicate {what} {v!r}")
            seen.add(v)
    return pos


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for each pair, without a Python loop."""
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def _merge_duplicates(
    indptr: np.ndarray, indices: np.ndarray, rel: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))
    _, first = np.unique(np.stack([rows, indices], axis=1), axis=0, return_index=True)
    keep = np.sort(first)
    counts = np.bincount(rows[keep], minlength=indptr.size - 1)
    new_ptr = np.zeros_like(indptr)
    np.cumsum(counts, out=new_ptr[1:])
    return new_ptr, indices[keep], rel[keep]
