"""``NudgeEmbeddings``: serve NUDGE-fine-tuned document vectors in front of any LangChain ``Embeddings``."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore

from langchain_nudge._pairs import (
    Corpus,
    QuestionPairsInput,
    content_key,
    document_pairs,
    normalize_pairs,
    resolve_pairs,
    rows_by_document,
    to_chunks,
)
from langchain_nudge._state import (
    FittedState,
    as_float_list,
    known_dimension,
    load_state,
    match_rows,
    merge_vectors,
    save_state,
)
from langchain_nudge.vectorstores._core import (
    bind_embeddings,
    core_store,
    documents_by_id,
    fit_in_place,
    reapply_in_place,
    revert_in_place,
    status_in_place,
    unsupported_store,
)
from langchain_nudge.vectorstores.adapters import get_adapter, read_source
from nudge_rag import NotFittedError, NudgeM, NudgeN
from nudge_rag.concurrent import QUERY_BATCH_SIZE
from nudge_rag.concurrent import embed_questions as core_embed_questions
from nudge_rag.finetune import (
    DEFAULT_VAL_FRACTION,
    FinetuneReport,
    Questions,
    canonical_variant,
    check_question_vectors,
    finetune_pairs,
    make_model,
)
from nudge_rag.stores import StoreFinetuneReport

__all__ = ["NudgeEmbeddings", "QUERY_BATCH_SIZE", "queries_embed_like_documents", "embed_questions"]

logger = logging.getLogger(__name__)


def _defined_by(emb: Any, method: str) -> type | None:
    return next((c for c in type(emb).__mro__ if method in vars(c)), None)


def queries_embed_like_documents(emb: Embeddings) -> bool:
    """Whether ``emb.embed_query(q)`` is known to equal ``emb.embed_documents([q])[0]``, so that questions can be
    embedded in batches with ``embed_documents``.

    True only for models whose ``embed_query`` (not overridden by a subclass) is ``embed_documents([q])[0]``:
    langchain-community's ``HuggingFaceEmbeddings`` (sentence-transformers), langchain-huggingface's
    ``HuggingFaceEmbeddings`` without ``query_encode_kwargs`` (no query prompt), and langchain-core's
    ``DeterministicFakeEmbedding``. Any other model (a query instruction, an API with a query endpoint, an unknown
    class) is queried with ``aembed_query``, concurrently.
    """
    owner = _defined_by(emb, "embed_query")
    if owner is None:
        return False
    where = (owner.__module__, owner.__name__)
    if where == ("langchain_community.embeddings.huggingface", "HuggingFaceEmbeddings"):
        return _defined_by(emb, "embed_documents") is owner
    if where[0].startswith("langchain_huggingface") and where[1] == "HuggingFaceEmbeddings":
        query_kwargs = getattr(emb, "query_encode_kwargs", None) or {}
        return _defined_by(emb, "embed_documents") is owner and query_kwargs in ({}, getattr(emb, "encode_kwargs", {}))
    if where == ("langchain_core.embeddings.fake", "DeterministicFakeEmbedding"):
        return True
    return False


def embed_questions(
    emb: Embeddings,
    texts: list[str],
    *,
    show_progress: bool = False,
    batch_size: int = QUERY_BATCH_SIZE,
    dim: int | None = None,
    known: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """(len(texts), d) float32 query vectors of ``texts`` from ``emb`` (:func:`nudge_rag.concurrent.embed_questions`):
    ``embed_documents`` in batches of ``batch_size`` when :func:`queries_embed_like_documents`, else ``aembed_query``
    run concurrently, ``batch_size`` at a time; texts in ``known`` are not embedded; ``ValueError`` when a vector's
    dimension is not ``dim``. A tqdm bar counts the questions when ``show_progress``."""
    batch = emb.embed_documents if queries_embed_like_documents(emb) else None
    return core_embed_questions(
        list(texts), dim, batch=batch, one_async=emb.aembed_query, known=known, batch_size=batch_size,
        show_progress=show_progress, model="the base embeddings return",
        hint="; wrap the embedding model that built the store",
    )  # fmt: skip


def _question_vector_map(question_vectors: Mapping[str, Any] | None) -> dict[str, list[float]]:
    return {t: v.tolist() for t, v in check_question_vectors(question_vectors).items()}


def _dispatch(name: str, data: dict[str, Any]) -> None:
    """A LangChain custom event (``on_custom_event`` of the run's callback handlers); nothing outside a run."""
    from langchain_core.callbacks import dispatch_custom_event

    try:
        dispatch_custom_event(name, data)
    except RuntimeError:  # called outside a run (no parent run id): nobody listens
        pass


def _end_event(report: FinetuneReport, n_written: int) -> dict[str, Any]:
    return {
        "gamma": report.gamma,
        "val_metrics_before": dict(report.val_metrics_before),
        "val_metrics_after": dict(report.val_metrics_after),
        "n_written": int(n_written),
        "n_train_questions": report.n_train_questions,
        "n_val_questions": report.n_val_questions,
        "seconds": dict(report.seconds),
    }


def _resolve(
    pairs: QuestionPairsInput, name: str, docs: list[Document], corpus: Corpus, doc_field: str | None
) -> Questions:
    """Pairs grouped by question, answers as rows of ``docs``: by document id / content, or with ``doc_field`` by
    the document id its chunks carry in ``metadata[doc_field]`` (every chunk of it, read now)."""
    normalized = normalize_pairs(pairs, name)
    if doc_field is None:
        return resolve_pairs(normalized, corpus, name)
    return to_chunks(document_pairs(normalized, doc_field, name), rows_by_document(docs, doc_field), doc_field, name)


def _report_from_dict(data: Mapping[str, Any]) -> FinetuneReport:
    """The report saved in a state file: a store fit's (it has ``written``) or an in-memory fit's."""
    return (StoreFinetuneReport if "written" in data else FinetuneReport).from_dict(data)


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

    Nothing is nudged implicitly (not in ``add_documents``, not in ``embed_documents``): only :meth:`fit` and
    :meth:`fit_vectorstore` (which writes into the store itself, by id) compute nudged vectors.

    Args:
        underlying_embeddings: the base embedding model (the one that built the stored vectors).
        variant: ``"nudge-n"`` (default; unit-norm vectors, valid under cosine, inner product and L2) or
            ``"nudge-m"`` (unnormalised vectors, valid only under inner product).
        gamma: fixed step size; ``None`` (default) chooses it on validation questions.
        solver_params: extra keyword arguments for ``nudge_rag.NudgeN`` / ``NudgeM`` (e.g. ``metric="ndcg@10"``).
        show_progress: a tqdm bar while the fit embeds its questions (silent by default).

    Question embedding: a fit embeds its questions with the base model's query method, in batches of
    :data:`QUERY_BATCH_SIZE`: through ``embed_documents`` only when the wrapper knows the model embeds queries and
    documents identically (:func:`queries_embed_like_documents`: sentence-transformers ``HuggingFaceEmbeddings``
    without a query prompt), else ``aembed_query`` run concurrently. ``question_vectors=`` (on :meth:`fit` and
    :meth:`fit_vectorstore`) skips the model for questions whose vectors are already known.

    Callbacks: inside a LangChain run (e.g. a ``RunnableLambda`` invoked with ``callbacks=[handler]``), a fit
    dispatches the custom events ``nudge_fit_start`` and ``nudge_fit_end`` (gamma, ``val_metrics_before`` ->
    ``val_metrics_after``, ``n_written``, timings) to ``on_custom_event``; outside a run it dispatches nothing.

    Example:
        .. code-block:: python

            from langchain_core.vectorstores import InMemoryVectorStore
            from langchain_nudge import NudgeEmbeddings

            nudged = NudgeEmbeddings(base_embeddings)
            nudged.fit_vectorstore(store, [("Which gene regulates X?", "doc-17"), ...])  # in place, by id
            retriever = store.as_retriever()      # the same store, nudged document vectors
            NudgeEmbeddings.revert_vectorstore(store)  # the original vectors back
    """

    def __init__(
        self,
        underlying_embeddings: Embeddings,
        *,
        variant: str = "nudge-n",
        gamma: float | None = None,
        solver_params: dict[str, Any] | None = None,
        show_progress: bool = False,
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
        self.show_progress = show_progress
        make_model(self.variant, gamma=gamma, **self.solver_params)  # validate the parameters now, not at fit time
        self._state: FittedState | None = None
        self._report: FinetuneReport | None = None  # of the last fit, in the lookup table or in a store
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
        """The step size used by the last fit (chosen on validation questions unless fixed)."""
        return float(self.report_.gamma or 0.0)

    @property
    def report_(self) -> FinetuneReport:
        """What the last fit did, as the core report object (attributes, ``to_dict()``, a few-line ``str``): a
        :class:`nudge_rag.finetune.FinetuneReport` after :meth:`fit`, a :class:`nudge_rag.stores.StoreFinetuneReport`
        (plus the store, rows written and skipped) after :meth:`fit_vectorstore`."""
        if self._report is None:
            self._fitted()  # the not-fitted error
            raise NotFittedError("no fit report: this NudgeEmbeddings was not fitted in this process")
        return self._report

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
    def _embed(self, texts: list[str], ids: Sequence[str | None] | None, *, strict: bool = False) -> list[list[float]]:
        rows = match_rows(self._state, texts, ids, strict=strict)
        misses = [t for t, r in zip(texts, rows) if r < 0]
        return merge_vectors(self._state, rows, self.underlying_embeddings.embed_documents(misses) if misses else [])

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
        return self._embed(texts, ids)

    async def aembed_documents(self, texts: list[str], *, ids: Sequence[str | None] | None = None) -> list[list[float]]:
        """Async :meth:`embed_documents` (the base model's ``aembed_documents`` for the misses)."""
        rows = match_rows(self._state, texts, ids)
        misses = [t for t, r in zip(texts, rows) if r < 0]
        base = await self.underlying_embeddings.aembed_documents(misses) if misses else []
        return merge_vectors(self._state, rows, base)

    def embed_query(self, text: str) -> list[float]:
        """The base model's query vector (queries are never nudged)."""
        return self._checked_query(self.underlying_embeddings.embed_query(text))

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        return self._checked_query(await self.underlying_embeddings.aembed_query(text))

    def _checked_query(self, vector: Any) -> list[float]:
        out = as_float_list(vector)
        if self._state is not None and len(out) != self._state.dimension:
            raise ValueError(
                f"dimension mismatch: the base embeddings return {len(out)}-dimensional query vectors but the "
                f"nudged vectors have {self._state.dimension}; wrap the model the vectors were fitted with"
            )
        return out

    # ------------------------------------------------------------------------------------------ fitting
    def _embed_questions(self, questions: list[str], dim: int, known: Mapping[str, list[float]]) -> np.ndarray:
        return embed_questions(
            self.underlying_embeddings, questions, show_progress=self.show_progress, dim=dim, known=known
        )

    def _solver_args(
        self, dim: int, val_fraction: float, seed: int, question_vectors: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The keyword arguments of :func:`nudge_rag.finetune.finetune_pairs` every fit path passes."""
        params = dict(self.solver_params)
        known = _question_vector_map(question_vectors)
        embed: Callable[[list[str]], np.ndarray] = lambda texts: self._embed_questions(texts, dim, known)  # noqa: E731
        return dict(
            embed_queries=embed,
            variant=self.variant,
            gamma=self.gamma,
            val_fraction=val_fraction,
            seed=seed,
            metric=params.pop("metric", None),
            params=params,
        )

    def fit(
        self,
        source: VectorStore | Sequence[Document],
        questions: QuestionPairsInput,
        *,
        validation: QuestionPairsInput | None = None,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        seed: int = 0,
        question_vectors: Mapping[str, Sequence[float]] | None = None,
        doc_field: str | None = None,
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
            question_vectors: precomputed query vectors of the questions, ``{question text: vector}`` (e.g.
                ``dict(zip(texts, array))``) from the same base model; those questions are not embedded again.
            doc_field: the pairs name *documents* split into chunks, each chunk carrying its document's id in
                ``metadata[doc_field]`` (e.g. ``"source"``): a pair stands for every chunk of its document, read
                now, so re-chunked documents keep their pairs. A document without a chunk (deleted) is skipped
                with a ``UserWarning``; questions left without an answer count in ``n_dropped_questions``.

        Returns:
            self. :attr:`report_` tells what happened. On any error nothing changes (a previous fit stays).

        Raises:
            ValueError: empty source or pair set, a pair naming an unknown document, or a dimension mismatch
                between the base model and the stored vectors.
        """
        _dispatch("nudge_fit_start", {"variant": self.variant, "target": "lookup table"})
        docs, vectors = read_source(source, self.underlying_embeddings)
        corpus = Corpus.from_documents(docs)
        train = _resolve(questions, "questions", docs, corpus, doc_field)
        val = None if validation is None else _resolve(validation, "validation", docs, corpus, doc_field)
        args = self._solver_args(int(vectors.shape[1]), val_fraction, seed, question_vectors)
        result = finetune_pairs(vectors, train, val, row_of={r: r for r in range(len(docs))}, **args)
        model, report = result.model, result.report
        self._adopt(model, report, corpus.ids, corpus.keys, model.embeddings_)
        logger.info("NUDGE fit: %s", report)
        _dispatch("nudge_fit_end", _end_event(report, 0))
        return self

    def _adopt(self, model: Any, report: FinetuneReport, ids: Sequence[Any], keys: list[bytes], vectors: Any) -> None:
        """Swap in a new lookup table (only once a fit has fully succeeded): ``vectors`` (N, d) of ``ids``."""
        self._state = FittedState(
            variant=self.variant,
            similarity=model.similarity_,
            ids=tuple(ids),
            keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32).copy(),
            embeddings=np.array(vectors, dtype=np.float32),
            report=report.to_dict(),
            gammas=None if model.val_scores_ is None else np.asarray(model.gammas_),
            val_scores=None if model.val_scores_ is None else np.asarray(model.val_scores_),
        )
        self.model_, self._report = model, report

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
            rows = match_rows(state, [d.page_content for d in docs], [d.id for d in docs], strict=True)
            hit = rows >= 0
            vectors = vectors.copy()
            vectors[hit] = state.embeddings[rows[hit]]
            logger.info("nudged copy of %s: %d of %d documents nudged", adapter.name, int(hit.sum()), len(docs))
        return adapter.rebuild(store, docs, vectors, self, state.variant)

    def fit_vectorstore(
        self,
        store: VectorStore,
        questions: QuestionPairsInput,
        *,
        validation: QuestionPairsInput | None = None,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        seed: int = 0,
        question_vectors: Mapping[str, Sequence[float]] | None = None,
        doc_field: str | None = None,
    ) -> VectorStore:
        """Fit on the vectors ``store`` holds and write the moved ones back into it, by document id.

        In place on every supported store (``PGVector``,
        ``QdrantVectorStore``, ``Chroma``, ``Milvus``, ``FAISS``, ``InMemoryVectorStore``, ``SQLiteVec``, ``DuckDB``,
        ``Typesense``), through :mod:`nudge_rag.stores` (ledger, compare-and-set): pairs name the store's document
        ids; the fit reads only the vectors they name plus one competitor search per validation question; only
        moved documents change; queries keep the base model. NUDGE-M is refused unless the store ranks by inner
        product. :meth:`revert_vectorstore` restores the originals; :attr:`report_` (a
        ``nudge_rag.stores.StoreFinetuneReport``) tells what was done. When the store returns the moved documents
        by id (``get_by_ids``), they become the lookup table (:attr:`embeddings_`, :meth:`save`, then
        ``load(...).nudge_vectorstore(original)`` reproduces the store); otherwise the table is left as it was.
        Any other store raises ``TypeError`` (nothing is copied). Arguments as in :meth:`fit`; with ``doc_field``
        the pairs name documents, resolved at fit time to the store's current chunk ids
        (``nudge_rag.stores.BaseStore.chunks_of``: ``InMemoryVectorStore``, ``Chroma``, ``QdrantVectorStore``; other
        stores raise ``NotImplementedError`` naming the store).

        Returns:
            ``store`` itself, written in place.
        """
        core = core_store(store)
        if core is None:
            raise unsupported_store(store)
        _dispatch("nudge_fit_start", {"variant": self.variant, "target": core.describe()})
        args = self._solver_args(core.dim, val_fraction, seed, question_vectors)
        result, written, vectors = fit_in_place(core, questions, validation, doc_field, **args)
        model, report = result.model, result.report
        moved = documents_by_id(store, written) if written else []
        if moved is not None:  # the moved documents become the lookup table (save, nudge_vectorstore, ...)
            self._adopt(model, report, written, [content_key(d.page_content) for d in moved], vectors)
        self.model_, self._report = model, report
        self._keep_nudges_on_readd(store, written, moved is not None)
        _dispatch("nudge_fit_end", _end_event(report, len(written)))
        return store

    def _keep_nudges_on_readd(self, store: VectorStore, written: list[str], adopted: bool) -> None:
        """Re-ingestion: make this wrapper the store's embedding function, so that re-adding unchanged documents
        (``add_documents(ids=...)``, a nightly re-index) writes their nudged vectors again; else say plainly
        that a re-add drops the nudges."""
        if not written:
            return
        bound = bind_embeddings(store, self.underlying_embeddings, self) if adopted else None
        if bound is not None:
            logger.info("%s.%s is now this NudgeEmbeddings: re-added documents keep their nudge", type(store), bound)
            return
        warnings.warn(
            f"{type(store).__name__}: re-adding the {len(written)} nudged documents (add_documents with the same "
            "ids, a re-index) re-embeds them with the base model and drops their nudge, because "
            + (
                "the store does not return documents by id (no get_by_ids)"
                if not adopted
                else "the store's embedding function is not the base model this wrapper wraps"
            )
            + "; after a re-index run NudgeEmbeddings.reapply_vectorstore(store) (or nudge-rag reapply --store URI)",
            RuntimeWarning,
            stacklevel=3,
        )

    @staticmethod
    def revert_vectorstore(store: VectorStore) -> int:
        """Restore the original vectors of a store written by :meth:`fit_vectorstore`; returns the number restored.

        Database stores keep the originals in a side table/collection; FAISS and InMemoryVectorStore keep them with
        the store object, in this process.
        """
        return revert_in_place(store)

    @staticmethod
    def status_vectorstore(store: VectorStore) -> Any:
        """How a store written by :meth:`fit_vectorstore` stands against the ledger of this library's writes: a
        ``nudge_rag.stores.StoreStatus`` with ``nudged``, ``overwritten`` (changed since, e.g. re-added),
        ``reapplicable``, ``missing`` (deleted since) and the generations."""
        return status_in_place(store)

    @staticmethod
    def reapply_vectorstore(store: VectorStore) -> Any:
        """Write the nudge again on documents a re-index put back to their original vector (documents whose
        content changed are left alone); returns a ``nudge_rag.stores.ReapplyResult``."""
        return reapply_in_place(store)

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
            vectors = np.asarray(self._embed([d.page_content for d in docs], [d.id for d in docs], strict=True))
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
        out._state, out._report = state, _report_from_dict(state.report)
        return out
