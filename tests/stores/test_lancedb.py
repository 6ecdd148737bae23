"""LanceDB on disk, on real SciFact."""

from __future__ import annotations

import numpy as np
import pytest

lancedb = pytest.importorskip("lancedb")

import pyarrow as pa  # noqa: E402

from nudge_rag.stores import LanceDBStore, open_store  # noqa: E402
from tests.stores.conftest import check_contract  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_lancedb_contract(tmp_path, scifact_ids, reference_fit, monkeypatch):
    s = scifact_ids
    db = lancedb.connect(str(tmp_path / "lance"))
    vec = pa.FixedSizeListArray.from_arrays(pa.array(s.docs.ravel(), type=pa.float32()), s.docs.shape[1])
    table = db.create_table("scifact", data=pa.table({"id": s.ids, "vector": vec, "text": [f"doc {i}" for i in s.ids]}))
    store = LanceDBStore(table)  # built from the table alone, as the frameworks hold it
    assert (store.similarity, store.dim, store.count()) == ("l2", 384, len(s.ids))
    uri = f"lancedb://{tmp_path / 'lance'}?table=scifact"
    check_contract(
        store,
        s,
        reference_fit,
        monkeypatch,
        reopen=lambda: open_store(uri),
        uri=uri,
        tmp_path=tmp_path,
        delete=lambda st, ids: st.table.delete(st._ids_filter(ids)),
    )
    t = db.open_table("scifact")
    got = t.search().where(f"id = '{s.ids[7]}'").select(["text"]).limit(1).to_arrow()
    assert got.column("text").to_pylist() == [f"doc {s.ids[7]}"]
    assert db.table_names() == ["scifact"]  # nothing created beside the user's table: the ledger is a file
    np.testing.assert_array_equal(open_store(uri).fetch(s.ids[:5]), s.docs[:5])
