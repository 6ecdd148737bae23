"""``RetrievalDataset``: documents, queries and relevance judgements keyed by string ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RetrievalDataset", "Judgement", "doc_text", "SPLIT_ALIASES", "canonical_split"]

#: ``(query_id, doc_id, relevance)``; relevance > 0 (zero-score judgements are dropped on load).
Judgement = tuple[str, str, float]

#: Accepted spellings of split names and the canonical name each maps to.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "val": "dev",
    "valid": "dev",
    "validation": "dev",
    "test": "test",
}


def canonical_split(name: str) -> str | None:
    """``"train"``, ``"dev"`` or ``"test"`` for a known spelling (case-insensitive), else None."""
    return SPLIT_ALIASES.get(name.strip().lower())


def doc_text(title: str, text: str) -> str:
    """The text embedded for a document: ``(title + " " + text).strip()``."""
    return (title + " " + text).strip()


@dataclass
class RetrievalDataset:
    """A retrieval collection held in memory.

    Attributes:
        name: short name (e.g. ``"scifact"``).
        doc_ids: N document ids in corpus order (row i of any document matrix is ``doc_ids[i]``).
        doc_texts: N texts to embed, or None when only ids are known (vectors supplied by the user).
        query_ids: Q query ids in file order.
        query_texts: Q query texts, or None when only ids are known.
        qrels: split name (``"train"``, ``"dev"``, ``"test"``) -> relevant ``(query_id, doc_id, relevance)``
            judgements in file order; every id is in ``doc_ids`` / ``query_ids`` and relevance > 0.
        source: folder or file the data came from.
    """

    name: str
    doc_ids: list[str]
    doc_texts: list[str] | None
    query_ids: list[str]
    query_texts: list[str] | None
    qrels: dict[str, list[Judgement]]
    source: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names with at least one judgement, in train/dev/test order."""
        return tuple(s for s in ("train", "dev", "test") if self.qrels.get(s))

    def split_queries(self, split: str) -> list[str]:
        """Distinct query ids of ``split`` in order of first appearance."""
        return list(dict.fromkeys(q for q, _, _ in self.qrels.get(split, ())))

    def query_text_map(self) -> dict[str, str] | None:
        """Query id -> text (None when the dataset has no query texts)."""
        return None if self.query_texts is None else dict(zip(self.query_ids, self.query_texts))

    def texts_of_queries(self, ids: Sequence[str]) -> list[str] | None:
        """Texts of the given query ids, in that order (None when there are no texts)."""
        texts = self.query_text_map()
        return None if texts is None else [texts[q] for q in ids]

    def summary(self) -> str:
        """One line: documents, queries and judgements per split."""
        parts = [f"{self.name}: {len(self.doc_ids)} documents, {len(self.query_ids)} queries"]
        for s in self.splits:
            parts.append(f"{s} {len(self.split_queries(s))} queries / {len(self.qrels[s])} pairs")
        return "; ".join(parts)
