"""Test support for langchain-nudge: real SciFact data, the real all-MiniLM-L6-v2 model, prompt-aware fake models.

Loaded by ``conftest.py`` (as ``langchain_nudge_test_support``) and by the restart worker script, so it must not
import pytest at module level.

Document vectors come from the precomputed all-MiniLM-L6-v2 SciFact embeddings (row i = line i of the corpus
file), which are that model's output for ``(title + " " + text).strip()`` (checked against the live model by
``test_precomputed_vectors_match_the_live_model``). :class:`MiniLMEmbeddings` serves those precomputed vectors
for texts it knows and runs the real model for every other text, counting the texts it embedded live.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import PrivateAttr

# The shared test support (repository root ``tests/support``) is on sys.path under pytest (``pythonpath``); the
# restart worker loads this file in a plain process, so the root is added here too.
_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support import SHARED_DATA as SHARED  # noqa: E402, F401  (re-exported)
from tests.support import KnownVectors, SciFactTexts  # noqa: E402
from tests.support import scifact_available as data_available  # noqa: E402, F401  (re-exported)


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 through sentence-transformers, with an optional table of precomputed vectors.

    Texts in ``known`` get their precomputed vector (the model's own output, computed offline); all other texts
    are embedded live by the real model (``live=False`` raises instead, for processes that must not load torch).
    ``live_documents`` / ``live_queries`` count the texts the model really embedded.
    """

    def __init__(self, known: dict[str, np.ndarray] | None = None, *, live: bool = True) -> None:
        self._vectors = KnownVectors(known, live=live)
        self.live_documents = 0
        self.live_queries = 0
        self.document_calls = 0

    def _encode(self, texts: list[str]) -> tuple[list[list[float]], int]:
        return self._vectors.encode(texts)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.document_calls += 1
        vecs, live = self._encode(list(texts))
        self.live_documents += live
        return vecs

    def embed_query(self, text: str) -> list[float]:
        vecs, live = self._encode([text])
        self.live_queries += live
        return vecs[0]


# ------------------------------------------------------------------------------------------ data
class SciFact(SciFactTexts):
    """The full SciFact corpus (5,183 abstracts) with precomputed vectors (``tests.support.SciFactTexts``), as
    LangChain documents and pairs."""

    def documents(self, rows: Any = None) -> list[Document]:
        rows = range(len(self.doc_ids)) if rows is None else rows
        return [
            Document(
                id=self.doc_ids[i],
                page_content=self.texts[i],
                metadata={"title": self.titles[i], "source": "scifact", "row": int(i)},
            )
            for i in rows
        ]

    def pairs(self, split: str) -> list[tuple[str, str]]:
        """``(question text, document id)`` pairs of a qrels split."""
        raw = self.train_raw if split == "train" else self.test_raw
        return [(self.qtext[q], d) for q, d in raw]

    def answers(self, split: str) -> dict[str, set[str]]:
        """question text -> ids of the documents that answer it."""
        out: dict[str, set[str]] = {}
        for q, d in self.pairs(split):
            out.setdefault(q, set()).add(d)
        return out

    def claims_of(self, split: str = "train") -> dict[str, list[str]]:
        """document text -> the claims (questions) of ``split`` that cite it."""
        raw = self.train_raw if split == "train" else self.test_raw
        out: dict[str, list[str]] = {}
        for q, d in raw:
            out.setdefault(self.texts[self.row_of[d]], []).append(self.qtext[q])
        return out


def hit_rate(store: Any, questions: dict[str, set[str]], k: int = 10) -> float:
    """Share of questions with an answering document among the top-k of ``store.as_retriever``."""
    retriever = store.as_retriever(search_kwargs={"k": k})
    hits = 0
    for text, answers in questions.items():
        hits += bool({d.id for d in retriever.invoke(text)} & answers)
    return hits / len(questions)


def retrieve_ids(store: Any, questions: list[str], k: int = 10) -> list[list[str]]:
    retriever = store.as_retriever(search_kwargs={"k": k})
    return [[d.id for d in retriever.invoke(q)] for q in questions]


