"""Exceptions raised by the data layer; every message names the file (and line) it is about."""

from __future__ import annotations

import os

__all__ = ["DataError", "MissingDataError", "located"]


class DataError(ValueError):
    """Input data is malformed or inconsistent (bad line, unknown id, empty split, ...)."""


class MissingDataError(DataError, FileNotFoundError):
    """A required file or dataset is not on disk (and could not be downloaded)."""


def located(path: str | os.PathLike, line: int | None, message: str) -> str:
    """``"path:line: message"`` (or ``"path: message"`` when ``line`` is None)."""
    return f"{os.fspath(path)}:{line}: {message}" if line is not None else f"{os.fspath(path)}: {message}"
