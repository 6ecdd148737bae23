"""Run by test_restart.py in a fresh Python process: a "restarted service" that reloads the nudged vectors.

Usage: python restart_worker.py WORKDIR. WORKDIR holds nudge.npz (NudgeEmbeddings.save), faiss/ (the nudged
FAISS store, FAISS.save_local), in_place.json (an InMemoryVectorStore written in place by fit_vectorstore, then
InMemoryVectorStore.dump) and questions.json; the answers go to WORKDIR/results.json. The base model serves
the precomputed all-MiniLM-L6-v2 vectors only (live=False: this process never loads torch).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("langchain_nudge_test_support", HERE.parent / "_support.py")
sup = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sup)


def main(workdir: Path) -> None:
    from langchain_community.vectorstores import FAISS
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_nudge import NudgeEmbeddings

    scifact = sup.SciFact()
    base = sup.MiniLMEmbeddings(scifact.known, live=False)
    questions = json.loads((workdir / "questions.json").read_text())
    wrapper = NudgeEmbeddings.load(workdir / "nudge.npz", base)

    # 1. the nudged FAISS store saved with FAISS.save_local, loaded with the wrapper as its embeddings
    faiss_store = FAISS.load_local(str(workdir / "faiss"), wrapper, allow_dangerous_deserialization=True)
    # 2. the original store rebuilt from the base vectors, re-nudged from the saved wrapper (no refit)
    rows = scifact.subset_rows(1000)
    base_store = InMemoryVectorStore(embedding=base)
    base_store.add_documents(scifact.documents(rows))
    re_nudged = wrapper.nudge_vectorstore(base_store)
    # 3. the store written in place, loaded with the base model (its vectors are the nudged ones)
    in_place = InMemoryVectorStore.load(str(workdir / "in_place.json"), base)

    results = {
        "faiss": sup.retrieve_ids(faiss_store, questions["faiss"], k=10),
        "inmemory": sup.retrieve_ids(re_nudged, questions["inmemory"], k=10),
        "in_place": sup.retrieve_ids(in_place, questions["in_place"], k=10),
        "report": wrapper.report_.to_dict(),
        "torch_loaded": "torch" in sys.modules,
    }
    (workdir / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
