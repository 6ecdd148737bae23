"""Loader for the BEIR on-disk layout.

::

    <folder>/corpus.jsonl[.gz]       {"_id", "title", "text"} per line
    <folder>/queries.jsonl[.gz]      {"_id", "text"} per line (other fields ignored)
    <folder>/qrels/{train,dev,test}.tsv   header "query-id<TAB>corpus-id<TAB>score", CRLF or LF endings

Judgements with score 0 are not relevant and are dropped; graded scores are kept (for nDCG).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Container
from pathlib import Path

from ._io import first_existing, open_text, require_file
from .corpus import read_corpus, read_queries
from .dataset import Judgement, RetrievalDataset
from .errors import DataError, MissingDataError, located

__all__ = ["load_beir", "read_qrels", "is_beir_dir", "BEIR_SPLITS", "CORPUS_NAMES", "QUERIES_NAMES"]

BEIR_SPLITS = ("train", "dev", "test")
CORPUS_NAMES = ("corpus.jsonl", "corpus.jsonl.gz")
QUERIES_NAMES = ("queries.jsonl", "queries.jsonl.gz")


def is_beir_dir(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a corpus, a queries file and at least one qrels split."""
    f = Path(folder)
    return (
        first_existing(f, CORPUS_NAMES) is not None
        and first_existing(f, QUERIES_NAMES) is not None
        and any((f / "qrels" / f"{s}.tsv").is_file() for s in BEIR_SPLITS)
    )


def read_qrels(
    path: str | os.PathLike,
    doc_ids: Container[str],
    query_ids: Container[str],
    *,
    corpus_name: str = "the corpus",
) -> list[Judgement]:
    """Relevant ``(query_id, doc_id, score)`` rows of a BEIR qrels TSV, in file order.

    The header line is optional (recognised by a non-numeric score). Rows with score <= 0 are dropped.
    Raises :class:`DataError` (file and line) for a malformed row or an id absent from ``doc_ids`` /
    ``query_ids``.
    """
    p = require_file(path, "qrels file")
    out: list[Judgement] = []
    with open_text(p) as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for row in reader:
                lineno = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) == 4:  # TREC style: query-id, iteration, corpus-id, score
                    row = [row[0], row[2], row[3]]
                if len(row) != 3:
                    msg = f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}: {row!r}"
                    raise DataError(located(p, lineno, msg))
                qid, did, raw = (c.strip() for c in row)
                try:
                    score = float(raw)
                except ValueError:
                    if lineno == 1:  # header
                        continue
                    raise DataError(located(p, lineno, f"score must be a number, got {raw!r}")) from None
                if not math.isfinite(score):
                    raise DataError(located(p, lineno, f"score must be finite, got {raw!r}"))
                if qid not in query_ids:
                    raise DataError(located(p, lineno, f"query-id {qid!r} is not in the queries file"))
                if did not in doc_ids:
                    raise DataError(located(p, lineno, f"corpus-id {did!r} is not in {corpus_name}"))
                if score > 0:
                    out.append((qid, did, score))
        except csv.Error as exc:
            raise DataError(located(p, reader.line_num, f"malformed row ({exc})")) from None
        except UnicodeDecodeError as exc:
            raise DataError(located(p, reader.line_num + 1, f"cannot decode as UTF-8 ({exc})")) from None
    return out


def load_beir(folder: str | os.PathLike, *, name: str | None = None) -> RetrievalDataset:
    """Read a BEIR dataset folder (see module docstring) into a :class:`RetrievalDataset`.

    A qrels file that exists but holds no relevant pair raises :class:`DataError` (an empty split).
    """
    f = Path(folder)
    if not f.is_dir():
        raise MissingDataError(f"BEIR dataset folder not found: {f}")
    corpus = first_existing(f, CORPUS_NAMES)
    if corpus is None:
        raise MissingDataError(f"no corpus file in {f} (expected {f / 'corpus.jsonl'} or {f / 'corpus.jsonl.gz'})")
    queries = first_existing(f, QUERIES_NAMES) or require_file(f / "queries.jsonl", "queries file")
    doc_ids, doc_texts = read_corpus(corpus)
    query_ids, query_texts = read_queries(queries)
    doc_set = dict.fromkeys(doc_ids)
    query_set = dict.fromkeys(query_ids)
    qrels: dict[str, list[Judgement]] = {}
    files = {"corpus": corpus, "queries": queries}
    for split in BEIR_SPLITS:
        path = f / "qrels" / f"{split}.tsv"
        if not path.is_file():
            continue
        rows = read_qrels(path, doc_set, query_set, corpus_name=corpus.name)
        if not rows:
            raise DataError(located(path, None, f"the {split} split is empty (no judgement with score > 0)"))
        qrels[split] = rows
        files[f"qrels/{split}"] = path
    if not qrels:
        raise MissingDataError(f"no qrels in {f / 'qrels'} (expected train.tsv, dev.tsv and/or test.tsv)")
    return RetrievalDataset(
        name=name or f.name,
        doc_ids=doc_ids,
        doc_texts=doc_texts,
        query_ids=query_ids,
        query_texts=query_texts,
        qrels=qrels,
        source=f,
        files=files,
    )
