"""Re-tuning a store from feedback (issue 20 items 3 and 4), on real SciFact claims, real engines and the real
feedback log: pairs by document (``chunks_of``), insertion across calls, equality with one fit, minimum evidence,
skipped events, the ledger's originals as the base, revert."""

from __future__ import annotations

import numpy as np
import pytest

from nudge_rag import QueryAnswers, evaluate
from nudge_rag.feedback import FeedbackLog
from nudge_rag.finetune import group_pairs
from nudge_rag.stores import MemoryStore, finetune_store, retune_store
from nudge_rag.stores._retune import default_state_path, held_out
from tests.support.scifact import SciFactTexts, scifact_available

pytestmark = pytest.mark.skipif(not scifact_available(), reason="SciFact and its vectors are not in the shared data")


@pytest.fixture(scope="module")
def sf() -> SciFactTexts:
    return SciFactTexts()


def memory_store(sf: SciFactTexts) -> MemoryStore:
    return MemoryStore({d: sf.vectors[i].astype(np.float64).tolist() for i, d in enumerate(sf.doc_ids)})


def click_events(sf: SciFactTexts, pairs: list[tuple[str, str]]) -> list[dict]:
    return [dict(question=sf.qtext[q], doc_ids=[d], source="click", vector=sf.qvec[q]) for q, d in pairs]


def r_at_1(sf: SciFactTexts, matrix: np.ndarray) -> float:
    ans: dict[str, list[int]] = {}
    for q, d in sf.test_raw:
        ans.setdefault(q, []).append(sf.row_of[d])
    qs = sorted(ans)
    test = QueryAnswers.from_lists(np.stack([sf.qvec[q] for q in qs]), [ans[q] for q in qs])
    return float(evaluate(matrix, test, ["recall@1"], similarity="cosine")["recall@1"])


# ---------------------------------------------------------------------------------------------- pairs by document
def _chunked(sf: SciFactTexts, n: int = 120) -> tuple[list[str], np.ndarray, list[str], dict[str, list[str]]]:
    """Chunk ids, vectors and document ids of the first ``n`` SciFact abstracts, every third one in two chunks."""
    ids, vecs, docs = [], [], []
    for i, d in enumerate(sf.doc_ids[:n]):
        for c in range(2 if i % 3 == 0 else 1):
            ids.append(f"{d}-{c}")
            vecs.append(sf.vectors[i])
            docs.append(d)
    chunks: dict[str, list[str]] = {}
    for c, d in zip(ids, docs):
        chunks.setdefault(d, []).append(c)
    return ids, np.stack(vecs).astype(np.float32), docs, chunks


def _open(kind: str, tmp_path, ids: list[str], vecs: np.ndarray, docs: list[str]):
    if kind == "memory":
        return MemoryStore({c: {"vector": v.tolist(), "metadata": {"doc_id": d}} for c, v, d in zip(ids, vecs, docs)},
                           field="vector")  # fmt: skip
    if kind == "chroma":
        import chromadb

        from nudge_rag.stores import ChromaStore

        client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
        col = client.create_collection("chunks", metadata={"hnsw:space": "cosine"})
        col.add(ids=ids, embeddings=vecs, metadatas=[{"doc_id": d} for d in docs])
        return ChromaStore(col, client=client)
    if kind == "qdrant":
        from qdrant_client import QdrantClient, models

        from nudge_rag.stores import QdrantStore

        client = QdrantClient(path=str(tmp_path / "q"))
        client.create_collection(
            "c", vectors_config=models.VectorParams(size=vecs.shape[1], distance=models.Distance.COSINE)
        )
        points = [models.PointStruct(id=j, vector=v.tolist(), payload={"metadata": {"doc_id": d}, "chunk": c})
                  for j, (c, v, d) in enumerate(zip(ids, vecs, docs))]  # fmt: skip
        client.upsert("c", points=points)
        return QdrantStore(client, "c")
    if kind == "lancedb":
        import lancedb
        import pyarrow as pa

        from nudge_rag.stores import LanceDBStore

        db = lancedb.connect(str(tmp_path / "lance"))
        vec = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), type=pa.float32()), vecs.shape[1])
        table = db.create_table("c", data=pa.table({"id": ids, "vector": vec, "doc_id": docs}))
        return LanceDBStore(table, db=db, similarity="cosine")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["memory", "chroma", "qdrant", "lancedb"])
