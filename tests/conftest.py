"""Shared fixtures: seeded small problems with corner cases, and the real precomputed SciFact vectors."""

from __future__ import annotations

import numpy as np
import pytest

from nudge_rag import QueryAnswers
from tests.support import SHARED_DATA  # noqa: F401  (re-exported: tests import it from here)


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


@pytest.fixture(scope="session")
def scifact():
    """Real SciFact through the library's loader and official splits (as ``nudge-rag demo``):
    (docs (5183, 384), train, val, test), with the shared precomputed all-MiniLM-L6-v2 vectors."""
    from nudge_rag.data import find_beir, load_dataset
    from nudge_rag.prepare import VectorSource, prepare

    ds = load_dataset(find_beir("scifact", SHARED_DATA, download=False), name="scifact")
    p = prepare(ds, VectorSource(), policy="official", need_test=True)
    return p.docs, p.train, p.val, p.test
