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
    store,
    s: SciFactIds,
    reference,
    monkeypatch,
    *,
    reopen=None,
    uri=None,
    tmp_path=None,
    exact_restore=True,
    delete=None,
):
    """The behaviour every backend must show on real SciFact (see the module docstring).

    ``reopen()`` closes nothing and returns a fresh store object on the same data; with ``uri``, a new process
    reads the nudged vectors back. Then :func:`check_safety` (``delete``: the database's own delete by ids).
    """
    from nudge_rag.stores import StoreError, finetune_store

    model_ref, moved_ref = reference
    before = store.fetch(s.ids)
    assert before.shape == s.docs.shape and before.dtype == np.float32
    # 1. an injected failure half-way through a write leaves the store (and its ledger) as it was; the backend's
    # exception reaches the caller as one StoreError naming the store and the operation
    batch = store.batch_size
    store.batch_size = 64
    ids_w = list(moved_ref)[:200]
    inject_failure(store, monkeypatch, after=1)
    with pytest.raises(StoreError, match="write failed: BatchFailure") as err:
        store.write(ids_w, np.stack([moved_ref[i] for i in ids_w]))
    assert isinstance(err.value.__cause__, BatchFailure)
    monkeypatch.undo()
    store.batch_size = batch
    assert_restored(store.fetch(s.ids), before, exact_restore)
    assert store.status().rows == 0
    # 2. fine-tune: same gamma and vectors as the in-memory fit; only named rows change
    report, model = finetune_store(store, s.train_q, s.val_q, embed_queries=s.vectors)
    assert report.gamma == pytest.approx(model_ref.gamma_, abs=1e-12)
    # the exact strategy is the store's faster one by default: one streamed scan where its own exact search is
    # a scan per query (or none), else its own search
    if store.prefers_scan:
        assert report.search_strategy == "one streamed scan" and report.search["search_calls"] == 1
    else:
        assert report.search_strategy == "per query"
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
    st = store.status()
    assert (st.rows, st.nudged, st.overwritten, st.missing) == (len(moved_ref), len(moved_ref), 0, 0)
    assert store.revert() == len(moved_ref)
    assert_restored(store.fetch(s.ids), before, exact_restore)
    assert store.revert() == 0
    check_safety(store, s, before, delete=delete, exact=exact_restore)
    return store


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _without(q: Questions, gone: set[str]) -> Questions:
    """``q`` less the questions that name a document in ``gone``."""
    keep = [j for j, a in enumerate(q.answers) if not set(map(str, a)) & gone]
    return Questions(
        tuple(q.texts[j] for j in keep),
        tuple(q.answers[j] for j in keep),
        tuple(q.relevance[j] for j in keep),
        tuple(q.ids[j] for j in keep),
    )


def check_safety(store, s: SciFactIds, before: np.ndarray, *, delete=None, exact=True):
    """The store-safety scenarios on real SciFact, starting from the original store ``before`` (N, d).

    Another client is simulated through the backend's own API: ``store._put`` (a raw overwrite, no ledger) and
    ``delete(store, ids)`` (the database's own delete; None where the store cannot delete, e.g. FAISS).
    """
    from nudge_rag.stores import finetune_store, fit_store

    rng = np.random.default_rng(7)
    pos = {d: j for j, d in enumerate(s.ids)}
    state = {i: before[j] for j, i in enumerate(s.ids)}  # what each row should hold
    gone: set[str] = set()

    def check_all():
        alive = [i for i in s.ids if i not in gone]
        assert_restored(store.fetch(alive), np.stack([state[i] for i in alive]), exact)
        if gone:
            assert store._get(sorted(gone)) == {}, "a deleted row came back"

    def other_client_edit(ids):
        vecs = _unit(rng, len(ids), before.shape[1])
        store._put(list(ids), vecs)
        state.update(zip(ids, vecs))
        return vecs

    def other_client_delete(ids):
        delete(store, list(ids))
        gone.update(ids)

    # 5. compare-and-set: a row re-embedded, and one deleted, between the fit's read and its write are skipped
    fit = fit_store(store, s.train_q, s.val_q, embed_queries=s.vectors)
    moved = list(fit.patch.ids or ())
    new = dict(zip(moved, fit.patch.new))
    a, b = moved[0], moved[1]
    other_client_edit([a])
    if delete:
        other_client_delete([b])
    written = fit.write(store)
    wr = fit.write_result
    assert wr.changed == [a] and wr.missing == ([b] if delete else [])
    assert set(written) == set(moved) - {a} - ({b} if delete else set())
    state.update((i, new[i]) for i in written)
    np.testing.assert_allclose(store.fetch(written), np.stack([new[i] for i in written]), atol=1e-5)
    state.update(zip(written, store.fetch(written)))
    check_all()
    # 6. revert after an edit and a delete: the edited row is left alone, the deleted one is never re-inserted
    c, d = written[0], written[1]
    other_client_edit([c])
    if delete:
        other_client_delete([d])
    r = store.revert()
    assert r.changed == [c] and r.missing == ([d] if delete else [])
    assert r.restored == len(written) - 1 - (1 if delete else 0)
    state.update((i, before[pos[i]]) for i in written if i not in (c, d) or (i == d and not delete))
    check_all()
    assert store.status().rows == 0
    # 7. lineage: two fine-tunes with an edit in between; revert restores the edited vector, not the first original
    train, val = _without(s.train_q, gone | {a, c}), _without(s.val_q, gone | {a, c})
    rep1, _ = finetune_store(store, train, val, embed_queries=s.vectors)
    assert rep1.written > 10 and rep1.generation > 0
    w1 = sorted(store.ledger.records(list(state)))
    e = w1[0]
    # the other client re-embeds e close to its text's vector, so the second fit moves it again
    edited = state[e] + 0.05 * _unit(rng, 1, before.shape[1])[0]
    edited = (edited / np.linalg.norm(edited)).astype(np.float32)
    store._put([e], edited[None])
    rep2, _ = finetune_store(store, train, val, embed_queries=s.vectors)
    assert rep2.generation > rep1.generation
    rec = store.ledger.records([e])[e]
    assert rec.generation == rep2.generation, "the edited row was not moved again: the scenario needs it"
    assert_restored(rec.original[None], edited[None], exact)  # lineage: the edit is the row's original now
    # 8. a re-index writes the same base vectors again: status sees it, reapply restores the nudge
    ledger_ids = sorted(store.ledger.records(list(state)))
    nudged_now = store.fetch(ledger_ids)
    back = [i for i in ledger_ids if i != e][:20]
    store._put(back, np.stack([state[i] for i in back]))  # their original (pre-fit) vectors
    st = store.status()
    got = (st.rows, st.nudged, st.overwritten, st.reapplicable, st.missing)
    assert got == (len(ledger_ids), len(ledger_ids) - 20, 20, 20, 0), got
    assert [g["number"] for g in st.generations][-2:] == [rep1.generation, rep2.generation]
    ra = store.reapply()
    assert ra.reapplied == 20 and ra.nudged == len(ledger_ids) - 20
    assert_restored(store.fetch(ledger_ids), nudged_now, exact)
    assert store.status().nudged == len(ledger_ids)
    r = store.revert()
    assert r.restored == len(ledger_ids) and not r.changed and not r.missing
    state[e] = edited  # the edit between the fits is the row's original now
    check_all()
