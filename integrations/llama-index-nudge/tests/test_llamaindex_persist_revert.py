"""An in-process store's ledger travels with the persisted index: fit, persist, and a new process (a subprocess)
that reopens the index and the engine reverts the original vectors bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.nudge import NudgeFinetuneEngine
from llama_index.nudge._persist import LEDGER_FILENAME

REVERT = """
import json, sys
from llama_index.core import MockEmbedding
from llama_index.nudge import NudgeFinetuneEngine
engine = NudgeFinetuneEngine.from_persist_dir(sys.argv[1], embed_model=MockEmbedding(embed_dim=384))
restored = engine.revert()
engine.get_finetuned_index().storage_context.persist(sys.argv[1])
print(json.dumps({"restored": restored, "status": engine.status().nudged}))
"""


@pytest.mark.slow
def test_a_new_process_reverts_a_persisted_simple_vector_store(scifact, embed_model, tmp_path):
    index = VectorStoreIndex(scifact.nodes(), embed_model=embed_model)
    original = {k: list(v) for k, v in index.vector_store.data.embedding_dict.items()}
    engine = NudgeFinetuneEngine(index, train_dataset=scifact.pairs("train"))
    report = engine.finetune()
    assert report.written > 0
    engine.persist(tmp_path / "storage")
    assert (tmp_path / "storage" / LEDGER_FILENAME).is_file()
    assert (tmp_path / "storage" / LEDGER_FILENAME).stat().st_mode & 0o077 == 0  # no wider than 0600

    run = subprocess.run(
        [sys.executable, "-c", REVERT, str(tmp_path / "storage")], capture_output=True, text=True, check=True
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"restored": report.written, "status": 0}
    with open(tmp_path / "storage" / "default__vector_store.json", encoding="utf-8") as fh:
        reverted = json.load(fh)["embedding_dict"]
    assert reverted == original  # every vector, bit for bit (JSON round-trips Python floats exactly)

    # the engine that wrote them, in this process, finds nothing left to restore either way
    reopened = NudgeFinetuneEngine.from_persist_dir(tmp_path / "storage", embed_model=embed_model)
    assert reopened.revert() == 0
