"""Feedback capture through LlamaIndex instrumentation: real retrievers and a query engine over a VectorStoreIndex
(SimpleVectorStore, Chroma) of 1,000 SciFact abstracts with their precomputed all-MiniLM-L6-v2 vectors.

The log is a real :class:`nudge_rag.feedback.FeedbackLog` file, read back through a second connection as a re-tune
would. Every handler is detached from the root dispatcher when its test ends.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo
from llama_index.nudge.feedback import FeedbackCaptureWarning, FeedbackEventHandler

from nudge_rag.feedback import FeedbackLog

pytestmark = pytest.mark.integration  # the root dispatcher, Chroma, a background writer thread


def index_of(scifact, embed_model, kind="simple", tmp_path=None):
    """An index whose nodes name their SciFact paper as ``ref_doc_id``."""
    nodes = scifact.nodes()
    for n in nodes:
        n.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=n.metadata["beir_id"])
    if kind == "chroma":
        import chromadb
        from llama_index.vector_stores.chroma import ChromaVectorStore

        client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
        store = ChromaVectorStore(chroma_collection=client.create_collection("scifact"))
        ctx = StorageContext.from_defaults(vector_store=store)
        return VectorStoreIndex(nodes, storage_context=ctx, embed_model=embed_model)
    return VectorStoreIndex(nodes, embed_model=embed_model)


@pytest.fixture
def handler(tmp_path):
    h = FeedbackEventHandler(tmp_path / "feedback.sqlite").attach()
    yield h
    h.close()


@pytest.fixture(scope="module")
def claims(scifact):
    return sorted(scifact.answers("test"))[:24]


@pytest.mark.parametrize("kind", ["simple", "chroma"])
def test_retrieval_is_logged_by_document_and_feedback_links_to_it(
    kind, scifact, embed_model, claims, handler, tmp_path
):
    retriever = index_of(scifact, embed_model, kind, tmp_path).as_retriever(similarity_top_k=5)
    got = {c: retriever.retrieve(c) for c in claims[:8]}
    handler.flush()
    log = FeedbackLog(handler.recorder.path)
    events = log.events()
    expected = [(c, tuple(n.node.metadata["beir_id"] for n in r)) for c, r in got.items()]  # ref_doc_ids
    assert [(e.question, e.retrieved) for e in events] == expected
    assert {(e.source, e.grade, e.doc_ids) for e in events} == {("retrieved", 0.0, ())}
    assert len(log.questions()) == 0  # impressions are never pairs

    claim, returned = claims[0], got[claims[0]]
    first = handler.record_feedback(claim, returned[0], source="cited")  # a NodeWithScore: durable on return
    handler.record_feedback(claim, returned[1].node.node_id)  # a clicked node id: logged as its paper
    one, two = log.events(after=first - 1)
    assert one.doc_ids == (returned[0].node.ref_doc_id,) and one.source == "cited"
    assert two.doc_ids == (returned[1].node.metadata["beir_id"],) and two.retrieved == expected[0][1]
    q = log.questions()
    assert q.texts == (claim,) and set(q.answers[0]) == {one.doc_ids[0], two.doc_ids[0]}
    log.close()


def test_a_query_engine_logs_the_query_vector_it_embedded(scifact, embed_model, claims, tmp_path):
    index = index_of(scifact, embed_model)
    handler = FeedbackEventHandler(tmp_path / "f.sqlite", by_document=False, impressions=False).attach()
    try:
        engine = RetrieverQueryEngine.from_args(index.as_retriever(similarity_top_k=3), llm=MockLLM(max_tokens=8))
        response = engine.query(claims[1])
        seen = handler.last(claims[1])
        assert seen.ids == tuple(n.node.node_id for n in response.source_nodes)  # node ids
        qid = next(q for q, t in scifact.qtext.items() if t == claims[1])
        np.testing.assert_allclose(seen.vector, scifact.qvec[qid], rtol=1e-6)  # no second embedding
        event_id = handler.record_feedback(claims[1], response.source_nodes[2], source="thumbs_up")
    finally:
        handler.close()
    with FeedbackLog(tmp_path / "f.sqlite") as log:
        (event,) = log.events()  # impressions=False: only the feedback
    assert event.id == event_id and event.doc_ids == (response.source_nodes[2].node.node_id,)
    np.testing.assert_allclose(event.vector, scifact.qvec[qid], rtol=1e-6)


def test_retrievals_and_feedback_from_many_threads(scifact, embed_model, claims, handler):
    retriever = index_of(scifact, embed_model).as_retriever(similarity_top_k=3)

    def one(claim):
        returned = [n.node.ref_doc_id for n in retriever.retrieve(claim)]
        return claim, returned, handler.record_feedback(claim, returned[-1])

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, claims * 2))
    handler.flush()
    with FeedbackLog(handler.recorder.path) as log:
        events = log.events()
    shown = sorted((e.question, e.retrieved) for e in events if e.source == "retrieved")
    assert shown == sorted((c, tuple(r)) for c, r, _ in results)
    clicks = {e.id: e for e in events if e.source == "click"}
    assert len(clicks) == len(results)
    for claim, returned, event_id in results:
        assert (clicks[event_id].question, clicks[event_id].doc_ids) == (claim, (returned[-1],))
        assert clicks[event_id].retrieved == tuple(returned)


async def test_async_retrieval_is_logged(scifact, embed_model, claims, handler):
    returned = await index_of(scifact, embed_model).as_retriever(similarity_top_k=4).aretrieve(claims[5])
    assert handler.last(claims[5]).ids == tuple(n.node.ref_doc_id for n in returned)


def test_a_log_error_warns_and_never_breaks_retrieval(scifact, embed_model, claims, handler):
    retriever = index_of(scifact, embed_model).as_retriever(similarity_top_k=3)
    with sqlite3.connect(handler.recorder.path) as other:  # the log's table disappears under the app
        other.execute("DROP TABLE events")
    with pytest.warns(FeedbackCaptureWarning, match="not logged"):
        returned = retriever.retrieve(claims[0])
        handler.flush()
    assert len(returned) == 3 and handler.recorder.errors == 1
    with pytest.raises(sqlite3.OperationalError, match="no such table"):  # acknowledged feedback: raised
        handler.record_feedback(claims[0], returned[0])
    handler.close()
    with pytest.warns(FeedbackCaptureWarning, match="closed"):  # the dispatcher would have swallowed an error
        handler.handle(_end_event(claims[0], returned))
    assert all(h is not handler for h in feedback_handlers())  # close detached it


def _end_event(query, nodes):
    from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent

    return RetrievalEndEvent(str_or_query_bundle=query, nodes=nodes)


def feedback_handlers():
    from llama_index.core.instrumentation import get_dispatcher

    return [h for h in get_dispatcher().event_handlers if isinstance(h, FeedbackEventHandler)]
