"""FAISS index files with an id map, on real SciFact."""

from __future__ import annotations

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from nudge_rag.stores import FaissStore, open_store  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _index_file(tmp_path, s, kind="flat"):
    d = s.docs.shape[1]
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        index.add_with_ids(s.docs, np.arange(len(s.ids), dtype=np.int64))
    elif kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, 32, faiss.METRIC_INNER_PRODUCT)
        index.train(s.docs)
        index.add_with_ids(s.docs, np.arange(len(s.ids), dtype=np.int64))
        index.nprobe = 4
    else:
        index = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
        index.add(s.docs)
    path = tmp_path / "index.faiss"
    faiss.write_index(index, str(path))
    (tmp_path / "index.faiss.ids").write_text("".join(f"{i}\n" for i in s.ids))
    return path


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_faiss_contract(tmp_path, scifact_ids, reference_fit, monkeypatch, kind):
    from tests.stores.conftest import check_contract

    path = _index_file(tmp_path, scifact_ids, kind)
    uri = f"faiss://{path}"
    store = open_store(uri)
    assert isinstance(store, FaissStore) and store.similarity == "inner_product"
    check_contract(
        store, scifact_ids, reference_fit, monkeypatch, reopen=lambda: open_store(uri), uri=uri, tmp_path=tmp_path
    )
    assert not (tmp_path / "index.faiss.nudge-originals.npz").exists()


def test_faiss_ivf_write_path(tmp_path, scifact_ids, reference_fit, monkeypatch):
    """IndexIVFFlat file: a failed write leaves memory and file as they were; a patch is stored in the file,
    searchable through the inverted lists, and revert restores the original vectors and file."""
    from tests.stores.conftest import inject_failure, read_in_new_process

    s = scifact_ids
    _, moved = reference_fit
    path = _index_file(tmp_path, s, "ivf")
    uri = f"faiss://{path}"
    original_bytes = path.read_bytes()
    store = open_store(uri)
    assert type(store._inner).__name__ == "IndexIVFFlat"
    ids = list(moved)
    new = np.stack([moved[i] for i in ids])
    before = store.fetch(s.ids)
    np.testing.assert_array_equal(before, s.docs)
    store.batch_size = 64
    inject_failure(store, monkeypatch, after=2)
    with pytest.raises(RuntimeError, match="injected"):
        store.write(ids, new)
    monkeypatch.undo()
    np.testing.assert_array_equal(store.fetch(s.ids), before)
    assert path.read_bytes() == original_bytes
    store.write(ids, new)
    np.testing.assert_array_equal(read_in_new_process(uri, ids, tmp_path), new)
    pos = {d: j for j, d in enumerate(s.ids)}
    untouched = [i for i in s.ids if i not in moved]
    np.testing.assert_array_equal(store.fetch(untouched), s.docs[[pos[i] for i in untouched]])
    # the moved vectors were re-assigned to their new inverted lists: an ANN search finds each one first
    _, hits = store.search(new[:50], 1, exact=False)
    assert [h[0] for h in hits] == ids[:50]
    assert store.revert() == len(ids)
    np.testing.assert_array_equal(read_in_new_process(uri, s.ids, tmp_path), s.docs)
    assert not (tmp_path / "index.faiss.nudge-originals.npz").exists()


def test_faiss_ann_returns_k_rows(scifact_ids):
    """HNSW (efSearch 16) and IVF (nprobe 1) return every one of k rows when k exceeds what the index's own
    search parameters reach, without changing the index."""
    s = scifact_ids
    q = np.ascontiguousarray(s.val.embeddings, dtype=np.float32)
    d = s.docs.shape[1]
    hnsw = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(s.docs)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, 64, faiss.METRIC_INNER_PRODUCT)
    ivf.train(s.docs)
    ivf.add(s.docs)
    ivf.nprobe = 1
    for index in (hnsw, ivf):
        store = FaissStore(index, s.ids)
        _, raw = index.search(q, 500)
        assert (raw < 0).any()  # the index's own parameters fall short of 500 rows
        scores, hits = store.search(q, 500, exact=False)
        assert all(len(h) == 500 for h in hits) and np.isfinite(scores).all()
        _, exact = store.search(q, 500)
        recall = np.mean([len(set(a) & set(b)) / 500 for a, b in zip(hits, exact)])
        assert recall > 0.5
    assert (hnsw.hnsw.efSearch, ivf.nprobe) == (16, 1)
