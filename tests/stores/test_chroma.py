"""Chroma: PersistentClient on disk, and its HTTP server started with ``chroma run``, on real SciFact."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

chromadb = pytest.importorskip("chromadb")

from nudge_rag.stores import ChromaStore, open_store  # noqa: E402
from tests.stores.conftest import check_contract  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _load(client, s, space="cosine"):
    col = client.create_collection("scifact", metadata={"hnsw:space": space})
    for b0 in range(0, len(s.ids), 1000):
        col.add(
            ids=s.ids[b0 : b0 + 1000],
            embeddings=s.docs[b0 : b0 + 1000],
            documents=[f"doc {i}" for i in s.ids[b0 : b0 + 1000]],
        )
    return col


@pytest.mark.parametrize("space", ["ip", "cosine"])
def test_chroma_persistent_contract(tmp_path, scifact_ids, reference_fit, monkeypatch, space):
    s = scifact_ids
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    store = ChromaStore(_load(client, s, space))  # built from the collection alone, as the frameworks hold it
    assert store.similarity == {"ip": "inner_product", "cosine": "cosine"}[space] and store.dim == 384
    uri = f"chroma://{tmp_path / 'chroma'}?collection=scifact"
    # a cosine collection renormalises every vector written: restored rows may differ in the last bit
    check_contract(
        store,
        s,
        reference_fit,
        monkeypatch,
        reopen=lambda: open_store(uri),
        uri=uri,
        tmp_path=tmp_path,
        exact_restore=space == "ip",
        delete=lambda st, ids: st.collection.delete(ids=ids),
    )
    col = client.get_collection("scifact")
    assert col.get(ids=[s.ids[0]], include=["documents"])["documents"] == [f"doc {s.ids[0]}"]
    assert "scifact-nudge-originals" not in {c.name for c in client.list_collections()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path):
    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(exe).exists():
        pytest.skip("the chroma command is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
                break
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("chroma run did not start") from None
                time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_chroma_http_server_contract(chroma_server, tmp_path, scifact_ids, reference_fit, monkeypatch):
    s = scifact_ids
    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server)
    _load(client, s, "ip")
    uri = f"chroma://127.0.0.1:{chroma_server}?collection=scifact"
    store = open_store(uri)
    check_contract(store, s, reference_fit, monkeypatch, reopen=lambda: open_store(uri), uri=uri, tmp_path=tmp_path)
