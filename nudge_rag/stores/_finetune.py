"""Fine-tune the vectors where they live: :func:`finetune_store` fits NUDGE on a store and writes the patch.

The fit reads only the vectors that the pairs name and one competitor search per validation query
(:class:`~nudge_rag.stores.StoreCorpus`); the grouping, carving and report are :mod:`nudge_rag.finetune`'s.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..finetune import (
    DEFAULT_VAL_FRACTION,
    FinetuneReport,
    FinetuneResult,
    Questions,
    canonical_variant,
    finetune_pairs,
)
from ..patch import Patch
from ._base import BaseStore, StoreError, VectorStore
from ._corpus import StoreCorpus

__all__ = [
    "StoreFinetuneReport",
    "StoreFit",
    "finetune_store",
    "fit_store",
    "insert_store",
    "check_variant_fits_store",
    "check_unit_norm",
    "by_document",
    "UNIT_TOL",
]

#: Relative deviation from unit norm tolerated in stores that rank by inner product or L2.
UNIT_TOL = 1e-3


@dataclass
class StoreFinetuneReport(FinetuneReport):
    """A :class:`~nudge_rag.finetune.FinetuneReport` with what the store run read, searched and wrote.

    Attributes:
        store: the store (URI, redacted, or a description).
        store_similarity: how the store ranks (``cosine``, ``inner_product``, ``l2``).
        exact_search: whether competitor search was exact (then the fit equals the in-memory fit).
        search_strategy: how competitors were searched: ``"one streamed scan"``, ``"per query"``, ``"ANN index"``.
        vectors_read: vectors fetched by id (named by pairs, plus search candidates re-scored exactly).
        search: competitor-search counters (queries sent, calls, largest k asked).
        written: rows whose vectors were overwritten (0 for a dry run).
        written_ids_sample: up to 10 of them.
        skipped_changed: moved rows not written because another client changed them after the fit read them.
        skipped_missing: moved rows not written because they were deleted after the fit read them.
        skipped_ids_sample: up to 10 skipped ids.
        generation: the ledger generation of the write (0: nothing written).
        revert: how to restore the original vectors.
    """

    store: str = ""
    store_similarity: str = ""
    exact_search: bool = True
    search_strategy: str = ""
    vectors_read: int = 0
    search: dict[str, int] = field(default_factory=dict)
    written: int = 0
    written_ids_sample: list[str] = field(default_factory=list)
    skipped_changed: int = 0
    skipped_missing: int = 0
    skipped_ids_sample: list[str] = field(default_factory=list)
    generation: int = 0
    revert: str = ""

    def record_write(self, result: Any) -> None:
        """Copy a :class:`~nudge_rag.stores.WriteResult` into the report."""
        self.written = len(result.written)
        self.written_ids_sample = list(result.written[:10])
        self.skipped_changed = len(result.changed)
        self.skipped_missing = len(result.missing)
        self.skipped_ids_sample = list((result.changed + result.missing)[:10])
        self.generation = int(result.generation)

    def record_insert(
        self,
        model: Any,
        train: Questions | None,
        val: Questions | None,
        written: Sequence[str],
        added: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Account for one :func:`insert_store`: refresh the fitted fields from the updated ``model``, add the new
        questions and pairs, and count the rows written (``written``: the ids it wrote; ``added``: the ids of the
        new documents, each counted once whether moved or not). Returns that insert's own counts (questions,
        validation scores, ``n_written``)."""
        entry = {
            "n_train_questions": 0 if train is None else len(train),
            "n_val_questions": 0 if val is None else len(val),
            "val_score": model.val_score_,
            "val_base_score": model.val_base_score_,
            "n_written": len(set(written) | set(added)),
        }
        self.refresh(model)
        self.n_train_questions += entry["n_train_questions"]
        self.n_train_pairs += 0 if train is None else train.n_pairs
        self.n_val_questions += entry["n_val_questions"]
        self.written += entry["n_written"]
        return entry


