"""A plain "question -> document" pairs format for users' own data.

Pairs file, JSON lines (one object per line)::

    {"query": "what is NUDGE?", "doc_id": "d1"}
    {"query": "...", "doc_ids": ["d2", "d7"], "relevance": [2, 1], "split": "test"}
    {"query_id": "q9", "query": "...", "doc_id": "d3", "relevance": 1}

or CSV (``.csv``, or ``.tsv`` for tabs) with a header naming the columns ``query`` and/or ``query_id``,
``doc_id``, and optionally ``relevance`` and ``split`` (one pair per row).

- A query is identified by ``query_id`` when given, else by its exact text (same text, same query).
- ``relevance`` defaults to 1; pairs with relevance <= 0 are not relevant and are dropped.
- ``split`` is ``train`` (default), ``dev``/``val`` or ``test``.

Corpus file: JSON lines ``{"_id" | "id" | "doc_id", "title"?, "text"}`` (optionally gzipped) or a CSV with
those columns, or a folder of ``.txt`` / ``.md`` files (searched recursively; a document's id is its path
relative to the folder with forward slashes, e.g. ``notes/intro.md``). Without a corpus, pass the known
document ids (e.g. those of precomputed vectors).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._io import first_existing, iter_jsonl, iter_table, require_file
from .corpus import read_corpus
from .dataset import Judgement, RetrievalDataset, canonical_split
from .errors import DataError, MissingDataError, located

__all__ = ["load_pairs", "load_pairs_dir", "is_pairs_dir", "PAIRS_NAMES", "CORPUS_FILE_NAMES"]

PAIRS_NAMES = ("pairs.jsonl", "pairs.jsonl.gz", "pairs.csv", "pairs.tsv")
CORPUS_FILE_NAMES = ("corpus.jsonl", "corpus.jsonl.gz", "corpus.csv", "corpus.tsv")
_SPLIT_FILE_STEMS = {"train": ("train",), "dev": ("dev", "val", "validation"), "test": ("test",)}
_EXTS = (".jsonl", ".jsonl.gz", ".csv", ".tsv")


def _split_files(folder: Path) -> dict[str, str | os.PathLike]:
    out: dict[str, str | os.PathLike] = {}
    for split, stems in _SPLIT_FILE_STEMS.items():
        found = first_existing(folder, tuple(stem + ext for stem in stems for ext in _EXTS))
        if found is not None:
            out[split] = found
    return out


def is_pairs_dir(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a corpus file and a pairs file (or ``train.jsonl``/``train.csv``)."""
    f = Path(folder)
    has_pairs = first_existing(f, PAIRS_NAMES) is not None or "train" in _split_files(f)
    return has_pairs and _corpus_of(f) is not None


def _corpus_of(folder: Path) -> Path | None:
    """The corpus file of a pairs folder, else its ``corpus/`` folder of text files, else None."""
    found = first_existing(folder, CORPUS_FILE_NAMES)
    return found if found is not None or not (folder / "corpus").is_dir() else folder / "corpus"


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".csv", ".tsv")):
        for lineno, row in iter_table(path):
            yield lineno, {k: v for k, v in row.items() if v.strip() != ""}
    elif name.endswith((".jsonl", ".ndjson", ".json")):
        yield from iter_jsonl(path)
    else:
        raise DataError(located(path, None, "unsupported pairs file type (expected .jsonl, .csv or .tsv)"))


