"""The langchain-tests standard unit suite for embeddings, on the NudgeEmbeddings wrapper."""

from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_nudge import NudgeEmbeddings
from langchain_tests.unit_tests import EmbeddingsUnitTests


class TestNudgeEmbeddingsStandard(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[NudgeEmbeddings]:
        return NudgeEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"underlying_embeddings": DeterministicFakeEmbedding(size=16)}


class TestNudgeEmbeddingsMStandard(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[NudgeEmbeddings]:
        return NudgeEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"underlying_embeddings": DeterministicFakeEmbedding(size=16), "variant": "nudge-m", "gamma": 0.2}
