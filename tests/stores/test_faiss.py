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
    else:
        index = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
        index.add(s.docs)
    path = tmp_path / "index.faiss"
    faiss.write_index(index, str(path))
    (tmp_path / "index.faiss.ids").write_text("".join(f"{i}\n" for i in s.ids))
    return path


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
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
