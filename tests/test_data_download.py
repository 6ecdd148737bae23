"""Locating datasets (flag, env var, shared folder, cache) and the offline download failure."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nudge_rag.data import MissingDataError, data_roots, download_beir, find_beir, shared_data_dir, user_cache_dir
from nudge_rag.data.download import BEIR_URL

FIXTURES = Path(__file__).parent / "fixtures"


def test_url_pattern():
    assert (
        BEIR_URL.format(name="scifact")
        == "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip"
    )


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("NUDGE_RAG_DATA_DIR", raising=False)
    monkeypatch.setenv("NUDGE_RAG_CACHE_DIR", str(tmp_path / "cache"))
    assert user_cache_dir() == tmp_path / "cache"
    shared = shared_data_dir()
    assert data_roots() == ([shared] if shared else []) + [tmp_path / "cache"]
    assert shared is None or shared == Path(__file__).resolve().parents[2] / "shared" / "data"
    monkeypatch.setenv("NUDGE_RAG_DATA_DIR", str(tmp_path / "env"))
    assert data_roots() == [tmp_path / "env"]
    assert data_roots(tmp_path / "flag") == [tmp_path / "flag"]


def test_finds_dataset_under_root(tmp_path, monkeypatch):
    shutil.copytree(FIXTURES / "beir_ok", tmp_path / "beir" / "tiny")
    monkeypatch.setenv("NUDGE_RAG_DATA_DIR", str(tmp_path))
    assert find_beir("tiny") == tmp_path / "beir" / "tiny"


@pytest.mark.skipif(shared_data_dir() is None, reason="no shared data beside the checkout")
def test_shared_folder_is_found(monkeypatch):
    monkeypatch.delenv("NUDGE_RAG_DATA_DIR", raising=False)
    assert find_beir("scifact", download=False) == shared_data_dir() / "beir" / "scifact"


def test_offline_message_names_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("NUDGE_RAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NUDGE_RAG_OFFLINE", "1")
    with pytest.raises(MissingDataError) as info:
        find_beir("fiqa")
    msg = str(info.value)
    target = tmp_path / "beir" / "fiqa"
    assert f"place the BEIR files at {target}/corpus.jsonl" in msg and "\n" not in msg


def test_failed_download_leaves_nothing(tmp_path):
    # a closed local port stands in for "no network"; no real download is attempted
    with pytest.raises(OSError):
        download_beir("fiqa", tmp_path / "beir" / "fiqa", url="http://127.0.0.1:9/fiqa.zip", timeout=5)
    assert not (tmp_path / "beir" / "fiqa").exists()
    assert not (tmp_path / "beir").exists()  # issue 13, case 11: not even an empty folder is left


def test_invalid_names_rejected(tmp_path):
    with pytest.raises(ValueError, match="invalid dataset name"):
        find_beir("../etc", tmp_path, download=False)
