"""Fixtures for the llama-index-nudge tests: real SciFact data, the real all-MiniLM-L6-v2 model and
deterministic in-process LLMs.

Document vectors come from the precomputed all-MiniLM-L6-v2 SciFact embeddings (row i = line i of the
corpus), which are exactly what the model outputs for ``(title + " " + text).strip()``; the embed model
below serves those precomputed vectors for texts it knows and runs the real model for all other texts.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import numpy as np
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.schema import TextNode

from tests.support import SHARED_DATA, KnownVectors, SciFactTexts, scifact_available

N_SUBSET = 1000  # documents in the test corpus: every qrels document plus random others


# ------------------------------------------------------------------------------------------ real model
class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 through sentence-transformers, with an optional table of precomputed vectors.

    Texts found in ``known`` get their precomputed vector (the model's own output, computed offline);
    every other text is embedded live. ``live_texts`` counts the texts the model really embedded.
    """

    _vectors: KnownVectors = PrivateAttr(default_factory=KnownVectors)
    live_texts: int = 0
    live_queries: int = 0
    batch_calls: int = 0

    def __init__(self, known: dict[str, np.ndarray] | None = None, **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", embed_batch_size=32, **kwargs)
        self._vectors = KnownVectors(known)

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    def _encode(self, texts: list[str]) -> tuple[list[list[float]], int]:
        return self._vectors.encode(texts)

    def _get_query_embedding(self, query: str) -> list[float]:
        vecs, live = self._encode([query])
        self.live_queries += live
        return vecs[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self.batch_calls += 1
        vecs, live = self._encode(list(texts))
        self.live_texts += live
        return vecs


# ------------------------------------------------------------------------------------------ data
def node_id_of(doc_id: str) -> str:
    """Qdrant needs UUID point ids: derive a stable one from the SciFact document id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"scifact/{doc_id}"))


class SciFact:
    """A SciFact subset (``tests.support.SciFactTexts.subset_rows``) with precomputed vectors, as LlamaIndex nodes
    and question pairs."""

    def __init__(self) -> None:
        if not scifact_available():
            pytest.skip(f"SciFact data not found under {SHARED_DATA}")
        full = SciFactTexts()
        keep = full.subset_rows(N_SUBSET, seed=7)
        self.train_pairs_raw = full.train_raw
        self.test_pairs_raw = full.test_raw
        self.doc_ids = [full.doc_ids[i] for i in keep]
        self.texts = [full.texts[i] for i in keep]
        self.titles = [full.titles[i] for i in keep]
        self.vectors = full.vectors[keep]
        self.qtext = full.qtext
        self.qvec = full.qvec
        self.node_of = {d: node_id_of(d) for d in self.doc_ids}
        self.known = {t: v for t, v in zip(self.texts, self.vectors)}
        self.known.update({self.qtext[q]: v for q, v in self.qvec.items()})

    def nodes(self, rows: Any = None, *, with_embedding: bool = True) -> list[TextNode]:
        rows = range(len(self.doc_ids)) if rows is None else rows
        return [
            TextNode(
                id_=self.node_of[self.doc_ids[i]],
                text=self.texts[i],
                metadata={"beir_id": self.doc_ids[i], "title": self.titles[i]},
                excluded_embed_metadata_keys=["beir_id", "title"],
                excluded_llm_metadata_keys=["beir_id"],
                embedding=self.vectors[i].tolist() if with_embedding else None,
            )
            for i in rows
        ]

    def pairs(self, split: str, query_ids: Any = None) -> list[tuple[str, str]]:
        raw = self.train_pairs_raw if split == "train" else self.test_pairs_raw
        wanted = None if query_ids is None else set(query_ids)
        return [(self.qtext[q], self.node_of[d]) for q, d in raw if wanted is None or q in wanted]

    def query_ids(self, split: str) -> list[str]:
        raw = self.train_pairs_raw if split == "train" else self.test_pairs_raw
        return sorted({q for q, _ in raw}, key=int)

    def answers(self, split: str) -> dict[str, set[str]]:
        """question text -> node ids that answer it."""
        raw = self.train_pairs_raw if split == "train" else self.test_pairs_raw
        out: dict[str, set[str]] = {}
        for q, d in raw:
            out.setdefault(self.qtext[q], set()).add(self.node_of[d])
        return out


@pytest.fixture(scope="session")
def scifact() -> SciFact:
    return SciFact()


@pytest.fixture
def embed_model(scifact) -> MiniLMEmbedding:
    """The real model, serving precomputed SciFact vectors for the corpus and question texts."""
    return MiniLMEmbedding(known=scifact.known)


@pytest.fixture
def live_embed_model() -> MiniLMEmbedding:
    """The real model with no precomputed vectors: everything is embedded live."""
    return MiniLMEmbedding()


# ------------------------------------------------------------------------------------------ LLMs
_CONTEXT = re.compile(r"-{5,}\n(.*?)\n-{5,}", re.S)
_COUNT = re.compile(r"Write (\d+) distinct questions")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class SentenceQuestionLLM(CustomLLM):
    """Deterministic LLM: turns the most distinctive sentences of the prompt's passage into questions.

    It reads the passage between the dashed lines of the prompt and the number of questions asked for,
    ranks the passage's sentences by how many long (>= 8 letters) distinct words they hold, and asks about
    the best ones by their distinctive words only (so questions are about, not copies of, the passage).
    ``calls`` counts completions.
    """

    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="sentence-question-llm", is_chat_model=False)

    def answer(self, prompt: str) -> str:
        match = _CONTEXT.search(prompt)
        context = match.group(1) if match else prompt
        count = int(_COUNT.search(prompt).group(1)) if _COUNT.search(prompt) else 2
        sentences = [s.strip() for s in _SENTENCE.split(context) if len(s.split()) >= 5]
        ranked = sorted(sentences, key=lambda s: (-len({w.lower() for w in re.findall(r"[A-Za-z]{8,}", s)}), s))
        lines = []
        for n, s in enumerate(ranked[:count], 1):
            words = list(dict.fromkeys(w for w in re.findall(r"[A-Za-z][A-Za-z-]{6,}", s)))[:5]
            lines.append(f"{n}. What does the study report about {' '.join(words)}?")
        return "Here are the questions:\n" + "\n".join(lines)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.calls += 1
        return CompletionResponse(text=self.answer(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = self.complete(prompt).text
            yield CompletionResponse(text=text, delta=text)

        return gen()


class FlakyQuestionLLM(SentenceQuestionLLM):
    """Like :class:`SentenceQuestionLLM`, but for chunks whose passage hashes to 0 mod 3 it answers junk
    and for those hashing to 1 mod 3 it raises (a stand-in for a rate-limited API)."""

    junk: int = 0
    errors: int = 0

    @staticmethod
    def bucket(prompt: str) -> int:
        match = _CONTEXT.search(prompt)
        text = match.group(1) if match else prompt
        return int.from_bytes(text.encode()[:64].ljust(8, b"\0")[-8:], "little") % 3

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.calls += 1
        bucket = self.bucket(prompt)
        if bucket == 0:
            self.junk += 1
            return CompletionResponse(text="Sure! Here you go:\n\n1. ??\n- ok\n***")
        if bucket == 1:
            self.errors += 1
            raise RuntimeError("429 Too Many Requests")
        return CompletionResponse(text=self.answer(prompt))


class JunkLLM(SentenceQuestionLLM):
    """Never answers anything usable."""

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.calls += 1
        return CompletionResponse(text="I cannot help with that.\n\n--")


@pytest.fixture
def llms() -> Any:
    class _LLMs:
        sentence = SentenceQuestionLLM
        flaky = FlakyQuestionLLM
        junk = JunkLLM

    return _LLMs


# ------------------------------------------------------------------------------------------ helpers
def snapshot_simple(index) -> dict[str, Any]:
    """Everything an update could touch in a SimpleVectorStore-backed index, deep-copied."""
    data = index.vector_store.data
    return {
        "vectors": {k: list(v) for k, v in data.embedding_dict.items()},
        "meta": json.dumps(data.metadata_dict, sort_keys=True),
        "nodes_dict": dict(index.index_struct.nodes_dict),
        "docs": {k: (d.get_content(), json.dumps(d.metadata, sort_keys=True)) for k, d in index.docstore.docs.items()},
    }


def hit_rate(index, questions: dict[str, set[str]], k: int = 10, *, also: tuple[int, ...] = ()) -> Any:
    """Share of questions with at least one answer among the top-k nodes retrieved through LlamaIndex.

    With ``also``, returns ``{k: rate}`` for k and each smaller cut-off in ``also`` (one retrieval each).
    """
    retriever = index.as_retriever(similarity_top_k=k)
    cuts = (k, *also)
    hits = dict.fromkeys(cuts, 0)
    for text, answers in questions.items():
        got = [r.node.node_id for r in retriever.retrieve(text)]
        for c in cuts:
            hits[c] += bool(set(got[:c]) & answers)
    rates = {c: h / len(questions) for c, h in hits.items()}
    return rates if also else rates[k]


@pytest.fixture
def helpers() -> Any:
    class _Helpers:
        snapshot_simple = staticmethod(snapshot_simple)
        hit_rate = staticmethod(hit_rate)
        node_id_of = staticmethod(node_id_of)

    return _Helpers