def test_chunks_of_maps_documents_to_their_current_chunks(sf, tmp_path, kind):
    ids, vecs, docs, chunks = _chunked(sf)
    store = _open(kind, tmp_path, ids, vecs, docs)
    field = "metadata.doc_id" if kind == "qdrant" else "doc_id"
    if kind == "qdrant":  # Qdrant ids are integers: map back to the chunk names for the comparison
        name = {str(j): c for j, c in enumerate(ids)}
    else:
        name = {c: c for c in ids}
    asked = [sf.doc_ids[0], sf.doc_ids[1], sf.doc_ids[3], "no-such-document"]
    got = store.chunks_of(field, asked)
    assert {d: sorted(name[c] for c in cs) for d, cs in got.items()} == {d: chunks[d] for d in asked[:3]}
    assert len(got[sf.doc_ids[0]]) == 2 and "no-such-document" not in got
    store.close()


def test_chunks_of_is_refused_by_a_store_without_metadata_filters(sf, tmp_path):
    from nudge_rag.stores import DuckDBStore
    from nudge_rag.stores.duckdb import connect

    conn = connect(str(tmp_path / "d.duckdb"))
    conn.execute("CREATE TABLE docs (id VARCHAR PRIMARY KEY, embedding FLOAT[384])")
    conn.execute("INSERT INTO docs VALUES (?, ?)", ["a", sf.vectors[0].tolist()])
    store = DuckDBStore(conn, "docs", similarity="cosine")
    with pytest.raises(NotImplementedError, match="DuckDBStore.*cannot map document ids to chunks"):
        store.chunks_of("doc_id", ["a"])


def test_finetune_store_takes_pairs_naming_documents(sf, tmp_path):
    ids, vecs, docs, chunks = _chunked(sf)
    store = _open("memory", tmp_path, ids, vecs, docs)
    pairs = [(f"about {d}", d) for d in sf.doc_ids[:30]]
    vectors = {f"about {d}": sf.vectors[(i + 1) % 30] for i, d in enumerate(sf.doc_ids[:30])}
    report, model = finetune_store(store, group_pairs(pairs[:24]), group_pairs(pairs[24:]), embed_queries=vectors,
                                   gamma=0.1, doc_field="doc_id")  # fmt: skip
    assert report.n_train_pairs == sum(len(chunks[d]) for d in sf.doc_ids[:24])  # a document -> all its chunks
    moved = r1_ids(store)
    assert moved and moved <= {c for d in sf.doc_ids[:24] for c in chunks[d]}
    assert any(f"{d}-0" in moved and f"{d}-1" in moved for d in sf.doc_ids[:24])  # both chunks of a document


# ---------------------------------------------------------------------------------------------- re-tune
@pytest.mark.slow
def test_replay_in_batches_builds_on_each_fit_equals_one_fit_and_reverts(sf, tmp_path):
    store = memory_store(sf)
    before = store.fetch(sf.doc_ids)
    base_r1 = r_at_1(sf, before)
    log = FeedbackLog(tmp_path / "fb.sqlite")
    pairs = sf.train_raw
    reports = []
    for part in np.array_split(np.arange(len(pairs)), 5):
        log.record_many(click_events(sf, [pairs[int(i)] for i in part]))
        reports.append(retune_store(store, log))
    assert all(r.applied for r in reports) and sum(r.events_used for r in reports) == len(pairs)
    assert [r.events_from for r in reports[1:]] == [r.events_to for r in reports[:-1]]  # each call reads only news
    assert sum(r.events_held_out for r in reports) == sum(held_out(sf.qtext[q]) for q, _ in pairs) > 50
    for r in reports[1:]:
        if r.gamma == r.gamma_previous:  # insertion: only documents named by the new events change
            assert r.rows_changed == r.written <= r.docs_touched < r.totals["trained_docs"]
        assert r.questions_embedded == 0  # every vector came with its event
    after = store.fetch(sf.doc_ids)
    assert r_at_1(sf, after) > base_r1 + 0.15

    # one fit on every event (same split, same gamma) writes the same vectors, bit for bit
    final = reports[-1]
    train = [(sf.qtext[q], d) for q, d in pairs if not held_out(sf.qtext[q])]
    val = [(sf.qtext[q], d) for q, d in pairs if held_out(sf.qtext[q])]
    fresh = memory_store(sf)
    vectors = {sf.qtext[q]: sf.qvec[q] for q, _ in pairs}
    finetune_store(fresh, group_pairs(train), group_pairs(val), embed_queries=vectors, gamma=final.gamma)
    np.testing.assert_array_equal(fresh.fetch(sf.doc_ids), after)

    gens = store.status().generations
    assert [g["kind"] for g in gens] == ["retune"] * 5
    assert store.revert() == final.totals["trained_docs"]
    np.testing.assert_array_equal(store.fetch(sf.doc_ids), before)


