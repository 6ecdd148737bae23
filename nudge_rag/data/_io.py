"""Low-level readers: text files (optionally gzipped), JSON lines, delimited tables and id lists."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import DataError, MissingDataError, located

__all__ = ["open_text", "iter_jsonl", "iter_table", "read_id_list", "require_file", "first_existing"]


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a :class:`Path`; raises :class:`MissingDataError` naming ``what`` when it is no file."""
    p = Path(path)
    if not p.is_file():
        raise MissingDataError(f"{what} not found: {p}")
    return p


def first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first ``folder / name`` that is a file, or None."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def open_text(path: str | os.PathLike) -> IO[str]:
    """Open a UTF-8 text file for reading; ``.gz`` files are decompressed. Universal newlines (CRLF ok)."""
    p = Path(path)
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig", newline=None)
    return open(p, encoding="utf-8-sig", newline=None)


def _decoded_lines(path: str | os.PathLike) -> Iterator[str]:
    """The lines of a UTF-8 text file (``.gz`` decompressed), decoded one at a time.

    Decoding line by line makes a bad byte, or a damaged gzip stream, raise :class:`DataError` naming the line
    it is on (a buffered text reader reports the start of the buffer instead). A leading BOM is dropped.
    """
    p = Path(path)
    n = 0
    try:
        with gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb") as fh:
            for n, raw in enumerate(fh, start=1):
                if n == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        located(p, n, f"cannot decode as UTF-8 (invalid byte at column {exc.start + 1})")
                    ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(located(p, n + 1, f"cannot read ({type(exc).__name__}: {exc})")) from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file (1-based lines)."""
    for lineno, line in enumerate(_decoded_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(located(path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})")) from None
        if not isinstance(obj, dict):
            raise DataError(located(path, lineno, f"expected a JSON object, got {type(obj).__name__}"))
        yield lineno, obj


def iter_table(path: str | os.PathLike, delimiter: str | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` for each data row of a CSV/TSV file with a header line.

    The delimiter is a tab for ``.tsv`` files and a comma otherwise. Column names are lower-cased and
    stripped; a row whose column count differs from the header's raises :class:`DataError`.
    """
    if delimiter is None:
        delimiter = "\t" if Path(path).name.removesuffix(".gz").endswith(".tsv") else ","
    reader = csv.reader(_decoded_lines(path), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(located(path, 1, "empty file (expected a header line)"))
        names = [h.strip().lower() for h in header]
        for row in reader:
            lineno = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(names):
                raise DataError(
                    located(
                        path, lineno, f"expected {len(names)} columns ({', '.join(names)}), got {len(row)}: {row!r}"
                    )
                )
            yield lineno, dict(zip(names, row))
    except csv.Error as exc:
        raise DataError(located(path, reader.line_num, f"malformed row ({exc})")) from None


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Ids from a text file with one id per line, or a ``.json`` list of strings."""
    p = require_file(path, "id list")
    if p.suffix == ".json":
        try:
            with open_text(p) as fh:
                ids = json.load(fh)
        except json.JSONDecodeError as exc:
            raise DataError(located(p, exc.lineno, f"invalid JSON ({exc.msg})")) from None
        if not isinstance(ids, list):
            raise DataError(located(p, None, f"expected a JSON list of ids, got {type(ids).__name__}"))
        return [str(i) for i in ids]
    with open_text(p) as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataError(located(p, n, "blank line in id list (one id per line expected)"))
    return [line.strip() for line in lines]