def check_variant_fits_store(variant: str, store: VectorStore) -> None:
    """Refuse NUDGE-M unless ``store`` scores by inner product (its vectors are not unit-norm: a cosine store
    would mis-score or renormalise them, an L2 store would mis-rank them)."""
    if canonical_variant(variant) == "nudge-m" and store.similarity != "inner_product":
        raise StoreError(
            f"NUDGE-M output is not unit-norm and must be searched by inner product, but this store ranks by "
            f"{store.similarity}; use nudge-n, or a collection/index created with inner-product (dot) distance"
        )


def check_unit_norm(store: VectorStore, ids: list[str], vectors: np.ndarray) -> None:
    """Refuse a non-cosine ``store`` whose stored ``vectors`` ((n, d), rows of ``ids``) are not unit-norm.

    Inner product or L2 ranks like cosine only on unit vectors, so a NUDGE fit on such a store would not be exact
    (typically: an earlier NUDGE-M write that was not reverted). Raises :class:`StoreError` naming the first one.
    """
    if store.similarity == "cosine" or len(ids) == 0:
        return
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1) > UNIT_TOL)
    if bad.size:
        raise StoreError(
            f"this store ranks by {store.similarity} but {bad.size} of the vectors read are not unit-norm "
            f"(first: id {ids[int(bad[0])]!r}, norm {norms[bad[0]]:.4g}), so its search is not cosine and a NUDGE "
            "fit on it would not be exact; revert an earlier NUDGE-M write, or store unit vectors"
        )


@dataclass
class StoreFit:
    """What :func:`fit_store` returns: the fit, the corpus it read (``corpus.ids``: the store id of each solver
    row) and the seconds spent fetching the named vectors before the fit."""

    result: FinetuneResult
    corpus: StoreCorpus
    fetch_seconds: float
    #: what the last :meth:`write` did (rows written, rows skipped because they changed or vanished since read)
    write_result: Any = None

    @property
    def patch(self) -> Patch:
        """The moved rows, with their store ids (what a write sends)."""
        model = self.result.model
        assert model is not None  # a fit, not the baseline
        return model.patch_.with_ids(self.corpus.ids)

    @property
    def expected(self) -> np.ndarray:
        """(n, d) float32: the moved rows' vectors exactly as the fit read them (what a write compares against)."""
        model = self.result.model
        assert model is not None
        return self.corpus.stored(model.patch_.rows)

    def write(self, store: VectorStore) -> list[str]:
        """Write the patch into ``store`` by id, compare-and-set against the vectors the fit read (rows changed or
        deleted since are skipped: see :attr:`write_result`); a failed write is rolled back. Returns the ids
        written and records the seconds in the report as ``seconds["store_write"]``."""
        patch = self.patch
        ids = list(patch.ids or ())
        t = time.perf_counter()
        written: list[str] = []
        if ids:
            self.write_result = store.write(ids, patch.new, expected=self.expected)
            written = list(getattr(self.write_result, "written", ids))
        self.result.report.seconds["store_write"] = time.perf_counter() - t
        return written


