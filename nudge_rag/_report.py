"""Human- and machine-readable reports: result tables, JSON documents and the demo plot."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write

__all__ = [
    "SHORT_NAMES",
    "format_table",
    "write_json",
    "finetune_report_json",
    "curve_of",
    "plot_demo",
    "require_matplotlib",
    "PLOT_EXTRA",
]

PLOT_EXTRA = 'pip install "nudge-rag[plot]"'
SHORT_NAMES = {"recall@1": "R@1", "recall@10": "R@10", "ndcg@10": "nDCG@10", "mrr@10": "MRR@10"}


def _short(metric: str) -> str:
    if metric in SHORT_NAMES:
        return SHORT_NAMES[metric]
    kind, _, k = metric.partition("@")
    return {"recall": "R", "hit": "Hit", "mrr": "MRR", "ndcg": "nDCG"}.get(kind, kind) + "@" + k


def format_table(rows: Sequence[dict], metrics: Sequence[str], *, extra: Sequence[tuple[str, str]] = ()) -> str:
    """Fixed-width table: one row per ``{"label", "metrics": {name: float}, key: value ...}``.

    Metrics are shown x100 with one decimal; ``extra`` is ``(key, header)`` columns printed as given.
    """
    headers = ["method", *(_short(m) for m in metrics), *(h for _, h in extra)]
    body = []
    for r in rows:
        cells = [r["label"], *(f"{100 * r['metrics'][m]:.1f}" for m in metrics)]
        cells += [_cell(r.get(key)) for key, _ in extra]
        body.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        (c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(cells, widths))
    )
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, body)])


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically (NaN/inf become null)."""
    text = json.dumps(_jsonable(data), indent=2, ensure_ascii=False) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def finetune_report_json(report: Any, engine: str, **sections: Any) -> dict[str, Any]:
    """The JSON report of every ``nudge-rag finetune`` (``engine``: ``"memory"``, ``"dask"`` or ``"store"``).

    ``report`` is the core :class:`~nudge_rag.finetune.FinetuneReport` (or a subclass): its fields come first,
    then the command, engine and nudge-rag version, then the source's own ``sections`` (dataset, split, outputs).
    """
    from . import __version__

    return {**report.to_dict(), "command": "finetune", "engine": engine, "nudge_rag_version": __version__, **sections}


def curve_of(model: Any) -> dict[str, list[float]] | None:
    """The validation curve of a fitted model as ``{"gamma": [...], "score": [...]}`` (None if absent)."""
    if model is None or getattr(model, "val_scores_", None) is None:
        return None
    return {"gamma": np.asarray(model.gammas_).tolist(), "score": np.asarray(model.val_scores_).tolist()}


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend; ImportError naming the extra if absent."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(f"plotting needs matplotlib: {PLOT_EXTRA}") from None
    return plt


def plot_demo(path: str | os.PathLike, results: Sequence, metrics: Sequence[str], title: str) -> None:
    """Save a figure: each NUDGE variant's validation curve and grouped before/after test-metric bars.

    ``results`` are :class:`~nudge_rag.finetune.FinetuneResult` objects (the first is the baseline). The file
    format follows the extension (png, pdf, svg); written atomically. Needs matplotlib.
    """
    plt = require_matplotlib()
    fitted = [r for r in results if r.model is not None]
    fig, axes = plt.subplots(1, len(fitted) + 1, figsize=(5 * (len(fitted) + 1), 4), constrained_layout=True)
    for ax, r in zip(axes, fitted):
        curve = curve_of(r.model)
        if curve is not None:
            style = "steps-post" if r.method == "nudge-m" else "default"  # NUDGE-M's curve is piecewise constant
            ax.plot(curve["gamma"], np.asarray(curve["score"]) * 100, drawstyle=style)
            ax.axvline(r.model.gamma_, color="tab:red", linestyle="--", label=f"chosen gamma = {r.model.gamma_:.3g}")
            ax.legend(loc="lower right")
        metric = r.report.val_metric
        ax.set(title=f"{r.label}: validation curve", xlabel="gamma", ylabel=f"validation {_short(metric)} (x100)")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    width = 0.8 / len(results)
    x = np.arange(len(metrics))
    for i, r in enumerate(results):
        values = [100 * (r.test_metrics or r.val_metrics)[m] for m in metrics]
        ax.bar(x + (i - (len(results) - 1) / 2) * width, values, width, label=r.label)
    split = "test" if results[0].test_metrics is not None else "validation"
    top = max(100 * v for r in results for v in (r.test_metrics or r.val_metrics).values())
    ax.set(title=f"{split} metrics (x100)", xticks=x, xticklabels=[_short(m) for m in metrics], ylim=(0, top * 1.25))
    ax.legend(loc="upper center", ncol=len(results), fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=120))
    finally:
        plt.close(fig)
