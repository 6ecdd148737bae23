"""Fixtures for the store backends: real SciFact as store ids, the in-memory reference fit, and the contract
every backend must meet (fine-tune equals the in-memory fit, only named rows change, restart, failure, revert)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nudge_rag import NudgeN, QueryAnswers, evaluate
from nudge_rag.finetune import Questions

REPO = Path(__file__).resolve().parents[2]


@dataclass
class SciFactIds:
    """SciFact with the store's view: document ids and pairs naming ids."""

    ids: list[str]
    docs: np.ndarray  # (N, d) float32 as loaded (row i = ids[i])
    train: QueryAnswers
    val: QueryAnswers
    test: QueryAnswers
    train_q: Questions
    val_q: Questions
    vectors: dict[str, np.ndarray]  # query id -> query vector


def _questions(qa: QueryAnswers, ids: list[str]) -> Questions:
    answers = tuple(tuple(ids[int(r)] for r in qa.indices[a:b]) for a, b in zip(qa.indptr[:-1], qa.indptr[1:]))
    rel = tuple(tuple(float(x) for x in qa.relevance[a:b]) for a, b in zip(qa.indptr[:-1], qa.indptr[1:]))
    qids = tuple(qa.ids or ())
    return Questions(qids, answers, rel, qids)


@pytest.fixture(scope="session")
def scifact_ids(scifact) -> SciFactIds:
    from nudge_rag.data import find_beir, load_dataset
    from tests.conftest import SHARED_DATA

    docs, train, val, test = scifact
    ds = load_dataset(find_beir("scifact", SHARED_DATA, download=False), name="scifact")
    ids = list(ds.doc_ids)
    assert len(ids) == docs.shape[0]
    vectors = {}
    for qa in (train, val, test):
        vectors.update({q: qa.embeddings[i] for i, q in enumerate(qa.ids or ())})
    docs32 = np.ascontiguousarray(docs, dtype=np.float32)
    return SciFactIds(ids, docs32, train, val, test, _questions(train, ids), _questions(val, ids), vectors)


@pytest.fixture(scope="session")
def reference_fit(scifact_ids):
    """The in-memory NUDGE-N fit: (model, {moved id: new vector})."""
    s = scifact_ids
    model = NudgeN().fit(s.docs, s.train, s.val)
    moved = {s.ids[int(r)]: v for r, v in zip(model.patch_.rows, model.patch_.new)}
    return model, moved


class BatchFailure(RuntimeError):
    """Raised by the injected failure."""


def inject_failure(store, monkeypatch, after: int = 1) -> None:
    """Make the store's ``after``-th+1 write batch fail (the seam every backend's write goes through)."""
    calls = {"n": 0}
    real = store._write_batch

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise BatchFailure(f"injected failure at batch {calls['n']}")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "_write_batch", failing)


def read_in_new_process(uri: str, ids: list[str], tmp_path: Path) -> np.ndarray:
    """Vectors of ``ids`` read by a fresh Python process that opens ``uri``."""
    ids_file, out = tmp_path / "ids.json", tmp_path / "read.npy"
    ids_file.write_text(json.dumps(ids))
    code = (
        "import json, sys, numpy as np\n"
        "from nudge_rag.stores import open_store\n"
        "s = open_store(sys.argv[1])\n"
        "np.save(sys.argv[3], s.fetch(json.load(open(sys.argv[2]))))\n"
        "s.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-c", code, uri, str(ids_file), str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return np.load(out)


def assert_restored(got: np.ndarray, want: np.ndarray, exact: bool) -> None:
    """Bit for bit, or (``exact=False``: a store that renormalises every write) within one float32 rounding."""
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1.2e-7)


def check_contract(
    store, s: SciFactIds, reference, monkeypatch, *, reopen=None, uri=None, tmp_path=None, exact_restore=True
):
    """The behaviour every backend must show on real SciFact (see the module docstring).

    ``reopen()`` closes nothing and returns a fresh store object on the same data; with ``uri``, a new process
    reads the nudged vectors back.
    """
    from nudge_rag.stores import finetune_store

    model_ref, moved_ref = reference
    before = store.fetch(s.ids)
    assert before.shape == s.docs.shape and before.dtype == np.float32
    # 1. an injected failure half-way through a write leaves the store as it was
    batch = store.batch_size
    store.batch_size = 64
    ids_w = list(moved_ref)[:200]
    inject_failure(store, monkeypatch, after=1)
    with pytest.raises(BatchFailure):
        store.write(ids_w, np.stack([moved_ref[i] for i in ids_w]))
    monkeypatch.undo()
    store.batch_size = batch
    assert_restored(store.fetch(s.ids), before, exact_restore)
    # 2. fine-tune: same gamma and vectors as the in-memory fit; only named rows change
    report, model = finetune_store(store, s.train_q, s.val_q, embed_queries=s.vectors)
    assert report.gamma == pytest.approx(model_ref.gamma_, abs=1e-12)
    assert report.written == len(moved_ref) == model_ref.n_moved_
    assert set(report.written_ids_sample) <= set(moved_ref)
    after = store.fetch(s.ids)
    # (Qdrant local mode renormalises a COSINE collection's vectors in place when it searches: last-bit changes)
    diff = np.abs(after - before).max(axis=1) > (0 if exact_restore else 1.2e-7)
    changed = {s.ids[j] for j in np.flatnonzero(diff)}
    named = {d for a in s.train_q.answers for d in a}
    assert changed <= named and changed == set(moved_ref)
    pos = {d: j for j, d in enumerate(s.ids)}
    got = after[[pos[i] for i in moved_ref]]
    want = np.stack(list(moved_ref.values()))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # held-out hit@1 rises as in the in-memory fit
    base = evaluate(s.docs, s.test, ["hit@1"], similarity="cosine")["hit@1"]
    ours = evaluate(after, s.test, ["hit@1"], similarity="cosine")["hit@1"]
    ref = evaluate(model_ref.embeddings_, s.test, ["hit@1"], similarity="cosine")["hit@1"]
    assert ours > base + 0.1 and ours == pytest.approx(ref, abs=0.005)
    # 3. survives a restart: a new process reads the nudged vectors
    if uri is not None:
        store.close()
        np.testing.assert_array_equal(read_in_new_process(uri, list(moved_ref), tmp_path), got)
        store = reopen()
    # 4. revert restores every original vector bit for bit
    assert store.revert() == len(moved_ref)
    assert_restored(store.fetch(s.ids), before, exact_restore)
    assert store.revert() == 0
    return store
