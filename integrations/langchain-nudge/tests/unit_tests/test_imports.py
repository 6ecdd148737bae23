"""Pin the public API (as LangChain partner packages do)."""

import subprocess
import sys

import langchain_nudge
import pytest
from langchain_nudge import embeddings, vectorstores

EXPECTED_ALL = [
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


def test_all_imports() -> None:
    assert sorted(EXPECTED_ALL) == sorted(langchain_nudge.__all__)
    for name in langchain_nudge.__all__:
        assert hasattr(langchain_nudge, name), name


def test_subpackage_all() -> None:
    assert embeddings.__all__ == ["NudgeEmbeddings"]
    assert sorted(vectorstores.__all__) == sorted(
        [
            "VectorStoreAdapter",
            "InMemoryVectorStoreAdapter",
            "FAISSAdapter",
            "get_adapter",
            "register_adapter",
            "sqlitevec_connection",
        ]
    )


@pytest.mark.integration  # a subprocess importing the package cold
def test_import_needs_only_langchain_core_and_nudge_rag() -> None:
    """langchain-community and faiss are imported lazily (only when a FAISS store is used)."""
    code = (
        "import sys, langchain_nudge\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('langchain_community', 'faiss', 'torch', 'sentence_transformers', 'langchain_classic'))\n"
        "assert not bad, bad\n"
        "assert 'nudge_rag' in sys.modules and 'langchain_core' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
