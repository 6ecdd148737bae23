"""Instrumentation events of ``NudgeFinetuneEngine.finetune``. The report is the core's
:class:`nudge_rag.stores.StoreFinetuneReport`; ``NudgeFinetuneReport`` is kept as its alias."""

from __future__ import annotations

from llama_index.core.instrumentation.events import BaseEvent

from nudge_rag.stores import StoreFinetuneReport

__all__ = ["NudgeFinetuneReport", "NudgeFinetuneStartEvent", "NudgeFinetuneEndEvent", "REPORT_FILENAME"]

REPORT_FILENAME = "nudge_report.json"

NudgeFinetuneReport = StoreFinetuneReport


class NudgeFinetuneStartEvent(BaseEvent):
    """Instrumentation event: ``NudgeFinetuneEngine.finetune`` starts (in its span) with ``variant``
    (``"nudge-n"`` / ``"nudge-m"``) on ``vector_store`` (the store's description)."""

    variant: str
    vector_store: str

    @classmethod
    def class_name(cls) -> str:
        return "NudgeFinetuneStartEvent"


class NudgeFinetuneEndEvent(BaseEvent):
    """Instrumentation event: ``NudgeFinetuneEngine.finetune`` wrote the nudged vectors. Fields are the report's:
    gamma, validation metrics before -> after (empty when none were measured), vectors written, train / validation
    question counts and time by phase (``embed_questions``, ``write``, ``total``, ...)."""

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
    def of(cls, report: StoreFinetuneReport) -> NudgeFinetuneEndEvent:
        """The end event of a finished fit."""
        return cls(
            gamma=None if report.gamma is None else float(report.gamma),
            val_metrics_before=dict(report.val_metrics_before or {}),
            val_metrics_after=dict(report.val_metrics_after or {}),
            n_written=int(report.written),
            n_train_questions=int(report.n_train_questions),
            n_val_questions=int(report.n_val_questions),
            seconds=dict(report.seconds),
        )
