"""Old name of :mod:`nudge_rag.files`, kept while ``cli``, ``finetune``, ``embedding`` and ``stores.faiss`` move."""

from .files import atomic_write, atomic_write_text  # noqa: F401
