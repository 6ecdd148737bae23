"""Atomic text writes, on top of the solver's atomic binary writer."""

from __future__ import annotations

import os

from nudge_rag.persistence import atomic_write


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new one, never a mix."""
    data = text.encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data))
