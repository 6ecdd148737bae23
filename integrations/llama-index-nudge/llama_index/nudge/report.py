"""The fine-tuning report: gamma, the validation curve and retrieval metrics, saved as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from nudge_rag._files import atomic_write_text

__all__ = ["NudgeFinetuneReport", "REPORT_FILENAME"]

REPORT_FILENAME = "nudge_report.json"


@dataclass
class NudgeFinetuneReport:
    """What :meth:`NudgeFinetuneEngine.finetune` did.

    Attributes:
        variant: ``"nudge-n"`` or ``"nudge-m"``.
        similarity: how the nudged vectors must be searched (``"cosine"`` or ``"inner_product"``).
        vector_store: the store that was updated and its similarity.
        gamma: the chosen (or fixed) step size.
        val_metric: the metric gamma was chosen on (``recall@1`` for NUDGE-N by default, ``hit@1`` for NUDGE-M).
        gammas, val_scores: the validation curve (``val_scores[i]`` at ``gammas[i]``; empty when gamma was
            fixed without validation questions).
        val_score, val_base_score: validation metric at gamma and at gamma = 0 (no fine-tuning).
        val_metrics_before, val_metrics_after: recall@1/recall@10/ndcg@10/mrr@10 of the validation questions
            before and after (optimistic: these questions chose gamma).
        n_documents, dimension, n_moved, n_written: corpus size, vector size, documents NUDGE moved and
            vectors written to the store.
        n_embedded_nodes: nodes that had no vector and were embedded with the base model.
        n_train_questions, n_train_pairs, n_val_questions, n_dropped_questions: the question data used.
        val_source: ``"given"``, ``"carved"`` (split off the training questions) or ``"none"``.
        generation: counters of LLM question generation, when questions were generated.
        inserts: one entry per :meth:`NudgeFinetuneEngine.insert` call.
        seconds: wall time per step.
        versions: versions of llama-index-nudge, nudge-rag and llama-index-core that produced it.

    Example:
        >>> report = engine.finetune()
        >>> report.gamma, report.val_metrics_before["recall@1"], report.val_metrics_after["recall@1"]
        >>> report.save("storage/nudge_report.json")
        >>> NudgeFinetuneReport.load("storage/nudge_report.json").gamma == report.gamma
        True
    """

    variant: str
    similarity: str
    vector_store: dict[str, str]
    gamma: float
    val_metric: str
    gammas: list[float] = field(default_factory=list)
    val_scores: list[float] = field(default_factory=list)
    val_score: float | None = None
    val_base_score: float | None = None
    val_metrics_before: dict[str, float] = field(default_factory=dict)
    val_metrics_after: dict[str, float] = field(default_factory=dict)
    n_documents: int = 0
    dimension: int = 0
    n_moved: int = 0
    n_written: int = 0
    n_embedded_nodes: int = 0
    n_train_questions: int = 0
    n_train_pairs: int = 0
    n_val_questions: int = 0
    n_dropped_questions: int = 0
    val_source: str = "none"
    generation: dict[str, Any] | None = None
    inserts: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write the report as JSON to ``path`` (atomic: the old file or the new one, never a partial one)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> NudgeFinetuneReport:
        """Read a report written by :meth:`save`."""
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})