def fit_store(
    store: VectorStore,
    train: Questions,
    val: Questions | None = None,
    *,
    embed_queries: Callable[[list[str]], np.ndarray] | Mapping[str, np.ndarray],
    exact: bool = True,
    scan: bool | None = None,
    show_progress: bool = False,
    doc_field: str | None = None,
    **finetune_args: Any,
) -> StoreFit:
    """Fit NUDGE on the vectors in ``store`` without writing: the one fit path of the CLI and both adapters.

    Reads every vector the pairs name (their answers are the store's ids; an unknown id raises
    :class:`StoreError` naming it), refuses non-unit vectors in a non-cosine store (:func:`check_unit_norm`), then
    runs :func:`nudge_rag.finetune.finetune_pairs` (``finetune_args``: variant, gamma, metric, val_fraction, seed,
    params, report_cls, ...) over a :class:`StoreCorpus` (``exact``/``scan``: its competitor search).
    ``doc_field``: the pairs name *documents*, whose chunks carry their id in this metadata field
    (:meth:`BaseStore.chunks_of <nudge_rag.stores.BaseStore.chunks_of>`, resolved now: :func:`by_document`).
    """
    if "variant" in finetune_args:
        check_variant_fits_store(str(finetune_args["variant"]), store)
    if doc_field is not None:
        train, val = by_document(store, doc_field, train), None if val is None else by_document(store, doc_field, val)
    t0 = time.perf_counter()
    named = sorted({str(d) for q in (train, val) if q is not None for d in q.documents()})
    corpus = StoreCorpus(store, named, exact=exact, scan=scan, show_progress=show_progress)
    try:
        corpus.fetch(np.arange(len(named)))  # every named id must exist; read once, kept for the fit
    except StoreError as exc:
        raise StoreError(
            f"the pairs name documents the store does not hold: {exc}. Pairs must name the store's ids (the ids "
            "given when the documents were added, or the ids the store assigned)"
        ) from None
    if store.similarity != "cosine":  # the raw stored vectors (corpus.fetch returns them unit-normalised)
        check_unit_norm(store, named, corpus.stored(np.arange(len(named))))
    fetch_s = time.perf_counter() - t0
    corpus.stats["fetch_seconds"] = 0.0  # from here on: what the fit itself reads
    row_of: dict[Hashable, int] = dict(zip(named, range(len(named))))
    result = finetune_pairs(
        corpus, train, val, row_of=row_of, embed_queries=_as_embedder(embed_queries), **finetune_args
    )
    if store.similarity != "cosine":  # the competitors the fit re-scored must be unit too, or the store ranks
        read = corpus.read_rows()  # them otherwise than the fit assumed (its report would not describe the store)
        check_unit_norm(store, corpus.ids_of(read), corpus.stored(read))
    return StoreFit(result, corpus, fetch_s)


def by_document(store: VectorStore, doc_field: str, questions: Questions) -> Questions:
    """``questions`` with every answer naming a document replaced by its current chunks in ``store`` (read from
    the metadata field ``doc_field``); answers naming no document are kept as they are (chunk ids)."""
    chunks_of = getattr(store, "chunks_of", None)
    if chunks_of is None:
        raise NotImplementedError(f"{type(store).__name__} cannot map document ids to chunks (doc_field)")
    docs = sorted({str(d) for d in questions.documents()})
    found: dict[str, list[str]] = chunks_of(doc_field, docs)
    mapping: dict[Hashable, list[str]] = {d: found[str(d)] for d in questions.documents() if str(d) in found}
    return questions.by_document(mapping)


