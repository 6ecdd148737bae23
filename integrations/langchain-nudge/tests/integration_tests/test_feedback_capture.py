"""Feedback capture through real LangChain retrievers (InMemoryVectorStore, Chroma) over real SciFact vectors.

The base ``Embeddings`` serves the precomputed all-MiniLM-L6-v2 vectors (``live=False``: no text is embedded live),
the claims are SciFact test claims, and the log is a real :class:`nudge_rag.feedback.FeedbackLog` file read back
through a second connection, as a re-tune would.
"""

from __future__ import annotations

import sqlite3
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_nudge.feedback import FeedbackCallbackHandler, FeedbackCaptureWarning, FeedbackRetriever

from nudge_rag.feedback import FeedbackLog

pytestmark = pytest.mark.integration  # real stores (Chroma) and a background writer thread

N_DOCS = 400


@pytest.fixture(scope="module")
def data(scifact):
    """(documents: every test-claim answer plus others, 40 test claims, their answers)."""
    answers = scifact.answers("test")
    claims = sorted(answers)[:40]
    rows = sorted({scifact.row_of[d] for c in claims for d in answers[c]} | set(range(N_DOCS)))
    return scifact.documents(rows), claims, answers


def build(kind, docs, emb, tmp_path):
    if kind == "chroma":
        from langchain_chroma import Chroma

        store = Chroma("scifact", embedding_function=emb, persist_directory=str(tmp_path / "chroma"))
    else:
        store = InMemoryVectorStore(embedding=emb)
    store.add_documents(docs, ids=[d.id for d in docs])
    return store


@pytest.fixture
def emb(scifact, sup):
    return sup.MiniLMEmbeddings(scifact.known, live=False)


@pytest.mark.parametrize("kind", ["inmemory", "chroma"])
def test_retrievals_are_logged_as_impressions_and_feedback_links_to_them(kind, data, emb, tmp_path):
    docs, claims, answers = data
    path = tmp_path / "feedback.sqlite"
    handler = FeedbackCallbackHandler(path)
    retriever = build(kind, docs, emb, tmp_path).as_retriever(search_kwargs={"k": 5}).with_config(callbacks=[handler])
    got = {c: [d.id for d in retriever.invoke(c)] for c in claims[:10]}
    handler.flush()
    log = FeedbackLog(path)  # a second connection, as a re-tune would read it
    events = log.events()
    assert [(e.question, list(e.retrieved)) for e in events] == list(got.items())
    assert {(e.source, e.grade, e.doc_ids) for e in events} == {("retrieved", 0.0, ())}
    assert len(log.questions()) == 0  # impressions are never pairs

    # a click names a returned document: durable on return (no flush), linked to what the query returned
    claim = claims[0]
    clicked = next((d for d in got[claim] if d in answers[claim]), got[claim][0])
    vec = emb.embed_query(claim)
    event_id = handler.record_feedback(claim, clicked, source="click", vector=vec)
    (event,) = log.events(after=event_id - 1)
    assert (event.question, event.doc_ids, event.grade, event.source) == (claim, (clicked,), 1.0, "click")
    assert list(event.retrieved) == got[claim]
    np.testing.assert_array_equal(event.vector, np.asarray(vec, dtype=np.float32))
    assert log.questions().answers == ((clicked,),)

    # the run id of a retrieval stands for its query; Documents are accepted
    run_id = uuid.uuid4()
    returned = retriever.invoke(claims[1], run_id=run_id)
    event_id = handler.record_feedback(run_id, returned[:2], source="thumbs_up", grade=2.0)
    (event,) = log.events(after=event_id - 1)
    assert (event.question, event.doc_ids, event.grade) == (claims[1], (returned[0].id, returned[1].id), 2.0)
    with pytest.raises(KeyError, match="no remembered retrieval"):
        handler.record_feedback(uuid.uuid4(), clicked)
    handler.close()
    assert [e.source for e in log.events()][-3:] == ["click", "retrieved", "thumbs_up"]  # in the order they came
    log.close()


def test_a_metadata_id_key_logs_documents_and_maps_chunk_clicks(data, emb, tmp_path):
    docs, claims, _ = data
    chunks = [  # each abstract stored as two chunks (same text here) that name their paper in metadata
        Document(id=f"{d.id}#{k}", page_content=d.page_content, metadata={"paper": d.id})
        for d in docs[:200]
        for k in range(2)
    ]
    store = InMemoryVectorStore.from_documents(chunks, emb)
    handler = FeedbackCallbackHandler(tmp_path / "f.sqlite", id_key="paper", impressions=False)
    returned = store.as_retriever(search_kwargs={"k": 4}).invoke(claims[0], config={"callbacks": [handler]})
    seen = handler.last(claims[0])
    papers = tuple(dict.fromkeys(d.metadata["paper"] for d in returned))
    assert len(papers) < len(returned) and seen is not None and seen.ids == papers  # one id per paper, rank order
    event_id = handler.record_feedback(claims[0], [returned[0].id, returned[1]])  # a chunk id and a chunk
    handler.close()
    with FeedbackLog(tmp_path / "f.sqlite") as log:
        assert [e.source for e in log.events()] == ["click"]  # impressions=False: nothing but the feedback
        (event,) = log.events(after=event_id - 1)
    assert event.doc_ids == tuple(dict.fromkeys(d.metadata["paper"] for d in returned[:2]))


