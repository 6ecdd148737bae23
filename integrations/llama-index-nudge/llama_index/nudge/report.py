"""Instrumentation events of ``NudgeFinetuneEngine.finetune``; the report itself is the core's.

``NudgeFinetuneReport`` is an alias of :class:`nudge_rag.stores.StoreFinetuneReport` (the one report type:
attributes, ``to_dict()``, a short ``print``), kept so that code naming it keeps working.
"""

from __future__ import annotations

from llama_index.core.instrumentation.events import BaseEvent

from nudge_rag.stores import StoreFinetuneReport

__all__ = ["NudgeFinetuneReport", "NudgeFinetuneStartEvent", "NudgeFinetuneEndEvent", "REPORT_FILENAME"]

REPORT_FILENAME = "nudge_report.json"

#: The engine's report: the core's :class:`nudge_rag.stores.StoreFinetuneReport`.
NudgeFinetuneReport = StoreFinetuneReport


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