def test_minimum_evidence_and_skipped_events(sf, tmp_path):
    store = memory_store(sf)
    before = store.fetch(sf.doc_ids)
    log = FeedbackLog(tmp_path / "fb.sqlite")
    log.record_many(click_events(sf, sf.train_raw[:5]))
    log.record("a question about nothing", ["not-a-document"], source="click", vector=sf.vectors[0])
    log.record(sf.qtext[sf.train_raw[0][0]], [sf.train_raw[1][1]], grade=0.0, source="thumbs_down")
    log.record("just a query", [], source="retrieved")
    r = retune_store(store, log, min_new_events=10)
    assert not r.applied and "minimum evidence" in r.reason and r.written == 0
    assert (r.events_new, r.events_used, r.events_skipped_unknown, r.events_skipped_not_relevant) == (8, 5, 1, 2)
    assert r.unknown_ids_sample == ["not-a-document"]
    assert not default_state_path(log, store).exists()  # nothing kept: the events wait for the next call
    np.testing.assert_array_equal(store.fetch(sf.doc_ids), before)

    log.record_many(click_events(sf, sf.train_raw[5:400]))
    r = retune_store(store, log, min_new_events=10)
    assert r.applied and r.events_from == 0 and r.events_used == 400 and r.events_skipped_unknown == 1
    assert r.written > 0 and default_state_path(log, store).exists()
    again = retune_store(store, log, min_new_events=10)  # nothing new
    assert not again.applied and again.events_new == 0


def test_a_dry_run_changes_neither_the_store_nor_the_state(sf, tmp_path):
    store = memory_store(sf)
    before = store.fetch(sf.doc_ids)
    log = FeedbackLog(tmp_path / "fb.sqlite")
    log.record_many(click_events(sf, sf.train_raw[:300]))
    r = retune_store(store, log, write=False)
    assert r.applied and r.rows_changed > 0 and r.written == 0 and r.revert.startswith("dry run")
    assert not default_state_path(log, store).exists()
    np.testing.assert_array_equal(store.fetch(sf.doc_ids), before)


def test_the_base_is_the_ledgers_original_on_an_already_nudged_store(sf, tmp_path):
    """A store nudged by an earlier fit: the re-tune nudges from the original vectors, not from the nudged ones."""
    pairs = sf.train_raw[:400]
    vectors = {sf.qtext[q]: sf.qvec[q] for q, _ in pairs}
    train = group_pairs([(sf.qtext[q], d) for q, d in pairs if not held_out(sf.qtext[q])])
    nudged = memory_store(sf)
    finetune_store(nudged, train.subset(range(150)), embed_queries=vectors, gamma=0.3)  # docs the re-tune trains
    clean = memory_store(sf)
    assert not np.array_equal(nudged.fetch(sf.doc_ids), clean.fetch(sf.doc_ids))
    for store, name in ((nudged, "a"), (clean, "b")):
        log = FeedbackLog(tmp_path / f"{name}.sqlite")
        log.record_many(click_events(sf, pairs))
        assert retune_store(store, log).applied
    np.testing.assert_array_equal(nudged.fetch(sf.doc_ids), clean.fetch(sf.doc_ids))
    assert nudged.revert().restored > 0
    np.testing.assert_array_equal(nudged.fetch(sf.doc_ids), memory_store(sf).fetch(sf.doc_ids))


