"""``NudgeEmbeddings``: serve NUDGE-fine-tuned document vectors in front of any LangChain ``Embeddings``."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore

from langchain_nudge._pairs import Corpus, QuestionPairsInput, content_key, normalize_pairs, resolve_pairs
from langchain_nudge._state import FittedState, NudgeEmbeddingsReport, known_dimension, load_state, save_state
from langchain_nudge.vectorstores._core import core_store, fit_in_store
from langchain_nudge.vectorstores.adapters import get_adapter, read_source
from nudge_rag import NotFittedError, NudgeM, NudgeN
from nudge_rag.finetune import DEFAULT_VAL_FRACTION, canonical_variant, finetune_pairs, make_model

__all__ = ["NudgeEmbeddings"]

logger = logging.getLogger(__name__)

_AMBIGUOUS_WARNING = (
    "{n} text(s) match several fitted documents that share this content but have different nudged vectors; "
    "they get the base model's vector. Pass ids=... (or use nudge_vectorstore / build_vectorstore, which know "
    "the ids) to get each document's own nudged vector."
)


def _as_list(vector: Any) -> list[float]:
    return [float(x) for x in vector]


class NudgeEmbeddings(Embeddings):
    """Embeddings wrapper that returns NUDGE-fine-tuned vectors for the documents it was fitted on.

    NUDGE (arXiv 2409.02343) moves the stored *document* vectors towards the questions they answer, with a step
    size ``gamma`` chosen on validation questions; the embedding model itself never changes. This wrapper, shaped
    like ``CacheBackedEmbeddings``, sits in front of the base model:

    - ``embed_query`` / ``aembed_query`` always delegate to the base model;
    - ``embed_documents`` / ``aembed_documents`` return the nudged vector of each fitted document (matched by
      document id when ``ids`` are given, else by exact content) and the base model's vector for anything else.

    Matching: :meth:`nudge_vectorstore` and :meth:`build_vectorstore` know every document's id and match by id
    only (a fitted text re-added under a new id gets the base vector). Vector stores call ``embed_documents``
    with texts only (``add_documents``), so there the exact content decides: a fitted text added again under
    another id gets the nudged vector, and a text shared by fitted documents with different nudged vectors gets
    the base vector, with a ``UserWarning``.

    Nothing is nudged implicitly (not in ``add_documents``, not in ``embed_documents``): only :meth:`fit` (or
    :meth:`fit_vectorstore`) computes nudged vectors.

    Args:
        underlying_embeddings: the base embedding model (the one that built the stored vectors).
        variant: ``"nudge-n"`` (default; unit-norm vectors, valid under cosine, inner product and L2) or
            ``"nudge-m"`` (unnormalised vectors, valid only under inner product).
        gamma: fixed step size; ``None`` (default) chooses it on validation questions.
        solver_params: extra keyword arguments for ``nudge_rag.NudgeN`` / ``NudgeM`` (e.g. ``metric="ndcg@10"``).

    Example:
        .. code-block:: python

            from langchain_core.vectorstores import InMemoryVectorStore
            from langchain_nudge import NudgeEmbeddings

            nudged = NudgeEmbeddings(base_embeddings)
            store = nudged.fit_vectorstore(store, [("Which gene regulates X?", "doc-17"), ...])
            retriever = store.as_retriever()      # the one-line swap-in
            nudged.save("nudge.npz")              # reload with NudgeEmbeddings.load("nudge.npz", base_embeddings)
    """

    def __init__(
        self,
        underlying_embeddings: Embeddings,
        *,
        variant: str = "nudge-n",
        gamma: float | None = None,
        solver_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(underlying_embeddings, Embeddings):
            raise TypeError(
                f"underlying_embeddings must be a LangChain Embeddings, got {type(underlying_embeddings).__name__}"
            )
        self.underlying_embeddings = underlying_embeddings
        self.variant = canonical_variant(variant)
        self.gamma = gamma
        self.solver_params = dict(solver_params or {})
        make_model(self.variant, gamma=gamma, **self.solver_params)  # validate the parameters now, not at fit time
        self._state: FittedState | None = None
        self.model_: NudgeN | NudgeM | None = None

    # ------------------------------------------------------------------------------------------ properties
    @property
    def is_fitted(self) -> bool:
        """Whether nudged vectors are available (after :meth:`fit` or :meth:`load`)."""
        return self._state is not None

    def _fitted(self) -> FittedState:
        if self._state is None:
            raise NotFittedError("this NudgeEmbeddings is not fitted yet; call fit(...) or NudgeEmbeddings.load(...)")
        return self._state

    @property
    def similarity_(self) -> str:
        """``"cosine"`` (NUDGE-N) or ``"inner_product"`` (NUDGE-M): how the nudged vectors must be searched."""
        return self._fitted().similarity

    @property
    def gamma_(self) -> float:
        """The step size used (chosen on validation questions unless fixed)."""
        return float(self._fitted().report["gamma"])

    @property
    def report_(self) -> dict[str, Any]:
        """What the last fit did: counts, gamma and the validation metric before/after."""
        return dict(self._fitted().report)

    @property
    def embeddings_(self) -> np.ndarray:
        """(N, d) read-only float32 nudged vectors of the fitted documents."""
        return self._fitted().embeddings

    @property
    def document_ids_(self) -> list[str | None]:
        """Ids of the fitted documents, row-aligned with :attr:`embeddings_` (``None``: matched by content)."""
        return list(self._fitted().ids)

    @property
    def validation_curve_(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(gammas, validation scores)`` of the last fit, or ``None`` without validation."""
        state = self._fitted()
        if state.gammas is None or state.val_scores is None:
            return None
        return state.gammas, state.val_scores

    def __repr__(self) -> str:
        fitted = f", fitted on {self._state.embeddings.shape[0]} documents" if self._state is not None else ""
        return f"{type(self).__name__}({self.underlying_embeddings!r}, variant={self.variant!r}{fitted})"

    # ------------------------------------------------------------------------------------------ Embeddings API
    def _split(
        self, texts: list[str], ids: Sequence[str | None] | None, *, strict: bool = False
    ) -> tuple[FittedState | None, np.ndarray]:
        texts = list(texts)
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(ids)} ids")
        state = self._state
        if state is None:
            return None, np.full(len(texts), -1, dtype=np.int64)
        id_list = None if ids is None else [None if i is None else str(i) for i in ids]
        rows = state.lookup([content_key(t) for t in texts], id_list, strict=strict)
        ambiguous = int((rows == -2).sum())
        if ambiguous:
            warnings.warn(_AMBIGUOUS_WARNING.format(n=ambiguous), UserWarning, stacklevel=3)
        return state, np.maximum(rows, -1)

    def _merge(self, state, rows, texts, base_vectors) -> list[list[float]]:
        out: list[list[float] | None] = [None] * len(texts)
        misses = [i for i, r in enumerate(rows) if r < 0]
        if len(base_vectors) != len(misses):
            raise ValueError(f"the base embeddings returned {len(base_vectors)} vectors for {len(misses)} texts")
        for i, vec in zip(misses, base_vectors):
            out[i] = _as_list(vec)
            if state is not None and len(out[i]) != state.dimension:
                raise ValueError(
                    f"dimension mismatch: the base embeddings return {len(out[i])}-dimensional vectors but the "
                    f"nudged vectors have {state.dimension}; wrap the model the vectors were fitted with"
                )
        for i, r in enumerate(rows):
            if r >= 0:
                out[i] = state.embeddings[r].tolist()
        return out  # type: ignore[return-value]

    def embed_documents(self, texts: list[str], *, ids: Sequence[str | None] | None = None) -> list[list[float]]:
        """Nudged vectors for fitted documents, the base model's vectors for all others.

        Args:
            texts: document texts (``page_content``).
            ids: optional document ids, one per text: a fitted id matches when its content is unchanged (an
                edited document gets the base vector); without an id, or with an unknown one, the exact content
                is matched.

        Returns:
            One list of Python floats per text.
        """
        state, rows = self._split(texts, ids)
        misses = [t for t, r in zip(texts, rows) if r < 0]
        base = self.underlying_embeddings.embed_documents(misses) if misses else []
        return self._merge(state, rows, texts, base)

    async def aembed_documents(self, texts: list[str], *, ids: Sequence[str | None] | None = None) -> list[list[float]]:
        """Async :meth:`embed_documents` (the base model's ``aembed_documents`` for the misses)."""
        state, rows = self._split(texts, ids)
        misses = [t for t, r in zip(texts, rows) if r < 0]
        base = await self.underlying_embeddings.aembed_documents(misses) if misses else []
        return self._merge(state, rows, texts, base)

    def embed_query(self, text: str) -> list[float]:
        """The base model's query vector (queries are never nudged)."""
        return self._checked_query(self.underlying_embeddings.embed_query(text))

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        return self._checked_query(await self.underlying_embeddings.aembed_query(text))

    def _checked_query(self, vector: Any) -> list[float]:
        out = _as_list(vector)
        if self._state is not None and len(out) != self._state.dimension:
            raise ValueError(
                f"dimension mismatch: the base embeddings return {len(out)}-dimensional query vectors but the "
                f"nudged vectors have {self._state.dimension}; wrap the model the vectors were fitted with"
            )
        return out

    # ------------------------------------------------------------------------------------------ fitting
    def _embed_questions(self, questions: list[str], dim: int) -> np.ndarray:
        vecs = [_as_list(self.underlying_embeddings.embed_query(q)) for q in questions]
        dims = {len(v) for v in vecs}
        if len(dims) != 1:
            raise ValueError(f"the base embeddings returned query vectors of different dimensions: {sorted(dims)}")
        got = dims.pop()
        if got != dim:
            raise ValueError(
                f"dimension mismatch: the base embeddings return {got}-dimensional query vectors but the stored "
                f"document vectors have {dim} dimensions; wrap the embedding model that built the store"
            )
        return np.asarray(vecs, dtype=np.float32)

    def fit(
        self,
        source: VectorStore | Sequence[Document],
        questions: QuestionPairsInput,
        *,
        validation: QuestionPairsInput | None = None,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        seed: int = 0,
    ) -> NudgeEmbeddings:
        """Compute nudged vectors for the documents of ``source`` from question-document pairs.

        Args:
            source: a supported vector store (``InMemoryVectorStore``, ``FAISS``; its stored vectors are used as
                they are) or a list of ``Document`` (embedded once with the base model).
            questions: training pairs: ``(question, document)`` or ``(question, document, relevance)`` tuples
                where the document is its id (or a ``Document``, matched by id, else by exact content); a
                mapping ``question -> id or list of ids``; or the :class:`GeneratedQuestions` of
                :func:`generate_questions`. Questions are embedded with the base model's ``embed_query``.
            validation: validation pairs (same forms) used to choose gamma; when ``None`` and gamma is not
                fixed, ``val_fraction`` of the training questions are carved out by the one rule of
                :func:`nudge_rag.finetune.carve_rows` (``floor(val_fraction * n)``, at least 1; seeded by ``seed``).
            val_fraction: share of questions carved out for validation when ``validation`` is ``None`` (0.1).
            seed: seed of that split.

        Returns:
            self. :attr:`report_` tells what happened. On any error nothing changes (a previous fit stays).

        Raises:
            ValueError: empty source or pair set, a pair naming an unknown document, or a dimension mismatch
                between the base model and the stored vectors.
        """
        docs, vectors, kind = read_source(source, self.underlying_embeddings)
        corpus = Corpus.from_documents(docs)
        train = resolve_pairs(normalize_pairs(questions, "questions"), corpus, "questions")
        val = None
        if validation is not None:
            val = resolve_pairs(normalize_pairs(validation, "validation"), corpus, "validation")
        dim = int(vectors.shape[1])
        params = dict(self.solver_params)
        result = finetune_pairs(
            vectors,
            train,
            val,
            row_of={r: r for r in range(len(docs))},
            embed_queries=lambda texts: self._embed_questions(texts, dim),
            variant=self.variant,
            gamma=self.gamma,
            val_fraction=val_fraction,
            seed=seed,
            metric=params.pop("metric", None),
            params=params,
            report_cls=NudgeEmbeddingsReport,
        )
        model, report = result.model, result.report
        report.source = kind
        keys = np.frombuffer(b"".join(corpus.keys), dtype=np.uint8).reshape(len(docs), 32).copy()
        state = FittedState(
            variant=self.variant,
            similarity=model.similarity_,
            ids=tuple(corpus.ids),
            keys=keys,
            embeddings=np.array(model.embeddings_, dtype=np.float32),
            report=report.as_dict(),
            gammas=None if model.val_scores_ is None else np.asarray(model.gammas_),
            val_scores=None if model.val_scores_ is None else np.asarray(model.val_scores_),
        )
        self._state, self.model_ = state, model  # swapped in only once everything succeeded
        logger.info("NUDGE fit: %s", report)
        return self

    # ------------------------------------------------------------------------------------------ vector stores
    def nudge_vectorstore(self, store: VectorStore) -> VectorStore:
        """A copy of ``store`` (same class, ids, texts and metadata) whose fitted documents hold nudged vectors.

        Documents of ``store`` that were not fitted keep their stored vectors. The copy embeds queries (and any
        documents added later) through this wrapper. ``store`` itself is not modified. For NUDGE-M, an
        ``InMemoryVectorStore`` (cosine only) is refused and a FAISS copy uses inner product.
        """
        state = self._fitted()
        adapter = get_adapter(store)
        adapter.check_variant(state.variant, store)
        docs, vectors = adapter.extract(store)
        if docs:
            if vectors.shape[1] != state.dimension:
                raise ValueError(
                    f"dimension mismatch: the store holds {vectors.shape[1]}-dimensional vectors but the nudged "
                    f"vectors have {state.dimension}"
                )
            _, rows = self._split([d.page_content for d in docs], [d.id for d in docs], strict=True)
            hit = rows >= 0
            vectors = vectors.copy()
            vectors[hit] = state.embeddings[rows[hit]]
            logger.info("nudged copy of %s: %d of %d documents nudged", adapter.name, int(hit.sum()), len(docs))
        return adapter.rebuild(store, docs, vectors, self, state.variant)

    def fit_vectorstore(self, store: VectorStore, questions: QuestionPairsInput, **fit_kwargs: Any) -> VectorStore:
        """:meth:`fit` on ``store`` then :meth:`nudge_vectorstore`: the one-line retriever swap-in.

        The store is checked against the variant before anything is computed.
        """
        core = core_store(store)
        if core is not None:
            return self._fit_in_store(store, core, questions, **fit_kwargs)
        get_adapter(store).check_variant(self.variant, store)
        self.fit(store, questions, **fit_kwargs)
        return self.nudge_vectorstore(store)

    def _fit_in_store(self, store, core, questions, *, validation=None, val_fraction=DEFAULT_VAL_FRACTION, seed=0):
        """Database stores (Qdrant, Chroma, Milvus): fit on the store, write only the moved vectors by id, and
        return ``store`` itself (queries keep the base model). ``revert_vectorstore(store)`` undoes it."""
        from nudge_rag.finetune import group_pairs

        def by_id(pairs, name):
            return group_pairs([(q, str(getattr(d, "id", None) or d), r) for q, d, r in normalize_pairs(pairs, name)])

        params = dict(self.solver_params)
        result, _ = fit_in_store(
            core,
            by_id(questions, "questions"),
            None if validation is None else by_id(validation, "validation"),
            embed_queries=lambda texts: self._embed_questions(texts, core.dim),
            variant=self.variant,
            gamma=self.gamma,
            val_fraction=val_fraction,
            seed=seed,
            metric=params.pop("metric", None),
            params=params,
            report_cls=NudgeEmbeddingsReport,
        )
        result.report.source = core.describe()
        self.model_, self.store_report_ = result.model, result.report.as_dict()
        return store

    @staticmethod
    def revert_vectorstore(store: VectorStore) -> int:
        """Restore the original vectors of a database store fine-tuned in place; returns the number restored."""
        core = core_store(store)
        if core is None:
            raise TypeError(f"{type(store).__name__} is not fine-tuned in place (its nudged copy is a new store)")
        return core.revert()

    def build_vectorstore(
        self,
        documents: Sequence[Document],
        vectorstore_cls: type[VectorStore] = InMemoryVectorStore,
        **kwargs: Any,
    ) -> VectorStore:
        """A new ``vectorstore_cls`` holding ``documents``: nudged vectors where fitted, base vectors otherwise.

        Supported classes: ``InMemoryVectorStore`` (NUDGE-N only) and ``FAISS`` (NUDGE-M: inner product is used;
        ``kwargs`` go to the store, e.g. ``distance_strategy``).
        """
        adapter = get_adapter(vectorstore_cls)
        adapter.check_variant(self.variant, None, **kwargs)
        docs = list(documents)
        vectors = np.zeros((0, 0), dtype=np.float32)
        if docs:  # the documents' ids are known here: match by id only
            texts = [d.page_content for d in docs]
            state, rows = self._split(texts, [d.id for d in docs], strict=True)
            misses = [t for t, r in zip(texts, rows) if r < 0]
            base = self.underlying_embeddings.embed_documents(misses) if misses else []
            vectors = np.asarray(self._merge(state, rows, texts, base), dtype=np.float32)
        return adapter.build(vectorstore_cls, docs, vectors, self, self.variant, **kwargs)

    # ------------------------------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted vectors, their ids and content hashes and the fit report to ``path`` (``.npz``).

        The write is atomic (temporary file + rename). Document texts are not stored, only their SHA-256.
        """
        save_state(self._fitted(), path, {"underlying": type(self.underlying_embeddings).__name__})

    @classmethod
    def load(cls, path: str | os.PathLike, underlying_embeddings: Embeddings, **kwargs: Any) -> NudgeEmbeddings:
        """A wrapper around ``underlying_embeddings`` with the vectors saved by :meth:`save`.

        The file is validated (a damaged or foreign file raises ``ValueError`` naming it). When the base model
        tells its vector size without being called (``size``, ``dimensions`` or ``dimension``; a
        sentence-transformers ``client``), a file of another size is refused here; otherwise the first base
        model vector of another size is. The variant comes from the file; ``kwargs`` (``gamma``,
        ``solver_params``) only matter for a later refit.
        """
        state, _ = load_state(path, known_dimension(underlying_embeddings))
        out = cls(underlying_embeddings, variant=state.variant, **kwargs)
        out._state = state
        return out
