"""The fine-tuning report: :class:`nudge_rag.finetune.FinetuneReport` plus what the engine did to the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llama_index.core.instrumentation.events import BaseEvent

from nudge_rag.finetune import FinetuneReport

__all__ = [
    "NudgeFinetuneReport",
    "NudgeFinetuneStartEvent",
    "NudgeFinetuneEndEvent",
    "REPORT_FILENAME",
    "package_versions",
    "with_store_info",
    "record_insert",
]

REPORT_FILENAME = "nudge_report.json"


@dataclass
class NudgeFinetuneReport(FinetuneReport):
    """What :meth:`NudgeFinetuneEngine.finetune` did (all fields of ``FinetuneReport``, plus the ones below).

    Attributes:
        vector_store: the store that was updated and its similarity.
        n_written: vectors written to the store.
        n_embedded_nodes: nodes that had no vector and were embedded with the base model.
        generation: counters of LLM question generation, when questions were generated.
        inserts: one entry per :meth:`NudgeFinetuneEngine.insert` call.
        versions: versions of llama-index-nudge, nudge-rag and llama-index-core that produced it.

    Example:
        >>> report = engine.finetune()
        >>> report.gamma, report.val_metrics_before["recall@1"], report.val_metrics_after["recall@1"]
        >>> report.save("storage/nudge_report.json")
        >>> NudgeFinetuneReport.load("storage/nudge_report.json").gamma == report.gamma
        True
    """

    vector_store: dict[str, str] = field(default_factory=dict)
    n_written: int = 0
    n_embedded_nodes: int = 0
    generation: dict[str, Any] | None = None
    inserts: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def package_versions() -> dict[str, str]:
    """Installed versions of llama-index-nudge, nudge-rag and llama-index-core (``"unknown"`` if absent)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("llama-index-nudge", "nudge-rag", "llama-index-core"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


def with_store_info(
    report: NudgeFinetuneReport, store_name: str, similarity: str, seconds: dict[str, float]
) -> NudgeFinetuneReport:
    """``report`` with the store, the package versions and the step times (merged, rounded to 0.1 ms) filled in."""
    report.vector_store = {"name": store_name, "similarity": similarity}
    report.versions = package_versions()
    report.seconds = {k: round(v, 4) for k, v in {**report.seconds, **seconds}.items()}
    return report


def record_insert(
    report: NudgeFinetuneReport, model: Any, train: Any, val: Any, seconds: float, **counts: int
) -> NudgeFinetuneReport:
    """``report`` after an insert: one ``inserts`` entry (``counts``, questions, scores, time), the model's
    fields refreshed (:meth:`~nudge_rag.finetune.FinetuneReport.refresh`) and the question totals updated."""
    entry: dict[str, Any] = {
        **counts,
        "n_train_questions": 0 if train is None else len(train),
        "n_val_questions": 0 if val is None else len(val),
        "val_score": model.val_score_,
        "val_base_score": model.val_base_score_,
        "seconds": round(seconds, 4),
    }
    report.inserts.append(entry)
    report.refresh(model)
    report.n_train_questions += entry["n_train_questions"]
    report.n_train_pairs += 0 if train is None else train.n_pairs
    report.n_val_questions += entry["n_val_questions"]
    return report


class NudgeFinetuneStartEvent(BaseEvent):
    """``llama_index.core.instrumentation`` event: ``NudgeFinetuneEngine.finetune`` starts (inside its span).

    Attributes:
        variant: ``"nudge-n"`` or ``"nudge-m"``.
        vector_store: the store being fine-tuned.
    """

    variant: str
    vector_store: str

    @classmethod
    def class_name(cls) -> str:
        return "NudgeFinetuneStartEvent"


class NudgeFinetuneEndEvent(BaseEvent):
    """``llama_index.core.instrumentation`` event: ``NudgeFinetuneEngine.finetune`` wrote the nudged vectors.

    Attributes:
        gamma: the step size used.
        val_metrics_before / val_metrics_after: validation metrics before -> after (empty when none were measured).
        n_written: vectors written to the store.
        n_train_questions / n_val_questions: questions that trained / chose gamma.
        seconds: time by phase (``embed_questions``, ``write``, ``total``, ...).
    """

    gamma: float | None
    val_metrics_before: dict[str, float] = {}
    val_metrics_after: dict[str, float] = {}
    n_written: int = 0
    n_train_questions: int = 0
    n_val_questions: int = 0
    seconds: dict[str, float] = {}

    @classmethod
    def class_name(cls) -> str:
        return "NudgeFinetuneEndEvent"

    @classmethod
    def of(cls, report: NudgeFinetuneReport) -> NudgeFinetuneEndEvent:
        """The end event of a finished fit."""
        return cls(
            gamma=None if report.gamma is None else float(report.gamma),
            val_metrics_before=dict(report.val_metrics_before or {}),
            val_metrics_after=dict(report.val_metrics_after or {}),
            n_written=int(report.n_written),
            n_train_questions=int(report.n_train_questions),
            n_val_questions=int(report.n_val_questions),
            seconds=dict(report.seconds),
        )
