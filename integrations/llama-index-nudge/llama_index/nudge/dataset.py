"""Question-node pairs: the three inputs the engine accepts, normalised to one internal form.

``EmbeddingQAFinetuneDataset`` is LlamaIndex's format for (question, relevant node ids) data. It lived in
``llama_index.core.llama_dataset.legacy.embedding`` until llama-index-core 0.14.20; it is re-exported from
there when available, and otherwise replaced by a field-for-field compatible class, so JSON files written
by either load with either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from nudge_rag._files import atomic_write_text

__all__ = ["EmbeddingQAFinetuneDataset", "PairsInput", "QuestionSet", "collect_questions", "split_questions"]

try:  # llama-index-core <= 0.14.20
    from llama_index.core.llama_dataset.legacy.embedding import (  # type: ignore[import-not-found]
        EmbeddingQAFinetuneDataset,
    )
except ImportError:  # pragma: no cover - depends on the installed llama-index-core
    from llama_index.core.bridge.pydantic import BaseModel

    class EmbeddingQAFinetuneDataset(BaseModel):  # type: ignore[no-redef]
        """Questions, the corpus they were asked about and which corpus entries answer each question.

        Same fields and JSON layout as LlamaIndex's ``EmbeddingQAFinetuneDataset`` (removed from
        llama-index-core in 0.14.21), so files round-trip between the two.

        Args:
            queries: question id -> question text.
            corpus: node id -> node text.
            relevant_docs: question id -> ids of the nodes that answer it.
            mode: always ``"text"``.

        Example:
            >>> ds = EmbeddingQAFinetuneDataset(
            ...     queries={"q1": "What moves?"}, corpus={"n1": "The vectors move."}, relevant_docs={"q1": ["n1"]}
            ... )
            >>> ds.save_json("pairs.json")
            >>> EmbeddingQAFinetuneDataset.from_json("pairs.json") == ds
            True
        """

        queries: dict[str, str]
        corpus: dict[str, str]
        relevant_docs: dict[str, list[str]]
        mode: str = "text"

        @property
        def query_docid_pairs(self) -> list[tuple[str, list[str]]]:
            """(question text, relevant node ids) for every question."""
            return [(text, self.relevant_docs[qid]) for qid, text in self.queries.items()]

        def save_json(self, path: str) -> None:
            """Write the dataset to ``path`` as JSON (atomically)."""
            atomic_write_text(path, json.dumps(self.model_dump(), indent=4))

        @classmethod
        def from_json(cls, path: str) -> EmbeddingQAFinetuneDataset:
            """Read a dataset written by :meth:`save_json` (or by LlamaIndex's own class)."""
            with open(path, encoding="utf-8") as fh:
                return cls(**json.load(fh))


#: What ``train_dataset`` / ``val_dataset`` may be: an ``EmbeddingQAFinetuneDataset`` (or any object with
#: ``queries`` and ``relevant_docs`` dicts), a path to its JSON file, or ``(question, node_id)`` pairs
#: (``node_id`` may also be a list of node ids).
PairsInput = Union[Any, str, os.PathLike, Iterable[tuple[str, str | Sequence[str]]]]  # noqa: UP007


@dataclass
class QuestionSet:
    """Questions with the node ids that answer them (internal, validated form)."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    answers: list[list[str]] = field(default_factory=list)
    n_dropped: int = 0  # questions dropped because their text or answer list was empty

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_pairs(self) -> int:
        return sum(len(a) for a in self.answers)

    def subset(self, rows: Sequence[int]) -> QuestionSet:
        return QuestionSet(
            [self.ids[i] for i in rows], [self.texts[i] for i in rows], [self.answers[i] for i in rows], 0
        )

    def node_ids(self) -> set[str]:
        return {n for a in self.answers for n in a}

    def check_nodes(self, known: Mapping[str, Any] | set[str], name: str) -> None:
        """Raise ``ValueError`` if a question names a node id that is not in ``known``."""
        unknown = sorted(self.node_ids().difference(known))
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5])
            more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
            raise ValueError(
                f"{name} names {len(unknown)} node id(s) that are not in the index: {shown}{more}. "
                "Pairs must use the ids of nodes stored in the index (node.node_id)."
            )


def _as_text(x: Any) -> str:
    return x.strip() if isinstance(x, str) else ""


def _dedup(ids: Iterable[Any]) -> list[str]:
    out: dict[str, None] = {}
    for i in ids:
        if i is None:
            continue
        out[str(i)] = None
    return list(out)


def collect_questions(source: PairsInput | None, name: str) -> QuestionSet | None:
    """Normalise any accepted pairs input into a :class:`QuestionSet` (``None`` stays ``None``).

    Questions with an empty text or no answer are dropped and counted; the same question text given
    several times (plain pairs) becomes one question with several answers.
    """
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no EmbeddingQAFinetuneDataset JSON file at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or "queries" not in data or "relevant_docs" not in data:
            raise ValueError(
                f"{name}: {path} is not an EmbeddingQAFinetuneDataset JSON file (no queries/relevant_docs)"
            )
        return _from_mappings(data["queries"], data["relevant_docs"], name)
    if hasattr(source, "queries") and hasattr(source, "relevant_docs"):
        return _from_mappings(source.queries, source.relevant_docs, name)
    if isinstance(source, Mapping):
        raise TypeError(
            f"{name} must be an EmbeddingQAFinetuneDataset, a path to its JSON file or a list of "
            "(question, node_id) pairs, got a dict"
        )
    if not isinstance(source, Iterable):
        raise TypeError(
            f"{name} must be an EmbeddingQAFinetuneDataset, a path to its JSON file or a list of "
            f"(question, node_id) pairs, got {type(source).__name__}"
        )
    return _from_pairs(source, name)


def _from_mappings(queries: Mapping[str, str], relevant: Mapping[str, Sequence[str]], name: str) -> QuestionSet:
    if not isinstance(queries, Mapping) or not isinstance(relevant, Mapping):
        raise TypeError(f"{name}: queries and relevant_docs must be dicts")
    out = QuestionSet()
    for qid, text in queries.items():
        docs = relevant.get(qid) or []
        if isinstance(docs, str):
            docs = [docs]
        answers = _dedup(docs)
        text = _as_text(text)
        if not text or not answers:
            out.n_dropped += 1
            continue
        out.ids.append(str(qid))
        out.texts.append(text)
        out.answers.append(answers)
    return out


def _from_pairs(pairs: Iterable[Any], name: str) -> QuestionSet:
    grouped: dict[str, list[str]] = {}
    dropped = 0
    for n, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"{name}: item {n} must be a (question, node_id) pair, got {pair!r}")
        text, docs = pair
        text = _as_text(text)
        docs = [docs] if isinstance(docs, str) else list(docs or [])
        if not text or not docs:
            dropped += 1
            continue
        grouped.setdefault(text, []).extend(str(d) for d in docs)
    out = QuestionSet(n_dropped=dropped)
    for i, (text, docs) in enumerate(grouped.items()):
        out.ids.append(f"q{i}")
        out.texts.append(text)
        out.answers.append(_dedup(docs))
    return out


def split_questions(qs: QuestionSet, fraction: float, seed: int) -> tuple[QuestionSet, QuestionSet]:
    """Deterministic random split of questions into (train, validation); each keeps >= 1 question."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction!r}")
    if len(qs) < 2:
        raise ValueError(
            f"cannot carve a validation split from {len(qs)} usable question(s); give at least 2 questions, "
            "pass val_dataset, or fix gamma"
        )
    order = np.random.default_rng(seed).permutation(len(qs))
    n_val = min(max(1, int(round(fraction * len(qs)))), len(qs) - 1)
    return qs.subset(sorted(order[n_val:].tolist())), qs.subset(sorted(order[:n_val].tolist()))
