"""langchain-tests standard suites on what the package builds: nudged vector stores and a fitted wrapper.

Every store here is produced by ``NudgeEmbeddings.nudge_vectorstore`` from an empty store, with a wrapper that was
fitted (for real) on a small unrelated corpus around the suite's own ``get_embeddings()`` model; the suite then
adds, searches, gets and deletes documents through that nudged store.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore
from langchain_nudge import NudgeEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, VectorStoreIntegrationTests

pytestmark = pytest.mark.integration  # the langchain-tests integration suites, on FAISS too

CORPUS = [
    Document(id=f"fit-{i}", page_content=f"fitting corpus passage number {i} on subject {i % 3}", metadata={"i": i})
    for i in range(12)
]
PAIRS = [(f"which passage talks about number {i} and subject {i % 3}?", f"fit-{i}") for i in range(12)]


def fitted_wrapper(base: Embeddings, variant: str = "nudge-n") -> NudgeEmbeddings:
    return NudgeEmbeddings(base, variant=variant).fit(CORPUS, PAIRS)


class TestNudgedInMemoryVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> Iterator[VectorStore]:
        wrapper = fitted_wrapper(self.get_embeddings())
        store = wrapper.nudge_vectorstore(InMemoryVectorStore(embedding=self.get_embeddings()))
        assert isinstance(store, InMemoryVectorStore) and store.embeddings is wrapper
        yield store


def _empty_faiss(embedding: Embeddings, inner_product: bool) -> VectorStore:
    import faiss
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy

    dim = len(embedding.embed_query("probe"))
    if inner_product:
        return FAISS(
            embedding,
            faiss.IndexFlatIP(dim),
            InMemoryDocstore(),
            {},
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
        )
    return FAISS(embedding, faiss.IndexFlatL2(dim), InMemoryDocstore(), {})


class TestNudgedFAISS(VectorStoreIntegrationTests):
    """NUDGE-N copy of an L2 FAISS store."""

    @pytest.fixture
    def vectorstore(self) -> Iterator[VectorStore]:
        wrapper = fitted_wrapper(self.get_embeddings())
        yield wrapper.nudge_vectorstore(_empty_faiss(self.get_embeddings(), inner_product=False))

    # langchain-community's FAISS itself fails these six standard tests (checked on a plain, un-nudged FAISS with
    # the same suite): InMemoryDocstore.add raises "Tried to add ids that already exist" on re-added ids, and
    # FAISS.delete raises on ids it does not hold. They are store behaviour, not NUDGE's.
    # Strict: once FAISS behaves, these pass and the run fails until the marks are removed.
    _DUPLICATE = pytest.mark.xfail(
        reason="langchain-community FAISS raises on re-adding an existing id", raises=ValueError, strict=True
    )
    _MISSING = pytest.mark.xfail(
        reason="langchain-community FAISS.delete raises on missing ids", raises=ValueError, strict=True
    )

    @_MISSING
    def test_delete_missing_content(self, vectorstore: VectorStore) -> None:
        super().test_delete_missing_content(vectorstore)

    @_MISSING
    async def test_delete_missing_content_async(self, vectorstore: VectorStore) -> None:
        await super().test_delete_missing_content_async(vectorstore)

    @_DUPLICATE
    def test_add_documents_with_ids_is_idempotent(self, vectorstore: VectorStore) -> None:
        super().test_add_documents_with_ids_is_idempotent(vectorstore)

    @_DUPLICATE
    async def test_add_documents_with_ids_is_idempotent_async(self, vectorstore: VectorStore) -> None:
        await super().test_add_documents_with_ids_is_idempotent_async(vectorstore)

    @_DUPLICATE
    def test_add_documents_by_id_with_mutation(self, vectorstore: VectorStore) -> None:
        super().test_add_documents_by_id_with_mutation(vectorstore)

    @_DUPLICATE
    async def test_add_documents_by_id_with_mutation_async(self, vectorstore: VectorStore) -> None:
        await super().test_add_documents_by_id_with_mutation_async(vectorstore)


class TestNudgedFAISSInnerProduct(TestNudgedFAISS):
    """NUDGE-M copy (inner product) of a FAISS store."""

    @pytest.fixture
    def vectorstore(self) -> Iterator[VectorStore]:
        wrapper = fitted_wrapper(self.get_embeddings(), variant="nudge-m")
        store = wrapper.nudge_vectorstore(_empty_faiss(self.get_embeddings(), inner_product=True))
        yield store


class TestFittedNudgeEmbeddings(EmbeddingsIntegrationTests):
    """The standard embeddings integration suite on a fitted wrapper (its texts hit and miss the fitted set)."""

    @property
    def embeddings_class(self) -> type[NudgeEmbeddings]:
        return NudgeEmbeddings

    @pytest.fixture
    def model(self) -> NudgeEmbeddings:
        from langchain_core.embeddings import DeterministicFakeEmbedding

        base = DeterministicFakeEmbedding(size=16)
        docs = CORPUS + [Document(id="foo", page_content="foo"), Document(id="bar", page_content="bar")]
        return NudgeEmbeddings(base).fit(
            docs, PAIRS + [("what about foo then?", "foo"), ("tell me about bar now", "bar")]
        )
