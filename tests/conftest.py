"""Shared fixtures: seeded small problems with corner cases, and the real precomputed SciFact vectors."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from nudge_rag import QueryAnswers

SHARED_DATA = Path(os.environ.get("NUDGE_RAG_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def small_problem(rng):
    """60 documents in 6 clusters, queries = noisy copies of their answers shifted per document."""
    centers = unit(rng.standard_normal((6, 16)))
    docs = unit(centers[np.arange(60) % 6] + 0.3 * rng.standard_normal((60, 16)))
    offsets = unit(rng.standard_normal((60, 16)))

    def queries(n, seed):
        r = np.random.default_rng(seed)
        ans = r.integers(0, 30, n)  # only the first 30 documents are ever asked about
        q = unit(docs[ans] + 0.8 * offsets[ans] + 0.4 * r.standard_normal((n, 16)))
        return QueryAnswers.from_lists(q, [[int(a)] for a in ans])

    return docs, queries(120, 1), queries(40, 2), queries(40, 3)


def _read_qrels(path: Path, qpos: dict, dpos: dict) -> dict[int, dict[int, float]]:
    out: dict[int, dict[int, float]] = {}
    with open(path, newline="") as fh:
        next(fh)
        for line in fh:
            qid, did, score = line.rstrip("\r\n").split("\t")
            if float(score) > 0:
                out.setdefault(qpos[qid], {})[dpos[did]] = float(score)
    return out


@pytest.fixture(scope="session")
def scifact():
    """Real SciFact: (docs (5183, 384), train, val, test) with official splits, val = seeded 10% of train."""
    beir = SHARED_DATA / "beir" / "scifact"
    emb = SHARED_DATA / "embeddings" / "all-MiniLM-L6-v2" / "scifact"
    with gzip.open(beir / "corpus.jsonl.gz", "rt") as fh:
        dpos = {json.loads(line)["_id"]: i for i, line in enumerate(fh)}
    with open(beir / "queries.jsonl") as fh:
        qpos = {json.loads(line)["_id"]: i for i, line in enumerate(fh)}
    docs = np.load(emb / "corpus.npy")
    qv = np.load(emb / "queries.npy")
    train = _read_qrels(beir / "qrels" / "train.tsv", qpos, dpos)
    test = _read_qrels(beir / "qrels" / "test.tsv", qpos, dpos)
    rows = np.array(sorted(train))
    np.random.default_rng(0).shuffle(rows)
    n_val = len(rows) // 10

    def qa(qrels, r):
        r = np.sort(r)
        return QueryAnswers.from_lists(qv[r], [list(qrels[i]) for i in r], [list(qrels[i].values()) for i in r])

    return docs, qa(train, rows[n_val:]), qa(train, rows[:n_val]), qa(test, np.array(sorted(test)))
