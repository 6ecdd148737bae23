"""From question-document pairs to a fitted NUDGE model and its report: the one fine-tuning layer.

Everything the command line and the framework adapters share lives here, once:

- :func:`group_pairs`: ``(question, document id[, relevance])`` pairs -> :class:`Questions` (one entry per
  distinct question text, first-seen order; a document named twice keeps its highest relevance; relevance
  <= 0 is not an answer; questions left without an answer, or with a blank text, are dropped and counted).
- :func:`carve_rows`: **the** validation-carving rule. Of ``n`` questions, ``max(1, floor(fraction * n))``
  (at most ``n - 1``) are validation: the first ones of ``numpy.random.RandomState(seed).permutation(n)``;
  both parts keep their original order. Default fraction :data:`DEFAULT_VAL_FRACTION` (0.1), default seed 0.
  :func:`nudge_rag.data.splits.carve` (the CLI's "official" split without a dev set) uses it too.
- :func:`make_model` / :func:`validation_metric`: variant -> estimator, and which metric chose gamma.
- :func:`finetune_queries` / :func:`finetune_pairs`: fit and build the :class:`FinetuneReport` (a
  JSON-serialisable dataclass; the LlamaIndex and LangChain adapters extend it).
- :func:`validation_notes`: what a reader must know about how gamma was chosen (nothing measured, too few
  validation questions, a win by a couple of questions, why gamma is 0), one line each.

Fits go through :meth:`NudgeN.fit` / :meth:`NudgeM.fit`, so ``docs`` may be an (N, d) array or any
:class:`~nudge_rag.corpus.Corpus`; what moved is ``result.model.patch_``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

import numpy as np

from .corpus import Corpus
from .estimators import NudgeM, NudgeN
from .evaluation import DEFAULT_METRICS, evaluate
from .files import atomic_write_text
from .queries import QueryAnswers

__all__ = [
    "check_question_vectors",
    "insert_questions",
    "DEFAULT_VAL_FRACTION",
    "VARIANTS",
    "VAL_SOURCES",
    "Questions",
    "FinetuneReport",
    "FinetuneResult",
    "canonical_variant",
    "group_pairs",
    "n_validation",
    "carve_rows",
    "make_model",
    "validation_metric",
    "search_similarity",
    "finetune_queries",
    "finetune_pairs",
    "baseline",
    "validation_notes",
    "MIN_VAL_QUESTIONS",
    "MIN_WIN_QUESTIONS",
]

#: Share of the questions carved out for validation when none are given (CLI and both adapters).
DEFAULT_VAL_FRACTION = 0.1
#: The NUDGE variants, by canonical name.
VARIANTS = ("nudge-n", "nudge-m")
#: Where the validation questions came from: given by the caller, carved from the training questions, or
#: none (gamma fixed without validation questions).
VAL_SOURCES = ("given", "carved", "none")

#: Fewer validation questions than this make the choice of gamma noisy: :func:`validation_notes` warns.
MIN_VAL_QUESTIONS = 30
#: A gamma that beats no change by at most this many validation questions may be noise: warned too.
MIN_WIN_QUESTIONS = 2

_ALIASES = {alias: v for v in VARIANTS for alias in (v, v[-1], v.replace("-", ""))}  # "nudge-n", "n", "nudgen"


def canonical_variant(variant: str) -> str:
    """``"nudge-n"`` or ``"nudge-m"`` for any accepted spelling (``"NUDGE_N"``, ``"n"``, ``"nudgem"``, ...)."""
    key = str(variant).strip().lower().replace("_", "-")
    if key not in _ALIASES:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return _ALIASES[key]


# ---------------------------------------------------------------------------------------------- pairs
@dataclass(frozen=True)
class Questions:
    """Distinct questions with the documents that answer them (the grouped, de-duplicated form of pairs).

    Attributes:
        texts: question texts (the grouping key), first-seen order.
        answers: per question, the document references (ids or rows) that answer it, first-seen order.
        relevance: per question, the relevance (> 0) of each answer.
        ids: question ids (given, else ``"q0"``, ``"q1"``, ...).
        n_dropped: questions dropped (blank text, or no answer with relevance > 0).
    """

    texts: tuple[str, ...]
    answers: tuple[tuple[Hashable, ...], ...]
    relevance: tuple[tuple[float, ...], ...]
    ids: tuple[str, ...]
    n_dropped: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_pairs(self) -> int:
        """Number of (question, answer) pairs."""
        return sum(len(a) for a in self.answers)

    def documents(self) -> set[Hashable]:
        """Every document reference named by an answer."""
        return {d for a in self.answers for d in a}

    def unknown(self, known: Mapping[Hashable, Any] | set[Hashable]) -> list[Hashable]:
        """Document references not in ``known``, sorted by their string form."""
        return sorted(self.documents().difference(known), key=str)

    def check_known(
        self,
        known: Mapping[Hashable, Any] | set[Hashable],
        name: str = "the pairs",
        what: str = "document id(s)",
        where: str = "the corpus",
        hint: str = "",
    ) -> None:
        """``ValueError`` "<name>: <n> <what> not in <where>: <first 5><hint>" when an answer is not in ``known``."""
        missing = self.unknown(known)
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            shown = ", ".join(repr(m) for m in missing[:5])
            raise ValueError(f"{name}: {len(missing)} {what} not in {where}: {shown}{more}{hint}")

    def subset(self, rows: Sequence[int] | np.ndarray) -> Questions:
        """The questions at ``rows``, in that order (``n_dropped`` is not carried over)."""
        rows = [int(r) for r in rows]
        return Questions(
            tuple(self.texts[r] for r in rows),
            tuple(self.answers[r] for r in rows),
            tuple(self.relevance[r] for r in rows),
            tuple(self.ids[r] for r in rows),
        )

    def carve(self, fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0) -> tuple[Questions, Questions]:
        """``(train, validation)`` by :func:`carve_rows`; ``train`` keeps ``n_dropped``."""
        rest, val = carve_rows(len(self), fraction, seed)
        train = self.subset(rest)
        return Questions(train.texts, train.answers, train.relevance, train.ids, self.n_dropped), self.subset(val)

    def by_document(self, chunks_of: Mapping[Hashable, Sequence[Hashable]]) -> Questions:
        """These questions with every answer that names a *document* replaced by that document's chunks.

        ``chunks_of`` maps a document id (e.g. a LlamaIndex ``ref_doc_id``, or a store's document metadata
        field) to the ids of its current chunks; it is read at fit time, so edited documents keep their pairs.
        An answer not in ``chunks_of`` is kept as it is (it already names a chunk). Each chunk inherits the
        document's relevance (the highest, when named twice). A document mapped to no chunk (deleted) gives no
        answer; questions left without one are dropped and added to ``n_dropped``.
        """
        texts, answers, relevance, ids = [], [], [], []
        dropped = self.n_dropped
        for text, refs, rels, qid in zip(self.texts, self.answers, self.relevance, self.ids):
            merged: dict[Hashable, float] = {}
            for ref, rel in zip(refs, rels):
                for chunk in chunks_of[ref] if ref in chunks_of else (ref,):
                    merged[chunk] = max(rel, merged.get(chunk, 0.0))
            if not merged:
                dropped += 1
                continue
            texts.append(text)
            answers.append(tuple(merged))
            relevance.append(tuple(merged.values()))
            ids.append(qid)
        return Questions(tuple(texts), tuple(answers), tuple(relevance), tuple(ids), dropped)

    def query_answers(self, vectors: np.ndarray, row_of: Mapping[Hashable, int]) -> QueryAnswers:
        """:class:`QueryAnswers` of these questions: ``vectors`` (len, d) their embeddings, ``row_of`` maps a
        document reference to its corpus row (``ValueError`` naming the references it does not know)."""
        self.check_known(row_of)
        return QueryAnswers.from_lists(
            vectors,
            [[row_of[d] for d in a] for a in self.answers],
            [list(r) for r in self.relevance],
            ids=list(self.ids),
        )


def group_pairs(pairs: Iterable[Sequence[Any]], *, ids: Iterable[str] | None = None) -> Questions:
    """Group ``(question, document[, relevance])`` pairs into :class:`Questions` (see the module docstring).

    ``document`` is a reference (id or row) or a list of them (each with the pair's relevance). ``ids``,
    parallel to ``pairs``, names the questions (the first id of a repeated text wins). Pairs are not mutated;
    a malformed pair raises ``ValueError`` naming its position.
    """
    grouped: dict[str, dict[Hashable, float]] = {}
    qids: dict[str, str] = {}
    blank = 0
    id_iter = None if ids is None else iter(ids)
    for n, pair in enumerate(pairs):
        qid = None if id_iter is None else str(next(id_iter))
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) not in (2, 3):
            raise ValueError(f"pair {n} must be (question, document) or (question, document, relevance), got {pair!r}")
        text, docs = pair[0], pair[1]
        rel = 1.0 if len(pair) == 2 else float(pair[2])
        if not math.isfinite(rel):
            raise ValueError(f"pair {n}: relevance must be finite, got {pair[2]!r}")
        if not isinstance(text, str) or not text.strip():
            blank += 1
            continue
        refs = list(docs) if isinstance(docs, (list, tuple, set)) else ([] if docs is None else [docs])
        answers = grouped.setdefault(text, {})
        qids.setdefault(text, qid if qid is not None else f"q{len(qids)}")
        for ref in refs:
            if rel > 0:
                answers[ref] = max(rel, answers.get(ref, 0.0))
    kept = [t for t, a in grouped.items() if a]
    return Questions(
        tuple(kept),
        tuple(tuple(grouped[t]) for t in kept),
        tuple(tuple(grouped[t].values()) for t in kept),
        tuple(qids[t] for t in kept),
        blank + len(grouped) - len(kept),
    )


# ---------------------------------------------------------------------------------------------- carving
def n_validation(n: int, fraction: float = DEFAULT_VAL_FRACTION) -> int:
    """How many of ``n`` questions :func:`carve_rows` sets aside: ``min(max(1, floor(fraction * n)), n - 1)``."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction!r}")
    if n < 2:
        raise ValueError(
            f"cannot carve a validation split from {n} question(s): need at least 2; pass validation pairs or fix gamma"
        )
    return min(max(1, int(fraction * n)), n - 1)


