"""Save -> new process -> load gives the same retrieval results (a service restart keeps the nudged vectors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_nudge import NudgeEmbeddings

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a second Python process

WORKER = Path(__file__).with_name("restart_worker.py")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_save_then_load_in_a_new_process_gives_the_same_results(scifact, sup, tmp_path):
    from langchain_community.vectorstores import FAISS

    base = sup.MiniLMEmbeddings(scifact.known, live=False)
    rows = scifact.subset_rows(1000)
    docs = scifact.documents(rows)
    store = InMemoryVectorStore(embedding=base)
    store.add_documents(docs)
    wrapper = NudgeEmbeddings(base).fit(store, scifact.pairs("train"))
    nudged_mem = wrapper.nudge_vectorstore(store)
    # the same nudged vectors in a FAISS store built by the package
    nudged_faiss = wrapper.build_vectorstore(docs, FAISS)
    # a store written in place, saved with the store's own persistence
    in_place = InMemoryVectorStore(embedding=base)
    in_place.add_documents(docs)
    NudgeEmbeddings(base).fit_vectorstore(in_place, scifact.pairs("train"))

    questions = list(scifact.answers("test"))
    asked = {"faiss": questions, "inmemory": questions[:40], "in_place": questions[:40]}
    expected = {
        "faiss": sup.retrieve_ids(nudged_faiss, asked["faiss"], k=10),
        "inmemory": sup.retrieve_ids(nudged_mem, asked["inmemory"], k=10),
        "in_place": sup.retrieve_ids(in_place, asked["in_place"], k=10),
    }
    base_ids = sup.retrieve_ids(store, asked["inmemory"], k=10)
    assert base_ids != expected["inmemory"]  # the nudge changes results, so equality below means something
    assert base_ids != expected["in_place"]

    wrapper.save(tmp_path / "nudge.npz")
    nudged_faiss.save_local(str(tmp_path / "faiss"))
    in_place.dump(str(tmp_path / "in_place.json"))
    (tmp_path / "questions.json").write_text(json.dumps(asked))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path)], env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "results.json").read_text())
    assert got["faiss"] == expected["faiss"]
    assert got["inmemory"] == expected["inmemory"]
    assert got["in_place"] == expected["in_place"]
    assert got["report"] == wrapper.report_.to_dict() and not got["torch_loaded"]
