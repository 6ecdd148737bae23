"""LangChain integration of NUDGE (arXiv 2409.02343): fine-tune the stored document vectors, not the model.

Example:
    >>> from langchain_nudge import NudgeEmbeddings
    >>> nudged = NudgeEmbeddings(base_embeddings)                    # NUDGE-N by default
    >>> store = nudged.fit_vectorstore(store, [("question", "doc-id"), ...])
    >>> retriever = store.as_retriever()                             # same ids/texts/metadata, nudged vectors
"""

from importlib import metadata

from langchain_nudge.embeddings import NudgeEmbeddings
from langchain_nudge.feedback import FeedbackCallbackHandler, FeedbackCaptureWarning, FeedbackRetriever
from langchain_nudge.generation import (
    DEFAULT_QUESTION_PROMPT,
    GeneratedQuestions,
    QuestionGenerationError,
    QuestionList,
    agenerate_questions,
    generate_questions,
    parse_questions,
)
from langchain_nudge.vectorstores import VectorStoreAdapter, register_adapter

try:
    __version__ = metadata.version(__package__ or "langchain-nudge")
except metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = ""
del metadata

__all__ = [
    "NudgeEmbeddings",
    "GeneratedQuestions",
    "QuestionGenerationError",
    "QuestionList",
    "generate_questions",
    "agenerate_questions",
    "parse_questions",
    "DEFAULT_QUESTION_PROMPT",
    "VectorStoreAdapter",
    "register_adapter",
    "FeedbackCallbackHandler",
    "FeedbackRetriever",
    "FeedbackCaptureWarning",
    "__version__",
]
