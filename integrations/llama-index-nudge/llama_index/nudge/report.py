"""The fine-tuning report: :class:`nudge_rag.finetune.FinetuneReport` plus what the engine did to the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nudge_rag.finetune import FinetuneReport

__all__ = ["NudgeFinetuneReport", "REPORT_FILENAME", "package_versions"]

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
