"""The store layer without a server: URIs, the registry, lazy imports, and StoreCorpus == the in-memory fit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nudge_rag import NudgeM, NudgeN
from nudge_rag.corpus import ArrayCorpus, Corpus
from nudge_rag.stores import BACKENDS, StoreCorpus, StoreError, open_store, parse_uri
from tests.stores.conftest import REPO


def test_parse_uri_forms():
    u = parse_uri("postgresql://alice:secret@db.local:5433/rag?table=docs&id_column=doc&vector_column=emb")
    assert (u.scheme, u.host, u.port, u.path, u.username) == ("postgresql", "db.local", 5433, "/rag", "alice")
    assert u.params == {"table": "docs", "id_column": "doc", "vector_column": "emb"} and "secret" not in u.redacted()
    local = parse_uri("qdrant:///data/q?collection=C")
    assert local.is_local and local.path == "/data/q" and local.param("collection") == "C"
    server = parse_uri("qdrant://localhost:6333?collection=C")
    assert not server.is_local and (server.host, server.port) == ("localhost", 6333)
    assert parse_uri("faiss://./idx.faiss").path == "./idx.faiss"
    with pytest.raises(ValueError, match="unknown store scheme 'redis'"):
        open_store("redis://x")
    with pytest.raises(ValueError, match=r"needs \?collection="):
        parse_uri("qdrant:///x").param("collection", required=True)
    assert set(BACKENDS) >= {"postgresql", "qdrant", "chroma", "milvus", "lancedb", "faiss"}


def test_import_is_numpy_only():
    code = (
        "import sys, nudge_rag, nudge_rag.stores\n"
        "heavy = {'faiss', 'qdrant_client', 'chromadb', 'psycopg', 'pymilvus', 'lancedb', 'pyarrow', 'pgserver'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("cls", [NudgeN, NudgeM])
def test_store_corpus_fit_equals_in_memory(small_problem, cls):
    faiss = pytest.importorskip("faiss")
    from nudge_rag.stores import FaissStore

    docs, train, val, _ = small_problem
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs)
    ids = [f"d{i}" for i in range(docs.shape[0])]
    store = FaissStore(index, ids)
    corpus = StoreCorpus(store, ids)  # rows = store order, so ties break alike
    assert isinstance(corpus, Corpus) and corpus.n_docs == docs.shape[0]
    excl = np.array([1, 5, 9], dtype=np.int64)
    s1, i1 = corpus.competitors(val.embeddings, excl, 3)
    s2, i2 = ArrayCorpus(docs).competitors(val.embeddings, excl, 3)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    ref = cls().fit(docs, train, val)
    got = cls().fit(corpus, train, val)
    assert got.gamma_ == ref.gamma_ and got.embeddings_ is None
    np.testing.assert_array_equal(got.patch_.rows, ref.patch_.rows)
    np.testing.assert_allclose(got.patch_.new, ref.patch_.new, atol=1e-6)
    assert corpus.stats["fetched"] <= docs.shape[0]


def test_write_validates_before_changing_anything():
    faiss = pytest.importorskip("faiss")
    from nudge_rag.stores import FaissStore

    x = np.eye(4, dtype=np.float32)
    index = faiss.IndexFlatIP(4)
    index.add(x)
    store = FaissStore(index, ["a", "b", "c", "d"])
    with pytest.raises(StoreError, match="not in FAISS index"):
        store.write(["a", "zz"], x[:2])
    with pytest.raises(ValueError, match="duplicates"):
        store.write(["a", "a"], x[:2])
    with pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        store.write(["a", "b"], x[:3])
    with pytest.raises(ValueError, match="NaN"):
        store.write(["a"], np.full((1, 4), np.nan, dtype=np.float32))
    np.testing.assert_array_equal(store.fetch(["a", "b", "c", "d"]), x)
    store.write(["b"], x[:1])
    store.write(["b"], x[2:3])  # the original of b is kept from the first write only
    assert store.revert() == 1
    np.testing.assert_array_equal(store.fetch(["b"]), x[1:2])


def test_a_row_deleted_between_the_re_read_and_the_write_is_reported_missing_not_recreated():
    """The last race window of a store without transactions: another client deletes a row right after the
    compare-and-set re-read. The row is not re-created, counted missing, and left out of the ledger."""
    from nudge_rag.stores import MemoryStore

    records = {f"d{i}": np.eye(4)[i % 4].tolist() for i in range(6)}

    class RacingStore(MemoryStore):
        def _get(self, ids, *, lock=False):
            got = super()._get(ids, lock=lock)
            records.pop("d2", None)  # another client deletes d2 just after our read
            return got

    store = RacingStore(records, name="racing")
    result = store.write(["d1", "d2", "d3"], np.full((3, 4), 0.5, dtype=np.float32))
    assert result.written == ["d1", "d3"] and result.missing == ["d2"]
    assert "d2" not in records and records["d1"] == [0.5] * 4
    assert set(store.ledger.records(["d1", "d2", "d3"])) == {"d1", "d3"}
    assert store.revert() == 2 and records["d1"] == np.eye(4)[1].tolist()


def test_present_reads_in_batches_and_counts_a_rejected_id_absent():
    from nudge_rag.stores import MemoryStore

    records = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0], "bad": [1.0, 0.0, 0.0]}
    store = MemoryStore(records, batch_size=2)  # "bad" (3-d) makes any batch holding it raise
    assert store.present(["a", "zz", "a", "c"]) == {"a", "c"}
    assert store.present([]) == set()
    assert store.present(["b", "bad", "c", "nope"]) == {"b", "c"}  # its batch re-read id by id
    with pytest.raises(StoreError, match="several dimensions"):
        store.present(["bad"])  # every read rejected: the store failed, not an absent id


def test_memory_stores_over_one_unhashable_owner_share_a_ledger_dropped_with_it():
    import gc

    from nudge_rag.stores import MemoryStore
    from nudge_rag.stores._base import _MEMORY_LEDGERS

    class Owner:  # unhashable, like a pydantic model (LlamaIndex's SimpleVectorStore)
        __hash__ = None  # type: ignore[assignment]

    owner, records = Owner(), {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    MemoryStore(records, owner=owner).write(["a"], np.array([[0.6, 0.8]], dtype=np.float32))
    assert records["a"] != [1.0, 0.0]
    assert MemoryStore(records, owner=owner).revert() == 1  # a later store object finds the first one's write
    assert records["a"] == [1.0, 0.0]
    n = len(_MEMORY_LEDGERS)
    del owner
    gc.collect()
    assert len(_MEMORY_LEDGERS) == n - 1


def test_save_ledger_copies_an_in_process_ledger_once(tmp_path):
    from nudge_rag.stores import MemoryStore, SqliteLedger

    records = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    store = MemoryStore(records)  # its ledger is in memory
    store.write(["a"], np.array([[0.6, 0.8]], dtype=np.float32))
    target = tmp_path / "ledger.sqlite"
    assert store.save_ledger(target) and target.is_file()
    reopened = MemoryStore(records)
    reopened.use_ledger(target)  # another process: the copied originals still revert
    assert not reopened.save_ledger(target)  # already that file
    assert isinstance(reopened.ledger, SqliteLedger) and reopened.revert() == 1
    assert records["a"] == [1.0, 0.0]