@pytest.mark.parametrize("kind", ["inmemory", "chroma"])
def test_the_feedback_retriever_logs_the_query_vector_it_embedded_once(kind, data, scifact, sup, tmp_path):
    class Counting(sup.MiniLMEmbeddings):
        queries = 0

        def embed_query(self, text):
            self.queries += 1
            return super().embed_query(text)

    docs, claims, _ = data
    emb = Counting(scifact.known, live=False)
    store = build(kind, docs, emb, tmp_path)
    handler = FeedbackCallbackHandler(tmp_path / "f.sqlite")
    retriever = FeedbackRetriever(vectorstore=store, feedback=handler, search_kwargs={"k": 4})
    got = retriever.invoke(claims[3])  # the handler not among the callbacks: the retriever logs itself
    also = retriever.invoke(claims[4], config={"callbacks": [handler]})  # among them: logged once, by the handler
    assert emb.queries == 2  # one embedding per retrieval, as the store's own search
    plain = store.as_retriever(search_kwargs={"k": 4})
    assert [d.id for d in got] == [d.id for d in plain.invoke(claims[3])]  # the same documents
    assert [d.id for d in also] == [d.id for d in plain.invoke(claims[4])]
    event_id = handler.record_feedback(claims[3], got[0], source="cited")
    handler.close()
    with FeedbackLog(tmp_path / "f.sqlite") as log:
        events = log.events()
    assert [(e.question, e.source) for e in events] == [(claims[3], "retrieved"), (claims[4], "retrieved"),
                                                        (claims[3], "cited")]  # fmt: skip
    assert events[-1].id == event_id and events[1].retrieved == tuple(d.id for d in also)
    for event, claim in zip(events, (claims[3], claims[4], claims[3])):
        np.testing.assert_allclose(event.vector, emb.embed_query(claim), rtol=1e-6)


def test_retrievals_and_feedback_from_many_threads(data, emb, tmp_path):
    docs, claims, _ = data
    handler = FeedbackCallbackHandler(tmp_path / "f.sqlite")
    retriever = (
        build("inmemory", docs, emb, tmp_path).as_retriever(search_kwargs={"k": 3}).with_config(callbacks=[handler])
    )

    def one(claim):
        returned = [d.id for d in retriever.invoke(claim)]
        return claim, returned, handler.record_feedback(claim, returned[-1], source="click")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, claims * 3))
    handler.close()
    with FeedbackLog(tmp_path / "f.sqlite") as log:
        events = log.events()
    assert len(events) == 2 * len(results)
    shown = [e for e in events if e.source == "retrieved"]
    clicks = {e.id: e for e in events if e.source == "click"}
    assert sorted((e.question, e.retrieved) for e in shown) == sorted((c, tuple(r)) for c, r, _ in results)
    for claim, returned, event_id in results:
        assert (clicks[event_id].question, clicks[event_id].doc_ids) == (claim, (returned[-1],))
        assert clicks[event_id].retrieved == tuple(returned)


async def test_async_retrieval_is_logged(data, emb, tmp_path):
    docs, claims, _ = data
    handler = FeedbackCallbackHandler(tmp_path / "f.sqlite")
    retriever = build("inmemory", docs, emb, tmp_path).as_retriever(search_kwargs={"k": 3})
    returned = await retriever.ainvoke(claims[2], config={"callbacks": [handler]})
    handler.flush()
    assert handler.last(claims[2]).ids == tuple(d.id for d in returned)
    handler.close()
    with FeedbackLog(tmp_path / "f.sqlite") as log:
        assert [(e.question, e.retrieved) for e in log.events()] == [(claims[2], tuple(d.id for d in returned))]


def test_a_log_error_warns_and_never_breaks_retrieval(data, emb, tmp_path):
    docs, claims, _ = data
    path = tmp_path / "f.sqlite"
    handler = FeedbackCallbackHandler(path)
    retriever = (
        build("inmemory", docs, emb, tmp_path).as_retriever(search_kwargs={"k": 3}).with_config(callbacks=[handler])
    )
    with sqlite3.connect(path) as other:  # the log's table disappears under the app
        other.execute("DROP TABLE events")
    with pytest.warns(FeedbackCaptureWarning, match="not logged"):
        returned = retriever.invoke(claims[0])
        handler.flush()
    assert len(returned) == 3 and handler.recorder.errors == 1
    with pytest.raises(sqlite3.OperationalError, match="no such table"):  # acknowledged feedback: raised
        handler.record_feedback(claims[0], returned[0])
    # a returned document without an id is left out with a warning; the others are remembered
    handler.on_retriever_start({}, "q", run_id=(rid := uuid.uuid4()))
    with pytest.warns(FeedbackCaptureWarning, match="no id"):
        handler.on_retriever_end([Document(page_content="x"), returned[0]], run_id=rid)
    assert handler.last("q").ids == (returned[0].id,)
    with pytest.warns(FeedbackCaptureWarning, match="'q' not logged"):  # close writes what is queued
        handler.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="closed"):
            handler.record_feedback(claims[0], returned[0])