def fail_on_batch(core: Any, n: int) -> list[int]:
    """Make the core store ``core`` (its ``_write_batch`` seam) write its n-th batch, then raise ``RuntimeError``.

    Returns the list that collects the size of each batch it is asked to write.
    """
    calls: list[int] = []
    real = core._write_batch

    def failing(ids: list[str], vectors: np.ndarray, *args: Any) -> None:
        calls.append(len(ids))
        real(ids, vectors, *args)  # the batch lands, then the failure
        if len(calls) == n:
            raise RuntimeError(f"injected failure in batch {n}")

    core._write_batch = failing
    return calls


# ------------------------------------------------------------------------------------------ fake chat model
_PASSAGE = re.compile(r"-{5,}\n(.*?)\n-{5,}", re.S)


class ClaimsChatModel(BaseChatModel):
    """A prompt-aware fake chat model: answers with the real SciFact claims that cite the prompt's passage.

    The answer format varies with the passage like a real model's would: bare JSON, JSON in a code fence
    after a preamble, a JSON list, ``{"questions": [{"question": ...}]}``; every ``junk_every``-th passage gets a
    bad answer (prose, empty, truncated JSON). ``calls`` counts invocations.
    """

    claims: dict[str, list[str]]
    junk_every: int = 7
    calls: int = 0
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)  # batches run in worker threads

    @property
    def _llm_type(self) -> str:
        return "scifact-claims-fake"

    def answer(self, prompt: str) -> str:
        match = _PASSAGE.search(prompt)
        passage = match.group(1) if match else ""
        claims = self.claims.get(passage, [])
        bucket = sum(passage.encode()) % 997
        if not claims or (self.junk_every and bucket % self.junk_every == 0):
            return [
                "I'm sorry, but I can't help with writing questions for this passage.",
                "",
                '{"questions": ["What does the study conclude about',
                "```json\nnot json at all\n```",
            ][bucket % 4]
        style = bucket % 4
        if style == 0:
            return json.dumps({"questions": claims[:2]})
        if style == 1:
            return "Here are the questions:\n```json\n" + json.dumps({"questions": claims[:2]}, indent=2) + "\n```"
        if style == 2:
            return json.dumps(claims[:2])
        return json.dumps({"questions": [{"question": c} for c in claims[:2]]})

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        with self._lock:
            self.calls += 1
        prompt = "\n".join(str(m.content) for m in messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.answer(prompt)))])


# ------------------------------------------------------------------------------------------ stores
# The LangChain stores the integration tests build (each skipped where its package is missing).
def _need(module: str) -> None:
    import pytest  # not at module level: the restart worker imports this file without pytest

    pytest.importorskip(module)


def _uid(doc_id: str) -> str:  # Qdrant point ids must be UUIDs (or unsigned integers)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"scifact/{doc_id}"))


def _qdrant(emb, tmp_path):
    _need("langchain_qdrant")
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient
    from qdrant_client.http.models import Distance, VectorParams

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    client.create_collection("scifact", vectors_config=VectorParams(size=384, distance=Distance.COSINE))
    return QdrantVectorStore(client=client, collection_name="scifact", embedding=emb)


def _chroma(emb, tmp_path):
    _need("langchain_chroma")
    from langchain_chroma import Chroma

    return Chroma("scifact", embedding_function=emb, persist_directory=str(tmp_path / "chroma"))


def _milvus(emb, tmp_path):
    _need("langchain_milvus")
    from langchain_milvus import Milvus

    return Milvus(emb, collection_name="scifact", connection_args={"uri": str(tmp_path / "milvus.db")})


def _faiss(emb, tmp_path):
    _need("langchain_community")
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy

    return lambda docs, ids: FAISS.from_documents(
        docs, emb, ids=ids, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT
    )


def _memory(emb, tmp_path):
    return InMemoryVectorStore(embedding=emb)


def _pg_url(srv) -> str:  # pgserver listens on a unix socket (host= in the query string)
    return srv.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


def _pgvector(emb, srv, collection="scifact", **kwargs):
    from langchain_postgres import PGVector

    return PGVector(emb, connection=_pg_url(srv), collection_name=collection, use_jsonb=True, **kwargs)


STORES = {"qdrant": _qdrant, "chroma": _chroma, "milvus": _milvus, "faiss": _faiss, "inmemory": _memory}
