"""Question-node pairs: the three inputs the engine accepts, normalised to core ``Questions``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from llama_index.core.bridge.pydantic import BaseModel

from nudge_rag.files import atomic_write_text
from nudge_rag.finetune import Questions, group_pairs

__all__ = [
    "EmbeddingQAFinetuneDataset",
    "PairsInput",
    "Questions",
    "collect_questions",
    "check_nodes",
]


class EmbeddingQAFinetuneDataset(BaseModel):
    """LlamaIndex's (question, relevant node ids) format, removed from llama-index-core in 0.14.21: same fields and
    JSON, so files round-trip. ``queries``: question id -> text; ``corpus``: node id -> text; ``relevant_docs``:
    question id -> ids of the nodes that answer it; ``mode``: always ``"text"``."""

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
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


#: What ``train_dataset`` / ``val_dataset`` may be: an ``EmbeddingQAFinetuneDataset`` (or any object with
#: ``queries`` and ``relevant_docs`` dicts), a path to its JSON file, or ``(question, node_id)`` pairs
#: (``node_id`` may also be a list of node ids).
PairsInput = Union[Any, str, os.PathLike, Iterable[tuple[str, str | Sequence[str]]]]  # noqa: UP007


def check_nodes(qs: Questions, known: Mapping[str, Any] | set[str], name: str, deleted: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` if ``qs`` names a node id that is deleted or not in ``known``."""
    gone = sorted(qs.documents() & set(deleted))
    if gone:
        raise ValueError(
            f"{name} names {len(gone)} node id(s) deleted from the index after fine-tuning (first: {gone[0]!r}); "
            "a deleted node is never written back"
        )
    hint = ". Pairs must use the ids of nodes stored in the index (node.node_id)."
    qs.check_known(known, name, "node id(s)", "the index", hint)


def _as_text(x: Any) -> str:
    return x.strip() if isinstance(x, str) else ""


def _refs(docs: Any) -> list[str]:
    docs = [docs] if isinstance(docs, str) else list(docs or [])
    return [str(d) for d in docs if d is not None]


def collect_questions(source: PairsInput | None, name: str) -> Questions | None:
    """Normalise any accepted pairs input into grouped :class:`~nudge_rag.finetune.Questions` (``None`` stays).

    Questions with an empty text or no answer are dropped and counted; the same question text given
    several times becomes one question with several answers (:func:`nudge_rag.finetune.group_pairs`).
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
    if isinstance(source, Mapping) or not isinstance(source, Iterable):
        raise TypeError(
            f"{name} must be an EmbeddingQAFinetuneDataset, a path to its JSON file or a list of "
            f"(question, node_id) pairs, got {'a dict' if isinstance(source, Mapping) else type(source).__name__}"
        )
    pairs = []
    for n, pair in enumerate(source):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"{name}: item {n} must be a (question, node_id) pair, got {pair!r}")
        pairs.append((_as_text(pair[0]), _refs(pair[1])))
    return group_pairs(pairs)


def _from_mappings(queries: Mapping[str, str], relevant: Mapping[str, Sequence[str]], name: str) -> Questions:
    if not isinstance(queries, Mapping) or not isinstance(relevant, Mapping):
        raise TypeError(f"{name}: queries and relevant_docs must be dicts")
    pairs = [(_as_text(text), _refs(relevant.get(qid))) for qid, text in queries.items()]
    return group_pairs(pairs, ids=[str(q) for q in queries])
