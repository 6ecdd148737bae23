"""LlamaIndex integration of NUDGE: fine-tune the document vectors stored in a ``VectorStoreIndex``.

The embedding model is never changed: queries are still embedded by the same base embed model.

Example:
    >>> from llama_index.nudge import NudgeFinetuneEngine
    >>> engine = NudgeFinetuneEngine(index, train_dataset=pairs)
    >>> report = engine.finetune()
    >>> index = engine.get_finetuned_index()
"""

from llama_index.nudge.base import NudgeFinetuneEngine
from llama_index.nudge.dataset import EmbeddingQAFinetuneDataset
from llama_index.nudge.feedback import FeedbackCaptureWarning, FeedbackEventHandler
from llama_index.nudge.generate import (
    DEFAULT_QUESTION_PROMPT,
    GeneratedQuestions,
    QuestionGenerationError,
    generate_question_pairs,
)
from llama_index.nudge.report import NudgeFinetuneEndEvent, NudgeFinetuneReport, NudgeFinetuneStartEvent

from nudge_rag.stores import StoreError

#: Kept importable: a failed write raises the core :class:`nudge_rag.stores.StoreError` (originals restored).
StoreWriteError = StoreError

__all__ = [
    "NudgeFinetuneEngine",
    "NudgeFinetuneReport",
    "NudgeFinetuneStartEvent",
    "NudgeFinetuneEndEvent",
    "EmbeddingQAFinetuneDataset",
    "generate_question_pairs",
    "GeneratedQuestions",
    "QuestionGenerationError",
    "StoreWriteError",
    "DEFAULT_QUESTION_PROMPT",
    "FeedbackEventHandler",
    "FeedbackCaptureWarning",
]
