"""Real SciFact (BEIR layout) with the precomputed all-MiniLM-L6-v2 vectors from the shared data folder.

Document vectors: row i of ``corpus.npy`` is the model's output for ``(title + " " + text).strip()`` of line i of
``corpus.jsonl.gz``; row i of ``queries.npy`` is its output for line i of ``queries.jsonl``.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from pathlib import Path

import numpy as np

SHARED_DATA = Path(os.environ.get("NUDGE_RAG_DATA_DIR", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
SCIFACT_BEIR = SHARED_DATA / "beir" / "scifact"
SCIFACT_VECTORS = SHARED_DATA / "embeddings" / "all-MiniLM-L6-v2" / "scifact"


def scifact_available() -> bool:
    """True if the SciFact corpus and its precomputed vectors are on disk."""
    return (SCIFACT_BEIR / "corpus.jsonl.gz").exists() and (SCIFACT_VECTORS / "corpus.npy").exists()


def read_qrels(split: str) -> list[tuple[str, str]]:
    """``(query id, document id)`` of every relevant (score > 0) pair of ``qrels/<split>.tsv``, in file order."""
    with open(SCIFACT_BEIR / "qrels" / f"{split}.tsv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))  # CRLF endings are handled by csv
    assert rows[0][:2] == ["query-id", "corpus-id"], rows[0]
    return [(q.strip(), d.strip()) for q, d, s in rows[1:] if float(s) > 0]


class SciFactTexts:
    """The full SciFact corpus (5,183 abstracts), its claims and qrels, with the precomputed vectors.

    Attributes: ``doc_ids``, ``texts``, ``titles`` (one per corpus row), ``vectors`` (5183, 384) float32,
    ``row_of`` (doc id -> row), ``qtext`` / ``qvec`` (query id -> claim text / (384,) vector), ``train_raw`` /
    ``test_raw`` (``(query id, doc id)`` qrels pairs) and ``known`` (text -> precomputed vector, for every corpus
    text and claim: the table a :class:`tests.support.KnownVectors` serves).
    """

    def __init__(self) -> None:
        with gzip.open(SCIFACT_BEIR / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        with open(SCIFACT_BEIR / "queries.jsonl", encoding="utf-8") as fh:
            queries = [json.loads(line) for line in fh]
        self.vectors = np.load(SCIFACT_VECTORS / "corpus.npy").astype(np.float32)
        query_vectors = np.load(SCIFACT_VECTORS / "queries.npy").astype(np.float32)
        assert self.vectors.shape[0] == len(rows) and query_vectors.shape[0] == len(queries)
        self.doc_ids = [r["_id"] for r in rows]
        self.texts = [(r["title"] + " " + r["text"]).strip() for r in rows]
        self.titles = [r["title"] for r in rows]
        self.row_of = {d: i for i, d in enumerate(self.doc_ids)}
        self.qtext = {q["_id"]: q["text"] for q in queries}
        self.qvec = {q["_id"]: query_vectors[i] for i, q in enumerate(queries)}
        self.train_raw = read_qrels("train")
        self.test_raw = read_qrels("test")
        self.known = dict(zip(self.texts, self.vectors))
        self.known.update({self.qtext[q]: v for q, v in self.qvec.items()})

    def subset_rows(self, n: int = 1000, seed: int = 7) -> list[int]:
        """Sorted rows of every document cited by a train or test claim, plus seeded random others up to ``n``."""
        cited = {self.row_of[d] for _, d in self.train_raw + self.test_raw}
        others = sorted(set(range(len(self.doc_ids))) - cited)
        extra = np.random.default_rng(seed).choice(others, max(0, n - len(cited)), replace=False).tolist()
        return sorted(cited | set(extra))
