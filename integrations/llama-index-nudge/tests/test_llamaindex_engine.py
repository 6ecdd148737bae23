"""NudgeFinetuneEngine on the default SimpleVectorStore with real SciFact data and the real MiniLM model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from llama_index.core import Settings, StorageContext, VectorStoreIndex, load_index_from_storage
from llama_index.core.schema import TextNode
from llama_index.nudge import (
    EmbeddingQAFinetuneDataset,
    NudgeFinetuneEngine,
    NudgeFinetuneReport,
    StoreWriteError,
)


def _index(scifact, embed_model, rows=None):
    return VectorStoreIndex(scifact.nodes(rows), embed_model=embed_model)


def _vectors(index) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float32) for k, v in index.vector_store.data.embedding_dict.items()}


@pytest.mark.integration  # subprocess
def test_import_pulls_no_torch_and_no_qdrant():
    code = (
        "import sys, llama_index.nudge;"
        "print(sorted(m for m in ('torch', 'qdrant_client', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.slow
def test_finetune_improves_heldout_retrieval_and_keeps_nodes(scifact, embed_model, helpers):
    index = _index(scifact, embed_model)
    before = helpers.snapshot_simple(index)
    test_questions = dict(list(scifact.answers("test").items())[::2])  # 150 held-out claims (BEIR test split)
    hit_before = helpers.hit_rate(index, test_questions, also=(1,))

    engine = NudgeFinetuneEngine(index, train_dataset=scifact.pairs("train"))
    report = engine.finetune()
    nudged = engine.get_finetuned_index()

    # stored vectors were captured, never re-embedded; questions came from the same base model
    assert embed_model.live_texts == 0 and engine.n_embedded_nodes == 0
    assert nudged is index and nudged._embed_model is embed_model
    # report
    assert report.variant == "nudge-n" and report.similarity == "cosine"
    n_questions = len({q for q, _ in scifact.pairs("train")})  # 809 claims, 2 texts occur twice
    # the one carving rule (nudge_rag.finetune.carve_rows): floor(0.1 * n)
    assert report.val_source == "carved" and report.n_val_questions == int(0.1 * n_questions)
    assert report.n_train_questions + report.n_val_questions == n_questions
    assert 0 < report.gamma <= 0.48 and len(report.gammas) == len(report.val_scores) > 10
    assert report.val_score >= report.val_base_score
    assert 0 < report.n_moved == report.written <= 565 and report.store.startswith("SimpleVectorStore")
    assert len(str(report).splitlines()) <= 8
    json.dumps(report.to_dict())

    # held-out questions (the BEIR test split) retrieve better through the ordinary retriever
    hit_after = helpers.hit_rate(nudged, test_questions, also=(1,))
    assert hit_after[1] >= hit_before[1] + 0.10, (hit_before, hit_after)
    assert hit_after[10] >= hit_before[10] + 0.02, (hit_before, hit_after)

    # ids, text and metadata unchanged; only the moved vectors changed, and they are unit-norm
    after = helpers.snapshot_simple(nudged)
    assert after["docs"] == before["docs"] and after["meta"] == before["meta"]
    assert after["nodes_dict"] == before["nodes_dict"]
    assert set(after["vectors"]) == set(before["vectors"])
    moved = [k for k in before["vectors"] if not np.allclose(before["vectors"][k], after["vectors"][k], atol=1e-6)]
    assert len(moved) == report.n_moved
    assert np.allclose([np.linalg.norm(after["vectors"][k]) for k in moved], 1.0, atol=1e-5)
    patch = engine.nudge_model.patch_
    new = dict(zip((engine.node_ids[r] for r in patch.rows), patch.new))
    for k in moved[:20]:
        assert np.allclose(after["vectors"][k], new[k], atol=1e-6)

    # query engine works out of the box
    from llama_index.core.llms import MockLLM

    question = next(iter(test_questions))
    response = nudged.as_query_engine(llm=MockLLM(), similarity_top_k=3).query(question)
    expected = [r.node.node_id for r in nudged.as_retriever(similarity_top_k=3).retrieve(question)]
    assert [n.node.node_id for n in response.source_nodes] == expected


def test_dataset_object_json_file_and_pairs_agree(scifact, embed_model, tmp_path):
    texts = [scifact.qtext[q] for q in scifact.query_ids("train")]
    unique = [q for q in scifact.query_ids("train") if texts.count(scifact.qtext[q]) == 1]
    train_q, val_q = unique[:700], unique[700:]

    def dataset(qids):
        pairs = scifact.pairs("train", qids)
        queries, relevant = {}, {}
        for q in qids:
            queries[f"id{q}"] = scifact.qtext[q]
            relevant[f"id{q}"] = [node for text, node in pairs if text == scifact.qtext[q]]
        corpus = {scifact.node_of[d]: t for d, t in zip(scifact.doc_ids, scifact.texts)}
        return EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant)

    train_ds, val_ds = dataset(train_q), dataset(val_q)
    path = tmp_path / "train.json"
    train_ds.save_json(str(path))
    assert EmbeddingQAFinetuneDataset.from_json(str(path)) == train_ds
    raw = json.loads(path.read_text())  # LlamaIndex's layout: the four fields, nothing else
    assert set(raw) == {"queries", "corpus", "relevant_docs", "mode"} and raw["mode"] == "text"

    results = []
    for train in (train_ds, path, scifact.pairs("train", train_q)):
        index = _index(scifact, embed_model)
        report = NudgeFinetuneEngine(index, train_dataset=train, val_dataset=val_ds).finetune()
        assert report.val_source == "given" and report.n_val_questions == len(val_q)
        results.append((report.gamma, _vectors(index)))
    (gamma0, vecs0), (gamma1, vecs1), (gamma2, vecs2) = results
    assert gamma1 == gamma0 and all(np.array_equal(vecs1[k], vecs0[k]) for k in vecs0)  # object == JSON file
    assert gamma2 == gamma0 and all(np.allclose(vecs2[k], vecs0[k], atol=1e-6) for k in vecs0)  # == plain pairs


@pytest.mark.slow
@pytest.mark.integration  # subprocess
def test_persist_and_load_round_trip(scifact, embed_model, tmp_path, helpers):
    index = _index(scifact, embed_model)
    engine = NudgeFinetuneEngine(index, train_dataset=scifact.pairs("train"))
    report = engine.finetune()
    engine.persist(tmp_path / "storage")

    assert (tmp_path / "storage" / "nudge_report.json").is_file()
    saved = NudgeFinetuneReport.load(tmp_path / "storage" / "nudge_report.json")
    assert saved.to_dict() == report.to_dict()
    assert not list((tmp_path / "storage").glob(".*.tmp"))

    loaded = load_index_from_storage(
        StorageContext.from_defaults(persist_dir=str(tmp_path / "storage")), embed_model=embed_model
    )
    original, reloaded = _vectors(index), _vectors(loaded)
    assert set(original) == set(reloaded)
    assert all(np.array_equal(original[k], reloaded[k]) for k in original)
    sample = dict(list(scifact.answers("test").items())[:20])
    assert helpers.hit_rate(loaded, sample) == helpers.hit_rate(index, sample)

    # a fresh process loading the persisted store sees the nudged vectors too
    moved = engine.node_ids[int(engine.nudge_model.moved_docs_[0])]
    code = (
        "import json, sys; from llama_index.core.vector_stores import SimpleVectorStore;"
        f"vs = SimpleVectorStore.from_persist_dir({str(tmp_path / 'storage')!r});"
        f"print(json.dumps(vs.get({moved!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert np.allclose(json.loads(out), original[moved])
    row = scifact.doc_ids.index(index.docstore.get_node(moved).metadata["beir_id"])
    assert not np.allclose(json.loads(out), scifact.vectors[row])  # the nudged vector, not the original


@pytest.mark.slow
def test_insert_updates_only_what_it_touches(scifact, embed_model, tmp_path, helpers):
    n_new = 150
    held_back = list(range(len(scifact.doc_ids)))[-n_new:]
    index = _index(scifact, embed_model, range(len(scifact.doc_ids) - n_new))
    new_nodes = scifact.nodes(held_back, with_embedding=False)  # the engine embeds them (batches)
    new_ids = {n.node_id for n in new_nodes}
    present = set(index.index_struct.nodes_dict.values())

    all_train = scifact.pairs("train")
    first = [p for p in all_train if p[1] in present][: len(all_train) // 2]
    second = [p for p in all_train if p not in first]

    engine = NudgeFinetuneEngine(index, train_dataset=first)
    report = engine.finetune()
    gamma, n_val = report.gamma, report.n_val_questions
    engine.persist(tmp_path / "storage")
    before = _vectors(index)

    # reopen from disk (as after a restart) and insert the held-back documents and the other pairs
    engine = NudgeFinetuneEngine.from_persist_dir(tmp_path / "storage", embed_model=embed_model)
    index = engine.get_finetuned_index()
    embed_model.live_texts = 0
    calls_before = embed_model.batch_calls
    report = engine.insert(nodes=new_nodes, train_dataset=second)
    after = _vectors(index)

    assert embed_model.batch_calls - calls_before == (n_new + 31) // 32  # new nodes embedded in batches
    assert report.gamma == gamma and len(engine.inserts) == 1
    entry = engine.inserts[0]
    assert entry["n_new_nodes"] == n_new and entry["n_val_questions"] > 0
    assert report.n_val_questions == n_val + entry["n_val_questions"]
    assert set(after) == set(before) | new_ids
    # only documents named by the new training pairs changed
    touched = {node for _, node in second}
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and changed <= touched
    assert entry["n_written"] == len(changed) + n_new
    # new nodes are retrievable with their text and metadata; all nodes keep their ids
    node = index.docstore.get_node(new_nodes[0].node_id)
    assert node.get_content() == new_nodes[0].get_content() and node.metadata == new_nodes[0].metadata
    assert set(index.index_struct.nodes_dict.values()) == present | new_ids
    # the held-out questions benefit as with a single fit
    assert helpers.hit_rate(index, dict(list(scifact.answers("test").items())[::5])) > 0.8


@pytest.mark.slow
@pytest.mark.integration  # the real model embeds live
def test_nodes_without_vectors_are_embedded_in_batches_once(scifact, live_embed_model, helpers):
    """~20 nodes: the index embeds them itself with the real model; then one vector goes missing."""
    train = scifact.pairs("train")
    wanted = []
    for _, node in train:
        if node not in wanted:
            wanted.append(node)
        if len(wanted) == 20:
            break
    rows = [scifact.doc_ids.index(next(d for d, n in scifact.node_of.items() if n == node)) for node in wanted]
    index = VectorStoreIndex(scifact.nodes(rows, with_embedding=False), embed_model=live_embed_model)
    assert live_embed_model.live_texts == 20
    stored = _vectors(index)
    for r in rows:  # the live model reproduces the precomputed vectors
        assert float(stored[scifact.node_of[scifact.doc_ids[r]]] @ scifact.vectors[r]) > 0.9999

    lost = scifact.node_of[scifact.doc_ids[rows[0]]]
    meta = index.vector_store.data.metadata_dict[lost]
    del index.vector_store.data.embedding_dict[lost]
    del index.vector_store.data.metadata_dict[lost]
    pairs = [p for p in train if p[1] in set(wanted)]
    live_embed_model.live_texts = 0
    engine = NudgeFinetuneEngine(index, train_dataset=pairs)
    engine.finetune()
    assert engine.n_embedded_nodes == 1 and live_embed_model.live_texts == 1
    assert live_embed_model.live_queries == len({q for q, _ in pairs})  # questions embedded live as queries
    assert lost in index.vector_store.data.embedding_dict
    assert index.vector_store.data.metadata_dict[lost] == meta
    assert helpers.hit_rate(index, {q: {n} for q, n in pairs[:5]}, k=3) > 0


@pytest.mark.integration  # the real model embeds one node live
def test_build_from_nodes_with_settings_fallback(scifact, embed_model, helpers):
    nodes = scifact.nodes()
    nodes[5].embedding = None  # one node without a vector: embedded, the others kept as given
    old = Settings._embed_model
    try:
        Settings.embed_model = embed_model
        engine = NudgeFinetuneEngine(nodes, train_dataset=scifact.pairs("train"))
        with pytest.raises(RuntimeError, match="finetune"):
            engine.get_finetuned_index()
        report = engine.finetune()
    finally:
        Settings._embed_model = old
    index = engine.get_finetuned_index()
    assert engine.n_embedded_nodes == 1 and report.written == report.n_moved > 0
    assert set(index.index_struct.nodes_dict.values()) == {n.node_id for n in nodes}
    assert nodes[5].embedding is None  # the caller's nodes are not modified
    assert helpers.hit_rate(index, dict(list(scifact.answers("test").items())[::5])) > 0.8


def test_refit_starts_from_the_original_vectors(scifact, embed_model):
    index = _index(scifact, embed_model)
    engine = NudgeFinetuneEngine(index, train_dataset=scifact.pairs("train"))
    first = engine.finetune()
    once = _vectors(index)
    second = engine.finetune()  # reverts the first fit, then fits and writes again
    assert second.gamma == first.gamma
    twice = _vectors(index)
    assert all(np.array_equal(once[k], twice[k]) for k in once)
    assert second.written == first.written


# ------------------------------------------------------------------------------------------ errors
def _assert_untouched(index, before, helpers):
    assert helpers.snapshot_simple(index) == before


def test_unknown_node_id_is_an_error_and_leaves_the_index_untouched(scifact, embed_model, helpers):
    index = _index(scifact, embed_model, range(300))
    before = helpers.snapshot_simple(index)
    pairs = scifact.pairs("train") + [("a question about a node that does not exist?", "no-such-node")]
    with pytest.raises(ValueError, match="node id.*not in the index"):
        NudgeFinetuneEngine(index, train_dataset=pairs).finetune()
    _assert_untouched(index, before, helpers)


def test_mixed_dimensions_is_an_error(scifact, embed_model, helpers):
    nodes = scifact.nodes(range(50))
    nodes[7].embedding = nodes[7].embedding[:100]
    index = VectorStoreIndex(nodes, embed_model=embed_model)
    before = helpers.snapshot_simple(index)
    pairs = [("what is in document seven?", nodes[7].node_id), ("and in document eight?", nodes[8].node_id)]
    with pytest.raises(ValueError, match="mixed embedding dimensions.*100.*384"):
        NudgeFinetuneEngine(index, train_dataset=pairs).finetune()
    _assert_untouched(index, before, helpers)
    with pytest.raises(ValueError, match="mixed embedding dimensions"):
        NudgeFinetuneEngine(nodes, train_dataset=pairs, embed_model=embed_model).finetune()


@pytest.mark.parametrize(
    "train",
    [
        [],
        [("   ", "x")],
        [("question?", [])],
        EmbeddingQAFinetuneDataset(queries={"q": ""}, corpus={}, relevant_docs={"q": ["x"]}),
    ],
    ids=["empty", "blank-question", "no-node", "dataset-blank"],
)
def test_no_usable_training_pairs_is_an_error(scifact, embed_model, helpers, train):
    index = _index(scifact, embed_model, range(100))
    before = helpers.snapshot_simple(index)
    with pytest.raises(ValueError, match="no usable training pairs"):
        NudgeFinetuneEngine(index, train_dataset=train).finetune()
    _assert_untouched(index, before, helpers)


def test_nudge_m_is_refused_on_a_cosine_store(scifact, embed_model):
    index = _index(scifact, embed_model, range(20))
    with pytest.raises(ValueError, match="NUDGE-M.*inner product.*cosine"):
        NudgeFinetuneEngine(index, train_dataset=[], variant="nudge-m")


def test_failed_write_restores_the_original_vectors(scifact, embed_model, helpers):
    index = _index(scifact, embed_model)
    before = helpers.snapshot_simple(index)

    class FailingDict(dict):
        writes = 0

        def __setitem__(self, key, value):
            FailingDict.writes += 1
            if FailingDict.writes == 300:  # after one full batch of 256 and part of the next
                raise OSError("disk full")
            super().__setitem__(key, value)

    data = index.vector_store.data
    data.embedding_dict = FailingDict(data.embedding_dict)
    engine = NudgeFinetuneEngine(index, train_dataset=scifact.pairs("train"))
    with pytest.raises(StoreWriteError, match="disk full"):  # the core StoreError; the write was rolled back
        engine.finetune()
    _assert_untouched(index, before, helpers)
    with pytest.raises(RuntimeError, match="finetune"):
        engine.get_finetuned_index()


def test_insert_errors_leave_the_index_untouched(scifact, embed_model, helpers):
    index = _index(scifact, embed_model, range(400))
    present = set(index.index_struct.nodes_dict.values())
    engine = NudgeFinetuneEngine(index, train_dataset=[(q, n) for q, n in scifact.pairs("train") if n in present])
    engine.finetune()
    before = helpers.snapshot_simple(index)
    with pytest.raises(ValueError, match="not in the index"):
        engine.insert(train_dataset=[("where is the missing node?", "missing-node")])
    existing = index.docstore.get_node(next(iter(index.index_struct.nodes_dict.values())))
    with pytest.raises(ValueError, match="already exist"):
        engine.insert(nodes=[TextNode(id_=existing.node_id, text="x", embedding=[0.1] * 384)])
    with pytest.raises(ValueError, match="mixed embedding dimensions"):
        engine.insert(nodes=[TextNode(id_="n-new", text="new text", embedding=[0.1] * 10)])
    _assert_untouched(index, before, helpers)