def carve_rows(n: int, fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(rest, validation)`` sorted int64 positions among ``n`` questions: the validation positions are the
    first :func:`n_validation` of ``numpy.random.RandomState(seed).permutation(n)``."""
    n_val = n_validation(n, fraction)
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.RandomState(seed).permutation(n)[:n_val]] = True
    return np.flatnonzero(~chosen).astype(np.int64), np.flatnonzero(chosen).astype(np.int64)


# ---------------------------------------------------------------------------------------------- models
def make_model(
    variant: str = "nudge-n", *, gamma: float | None = None, metric: str | None = None, **params: Any
) -> NudgeN | NudgeM:
    """An unfitted estimator: :class:`NudgeN` (gamma chosen on ``metric``, default ``recall@1``) or
    :class:`NudgeM` (gamma chosen on hit@1: ``metric`` may only be ``hit@1``). ``params`` go to the constructor."""
    v = canonical_variant(variant)
    cls: type[NudgeN] | type[NudgeM]
    kw: dict[str, Any]
    if v == "nudge-n":
        cls, kw = NudgeN, {"metric": metric or "recall@1"}
    else:
        if metric not in (None, "hit@1", "recall@1"):
            raise ValueError(f"NUDGE-M chooses gamma by validation hit@1; metric {metric!r} applies to nudge-n only")
        cls, kw = NudgeM, {}
    try:
        return cls(gamma=gamma, **kw, **params)
    except TypeError as exc:
        raise TypeError(f"invalid solver_params for {cls.__name__}: {exc}") from None


def validation_metric(model: NudgeN | NudgeM) -> str:
    """The metric gamma is chosen on: ``model.metric`` for NUDGE-N, ``"hit@1"`` for NUDGE-M."""
    return str(model.metric) if isinstance(model, NudgeN) else "hit@1"


def search_similarity(variant: str) -> str:
    """How a variant's output must be searched by :func:`~nudge_rag.evaluate`: cosine (N) / inner product (M)."""
    return "inner_product" if canonical_variant(variant) == "nudge-m" else "cosine"


# ---------------------------------------------------------------------------------------------- report
R = TypeVar("R", bound="FinetuneReport")


@dataclass
class FinetuneReport:
    """What a fine-tuning run did (JSON-serialisable; adapters subclass it with their own fields).

    Attributes:
        variant: ``"nudge-n"``, ``"nudge-m"`` (or ``"none"`` for a no-fine-tuning baseline).
        similarity: how the output must be searched (``"cosine"`` or ``"inner_product"``).
        gamma: the chosen (or fixed) step size; ``gamma_fixed`` whether it was fixed.
        val_metric: the metric gamma was chosen on (see :func:`validation_metric`).
        gammas, val_scores: the validation curve (``val_scores[i]`` at ``gammas[i]``; empty without validation).
        val_score, val_base_score: validation metric at gamma and at gamma = 0.
        val_metrics_before, val_metrics_after: :data:`~nudge_rag.DEFAULT_METRICS` of the validation questions
            before / after (optimistic: they chose gamma); empty for a corpus (non-array) fit.
        test_metrics_before, test_metrics_after: the same on held-out test questions, when given.
        n_documents, dimension, n_moved: corpus size, vector size and documents moved (``model.patch_``).
        n_train_questions, n_train_pairs, n_val_questions, n_dropped_questions: the question data used.
        val_source: one of :data:`VAL_SOURCES`.
        seconds: wall time per step.
    """

    variant: str = "nudge-n"
    similarity: str = "cosine"
    gamma: float | None = None
    gamma_fixed: bool = False
    val_metric: str | None = None
    gammas: list[float] = field(default_factory=list)
    val_scores: list[float] = field(default_factory=list)
    val_score: float | None = None
    val_base_score: float | None = None
    val_metrics_before: dict[str, float] = field(default_factory=dict)
    val_metrics_after: dict[str, float] = field(default_factory=dict)
    test_metrics_before: dict[str, float] | None = None
    test_metrics_after: dict[str, float] | None = None
    n_documents: int = 0
    dimension: int = 0
    n_moved: int = 0
    n_train_questions: int = 0
    n_train_pairs: int = 0
    n_val_questions: int = 0
    n_dropped_questions: int = 0
    val_source: str = "none"
    seconds: dict[str, float] = field(default_factory=dict)

    def refresh(self, model: NudgeN | NudgeM) -> None:
        """Update the fitted-model fields (gamma, curve, scores, sizes) from ``model``, e.g. after ``insert``."""
        self.gamma = float(model.gamma_)
        self.n_documents, self.n_moved = int(model.n_documents_), int(model.n_moved_)
        self.val_score, self.val_base_score = model.val_score_, model.val_base_score_
        if model.val_scores_ is not None:
            self.gammas, self.val_scores = _floats(model.gammas_), _floats(model.val_scores_)

    def __str__(self) -> str:
        """A few lines: variant and gamma, validation before -> after, documents moved, (store) rows written,
        seconds by phase. The validation curve is not printed (it stays in ``gammas`` / ``val_scores``)."""
        gamma = "not fitted" if self.gamma is None else f"{self.gamma:.4g}"
        lines = [
            f"{self.variant}: gamma = {gamma}{' (fixed)' if self.gamma_fixed else ''}; "
            f"{self.n_moved} of {self.n_documents} documents moved"
        ]
        if self.val_score is None or not self.n_val_questions:
            lines.append("validation: no validation measured")
        else:
            lines.append(
                f"validation {self.val_metric} on {self.n_val_questions} questions: "
                f"{100 * (self.val_base_score or 0.0):.1f} -> {100 * self.val_score:.1f}"
            )
        written = getattr(self, "written", None)  # a store fit's report (StoreFinetuneReport)
        if written is not None:
            changed, missing = getattr(self, "skipped_changed", 0), getattr(self, "skipped_missing", 0)
            lines.append(f"rows written: {written}; skipped: {changed} changed, {missing} deleted by another client")
        if self.seconds:
            lines.append("seconds: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in self.seconds.items()))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain Python types)."""
        return asdict(self)

    def to_json(self) -> str:
        """Indented JSON text (refuses NaN/inf)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON to ``path``, atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """A report from :meth:`to_dict` output (unknown keys ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls: type[R], path: str | os.PathLike[str]) -> R:
        """Read a report written by :meth:`save` (``ValueError`` naming the file when it is not one)."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a JSON fine-tuning report ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a JSON fine-tuning report (top level is {type(data).__name__})")
        return cls.from_dict(data)


@dataclass
class FinetuneResult:
    """A fitted model (``None`` for the baseline), its output vectors (arrays only) and its report."""

    model: NudgeN | NudgeM | None
    report: FinetuneReport
    embeddings: np.ndarray | None
    train: QueryAnswers | None = None
    val: QueryAnswers | None = None

    @property
    def fitted(self) -> NudgeN | NudgeM:
        """The fitted model (``ValueError`` for the baseline)."""
        if self.model is None:
            raise ValueError("the no-fine-tuning baseline has no fitted model")
        return self.model

    @property
    def vectors(self) -> np.ndarray:
        """The output vectors (``ValueError`` for a corpus fit, which never materialises them)."""
        if self.embeddings is None:
            raise ValueError("a corpus (non-array) fit has no output array; use model.patch_")
        return self.embeddings

    @property
    def method(self) -> str:
        return self.report.variant

    @property
    def label(self) -> str:
        return "no fine-tuning" if self.model is None else self.report.variant.upper()

    @property
    def similarity(self) -> str:
        return self.report.similarity

    @property
    def fit_seconds(self) -> float | None:
        return self.report.seconds.get("fit")

    @property
    def val_metrics(self) -> dict[str, float]:
        return self.report.val_metrics_after

    @property
    def test_metrics(self) -> dict[str, float] | None:
        return self.report.test_metrics_after


def _floats(x: Any) -> list[float]:
    return [] if x is None else [float(v) for v in np.asarray(x).ravel()]


def _scores(docs: Any, qa: QueryAnswers | None, metrics: Sequence[str], similarity: str) -> dict[str, float] | None:
    if qa is None or not isinstance(docs, np.ndarray):
        return None
    return {k: float(v) for k, v in evaluate(docs, qa, metrics, similarity=similarity).items()}


def finetune_queries(
    docs: np.ndarray | Corpus,
    train: QueryAnswers,
    val: QueryAnswers | None = None,
    *,
    variant: str = "nudge-n",
    gamma: float | None = None,
    metric: str | None = None,
    params: Mapping[str, Any] | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    val_source: str | None = None,
    n_dropped_questions: int = 0,
    base_similarity: str = "cosine",
    test: QueryAnswers | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    report_cls: type[FinetuneReport] = FinetuneReport,
) -> FinetuneResult:
    """Fit one variant on ``docs`` (an (N, d) array or a Corpus) and report it.

    Without ``val`` and with gamma not fixed, validation queries are carved from ``train`` by
    :func:`carve_rows` (``val_fraction``, ``seed``). Metrics before (``base_similarity``: how the original
    vectors are searched) and after (:func:`search_similarity`) are computed for array input only.
    """
    variant = canonical_variant(variant)
    model = make_model(variant, gamma=gamma, metric=metric, **dict(params or {}))
    source = val_source or ("given" if val is not None else "none")
    if val is None and gamma is None:
        rest, carved = carve_rows(len(train), val_fraction, seed)
        train, val, source = train.subset(rest), train.subset(carved), "carved"
    t0 = time.perf_counter()
    model.fit(docs, train, val)
    fit_s = time.perf_counter() - t0
    out = getattr(model, "embeddings_", None)
    after_sim = search_similarity(variant)
    n_docs = docs.n_docs if isinstance(docs, Corpus) else int(np.shape(docs)[0])
    curve = model.val_scores_ is not None
    report = report_cls(
        variant=variant,
        similarity=model.similarity_,
        gamma=float(model.gamma_),
        gamma_fixed=gamma is not None,
        val_metric=validation_metric(model),
        gammas=_floats(model.gammas_) if curve else [],
        val_scores=_floats(model.val_scores_),
        val_score=model.val_score_,
        val_base_score=model.val_base_score_,
        val_metrics_before=_scores(docs, val, metrics, base_similarity) or {},
        val_metrics_after=_scores(out, val, metrics, after_sim) or {},
        test_metrics_before=_scores(docs, test, metrics, base_similarity),
        test_metrics_after=_scores(out, test, metrics, after_sim),
        n_documents=n_docs,
        dimension=int(model.n_features_in_),
        n_moved=int(model.n_moved_),
        n_train_questions=len(train),
        n_train_pairs=int(train.n_pairs),
        n_val_questions=0 if val is None else len(val),
        n_dropped_questions=int(n_dropped_questions),
        val_source=source,
        seconds={"fit": fit_s},
    )
    return FinetuneResult(model, report, out, train, val)


def finetune_pairs(
    docs: np.ndarray | Corpus,
    train: Questions,
    val: Questions | None = None,
    *,
    row_of: Mapping[Hashable, int],
    embed_queries: Callable[[list[str]], np.ndarray],
    variant: str = "nudge-n",
    gamma: float | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    **kwargs: Any,
) -> FinetuneResult:
    """:func:`finetune_queries` from grouped pairs: carve (when needed), embed the questions, fit, report.

    ``row_of`` maps a document reference to its row of ``docs``; ``embed_queries(texts)`` returns their
    (len(texts), d) query vectors from the base model. Further keyword arguments go to :func:`finetune_queries`.
    """
    if len(train) == 0:
        raise ValueError(
            f"no usable training pairs ({train.n_dropped} question(s) dropped: blank text, or no answer with "
            "a positive relevance)"
        )
    source = "given" if val is not None else "none"
    n_dropped = train.n_dropped + (0 if val is None else val.n_dropped)
    if val is None and gamma is None:
        train, val = train.carve(val_fraction, seed)
        source = "carved"
    elif val is not None and len(val) == 0:
        raise ValueError("the validation pairs hold no usable question")
    from .embedding import model_load_seconds  # NumPy-only: the model itself is imported on first use

    t0, loaded0 = time.perf_counter(), model_load_seconds()
    train_qa = train.query_answers(embed_queries(list(train.texts)), row_of)
    val_qa = None if val is None else val.query_answers(embed_queries(list(val.texts)), row_of)
    load_s = model_load_seconds() - loaded0
    embed_s = time.perf_counter() - t0 - load_s
    result = finetune_queries(
        docs, train_qa, val_qa, variant=variant, gamma=gamma, val_source=source, n_dropped_questions=n_dropped, **kwargs
    )
    result.report.seconds["load_model"] = load_s  # loading the embedding model, apart from embedding
    result.report.seconds["embed_questions"] = embed_s
    return result


def baseline(
    docs: np.ndarray, val: QueryAnswers, test: QueryAnswers | None = None, *, metrics: Sequence[str] = DEFAULT_METRICS
) -> FinetuneResult:
    """No fine-tuning: the original vectors searched by cosine, reported like a fit (variant ``"none"``)."""
    before = _scores(docs, val, metrics, "cosine") or {}
    held = _scores(docs, test, metrics, "cosine")
    report = FinetuneReport(
        variant="none",
        similarity="cosine",
        val_metrics_before=before,
        val_metrics_after=before,
        test_metrics_before=held,
        test_metrics_after=held,
        n_documents=int(docs.shape[0]),
        dimension=int(docs.shape[1]),
        n_val_questions=len(val),
        val_source="given",
    )
    return FinetuneResult(None, report, docs, None, val)


def validation_notes(report: FinetuneReport) -> list[str]:
    """One line per thing a reader must know about how gamma was chosen; warnings start with ``"warning: "``.

    - nothing measured: gamma fixed without validation questions;
    - fewer than :data:`MIN_VAL_QUESTIONS` validation questions: the choice is noisy;
    - a chosen gamma > 0 that beats no change by at most :data:`MIN_WIN_QUESTIONS` validation questions
      (the score difference times the number of questions, rounded);
    - why gamma is 0 when it was chosen: no gamma beat no change.
    """
    n = int(report.n_val_questions)
    if report.val_score is None or n == 0:
        return [f"gamma fixed at {report.gamma:.4g} without validation questions: no validation score was measured"]
    notes = []
    if n < MIN_VAL_QUESTIONS:
        notes.append(
            f"warning: gamma was chosen on only {n} validation question(s) (fewer than {MIN_VAL_QUESTIONS}): "
            "the choice is noisy; give more validation pairs (split: dev)"
        )
    if report.gamma_fixed:
        return notes
    base = report.val_base_score or 0.0
    if not report.gamma:
        notes.append(
            f"gamma = 0: no gamma beat no change on the {n} validation question(s) ({report.val_metric} "
            f"{100 * base:.1f}), so no document moved"
        )
        return notes
    won = round((report.val_score - base) * n)
    if won <= MIN_WIN_QUESTIONS:
        notes.append(
            f"warning: gamma {report.gamma:.4g} beats no change by only {won} of {n} validation question(s) "
            f"({report.val_metric} {100 * base:.1f} -> {100 * report.val_score:.1f}): the gain may be noise"
        )
    return notes


def check_question_vectors(question_vectors: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """Precomputed question vectors (text -> (d,) vector) checked and copied as float64 arrays; ``{}`` for None.

    Raises ``TypeError`` for anything but a mapping and ``ValueError`` naming the first question whose vector is
    not a finite 1-d vector."""
    if question_vectors is None:
        return {}
    if not isinstance(question_vectors, Mapping):
        raise TypeError(
            "question_vectors must map question text -> vector (e.g. dict(zip(texts, array))), got "
            f"{type(question_vectors).__name__}"
        )
    out = {}
    for text, vec in question_vectors.items():
        v = np.array(vec, dtype=np.float64)
        if v.ndim != 1 or not np.isfinite(v).all():
            raise ValueError(f"question_vectors[{text!r}] must be a finite 1-d vector, got shape {v.shape}")
        out[str(text)] = v
    return out


def insert_questions(
    train: Questions | None, val: Questions | None, carve: tuple[float, int] | None = None
) -> tuple[Questions | None, Questions | None]:
    """The (train, validation) questions of an insert into a fitted model (``ValueError`` when neither is
    usable); without validation and with ``carve = (val_fraction, seed)``, validation is carved from 2+ new
    training questions (:meth:`Questions.carve`)."""
    if train is not None and len(train) == 0:
        if val is None:
            raise ValueError("train_dataset has no usable training pairs")
        train = None
    if val is None and train is not None and len(train) >= 2 and carve is not None:
        train, val = train.carve(*carve)
    if val is not None and len(val) == 0:
        raise ValueError("val_dataset has no usable question")
    return train, val
