"""Execute every tutorial notebook top to bottom (offline); a failing cell or assertion fails the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebook

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_four_tutorials():
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_llamaindex.ipynb",
        "03_langchain.ipynb",
        "feedback_loop.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NUDGE_RAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    client.execute()  # raises CellExecutionError naming the failing cell
    assert all(c.get("outputs") is not None for c in nb.cells if c.cell_type == "code")