def finetune_store(
    store: VectorStore,
    train: Questions,
    val: Questions | None = None,
    *,
    embed_queries: Callable[[list[str]], np.ndarray] | Mapping[str, np.ndarray],
    variant: str = "nudge-n",
    gamma: float | None = None,
    metric: str | None = None,
    exact: bool = True,
    scan: bool | None = None,
    write: bool = True,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    show_progress: bool = False,
    store_name: str | None = None,
    revert_hint: str | None = None,
    doc_field: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[StoreFinetuneReport, Any]:
    """Fit NUDGE on the vectors in ``store`` and write the moved ones back (only those).

    Args:
        store: a :class:`~nudge_rag.stores.VectorStore`.
        train, val: grouped pairs (:func:`nudge_rag.finetune.group_pairs`) whose answers are the store's ids;
            without ``val`` (and gamma not fixed) validation is carved from ``train`` by the library's rule.
        embed_queries: question texts -> (n, d) base-model query vectors, or a mapping text -> vector.
        variant: ``"nudge-n"`` (any store) or ``"nudge-m"`` (inner-product stores only).
        exact: exact competitor search (default: gamma and vectors equal the in-memory fit) or the store's ANN.
        scan: exact competitor search as one streamed pass over the store (True), the store's own exact search
            per query (False), or the faster of the two for this store (None, default; see :class:`StoreCorpus`).
        write: False for a dry run (fit and report only).
        doc_field: pairs name documents whose chunks carry their id in this metadata field (:func:`by_document`).
        params: further solver options (``nudge_rag.NudgeN`` / ``NudgeM`` arguments, e.g. ``{"batch_size": 64}``);
            a ``"metric"`` entry is taken as ``metric`` (the argument wins when both are given).
        store_name, revert_hint: how the report names the store and says how to revert a write.

    Returns:
        ``(report, model)``: a :class:`StoreFinetuneReport` and the fitted estimator (``model.patch_`` holds
        the moved rows; ``model.corpus_.ids`` the store id of each row, so ``model.patch_.with_ids(...)`` is what
        was written).
    """
    if params is not None and "metric" in params:
        params = dict(params)
        metric = metric if metric is not None else params.pop("metric")
        params.pop("metric", None)
    lock = getattr(store, "locked", None)
    with lock() if write and lock is not None else contextlib.nullcontext():
        return _finetune_store_locked(
            store,
            train,
            val,
            embed_queries=embed_queries,
            variant=variant,
            gamma=gamma,
            metric=metric,
            exact=exact,
            scan=scan,
            write=write,
            val_fraction=val_fraction,
            seed=seed,
            show_progress=show_progress,
            store_name=store_name,
            revert_hint=revert_hint,
            doc_field=doc_field,
            params=params,
        )


def _finetune_store_locked(
    store: VectorStore,
    train: Questions,
    val: Questions | None,
    *,
    embed_queries: Callable[[list[str]], np.ndarray] | Mapping[str, np.ndarray],
    variant: str,
    gamma: float | None,
    metric: str | None,
    exact: bool,
    scan: bool | None,
    write: bool,
    val_fraction: float,
    seed: int,
    show_progress: bool,
    store_name: str | None,
    revert_hint: str | None,
    doc_field: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[StoreFinetuneReport, Any]:
    t1 = time.perf_counter()
    fit = fit_store(
        store,
        train,
        val,
        embed_queries=embed_queries,
        exact=exact,
        scan=scan,
        show_progress=show_progress,
        doc_field=doc_field,
        variant=variant,
        gamma=gamma,
        metric=metric,
        val_fraction=val_fraction,
        seed=seed,
        **({} if params is None else {"params": dict(params)}),
    )
    result, corpus, fetch_s = fit.result, fit.corpus, fit.fetch_seconds
    fit_s = time.perf_counter() - t1 - fetch_s
    model = result.model
    patch = fit.patch
    t2 = time.perf_counter()
    if write and len(patch):
        if hasattr(store, "show_progress"):
            store.show_progress = show_progress
        fit.write(store)
    write_s = time.perf_counter() - t2
    base = result.report
    report = StoreFinetuneReport(**{k: v for k, v in base.to_dict().items()})
    fit_fetch, fit_search = corpus.stats["fetch_seconds"], corpus.stats["search_seconds"]
    questions_s = sum(float(report.seconds.get(k, 0.0)) for k in ("load_model", "embed_questions"))
    report.seconds.update(
        fetch=round(fetch_s + fit_fetch, 4),
        search=round(fit_search, 4),
        solve=round(max(0.0, fit_s - fit_fetch - fit_search - questions_s), 4),
        fit=round(fit_s, 4),
        write=round(write_s, 4),
    )
    report.store = store_name or getattr(store, "describe", lambda: type(store).__name__)()
    report.store_similarity = store.similarity
    report.exact_search = bool(exact)
    report.search_strategy = "ANN index" if not exact else ("one streamed scan" if corpus.scan else "per query")
    report.vectors_read = int(corpus.stats["fetched"])
    report.search = {
        k: int(v) for k, v in corpus.stats.items() if k not in ("fetched", "fetch_seconds", "search_seconds")
    }
    if fit.write_result is not None:
        report.record_write(fit.write_result)
    report.revert = (revert_hint or "store.revert()") if report.written else "nothing written"
    return report, model


class _StoreWithAdded(StoreCorpus):
    """A corpus over a store the new documents were already added to: ``append`` has nothing to do."""

    def append(self, new_embeddings: Any) -> StoreCorpus:
        return self


def insert_store(
    store: BaseStore,
    model: Any,
    row_ids: Sequence[str],
    train: Questions | None = None,
    val: Questions | None = None,
    *,
    train_vectors: np.ndarray | None = None,
    val_vectors: np.ndarray | None = None,
    added: np.ndarray | None = None,
) -> tuple[Any, StoreCorpus, list[str]]:
    """Insert new documents and/or pairs into a model fitted on ``store`` (gamma fixed, :meth:`NudgeN.insert
    <nudge_rag.NudgeN.insert>`), then write the rows whose vector changed, ledgered (kind ``"insert"``).

    Args:
        store: the store the model was fitted on; the new documents are already in it.
        model: the fitted model (left unchanged: a copy is updated).
        row_ids: the store id of each of the model's rows (``model.corpus_.ids`` after :func:`finetune_store`).
        train, val: new pairs naming store ids (old rows or new documents); ``train_vectors`` / ``val_vectors``:
            their (n, d) float32 query vectors.
        added: (m, d) vectors of the new documents, in the order the store appends them after ``row_ids``.

    Returns:
        ``(model, corpus, written ids)``: the updated copy, the corpus it reads (``corpus.ids``: the store id of
        each row) and the ids written (rows moved now, and rows moved before but not now, restored).
    """
    corpus = _StoreWithAdded(store, list(row_ids))
    named = sorted({str(d) for qs in (train, val) if qs is not None for d in qs.documents()})
    row_of: dict[Hashable, int] = dict(zip(named, corpus.rows_of(named).tolist()))
    previous = getattr(model, "corpus_", None)  # None once reloaded from a file: the store is never copied
    new = copy.deepcopy(model, {} if previous is None else {id(previous): corpus})
    new.corpus_ = corpus
    new.insert(
        added,
        None if train is None else train.query_answers(np.asarray(train_vectors, dtype=np.float32), row_of),
        None if val is None else val.query_answers(np.asarray(val_vectors, dtype=np.float32), row_of),
    )
    before = dict(zip(model.patch_.rows.tolist(), model.patch_.new))
    after = dict(zip(new.patch_.rows.tolist(), new.patch_.new))
    rows = [r for r, v in after.items() if r not in before or not np.array_equal(before[r], v)]
    vecs = [after[r] for r in rows]
    olds = dict(zip(model.patch_.rows.tolist(), model.patch_.old))
    dropped = [r for r in before if r not in after]  # moved before, not now (e.g. gamma 0): their originals
    rows, vecs = rows + dropped, vecs + [olds[r] for r in dropped]
    ids = corpus.ids_of(np.asarray(rows, dtype=np.int64)) if rows else []
    if rows:
        store.write(list(ids), np.stack(vecs), kind="insert")
    return new, corpus, list(ids)


def _as_embedder(
    embed: Callable[[list[str]], np.ndarray] | Mapping[str, np.ndarray],
) -> Callable[[list[str]], np.ndarray]:
    if callable(embed):
        return embed
    if not isinstance(embed, Mapping):
        raise TypeError(f"embed_queries must be a callable or a mapping text -> vector, got {type(embed).__name__}")

    def lookup(texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in embed]
        if missing:
            raise ValueError(f"no query vector for {len(missing)} question(s) (first: {missing[0]!r})")
        return np.stack([np.asarray(embed[t], dtype=np.float32) for t in texts])

    return lookup
