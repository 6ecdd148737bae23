"""Where datasets, precomputed vectors and caches live.

Data roots hold ``beir/<name>/`` dataset folders and optionally ``embeddings/<model>/<name>/{corpus,queries}.npy``
precomputed vectors (row i = line i of the corpus / queries file). Resolution order:

1. an explicit folder (``--data-dir``), if given: only that one;
2. else ``$NUDGE_RAG_DATA_DIR``, if set: only that one;
3. else the ``shared/data`` folder beside the repository checkout (``<repo>/../shared/data``), when it exists,
   followed by the user cache dir (where downloads go).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = [
    "ENV_DATA_DIR",
    "ENV_CACHE_DIR",
    "user_cache_dir",
    "shared_data_dir",
    "data_roots",
    "dataset_dir",
    "precomputed_dir",
]

ENV_DATA_DIR = "NUDGE_RAG_DATA_DIR"
ENV_CACHE_DIR = "NUDGE_RAG_CACHE_DIR"


def user_cache_dir() -> Path:
    """``$NUDGE_RAG_CACHE_DIR``, else the platform's user cache folder + ``nudge-rag``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "nudge-rag" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "nudge-rag"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nudge-rag"


def shared_data_dir() -> Path | None:
    """``<repo>/../shared/data`` relative to this package's checkout, when that folder exists."""
    repo = Path(__file__).resolve().parents[2]
    candidate = repo.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def data_roots(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Data roots to search, in order; the last one is where a download goes."""
    if explicit is not None:
        return [Path(explicit).expanduser()]
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return [Path(env).expanduser()]
    shared = shared_data_dir()
    return ([shared] if shared is not None else []) + [user_cache_dir()]


def dataset_dir(root: str | os.PathLike, name: str) -> Path:
    """``<root>/beir/<name>``: where a named BEIR dataset lives under a data root."""
    return Path(root) / "beir" / name


def precomputed_dir(dataset_folder: str | os.PathLike, model: str) -> Path:
    """``<root>/embeddings/<model>/<name>`` for a dataset folder ``<root>/beir/<name>``."""
    d = Path(dataset_folder)
    return d.parent.parent / "embeddings" / model.rsplit("/", 1)[-1] / d.name
