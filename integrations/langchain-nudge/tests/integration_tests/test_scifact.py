"""End to end on real data: SciFact with the real all-MiniLM-L6-v2 model (offline).

How the vectors are obtained (the model embeds ~15 texts/s on 2 cores, so the 5,183 abstracts are not re-embedded):
the base ``Embeddings`` (``MiniLMEmbeddings``) serves the precomputed all-MiniLM-L6-v2 vectors for the corpus
texts and the SciFact claims, and runs the live model for any other text. Stores are built from those vectors
(``InMemoryVectorStore.add_documents`` through that model, or ``FAISS.from_embeddings``). The first test checks
on a sample that the precomputed vectors are what the live model outputs, and the FAISS test also retrieves
held-out questions embedded live by the model (a wrapper loaded around a model with no precomputed table).

Training questions are the SciFact train claims (or claims "generated" by a prompt-aware fake chat model), and
held-out questions are the SciFact test claims, which never take part in fitting.
"""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_nudge import NudgeEmbeddings, generate_questions

# the real model, FAISS and the full SciFact corpus
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def emb(scifact, sup):
    """Precomputed-vector server in front of the live model (module-scoped to share stores)."""
    return sup.MiniLMEmbeddings(scifact.known)


@pytest.fixture(scope="module")
def faiss_stores(scifact, emb):
    """Base FAISS stores of the full corpus (5,183 abstracts) from the precomputed vectors: L2 and inner product."""
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy

    def build(strategy):
        return FAISS.from_embeddings(
            list(zip(scifact.texts, scifact.vectors.tolist())),
            emb,
            metadatas=[d.metadata for d in scifact.documents()],
            ids=scifact.doc_ids,
            distance_strategy=strategy,
        )

    return {"l2": build(DistanceStrategy.EUCLIDEAN_DISTANCE), "ip": build(DistanceStrategy.MAX_INNER_PRODUCT)}


def test_precomputed_vectors_match_the_live_model(scifact, sup):
    live = sup.MiniLMEmbeddings()  # no table: everything through the real model
    rows = [0, 1234, 4321, 5182]
    docs = np.asarray(live.embed_documents([scifact.texts[r] for r in rows]))
    assert np.min(np.sum(docs * scifact.vectors[rows], axis=1)) > 0.999
    qid = next(iter(scifact.qtext))
    assert float(np.dot(live.embed_query(scifact.qtext[qid]), scifact.qvec[qid])) > 0.999
    assert live.live_documents == 4 and live.live_queries == 1


def test_inmemory_swap_in_improves_held_out_retrieval(scifact, emb, sup):
    """NUDGE-N on an InMemoryVectorStore (cosine) of 1,000 abstracts: every cited one plus random others."""
    rows = scifact.subset_rows(1000)
    store = InMemoryVectorStore(embedding=emb)
    store.add_documents(scifact.documents(rows))
    before_records = {k: (v["text"], dict(v["metadata"]), list(v["vector"])) for k, v in store.store.items()}
    live_before = (emb.live_documents, emb.live_queries)
    held_out = dict(list(scifact.answers("test").items())[:150])
    base_rate = sup.hit_rate(store, held_out, k=10)

    nudged_emb = NudgeEmbeddings(emb)
    nudged = nudged_emb.fit_vectorstore(store, scifact.pairs("train"))

    report = nudged_emb.report_
    n_questions = len(scifact.answers("train"))  # distinct claim texts (a few train claims share a text)
    # the one carving rule (nudge_rag.finetune.carve_rows): floor(0.1 * n), the default fraction of every caller
    assert report.val_source == "carved" and report.n_val_questions == int(0.1 * n_questions)
    assert report.n_train_questions == n_questions - report.n_val_questions and report.gamma > 0
    assert report.val_score > report.val_base_score and report.n_moved > 300
    # written in place: same ids, texts and metadata; only moved documents' vectors differ
    assert nudged is store and set(store.store) == set(before_records)
    changed = {k for k, v in store.store.items() if v["vector"] != before_records[k][2]}
    assert len(changed) == report.n_moved
    for doc_id, rec in store.store.items():
        text, meta, vector = before_records[doc_id]
        assert rec["text"] == text and rec["metadata"] == meta

    nudged_rate = sup.hit_rate(store, held_out, k=10)
    assert nudged_rate >= base_rate + 0.05, (base_rate, nudged_rate)
    # nothing was embedded live: documents and claims all came from the precomputed table
    assert (emb.live_documents, emb.live_queries) == live_before
    assert NudgeEmbeddings.revert_vectorstore(store) == len(changed)
    assert {k: (v["text"], v["metadata"], v["vector"]) for k, v in store.store.items()} == before_records


