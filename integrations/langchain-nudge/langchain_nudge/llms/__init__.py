"""Language models shipped with the adapter: the offline default question writer."""

from langchain_nudge.llms.local import (
    LOCAL_QUESTION_PROMPT,
    LocalQuestionLLM,
    default_question_llm,
    local_question_llm,
)

__all__ = ["LocalQuestionLLM", "LOCAL_QUESTION_PROMPT", "local_question_llm", "default_question_llm"]
