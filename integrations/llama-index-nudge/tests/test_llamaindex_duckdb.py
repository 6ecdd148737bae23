"""NudgeFinetuneEngine on a real ``DuckDBVectorStore`` (a database file), through the core ``DuckDBStore``: the fit
equals the core in-memory fit, a new process reads the nudged vectors, and revert (from a new store object, as
after a restart) puts the originals back bit for bit.

llama-index-vector-stores-duckdb 0.7.0 imports ``duckdb.typing`` (renamed ``duckdb.sqltypes`` in the duckdb 1.5
that the core's VSS extension is built for) and INSTALLs the json and fts extensions, which DuckDB would download:
the test aliases the module and installs both from their PyPI packages (``duckdb-extension-json`` / ``-fts``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.nudge import NudgeFinetuneEngine

from nudge_rag.finetune import finetune_pairs, group_pairs

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a subprocess; the real MiniLM query vectors

N_DOCS = 300


@pytest.fixture(scope="module")
def duckdb_vector_store_cls():
    duckdb = pytest.importorskip("duckdb")
    if not hasattr(duckdb, "typing"):
        import duckdb.sqltypes

        sys.modules.setdefault("duckdb.typing", duckdb.sqltypes)
    pytest.importorskip("llama_index.vector_stores.duckdb")
    conn = duckdb.connect()
    for name in ("json", "fts"):  # into DuckDB's own extension folder, from the package: never a download
        module = pytest.importorskip(f"duckdb_extension_{name}")
        files = sorted(Path(module.__file__).parent.glob(f"extensions/v{duckdb.__version__}/{name}.duckdb_extension"))
        if not files:
            pytest.skip(f"duckdb-extension-{name} has no build for duckdb {duckdb.__version__}")
        conn.execute(f"INSTALL '{files[0]}'")
    conn.close()
    from llama_index.vector_stores.duckdb import DuckDBVectorStore

    return DuckDBVectorStore


READ = (
    "import duckdb, json, sys; c = duckdb.connect(sys.argv[1], read_only=True);"
    "rows = c.execute('SELECT node_id, embedding FROM docs').fetchall();"
    "print(json.dumps({i: list(map(float, v)) for i, v in rows}))"
)


def _read_in_new_process(path: Path) -> dict[str, np.ndarray]:
    out = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True, check=True).stdout
    return {k: np.asarray(v, dtype=np.float32) for k, v in json.loads(out).items()}


def test_duckdb_fit_is_read_by_a_new_process_and_reverts_bit_for_bit(
    duckdb_vector_store_cls, scifact, embed_model, tmp_path
):
    store = duckdb_vector_store_cls(
        database_name="nudge.duckdb", table_name="docs", embed_dim=384, persist_dir=str(tmp_path)
    )
    nodes = scifact.nodes(range(N_DOCS))
    ids = [n.node_id for n in nodes]
    index = VectorStoreIndex(
        nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
    )
    rows = dict(store.client.execute("SELECT node_id, embedding FROM docs").fetchall())
    before = np.asarray([rows[i] for i in ids], dtype=np.float32)
    present = set(ids)
    pairs = [(q, n) for q, n in scifact.pairs("train") if n in present]

    engine = NudgeFinetuneEngine(index, train_dataset=pairs, embed_model=embed_model)
    report = engine.finetune()
    assert report.store_similarity == "cosine" and "DuckDB" in report.store and report.written == report.n_moved > 0

    # equal to the core in-memory fit on the same vectors
    embed = lambda texts: np.asarray([embed_model.get_query_embedding(t) for t in texts], dtype=np.float32)  # noqa: E731
    ref = finetune_pairs(
        before, group_pairs(pairs), None, row_of={n: j for j, n in enumerate(ids)}, embed_queries=embed
    )
    assert report.gamma == pytest.approx(ref.model.gamma_, abs=1e-12) and report.n_moved == ref.model.n_moved_
    store.client.close()
    store._shared_conn.close()  # DuckDB lets one process open the file: hand it to the new process

    path = tmp_path / "nudge.duckdb"
    seen = _read_in_new_process(path)
    after = np.stack([seen[i] for i in ids])
    changed = {ids[j] for j in np.flatnonzero(np.abs(after - before).max(axis=1) > 0)}
    assert len(changed) == report.n_moved and changed <= {n for _, n in pairs}
    np.testing.assert_allclose(after, ref.model.embeddings_, atol=1e-5)

    # a new store object over the same file (as after a restart) reverts through the ledger beside the file
    reopened = duckdb_vector_store_cls(
        database_name="nudge.duckdb", table_name="docs", embed_dim=384, persist_dir=str(tmp_path)
    )
    later = NudgeFinetuneEngine(
        VectorStoreIndex.from_vector_store(reopened, embed_model=embed_model), train_dataset=pairs
    )
    assert later.status().nudged == report.n_moved
    assert later.revert() == report.n_moved
    reopened.client.close()
    reopened._shared_conn.close()
    restored = _read_in_new_process(path)
    assert all(np.array_equal(restored[i], before[j]) for j, i in enumerate(ids))  # bit for bit
