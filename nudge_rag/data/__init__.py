"""Datasets for NUDGE: BEIR folders, a plain pairs format, split policies and dataset location.

NumPy-only (no embedding model needed). Typical use::

    from nudge_rag.data import find_beir, load_dataset, make_splits
    ds = load_dataset(find_beir("scifact"))
    splits = make_splits(ds, "official")          # train / val / test judgements
"""

from __future__ import annotations

import os
from pathlib import Path

from .beir import is_beir_dir, load_beir, read_qrels
from .corpus import read_corpus, read_queries, read_text_folder
from .dataset import Judgement, RetrievalDataset, doc_text
from .download import BEIR_URL, download_beir, find_beir
from .errors import DataError, MissingDataError
from .locate import ENV_CACHE_DIR, ENV_DATA_DIR, data_roots, precomputed_dir, shared_data_dir, user_cache_dir
from .pairs import is_pairs_dir, load_pairs, load_pairs_dir
from .splits import Splits, make_splits, official_splits, paper_splits

__all__ = [
    "RetrievalDataset",
    "Judgement",
    "Splits",
    "DataError",
    "MissingDataError",
    "load_dataset",
    "load_beir",
    "load_pairs",
    "load_pairs_dir",
    "read_corpus",
    "read_text_folder",
    "read_queries",
    "read_qrels",
    "doc_text",
    "is_beir_dir",
    "is_pairs_dir",
    "make_splits",
    "official_splits",
    "paper_splits",
    "find_beir",
    "download_beir",
    "BEIR_URL",
    "data_roots",
    "shared_data_dir",
    "user_cache_dir",
    "precomputed_dir",
    "ENV_DATA_DIR",
    "ENV_CACHE_DIR",
]


def load_dataset(folder: str | os.PathLike, *, name: str | None = None) -> RetrievalDataset:
    """Load a dataset folder in either layout: BEIR (``qrels/`` + ``queries.jsonl``) or pairs."""
    f = Path(folder)
    if not f.is_dir():
        raise MissingDataError(f"dataset folder not found: {f}")
    if is_beir_dir(f):
        return load_beir(f, name=name)
    if is_pairs_dir(f):
        return load_pairs_dir(f, name=name)
    if (f / "qrels").is_dir() or (f / "queries.jsonl").is_file():
        return load_beir(f, name=name)  # reports which BEIR file is missing
    return load_pairs_dir(f, name=name)  # reports which pairs/corpus file is missing
