"""The engine equals the solver on the same pairs, and deleted nodes stay deleted (fast: small synthetic data)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import TextNode
from llama_index.nudge import NudgeFinetuneEngine

from nudge_rag import NudgeN, QueryAnswers

N, D = 60, 16


class TableEmbedding(BaseEmbedding):
    """Known texts get their vector from a table (distinct, deterministic vectors; never one constant vector)."""

    _table: dict[str, np.ndarray] = PrivateAttr()

    def __init__(self, table: dict[str, np.ndarray], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._table = table

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._table[query].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._table[text].tolist()


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    centers = unit(rng.standard_normal((6, D)))
    docs = unit(centers[np.arange(N) % 6] + 0.3 * rng.standard_normal((N, D)))
    offsets = unit(rng.standard_normal((N, D)))  # each document is asked about from its own direction
    answers = rng.integers(0, 30, 150)
    queries = unit(docs[answers] + 0.8 * offsets[answers] + 0.4 * rng.standard_normal((150, D)))
    texts = [f"question {j} about document {a}" for j, a in enumerate(answers)]
    table = {t: q for t, q in zip(texts, queries)} | {f"text of node {i}": docs[i] for i in range(N)}
    nodes = [TextNode(id_=f"n{i}", text=f"text of node {i}", embedding=docs[i].tolist()) for i in range(N)]
    pairs = [(t, f"n{a}") for t, a in zip(texts, answers)]
    return docs, queries, answers, pairs, nodes, TableEmbedding(table)


def _stored(index) -> np.ndarray:
    emb = index.vector_store.data.embedding_dict
    out = np.asarray([emb[f"n{i}"] for i in range(N)], dtype=np.float64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_engine_equals_nudge_n_on_the_same_pairs(problem):
    docs, queries, answers, pairs, nodes, embed = problem
    index = VectorStoreIndex(nodes, embed_model=embed)
    report = NudgeFinetuneEngine(index, train_dataset=pairs[:120], val_dataset=pairs[120:]).finetune()
    model = NudgeN().fit(
        docs,
        QueryAnswers.from_lists(queries[:120], [[int(a)] for a in answers[:120]]),
        QueryAnswers.from_lists(queries[120:], [[int(a)] for a in answers[120:]]),
    )
    assert report.gamma == model.gamma_ > 0 and report.n_moved == model.n_moved_
    np.testing.assert_allclose(_stored(index), model.embeddings_, atol=1e-6)


def test_engine_carves_validation_by_the_core_rule(problem):
    docs, queries, answers, pairs, nodes, embed = problem
    index = VectorStoreIndex(nodes, embed_model=embed)
    report = NudgeFinetuneEngine(index, train_dataset=pairs).finetune()
    val = np.sort(np.random.RandomState(0).permutation(150)[:15])  # floor(0.1 * 150) by RandomState(0)
    rest = np.setdiff1d(np.arange(150), val)
    qa = QueryAnswers.from_lists(queries, [[int(a)] for a in answers])
    model = NudgeN().fit(docs, qa.subset(rest), qa.subset(val))
    assert report.val_source == "carved" and report.n_val_questions == 15
    assert report.gamma == model.gamma_
    np.testing.assert_allclose(_stored(index), model.embeddings_, atol=1e-6)


def test_a_node_deleted_after_finetuning_never_comes_back(problem):
    *_, pairs, nodes, embed = problem
    index = VectorStoreIndex(nodes, embed_model=embed)
    engine = NudgeFinetuneEngine(index, train_dataset=pairs)
    engine.finetune()
    index.delete_nodes(["n3"])
    assert "n3" not in index.vector_store.data.embedding_dict
    pair3 = next(p for p in pairs if p[1] == "n3")
    with pytest.raises(ValueError, match="deleted from the index after fine-tuning.*'n3'"):
        engine.insert(train_dataset=[pair3, next(p for p in pairs if p[1] == "n4")])
    assert "n3" not in index.vector_store.data.embedding_dict
    # pairs that do not name it still work, and never write it back
    engine.insert(train_dataset=[p for p in pairs if p[1] in ("n4", "n5")][:4])
    assert "n3" not in index.vector_store.data.embedding_dict
    # a refit (finetune again) rejects pairs naming it and never rewrites a deleted node
    with pytest.raises(ValueError, match="deleted from the index after fine-tuning"):
        engine.finetune()
    assert "n3" not in index.vector_store.data.embedding_dict


def test_refit_never_rewrites_a_node_deleted_since(problem):
    *_, pairs, nodes, embed = problem
    index = VectorStoreIndex(nodes, embed_model=embed)
    engine = NudgeFinetuneEngine(index, train_dataset=[p for p in pairs if p[1] != "n1"])
    first = engine.finetune()
    moved = [engine.node_ids[int(r)] for r in engine.nudge_model.patch_.rows]
    index.delete_nodes(["n1"])  # a node no pair names
    second = engine.finetune()
    # a refit reverts the last fit and writes the same vectors again (one path: revert, fit, write)
    assert second.gamma == first.gamma and second.written == first.written
    assert "n1" not in index.vector_store.data.embedding_dict
    index.delete_nodes([moved[0]])  # a node the pairs name: the refit refuses, nothing is written
    before = {k: list(v) for k, v in index.vector_store.data.embedding_dict.items()}
    with pytest.raises(ValueError, match=f"deleted from the index after fine-tuning.*{moved[0]!r}"):
        engine.finetune()
    assert {k: list(v) for k, v in index.vector_store.data.embedding_dict.items()} == before