def _as_id(path: str | os.PathLike, lineno: int, value: object, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise DataError(located(path, lineno, f"{key!r} must be a non-empty string or integer, got {value!r}"))
    return str(value).strip()


def _as_relevance(path: str | os.PathLike, lineno: int, value: Any) -> float:
    if isinstance(value, bool):
        raise DataError(located(path, lineno, f"'relevance' must be a number, got {value!r}"))
    try:
        rel = float(value)
    except (TypeError, ValueError):
        raise DataError(located(path, lineno, f"'relevance' must be a number, got {value!r}")) from None
    if not math.isfinite(rel):
        raise DataError(located(path, lineno, f"'relevance' must be finite, got {value!r}"))
    return rel


class _Builder:
    """Accumulates queries and judgements from one or more pairs files."""

    def __init__(self, doc_ids: Sequence[str], corpus_name: str):
        self.doc_set = set(doc_ids)
        self.corpus_name = corpus_name
        self.query_ids: list[str] = []
        self.query_texts: dict[str, str | None] = {}
        self.by_text: dict[str, str] = {}
        self.qrels: dict[str, list[Judgement]] = {}

    def _query(self, path: str | os.PathLike, lineno: int, row: dict) -> str:
        text = row.get("query")
        if text is not None and not isinstance(text, str):
            raise DataError(located(path, lineno, f"'query' must be a string, got {type(text).__name__}"))
        if "query_id" in row:
            qid = _as_id(path, lineno, row["query_id"], "query_id")
        elif text is not None and text.strip():
            known_qid = self.by_text.get(text)
            if known_qid is None:
                known_qid = f"q{len(self.query_ids)}"
                while known_qid in self.query_texts:
                    known_qid = "_" + known_qid
            qid = known_qid
        else:
            raise DataError(located(path, lineno, "each row needs a non-empty 'query' (text) or a 'query_id'"))
        if qid not in self.query_texts:
            self.query_ids.append(qid)
            self.query_texts[qid] = text
            if text is not None:
                self.by_text.setdefault(text, qid)
        elif text is not None:
            known = self.query_texts[qid]
            if known is None:
                self.query_texts[qid] = text
            elif known != text:
                raise DataError(located(path, lineno, f"query_id {qid!r} was given a different text before"))
        return qid

    def add(self, path: Path, lineno: int, row: dict, default_split: str) -> None:
        qid = self._query(path, lineno, row)
        if "doc_ids" in row:
            docs = row["doc_ids"]
            if isinstance(docs, str):  # CSV: ids separated by "|"
                docs = [d for d in docs.split("|") if d.strip()]
            if not isinstance(docs, list) or not docs:
                raise DataError(located(path, lineno, f"'doc_ids' must be a non-empty list, got {row['doc_ids']!r}"))
        elif "doc_id" in row:
            docs = [row["doc_id"]]
        else:
            raise DataError(located(path, lineno, "missing 'doc_id' (or 'doc_ids')"))
        docs = [_as_id(path, lineno, d, "doc_id") for d in docs]
        rel = row.get("relevance", 1)
        rels = rel if isinstance(rel, list) else [rel] * len(docs)
        if len(rels) != len(docs):
            raise DataError(located(path, lineno, f"got {len(docs)} doc ids but {len(rels)} relevance values"))
        split = default_split
        if "split" in row:
            named = canonical_split(row["split"]) if isinstance(row["split"], str) else None
            if named is None:
                raise DataError(located(path, lineno, f"'split' must be train, dev/val or test, got {row['split']!r}"))
            split = named
        out = self.qrels.setdefault(split, [])
        for did, r in zip(docs, rels):
            if did not in self.doc_set:
                raise DataError(located(path, lineno, f"doc_id {did!r} is not in {self.corpus_name}"))
            score = _as_relevance(path, lineno, r)
            if score > 0:
                out.append((qid, did, score))


def load_pairs(
    pairs: str | os.PathLike | Sequence[str | os.PathLike] | dict[str, str | os.PathLike],
    corpus: str | os.PathLike | None = None,
    *,
    doc_ids: Sequence[str] | None = None,
    name: str | None = None,
) -> RetrievalDataset:
    """Read pairs file(s) and a corpus into a :class:`RetrievalDataset`.

    Args:
        pairs: one pairs file, several, or ``{"train": path, "dev": path, "test": path}`` (the key sets the
            default split of that file's rows).
        corpus: corpus file or folder of ``.txt`` / ``.md`` files; optional when ``doc_ids`` is given (then
            documents have ids but no text).
        doc_ids: known document ids (used when ``corpus`` is None).
        name: dataset name (default: the corpus or pairs file's folder name).
    """
    if corpus is not None:
        corpus_path = Path(corpus) if Path(corpus).is_dir() else require_file(corpus, "corpus file")
        ids, texts = read_corpus(corpus_path)
        corpus_name = f"the corpus folder {corpus_path}" if corpus_path.is_dir() else corpus_path.name
    elif doc_ids is not None:
        ids, texts, corpus_path, corpus_name = [str(d) for d in doc_ids], None, None, "the document id list"
        if len(set(ids)) != len(ids):
            raise DataError("the document id list holds duplicate ids")
    else:
        raise ValueError("load_pairs needs a corpus file or doc_ids")
    if isinstance(pairs, dict):
        files = [(require_file(p, "pairs file"), canonical_split(s) or "train") for s, p in pairs.items()]
    elif isinstance(pairs, (str, os.PathLike)):
        files = [(require_file(pairs, "pairs file"), "train")]
    else:
        files = [(require_file(p, "pairs file"), "train") for p in pairs]
    builder = _Builder(ids, corpus_name)
    for path, default_split in files:
        n_before = sum(len(v) for v in builder.qrels.values())
        for lineno, row in _rows(path):
            builder.add(path, lineno, row, default_split)
        if sum(len(v) for v in builder.qrels.values()) == n_before:
            raise DataError(located(path, None, "no relevant (query, document) pair in this file"))
    qrels = {s: builder.qrels[s] for s in ("train", "dev", "test") if builder.qrels.get(s)}
    texts_q = [builder.query_texts[q] for q in builder.query_ids]
    has_text = all(t is not None for t in texts_q)
    first = files[0][0]
    file_map = {f"pairs/{s}": p for p, s in files}
    if corpus_path is not None:
        file_map["corpus"] = corpus_path
    return RetrievalDataset(
        name=name or (corpus_path or first).resolve().parent.name,
        doc_ids=ids,
        doc_texts=texts,
        query_ids=builder.query_ids,
        query_texts=[t for t in texts_q if t is not None] if has_text else None,
        qrels=qrels,
        source=(corpus_path or first).parent,
        files=file_map,
    )


def load_pairs_dir(folder: str | os.PathLike, *, name: str | None = None) -> RetrievalDataset:
    """Load ``folder/corpus.{jsonl,jsonl.gz,csv}`` (or a ``folder/corpus/`` of text files) with
    ``folder/pairs.{jsonl,csv}`` or ``train``/``dev``/``test`` pairs files (the file name sets the split)."""
    f = Path(folder)
    corpus = _corpus_of(f)
    if corpus is None:
        raise MissingDataError(
            f"no corpus file in {f} (expected one of {', '.join(CORPUS_FILE_NAMES)}, or a corpus/ folder of .txt/.md)"
        )
    pairs = first_existing(f, PAIRS_NAMES)
    if pairs is not None:
        return load_pairs(pairs, corpus, name=name or f.resolve().name)
    split_files = _split_files(f)
    if "train" not in split_files:
        raise MissingDataError(f"no pairs file in {f} (expected pairs.jsonl, pairs.csv or train.jsonl / train.csv)")
    return load_pairs(split_files, corpus, name=name or f.resolve().name)