@pytest.mark.slow
def test_retune_on_chroma_with_feedback_naming_documents(sf, tmp_path):
    """Chroma on disk, chunks carrying their document id: feedback names documents; a deleted chunk leaves the
    state, an unknown document is skipped, revert restores every original, the state survives a new client."""
    import chromadb

    from nudge_rag.stores import ChromaStore

    rows = sf.subset_rows(800)
    cited = {d for _, d in sf.train_raw}
    ids, vecs, docs = [], [], []
    for j, r in enumerate(rows):
        d = sf.doc_ids[r]
        for c in range(2 if j % 4 == 0 else 1):  # a quarter of the documents in two chunks
            ids.append(f"{d}#{c}")
            vecs.append(sf.vectors[r])
            docs.append(d)
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    col = client.create_collection("scifact", metadata={"hnsw:space": "cosine"})
    col.add(ids=ids, embeddings=np.stack(vecs), metadatas=[{"doc_id": d} for d in docs])
    store = ChromaStore(col, client=client)
    before = store.fetch(ids)
    log = FeedbackLog(tmp_path / "fb.sqlite")
    pairs = [(q, d) for q, d in sf.train_raw if d in cited]
    half = len(pairs) // 2
    log.record_many(click_events(sf, pairs[:half]))
    log.record("a claim about a missing study", ["999999999"], source="click", vector=sf.vectors[0])
    r1 = retune_store(store, log, doc_field="doc_id")
    assert r1.applied and r1.written > 0 and r1.events_skipped_unknown == 1
    in_ledger = r1_ids(store)
    first = {d for q, d in pairs[:half] if not held_out(sf.qtext[q])}
    second = {d for q, d in pairs[half:] if not held_out(sf.qtext[q])}
    assert any(f"{d}#0" in in_ledger and f"{d}#1" in in_ledger for d in first)  # a document moves all its chunks

    victim = next(f"{d}#0" for d in sorted(first & second) if f"{d}#0" in in_ledger)
    col.delete(ids=[victim])  # deleted by the app between two re-tunes
    log.record_many(click_events(sf, pairs[half:]))
    client2 = chromadb.PersistentClient(path=str(tmp_path / "chroma"))  # as a new process would open it
    store2 = ChromaStore(client2.get_collection("scifact"), client=client2)
    r2 = retune_store(store2, log, doc_field="doc_id")
    assert r2.applied and r2.events_from == r1.events_to and r2.gamma_previous == r1.gamma
    assert r2.totals["retunes"] == 2 and r2.docs_dropped >= 1
    assert [g["kind"] for g in store2.status().generations] == ["retune", "retune"]
    restored = store2.revert()
    assert victim in restored.missing and restored.restored > 0 and not restored.changed
    left = [c for c in ids if c != victim]
    np.testing.assert_allclose(store2.fetch(left), before[[ids.index(c) for c in left]], atol=1e-6)


def r1_ids(store) -> set[str]:
    """Ids the store's ledger records as written by nudge-rag."""
    return {r.id for batch in store.ledger.iter_records(1024) for r in batch}


def test_questions_without_vectors_are_embedded_once_and_nudge_m_needs_inner_product(sf, tmp_path):
    from nudge_rag.stores import StoreError

    calls: list[list[str]] = []
    by_text = {sf.qtext[q]: sf.qvec[q] for q, _ in sf.train_raw}

    def embed(texts: list[str]) -> np.ndarray:  # the precomputed vectors of the real model, recorded per call
        calls.append(list(texts))
        return np.stack([by_text[t] for t in texts])

    log = FeedbackLog(tmp_path / "fb.sqlite")
    log.record_many([dict(question=sf.qtext[q], doc_ids=[d], source="cited") for q, d in sf.train_raw[:300]])
    with pytest.raises(ValueError, match="without a vector.*pass embed="):
        retune_store(memory_store(sf), log)
    with pytest.raises(StoreError, match="NUDGE-M.*inner product"):
        retune_store(memory_store(sf), log, variant="nudge-m", embed=embed)

    ip = MemoryStore({d: sf.vectors[i].astype(np.float64).tolist() for i, d in enumerate(sf.doc_ids)},
                     similarity="inner_product")  # fmt: skip
    r = retune_store(ip, log, variant="nudge-m", embed=embed)
    n_texts = len({sf.qtext[q] for q, _ in sf.train_raw[:300]})
    assert r.applied and r.variant == "nudge-m" and r.questions_embedded == n_texts == len(calls[0])
    log.record_many([dict(question=sf.qtext[q], doc_ids=[d], source="cited") for q, d in sf.train_raw[300:400]])
    r2 = retune_store(ip, log, variant="nudge-m", embed=embed)
    old = {sf.qtext[q] for q, _ in sf.train_raw[:300]}
    assert r2.applied and not set(calls[1]) & old  # a question seen before is never embedded again
    with pytest.raises(ValueError, match="was built with variant='nudge-m'"):
        retune_store(ip, log, variant="nudge-n", embed=embed)


def test_a_revert_between_re_tunes_is_noticed_and_every_trained_document_is_nudged_again(sf, tmp_path):
    store = memory_store(sf)
    log = FeedbackLog(tmp_path / "fb.sqlite")
    log.record_many(click_events(sf, sf.train_raw[:300]))
    first = retune_store(store, log)
    assert first.written > 0 and store.revert().restored == first.written
    log.record_many(click_events(sf, sf.train_raw[300:400]))
    r = retune_store(store, log)
    st = store.status()
    assert r.applied and r.gamma == first.gamma and st.rows == st.nudged == r.n_moved > first.written
