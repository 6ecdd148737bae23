"""NUDGE embeddings wrapper."""

from langchain_nudge.embeddings.nudge import NudgeEmbeddings

__all__ = ["NudgeEmbeddings"]
