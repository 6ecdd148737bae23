"""Readers for a document collection (JSONL, JSONL.gz, CSV, or a folder of text files) and a BEIR queries file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ._io import iter_jsonl, iter_table, require_file
from .dataset import doc_text
from .errors import DataError, located

__all__ = ["read_corpus", "read_text_folder", "read_queries", "ID_KEYS", "TEXT_SUFFIXES"]

#: Field names accepted for a record's id, in order of preference.
ID_KEYS = ("_id", "id", "doc_id")
#: Files a corpus folder contributes (case-insensitive suffixes).
TEXT_SUFFIXES = (".txt", ".md")


def _field_id(path: str | os.PathLike, lineno: int, record: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        if key in record:
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
                msg = f"field {key!r} must be a non-empty string or integer, got {value!r}"
                raise DataError(located(path, lineno, msg))
            return str(value).strip()
    raise DataError(located(path, lineno, f"missing id field (one of {', '.join(map(repr, keys))})"))


def _field_text(path: str | os.PathLike, lineno: int, record: dict, key: str, *, required: bool) -> str:
    if key not in record or record[key] is None:
        if required:
            raise DataError(located(path, lineno, f"missing field {key!r}"))
        return ""
    value = record[key]
    if not isinstance(value, str):
        raise DataError(located(path, lineno, f"field {key!r} must be a string, got {type(value).__name__}"))
    return value


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".csv", ".tsv")):
        return iter_table(path)
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return iter_jsonl(path)
    raise DataError(located(path, None, "unsupported file type (expected .jsonl, .jsonl.gz, .csv or .tsv)"))


def read_corpus(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Document ids and texts (``(title + " " + text).strip()``) from a corpus file, in file order
    (a folder: :func:`read_text_folder`).

    JSON lines need an id (``_id``, ``id`` or ``doc_id``) and ``text``; ``title`` is optional. CSV/TSV files
    need a header with the same column names. Duplicate ids raise :class:`DataError` with the line number.
    """
    if Path(path).is_dir():
        return read_text_folder(path)
    p = require_file(path, "corpus file")
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    for lineno, rec in _records(p):
        did = _field_id(p, lineno, rec, ID_KEYS)
        if did in seen:
            raise DataError(located(p, lineno, f"duplicate document id {did!r} (first on line {seen[did]})"))
        seen[did] = lineno
        ids.append(did)
        texts.append(
            doc_text(
                _field_text(p, lineno, rec, "title", required=False), _field_text(p, lineno, rec, "text", required=True)
            )
        )
    if not ids:
        raise DataError(located(p, None, "the corpus holds no documents"))
    return ids, texts


def read_text_folder(folder: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Document ids and texts from a folder of ``.txt`` / ``.md`` files (searched recursively).

    A document's id is its path relative to ``folder`` with forward slashes (``notes/intro.md``), its text the
    file's content (UTF-8). Files and folders whose name starts with ``.`` are skipped; ids are sorted.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"corpus folder not found: {root}")
    files = sorted(
        (f.relative_to(root).as_posix(), f)
        for f in root.rglob("*")
        if f.suffix.lower() in TEXT_SUFFIXES
        and f.is_file()
        and not any(part.startswith(".") for part in f.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"{root}: no {' or '.join(TEXT_SUFFIXES)} files in this corpus folder")
    texts = []
    for _, f in files:
        try:
            texts.append(f.read_text(encoding="utf-8-sig").strip())
        except UnicodeDecodeError as exc:
            raise DataError(f"{f}: cannot decode as UTF-8 (invalid byte at offset {exc.start})") from None
    return [rel for rel, _ in files], texts


def read_queries(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Query ids and texts from a BEIR ``queries.jsonl`` (fields ``_id`` and ``text``; others ignored)."""
    p = require_file(path, "queries file")
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    for lineno, rec in _records(p):
        qid = _field_id(p, lineno, rec, ("_id", "id", "query_id"))
        if qid in seen:
            raise DataError(located(p, lineno, f"duplicate query id {qid!r} (first on line {seen[qid]})"))
        seen[qid] = lineno
        ids.append(qid)
        texts.append(_field_text(p, lineno, rec, "text", required=True))
    if not ids:
        raise DataError(located(p, None, "the queries file holds no queries"))
    return ids, texts
