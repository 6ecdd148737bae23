"""Pairs that name a LlamaIndex *document* (``ref_doc_id``) instead of a node (issue 20 item 3), on real SciFact.

~100 abstracts go through an ``IngestionPipeline`` whose ``SentenceSplitter`` cuts some of them into several nodes;
the pairs name SciFact document ids. At fit time each document stands for its current nodes, so re-ingesting an
edited document (new node ids) keeps its pairs, and a deleted document's pairs are skipped and counted.
"""

from __future__ import annotations

from collections import Counter

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.nudge import NudgeFinetuneEngine

pytestmark = pytest.mark.slow  # the real MiniLM embeds the chunks

N_DOCS = 100


@pytest.fixture
def corpus(scifact):
    """(documents, pairs naming document ids): the first 100 documents the SciFact train pairs name."""
    doc_of = {node: doc for doc, node in scifact.node_of.items()}
    pairs = [(q, doc_of[n]) for q, n in scifact.pairs("train")]
    chosen = list(dict.fromkeys(d for _, d in pairs))[:N_DOCS]
    text = {d: (t + " " + x).strip() for d, t, x in zip(scifact.doc_ids, scifact.titles, scifact.texts)}
    documents = [Document(id_=d, text=text[d]) for d in chosen]
    return documents, [(q, d) for q, d in pairs if d in set(chosen)]


def _chunks(index) -> dict[str, list[str]]:
    return {d: list(info.node_ids) for d, info in index.ref_doc_info.items()}


def test_pairs_by_document_resolve_to_current_nodes(corpus, embed_model):
    documents, pairs = corpus
    pipeline = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=96, chunk_overlap=0)])
    index = VectorStoreIndex(pipeline.run(documents=documents), embed_model=embed_model)
    chunks = _chunks(index)
    multi = [d for d, ids in chunks.items() if len(ids) > 1]
    assert len(chunks) == N_DOCS and len(multi) >= 10  # some abstracts became several nodes

    engine = NudgeFinetuneEngine(index, train_dataset=pairs, gamma=0.2)
    report = engine.finetune()
    named = {d for _, d in pairs}
    every_chunk = {n for d in named for n in chunks[d]}
    assert set(engine.node_ids) == every_chunk  # each document stood for all of its nodes
    moved = {engine.node_ids[r] for r in engine.nudge_model.patch_.rows}
    assert report.n_moved == len(moved) == len(every_chunk) and report.n_dropped_questions == 0

    # the same fit as pairs naming every node by hand
    other = VectorStoreIndex(pipeline.run(documents=documents), embed_model=embed_model)
    renamed = {d: _chunks(other)[d] for d in named}
    by_node = [(q, n) for q, d in pairs for n in renamed[d]]
    ref = NudgeFinetuneEngine(other, train_dataset=by_node, gamma=0.2).finetune()
    assert (ref.n_moved, ref.n_train_questions, ref.n_train_pairs) == (
        report.n_moved,
        report.n_train_questions,
        report.n_train_pairs,
    )

    # edit and re-ingest one multi-node document: its node ids change, the same pairs still resolve
    edited = next(d for d in multi if d in named)
    old_ids = set(chunks[edited])
    text = next(doc.text for doc in documents if doc.id_ == edited)
    index.delete_ref_doc(edited, delete_from_docstore=True)
    index.insert_nodes(pipeline.run(documents=[Document(id_=edited, text=text + " (Edited.)")]))
    new_ids = set(_chunks(index)[edited])
    assert new_ids and not new_ids & old_ids
    again = engine.finetune()
    assert new_ids <= set(engine.node_ids) and not old_ids & set(engine.node_ids)
    assert again.n_dropped_questions == 0 and again.n_train_questions == report.n_train_questions

    # delete a document: the questions that named only it are skipped and counted
    per_question = {}
    for q, d in pairs:
        per_question.setdefault(q, set()).add(d)
    gone = Counter(d for ds in per_question.values() if len(ds) == 1 for d in ds).most_common(1)[0][0]
    index.delete_ref_doc(gone, delete_from_docstore=True)
    only_gone = sum(ds == {gone} for ds in per_question.values())
    third = engine.finetune()
    assert third.n_dropped_questions == only_gone > 0
    assert third.n_train_questions == report.n_train_questions - only_gone
    assert not set(chunks[gone]) & set(engine.node_ids)

    # insert takes pairs by document too
    engine.insert(train_dataset=[("which abstract was edited?", edited)])
    assert engine.inserts[-1]["n_train_questions"] == 1
