"""nudge-rag: NUDGE fine-tuning of stored document embeddings (Zeighami et al., ICLR 2025).

The solver is NumPy-only; text loading, embedding models and framework adapters are optional extras.
"""

from .compat import NUDGEM, NUDGEN
from .corpus import ArrayCorpus, Corpus, register_corpus_adapter
from .estimators import DEFAULT_GAMMAS_N, InvalidParameterError, NotFittedError, NudgeM, NudgeN
from .evaluation import DEFAULT_METRICS, evaluate
from .finetune import FinetuneReport, Questions
from .metrics import hit_at_k, mrr_at_k, ndcg_at_k, recall_at_k
from .patch import Patch
from .persistence import load, save
from .queries import QueryAnswers
from .search import search

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it

__all__ = [
    "NudgeN",
    "NudgeM",
    "NUDGEN",
    "NUDGEM",
    "QueryAnswers",
    "Corpus",
    "ArrayCorpus",
    "register_corpus_adapter",
    "Patch",
    "Questions",
    "FinetuneReport",
    "NotFittedError",
    "InvalidParameterError",
    "DEFAULT_GAMMAS_N",
    "DEFAULT_METRICS",
    "search",
    "evaluate",
    "recall_at_k",
    "hit_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "save",
    "load",
    "__version__",
]
