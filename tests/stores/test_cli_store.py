"""``nudge-rag finetune --store URI --pairs FILE --query-vectors FILE`` and ``nudge-rag revert --store URI`` as a
user runs them (a subprocess per command), on real SciFact in a FAISS index file and a LanceDB table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.stores.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _nudge_rag(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "nudge_rag.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def finetune_cli(uri, tmp_path, *extra):
    """``nudge-rag finetune --store URI`` on the pairs and query vectors of :func:`_pairs`, reporting to
    ``tmp_path / "report.json"`` (a subprocess, as a user runs it)."""
    return _nudge_rag(
        "finetune",
        "--store",
        uri,
        "--pairs",
        str(tmp_path / "pairs.jsonl"),
        "--query-vectors",
        str(tmp_path / "queries.npz"),
        "--report",
        str(tmp_path / "report.json"),
        "--no-progress",
        *extra,
    )


def _pairs(tmp_path, s):
    lines = []
    for split, q in (("train", s.train_q), ("dev", s.val_q)):
        for qid, answers, rel in zip(q.ids, q.answers, q.relevance):
            lines += [
                json.dumps({"query_id": qid, "doc_id": d, "relevance": r, "split": split}) for d, r in zip(answers, rel)
            ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    ids = list(s.vectors)
    np.savez(tmp_path / "queries.npz", ids=np.array(ids), vectors=np.stack([s.vectors[i] for i in ids]))


def _faiss_uri(tmp_path, s):
    faiss = pytest.importorskip("faiss")
    index = faiss.IndexFlatIP(s.docs.shape[1])
    index.add(s.docs)
    faiss.write_index(index, str(tmp_path / "index.faiss"))
    (tmp_path / "index.faiss.ids").write_text("".join(f"{i}\n" for i in s.ids))
    return f"faiss://{tmp_path / 'index.faiss'}"


def _lance_uri(tmp_path, s):
    lancedb = pytest.importorskip("lancedb")
    import pyarrow as pa

    vec = pa.FixedSizeListArray.from_arrays(pa.array(s.docs.ravel(), type=pa.float32()), s.docs.shape[1])
    lancedb.connect(str(tmp_path / "lance")).create_table("docs", data=pa.table({"doc": s.ids, "emb": vec}))
    return f"lancedb://{tmp_path / 'lance'}?table=docs&id_column=doc&vector_column=emb"


@pytest.mark.parametrize("make_uri", [_faiss_uri, _lance_uri], ids=["faiss", "lancedb"])
def test_cli_finetune_and_revert(tmp_path, scifact_ids, reference_fit, make_uri):
    from nudge_rag.stores import open_store

    s = scifact_ids
    model_ref, moved_ref = reference_fit
    _pairs(tmp_path, s)
    uri = make_uri(tmp_path, s)
    r = finetune_cli(uri, tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"wrote: {len(moved_ref)} vectors" in r.stdout and "to revert: nudge-rag revert --store" in r.stdout
    store = open_store(uri)
    ranks_by = store.similarity  # the similarity the store really ranks by is what the CLI prints
    store.close()
    assert f"the store ranks by {ranks_by}" in r.stdout and "search with cosine" not in r.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["gamma"] == pytest.approx(model_ref.gamma_, abs=1e-12)
    assert report["val_source"] == "given" and report["written"] == len(moved_ref)
    assert (report["command"], report["engine"]) == ("finetune", "store")  # the one report of every finetune
    assert f"rows written: {len(moved_ref)}; skipped: 0 changed, 0 deleted" in r.stdout  # FinetuneReport.__str__
    store = open_store(uri)
    after = store.fetch(s.ids)
    store.close()
    changed = {s.ids[j] for j in np.flatnonzero((after != s.docs).any(axis=1))}
    assert changed == set(moved_ref)
    r = _nudge_rag("revert", "--store", uri)
    assert r.returncode == 0 and f"restored {len(moved_ref)} original vectors" in r.stdout, r.stderr
    store = open_store(uri)
    np.testing.assert_array_equal(store.fetch(s.ids), s.docs)
    store.close()


def test_cli_store_errors(tmp_path, scifact_ids):
    faiss = pytest.importorskip("faiss")
    _pairs(tmp_path, scifact_ids)
    r = _nudge_rag("revert", "--store", "nosuch:///x")
    assert r.returncode == 1 and "unknown store scheme 'nosuch'" in r.stderr
    index = faiss.IndexFlatL2(scifact_ids.docs.shape[1])
    index.add(scifact_ids.docs)
    faiss.write_index(index, str(tmp_path / "l2.faiss"))
    before = (tmp_path / "l2.faiss").read_bytes()
    r = _nudge_rag(
        "finetune",
        "--store",
        f"faiss://{tmp_path / 'l2.faiss'}",
        "--pairs",
        str(tmp_path / "pairs.jsonl"),
        "--query-vectors",
        str(tmp_path / "queries.npz"),
        "--method",
        "nudge-m",
    )
    assert r.returncode == 1 and "NUDGE-M" in r.stderr and "ranks by l2" in r.stderr
    assert (tmp_path / "l2.faiss").read_bytes() == before


def test_cli_fixed_gamma_prints_no_unmeasured_score_and_names_ignored_test_pairs(tmp_path, scifact_ids):
    """A fixed gamma with no dev pairs measures nothing, so no validation score is printed; pairs with split
    'test' are named as not used, never silently dropped."""
    s = scifact_ids
    lines = [
        json.dumps({"query_id": qid, "doc_id": d, "split": split})
        for split, q in (("train", s.train_q), ("test", s.val_q))
        for qid, answers in zip(q.ids, q.answers)
        for d in answers
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    ids = list(s.vectors)
    np.savez(tmp_path / "queries.npz", ids=np.array(ids), vectors=np.stack([s.vectors[i] for i in ids]))
    uri = _faiss_uri(tmp_path, s)
    r = _nudge_rag("finetune", "--store", uri, "--pairs", str(tmp_path / "pairs.jsonl"), "--query-vectors",
                   str(tmp_path / "queries.npz"), "--gamma", "0.1", "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "gamma = 0.1 (fixed); " in r.stdout and "validation recall" not in r.stdout and "->" not in r.stdout
    n_test = sum(len(a) for a in s.val_q.answers)
    assert f"note: {n_test} pairs with split 'test' are not used" in r.stderr
    assert "no validation score was measured" in r.stderr


def test_cli_finetune_from_feedback_waits_for_evidence_then_writes_and_reverts(tmp_path, scifact_ids):
    """``nudge-rag finetune --store URI --feedback LOG`` (issue 20, item 4): too few events write nothing; with
    enough, the re-tune writes through the ledger and ``revert`` restores every original bit for bit."""
    from nudge_rag.feedback import FeedbackLog
    from nudge_rag.stores import open_store

    s = scifact_ids
    uri = _lance_uri(tmp_path, s)
    events = [
        dict(question=f"claim {qid}", doc_ids=list(answers), source="click", vector=s.vectors[qid])
        for q in (s.train_q, s.val_q)
        for qid, answers in zip(q.ids, q.answers)
    ]
    log_path = tmp_path / "feedback.sqlite"
    with FeedbackLog(log_path) as log:
        log.record_many(events[:5])

    def retune(*extra):
        return _nudge_rag("finetune", "--store", uri, "--feedback", str(log_path), "--no-progress", *extra)

    r = retune()
    assert r.returncode == 0, r.stderr
    assert "feedback: 5 new events" in r.stdout and "nothing written" in r.stdout
    store = open_store(uri)
    np.testing.assert_array_equal(store.fetch(s.ids), s.docs)
    store.close()

    with FeedbackLog(log_path) as log:
        log.record_many(events[5:])
        log.record(
            "a claim about a study nobody indexed", ["no-such-doc"], source="click", vector=s.vectors[s.train_q.ids[0]]
        )
    r = retune("--report", str(tmp_path / "retune.json"))
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "retune.json").read_text())
    assert report["applied"] and report["events_skipped_unknown"] == 1 and report["events_held_out"] > 0
    assert report["written"] > 0 and f"wrote: {report['written']} vectors" in r.stdout
    store = open_store(uri)
    changed = int((store.fetch(s.ids) != s.docs).any(axis=1).sum())
    store.close()
    assert changed == report["written"]

    assert _nudge_rag("finetune", "--store", uri, "--feedback", str(log_path), "--pairs", "x.jsonl").returncode != 0
    r = _nudge_rag("revert", "--store", uri)
    assert r.returncode == 0, r.stderr
    store = open_store(uri)
    np.testing.assert_array_equal(store.fetch(s.ids), s.docs)
    store.close()
