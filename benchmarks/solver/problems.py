"""The inputs: real BEIR sets through the library's loader and splits, and seeded synthetic corpora."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nudge_rag import QueryAnswers
from nudge_rag.data import find_beir, load_dataset
from nudge_rag.prepare import VectorSource, prepare
from nudge_rag.synthetic import make_synthetic

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
REAL_SETS = tuple((n, s) for n in ("nfcorpus", "scifact") for s in ("official", "paper"))


@dataclass
class Problem:
    name: str
    docs: np.ndarray
    train: QueryAnswers
    val: QueryAnswers
    test: QueryAnswers
    note: str = ""
    reference: bool = True  # also run nudge-ft
    synthetic: bool = False  # a make_synthetic corpus (targets pick problems by kind and size, not by name)


def load_beir(data_dir: Path, name: str, policy: str = "official") -> Problem:
    """A BEIR set through the library's own loader and split policy (the splits ``nudge-rag demo`` uses),
    with the precomputed vectors beside the data; graded relevance is kept (for nDCG)."""
    ds = load_dataset(find_beir(name, data_dir, download=False), name=name)
    p = prepare(ds, VectorSource(), policy=policy, need_test=True)
    note = f"nudge_rag.data '{policy}' splits, as `nudge-rag demo --split {policy}`: {p.splits.note}"
    return Problem(f"{name} ({policy})", p.docs, p.train, p.val, p.test, note)


def synthetic(n_docs: int, reference: bool) -> Problem:
    d = make_synthetic(n_docs, n_train=10_000, n_val=1_000, n_test=1_000, dim=384, seed=0)
    note = "make_synthetic(n_docs, n_train=10_000, n_val=1_000, n_test=1_000, dim=384, seed=0)"
    return Problem(f"synthetic {n_docs:,}", d.documents, d.train, d.val, d.test, note, reference, synthetic=True)


@dataclass
class Summary:
    """What the report needs of a problem once its data are dropped."""

    n_docs: int
    dim: int
    n_train: int
    n_pairs: int
    n_val: int
    n_test: int
    note: str
    reference: bool
    synthetic: bool

    @classmethod
    def of(cls, p: Problem) -> Summary:
        return cls(
            p.docs.shape[0],
            p.docs.shape[1],
            len(p.train),
            int(p.train.indices.size),
            len(p.val),
            len(p.test),
            p.note,
            p.reference,
            p.synthetic,
        )


def reference_dict(qa: QueryAnswers) -> dict:
    """The reference's ``{"q_embs": array, "q_ans_indx": lists}`` format (graded relevance dropped)."""
    return {
        "q_embs": np.ascontiguousarray(qa.embeddings, dtype=np.float32),
        "q_ans_indx": [qa.indices[qa.indptr[i] : qa.indptr[i + 1]].tolist() for i in range(len(qa))],
    }
