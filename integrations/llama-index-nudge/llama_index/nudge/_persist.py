"""The engine's files beside a persisted index: the report, the solver state, the row -> node id map and, for an
in-process store (``SimpleVectorStore``, FAISS), its ledger, so a new process can still revert."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llama_index.core import StorageContext
from llama_index.nudge.report import REPORT_FILENAME

import nudge_rag
from nudge_rag.files import atomic_write_text
from nudge_rag.stores import BaseStore, StoreFinetuneReport

__all__ = ["MODEL_FILENAME", "STATE_FILENAME", "LEDGER_FILENAME", "save_engine", "open_state"]

MODEL_FILENAME = "nudge_model.npz"
STATE_FILENAME = "nudge_state.json"
LEDGER_FILENAME = "nudge_ledger.sqlite"
_FORMAT = "llama-index-nudge"


def save_engine(
    persist_dir: str | os.PathLike,
    index: Any,
    core: BaseStore,
    report: StoreFinetuneReport,
    model: Any,
    row_ids: list[str],
    variant: str,
    settings: dict[str, Any],
) -> None:
    """``storage_context.persist`` plus the report, the model, the state file and an in-process store's ledger
    (in memory, or an earlier persist dir's file): each written atomically."""
    path = Path(persist_dir)
    index.storage_context.persist(persist_dir=str(path))
    core.save_ledger(path / LEDGER_FILENAME)  # an in-process store's originals (a database keeps its own)
    report.save(path / REPORT_FILENAME)
    model.save(path / MODEL_FILENAME)  # the solver state without the corpus (the store holds it): for insert
    state = {"format": _FORMAT, "format_version": 2, "variant": variant, "row_node_ids": row_ids, **settings}
    atomic_write_text(path / STATE_FILENAME, json.dumps(state))


def open_state(
    persist_dir: str | os.PathLike, index: Any, embed_model: Any
) -> tuple[dict[str, Any], Any, tuple[Any, list[str], StoreFinetuneReport]]:
    """The state file's contents, the index (``load_index_from_storage`` on the folder unless given) and what
    :func:`save_engine` saved: (model, store id of each solver row, report); the store holds the vectors and, in
    its ledger, their originals."""
    from llama_index.core import load_index_from_storage

    path = Path(persist_dir) / STATE_FILENAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a llama-index-nudge state file ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT or not isinstance(state.get("row_node_ids"), list):
        raise ValueError(f"{path} is not a llama-index-nudge state file")
    saved = path.parent / MODEL_FILENAME
    model = nudge_rag.load(saved) if saved.is_file() else None  # older persist dirs kept no solver state
    if model is not None and getattr(model, "embeddings_", None) is not None:
        raise ValueError(f"{path.parent}: written by an older in-memory engine; call finetune() again to refit")
    report = StoreFinetuneReport.load(path.parent / REPORT_FILENAME)
    if index is None:
        extra = {} if embed_model is None else {"embed_model": embed_model}
        index = load_index_from_storage(StorageContext.from_defaults(persist_dir=str(path.parent)), **extra)
    return state, index, (model, [str(r) for r in state["row_node_ids"]], report)
