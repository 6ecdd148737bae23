"""What happens to the nudges when a LlamaIndex app re-ingests its documents after a fine-tune (real Qdrant on
disk, a real ``IngestionPipeline``, real SciFact vectors).

* With a docstore (``IngestionPipeline(docstore=...)``, LlamaIndex's default upsert strategy), unchanged documents
  are skipped: every nudge stays. An edited document's old node is deleted and a new node added: ``status`` counts
  the old one missing, and revert skips it without re-inserting it.
* Without a docstore, every document is embedded and upserted again under the same ids: ``status`` sees every
  nudged row holding its original vector again, and ``reapply`` puts the nudges back.
"""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.nudge import NudgeFinetuneEngine
from llama_index.nudge._backends import core_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_DOCS = 300


def _setup(scifact, embed_model, tmp_path, *, docstore):
    pytest.importorskip("llama_index.vector_stores.qdrant")
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    vs = QdrantVectorStore(collection_name="scifact", client=QdrantClient(path=str(tmp_path / "qdrant")))
    docs = [Document(id_=n.node_id, text=n.text) for n in scifact.nodes(range(N_DOCS), with_embedding=False)]
    steps = [SentenceSplitter(chunk_size=8192), embed_model] if docstore else [embed_model]
    pipeline = IngestionPipeline(
        transformations=steps, docstore=SimpleDocumentStore() if docstore else None, vector_store=vs
    )
    nodes = pipeline.run(documents=docs)
    node_of = {n.ref_doc_id or n.node_id: n.node_id for n in nodes}  # one node per document here
    assert len(node_of) == N_DOCS
    index = VectorStoreIndex.from_vector_store(vs, embed_model=embed_model)
    pairs = [(q, node_of[d]) for q, d in scifact.pairs("train") if d in node_of]
    engine = NudgeFinetuneEngine(index, train_dataset=pairs, embed_model=embed_model)
    report = engine.finetune()
    assert report.n_moved > 10
    return pipeline, docs, node_of, index, report, engine


def test_a_pipeline_with_a_docstore_keeps_every_nudge(scifact, embed_model, tmp_path):
    pipeline, docs, node_of, index, report, _ = _setup(scifact, embed_model, tmp_path, docstore=True)
    core = core_store(index)
    st = core.status()
    assert (st.rows, st.nudged, st.overwritten, st.missing) == (report.n_moved, report.n_moved, 0, 0)
    pipeline.run(documents=docs)  # the nightly re-index: unchanged documents are skipped
    assert core.status().nudged == report.n_moved
    # an edited document: LlamaIndex deletes its old node and adds a new one
    moved = set(core.ledger.records(list(node_of.values())))
    target = next(d for d in docs if node_of[d.doc_id] in moved)
    edited = Document(id_=target.doc_id, text=target.text + " Revised abstract.")
    pipeline.run(documents=[edited if d.doc_id == target.doc_id else d for d in docs])
    st = core.status()
    assert (st.nudged, st.overwritten, st.missing) == (report.n_moved - 1, 0, 1)
    result = core.revert()
    assert result.restored == report.n_moved - 1 and result.missing == [node_of[target.doc_id]]
    assert core._get([node_of[target.doc_id]]) == {}  # never re-inserted
    assert core.count() == N_DOCS  # the edited document's new node is there, untouched


def test_a_pipeline_without_a_docstore_undoes_the_nudges_and_reapply_restores_them(scifact, embed_model, tmp_path):
    pipeline, docs, node_of, index, report, engine = _setup(scifact, embed_model, tmp_path, docstore=False)
    ids = list(node_of.values())
    nudged = core_store(index).fetch(ids)
    pipeline.run(documents=docs)  # every document embedded and upserted again: the base vectors are back
    st = engine.status()  # the engine's own idiom
    assert (st.nudged, st.overwritten, st.reapplicable, st.missing) == (0, report.n_moved, report.n_moved, 0)
    assert "reapply" in str(st)
    assert engine.reapply().reapplied == report.n_moved
    np.testing.assert_allclose(core_store(index).fetch(ids), nudged, atol=1e-7)
    assert engine.status().nudged == report.n_moved
    assert engine.revert() == report.n_moved