@pytest.mark.parametrize(("variant", "kind"), [("nudge-n", "l2"), ("nudge-m", "ip")])
def test_faiss_swap_in_improves_held_out_retrieval(scifact, emb, faiss_stores, sup, tmp_path, variant, kind):
    """Full corpus in FAISS: NUDGE-N on the default L2 store, NUDGE-M on an inner-product store."""
    from langchain_community.vectorstores.utils import DistanceStrategy

    store = faiss_stores[kind]  # shared by the tests of this module: reverted at the end
    if variant == "nudge-m":
        assert store.distance_strategy == DistanceStrategy.MAX_INNER_PRODUCT
    held_out = scifact.answers("test")
    base_rate = sup.hit_rate(store, held_out, k=10)
    before = store.index.reconstruct_n(0, store.index.ntotal)
    # the lookup-table fit (reads the whole store), saved for a "restarted service" below
    path = tmp_path / "nudge.npz"
    NudgeEmbeddings(emb, variant=variant).fit(store, scifact.pairs("train")).save(path)

    wrapper = NudgeEmbeddings(emb, variant=variant)
    assert wrapper.fit_vectorstore(store, scifact.pairs("train")) is store  # in place, by id
    try:
        after = store.index.reconstruct_n(0, store.index.ntotal)
        assert int((np.abs(after - before).max(axis=1) > 0).sum()) == wrapper.report_.n_moved
        nudged_rate = sup.hit_rate(store, held_out, k=10)
        assert nudged_rate >= base_rate + 0.05, (base_rate, nudged_rate)

        # held-out questions embedded live by the real model, through a wrapper loaded from file: its nudged copy
        # retrieves what the store written in place retrieves (both fits are exact)
        live_model = sup.MiniLMEmbeddings()
        loaded = NudgeEmbeddings.load(path, live_model)
        assert loaded.gamma_ == pytest.approx(wrapper.gamma_, abs=1e-12)
        live_store = loaded.nudge_vectorstore(store)
        sample = dict(list(held_out.items())[:12])
        assert sup.retrieve_ids(live_store, list(sample), k=5) == sup.retrieve_ids(store, list(sample), k=5)
        assert live_model.live_queries == 12 and live_model.live_documents == 0
    finally:
        assert NudgeEmbeddings.revert_vectorstore(store) == wrapper.report_.n_moved
    np.testing.assert_array_equal(store.index.reconstruct_n(0, store.index.ntotal), before)


def test_generated_questions_swap_in(scifact, emb, faiss_stores, sup):
    """Questions from a chat model (a prompt-aware fake answering with the real train claims, with junk for some
    passages) -> fit -> nudged FAISS store that retrieves held-out questions better."""
    claims = scifact.claims_of("train")
    cited = sorted({scifact.row_of[d] for _, d in scifact.train_raw})
    llm = sup.ClaimsChatModel(claims=claims)
    result = generate_questions(
        scifact.documents(cited), llm, questions_per_document=2, batch_size=64, max_concurrency=4
    )
    assert result.n_documents == len(cited) == llm.calls
    assert result.n_failed == result.n_unparseable + result.n_empty and 30 < result.n_failed < 150
    assert result.n_succeeded == len(cited) - result.n_failed and result.n_questions > 500

    # the questions are kept verbatim (e.g. a claim ending in a quoted phrase), so they hit the precomputed table
    assert {q for q, _ in result.pairs} <= set(scifact.known)
    store = faiss_stores["l2"]
    held_out = scifact.answers("test")
    base_rate = sup.hit_rate(store, held_out, k=10)
    wrapper = NudgeEmbeddings(emb)
    wrapper.fit_vectorstore(store, result)
    try:
        assert wrapper.report_.val_source == "carved"
        nudged_rate = sup.hit_rate(store, held_out, k=10)
        assert nudged_rate >= base_rate + 0.04, (base_rate, nudged_rate)
    finally:
        NudgeEmbeddings.revert_vectorstore(store)
