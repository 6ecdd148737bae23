"""Lazy imports of the optional ``distributed`` extra (dask, distributed, zarr, pyarrow)."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

_INSTALL = "pip install 'nudge-rag[distributed]'"


def require(module: str) -> ModuleType:
    """Import ``module`` (e.g. ``"dask.array"``), or raise an ImportError naming the install line."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is needed for distributed corpora: {_INSTALL} ({exc})") from exc
