"""scikit-learn style estimators: :class:`NudgeN` and :class:`NudgeM`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from ._checks import as_matrix, check_gamma, normalize_rows
from ._gamma_search import select_gamma_m, select_gamma_n
from ._nudge import TrainAggregate, aggregate_training, m_directions, n_geometry, nudge_m_rows, nudge_n_rows
from ._state import STATE_FIELDS, FittedStateError, restore_state
from .corpus import ArrayCorpus, Corpus, as_corpus
from .metrics import parse_metric
from .patch import Patch
from .queries import QueryAnswers

__all__ = [
    "NudgeN",
    "NudgeM",
    "NotFittedError",
    "InvalidParameterError",
    "FittedStateError",
    "DEFAULT_GAMMAS_N",
    "STATE_FIELDS",
]

#: NUDGE-N candidates: 0 to 0.48 in steps of 0.0025 (8x finer than the reference's 25-point grid).
DEFAULT_GAMMAS_N = np.round(np.linspace(0.0, 0.48, 193), 6)


class NotFittedError(RuntimeError):
    """Raised when a fitted attribute or method is used before :meth:`fit`."""


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has an invalid value; the message names the class, the parameter and the value.

    A :class:`ValueError` (and, as scikit-learn's error of the same name, a :class:`TypeError` too, so code
    that caught the type errors of wrong-typed parameters keeps working). Raised by ``fit`` before any work.
    """


_Model = TypeVar("_Model", bound="_NudgeBase")


class _NudgeBase:
    variant: ClassVar[str]
    similarity: ClassVar[str]
    gamma_upper: ClassVar[float | None]
    _param_names: ClassVar[tuple[str, ...]]
    gamma: float | None

    # ------------------------------------------------------------------ public API
    def fit(
        self: _Model,
        embeddings: np.ndarray | Corpus,
        train: QueryAnswers,
        val: QueryAnswers | None = None,
        *,
        nontrain_embeddings: np.ndarray | None = None,
    ) -> _Model:
        """Nudge ``embeddings`` (N, d) towards the training queries; choose gamma on ``val``.

        Args:
            embeddings: (N, d) float32/float64 document vectors (normalised internally; not modified), or a
                :class:`~nudge_rag.corpus.Corpus` (a vector store, a Dask array, ...) that the fit reads by row.
            train: training queries whose answers index rows of ``embeddings``.
            val: validation queries; required unless ``gamma`` was fixed in the constructor.
            nontrain_embeddings: optional (X, d) extra documents that never move and answer no query;
                they only compete in validation (scored by cosine). Arrays only.

        Returns:
            self, with ``patch_`` (the moved rows), ``gamma_``, ``gammas_``, ``val_scores_``, ``val_score_``,
            ``val_base_score_``, ``n_moved_``, ``moved_docs_`` and ``similarity_`` set, and ``embeddings_``
            (N, d) when ``embeddings`` is an array (a corpus fit never materialises N x d).
        """
        self._validate_params()
        fixed = None if self.gamma is None else float(self.gamma)
        corpus, docs = self._open_corpus(embeddings, nontrain_embeddings)
        train = _check_queries(train, "train", corpus.n_docs, corpus.dim)
        val = None if val is None else _check_queries(val, "val", corpus.n_docs, corpus.dim)
        if fixed is None and val is None:
            raise ValueError("val is required to choose gamma; pass validation queries or fix gamma in the constructor")
        agg = aggregate_training(train)
        base = np.array(corpus.fetch(agg.docs), dtype=self._out_dtype(), copy=True)
        gamma, gammas, scores = self._choose(corpus, agg, base, val, fixed)
        new = self._move(base, agg.sums, gamma)
        if docs is not None:
            docs[agg.docs] = new
        self._set_state(docs, corpus.n_docs, corpus.dim, agg, base, new, val, gamma, gammas, scores)
        self.corpus_ = None if docs is not None else corpus  # what a corpus insert reads from
        return self

    def _open_corpus(self, embeddings: object, extra: np.ndarray | None) -> tuple[Corpus, np.ndarray | None]:
        """(corpus, unit-row copy of the array or None for a non-array corpus)."""
        if isinstance(embeddings, (np.ndarray, list, tuple)):
            emb = as_matrix(embeddings, "embeddings", float32_range=False)
            docs = normalize_rows(emb, "embeddings", self._out_dtype())
            ext = None if extra is None else as_matrix(extra, "nontrain_embeddings", dim=emb.shape[1])
            return ArrayCorpus(docs, ext), docs
        if extra is not None:
            raise ValueError("nontrain_embeddings is only supported when embeddings is an in-memory array")
        corpus = as_corpus(embeddings)
        return corpus, None

    def insert(
        self: _Model,
        new_embeddings: np.ndarray | None = None,
        train: QueryAnswers | None = None,
        val: QueryAnswers | None = None,
    ) -> _Model:
        """Add documents and/or training and validation queries without refitting from scratch.

        Answer indices refer to the current documents followed by ``new_embeddings``. gamma stays fixed; only
        documents named by the new training pairs are recomputed, and all validation queries (old and new)
        are re-scored. The result equals a full refit with ``gamma=self.gamma_`` on the concatenated queries, bit
        for bit (training sums accumulate one query at a time, in pair order). Returns self.

        One implementation for every fit: after an array fit the documents are ``embeddings_``; after a fit on
        a :class:`~nudge_rag.corpus.Corpus` they are ``corpus_``, and new documents are appended to it with
        ``corpus.append(new_embeddings)`` (a Dask corpus grows by new chunks). Nothing changes on error.
        """
        self._check_fitted()
        if new_embeddings is None and train is None and val is None:
            raise ValueError("insert needs new_embeddings, train or val")
        gamma = self.gamma_
        agg = TrainAggregate(self.train_docs_, self.train_sums_)
        base = self.train_base_
        array_fit = getattr(self, "embeddings_", None) is not None
        if array_fit:  # rows read from the nudged matrix
            corpus: Corpus = ArrayCorpus(np.asarray(self.embeddings_))
            nudged = np.asarray(self.embeddings_)[agg.docs]
        else:
            corpus = self._fitted_corpus()
            nudged = np.array(base, dtype=self._out_dtype(), copy=True)  # unmoved, except the patch rows
            nudged[np.searchsorted(agg.docs, self.patch_.rows)] = self.patch_.new
        if new_embeddings is not None:
            corpus = _append(corpus, new_embeddings)
        n, dim = corpus.n_docs, corpus.dim
        if train is not None:
            train = _check_queries(train, "train", n, dim)
            merged = agg.extend(train)  # sums continue in pair order: bit for bit a refit's
            kept = np.searchsorted(merged.docs, agg.docs)
            fresh = np.setdiff1d(merged.docs, agg.docs)
            base = np.empty((merged.docs.size, dim), dtype=self._out_dtype())
            base[kept] = self.train_base_
            base[np.searchsorted(merged.docs, fresh)] = corpus.fetch(fresh)  # not trained so far: still unmoved
            grown = np.array(base, copy=True)
            grown[kept] = nudged
            touched = np.searchsorted(merged.docs, np.unique(train.indices))
            grown[touched] = self._move(base[touched], merged.sums[touched], gamma)
            agg, nudged = merged, grown
        docs = None
        if array_fit and isinstance(corpus, ArrayCorpus):  # the full nudged matrix, a new array (not embeddings_)
            docs = corpus.docs if new_embeddings is not None else corpus.docs.copy()
            docs[agg.docs] = nudged
            corpus = ArrayCorpus(docs)
        all_val = self.val_
        if val is not None:
            val = _check_queries(val, "val", n, dim)
            all_val = val if all_val is None else all_val.concat(val)
        if all_val is not None:
            all_val.check_documents(n, "val")
            _, gammas, scores = self._choose(corpus, agg, base, all_val, gamma)
        else:
            gammas, scores = np.unique([0.0, gamma]), None
        self._set_state(docs, n, dim, agg, base, nudged, all_val, gamma, gammas, scores)
        self.corpus_ = None if docs is not None else corpus
        return self

    def _fitted_corpus(self) -> Corpus:
        corpus = getattr(self, "corpus_", None)
        if corpus is None:
            raise NotImplementedError(
                f"this {type(self).__name__} has neither embeddings_ nor corpus_ (e.g. loaded from a file after a "
                "corpus fit): refit on the corpus with gamma fixed to gamma_"
            )
        return corpus

    def inserted(
        self: _Model,
        new_embeddings: np.ndarray | None = None,
        train: QueryAnswers | None = None,
        val: QueryAnswers | None = None,
    ) -> _Model:
        """A copy of this fitted model with :meth:`insert` applied; this model is left unchanged."""
        import copy

        return copy.deepcopy(self).insert(new_embeddings, train, val)

    #: Writes a model file; installed by :mod:`nudge_rag.persistence` (which depends on this module, never the
    #: reverse), so ``model.save(path)`` and ``nudge_rag.save(model, path)`` are one function.
    _file_writer: ClassVar[Callable[[Any, str | os.PathLike], None] | None] = None

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted state to ``path`` (a portable ``.npz``), atomically: ``nudge_rag.save(self, path)``."""
        if _NudgeBase._file_writer is None:
            raise RuntimeError("nudge_rag.persistence is not loaded; use nudge_rag.save(model, path)")
        _NudgeBase._file_writer(self, path)

    # ------------------------------------------------------------------ fitted state
    def to_state(self) -> dict[str, Any]:
        """The fitted state: the :data:`STATE_FIELDS` present (arrays and numbers), ``class`` and ``params``."""
        self._check_fitted()
        val: QueryAnswers | None = self.val_
        params = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.get_params().items()}
        params["dtype"] = np.dtype(params.get("dtype", np.float32)).name
        state: dict[str, Any] = {
            "embeddings": getattr(self, "embeddings_", None),
            "n_documents": self.n_documents_,
            "n_features_in": self.n_features_in_,
            "gamma": self.gamma_,
            "gammas": self.gammas_,
            "val_scores": self.val_scores_,
            "train_docs": self.train_docs_,
            "train_sums": self.train_sums_,
            "train_base": self.train_base_,
            "patch_rows": self.patch_.rows,
            "patch_new": self.patch_.new,
            "patch_old": self.patch_.old,
            "val_embeddings": None if val is None else val.embeddings,
            "val_indptr": None if val is None else val.indptr,
            "val_indices": None if val is None else val.indices,
            "val_relevance": None if val is None else val.relevance,
            "val_ids": None if val is None or val.ids is None else np.array(val.ids, dtype=str),
        }
        if state.keys() != STATE_FIELDS.keys():  # the schema is the single list of fields
            raise RuntimeError(f"to_state out of step with STATE_FIELDS: {sorted(state.keys() ^ STATE_FIELDS.keys())}")
        return {"class": type(self).__name__, "params": params, **{k: v for k, v in state.items() if v is not None}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _NudgeBase:
        """A fitted estimator restored from :meth:`to_state` output, every field validated first.

        Raises :class:`FittedStateError` naming the first field that is missing, of the wrong type or shape,
        non-finite, out of range or inconsistent with the others.
        """
        return restore_state(cls, state)

    def _assign(
        self,
        *,
        embeddings: np.ndarray | None,
        n_documents: int,
        n_features_in: int,
        gamma: float,
        gammas: np.ndarray,
        val_scores: np.ndarray | None,
        agg: TrainAggregate,
        base: np.ndarray,
        patch: Patch,
        val: QueryAnswers | None,
    ) -> None:
        """Set every fitted attribute (the one place they are written) and the ones derived from them."""
        self.patch_ = patch
        self.embeddings_ = embeddings
        self.n_documents_ = int(n_documents)
        self.n_features_in_ = int(n_features_in)
        self.gamma_ = float(gamma)
        self.gammas_ = np.asarray(gammas, dtype=np.float64)
        self.val_scores_ = None if val_scores is None else np.asarray(val_scores, dtype=np.float64)
        if self.val_scores_ is None:
            self.val_score_ = self.val_base_score_ = None
        else:
            self.val_score_ = float(self.val_scores_[np.searchsorted(self.gammas_, self.gamma_)])
            self.val_base_score_ = float(self.val_scores_[0])
        self.moved_docs_ = patch.rows
        self.n_moved_ = int(patch.rows.size)
        self.similarity_ = self.similarity
        self.train_docs_ = agg.docs
        self.train_sums_ = agg.sums
        self.train_base_ = base
        self.val_ = val

    # ------------------------------------------------------------------ helpers
    def _set_state(
        self,
        docs: np.ndarray | None,
        n_docs: int,
        dim: int,
        agg: TrainAggregate,
        base: np.ndarray,
        new: np.ndarray,
        val: QueryAnswers | None,
        gamma: float,
        gammas: np.ndarray,
        scores: np.ndarray | None,
    ) -> None:
        pos = self._moving(base, agg.sums, gamma)
        patch = Patch(agg.docs[pos], new[pos], base[pos])
        self._assign(
            embeddings=docs,
            n_documents=n_docs,
            n_features_in=dim,
            gamma=gamma,
            gammas=gammas,
            val_scores=scores,
            agg=agg,
            base=base,
            patch=patch,
            val=val,
        )

    # ------------------------------------------------------------------ variant hooks
    def _choose(
        self, corpus: Corpus, agg: TrainAggregate, base: np.ndarray, val: QueryAnswers | None, fixed: float | None
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """(gamma, candidate gammas, validation scores per candidate or None without validation queries)."""
        raise NotImplementedError

    def _move(self, base: np.ndarray, sums: np.ndarray, gamma: float) -> np.ndarray:
        """The nudged rows of ``base`` (M, d) with training sums (M, d), in the output dtype."""
        raise NotImplementedError

    def _moving(self, base: np.ndarray, sums: np.ndarray, gamma: float) -> np.ndarray:
        """Positions (into ``base``) of the rows that move at ``gamma``."""
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "gamma_"):
            name = type(self).__name__
            raise NotFittedError(f"this {name} is not fitted yet; call fit(embeddings, train, val) first")

    def _out_dtype(self) -> np.dtype:
        return _check_dtype(getattr(self, "dtype", np.float32))

    def _validate_params(self) -> None:
        """Validate every constructor parameter, scikit-learn style: the one check, run at the start of
        :meth:`fit` and when a saved model is loaded (``__init__`` only stores the values).

        Raises :class:`InvalidParameterError` naming the class, the parameter and the value received.
        """
        checks = self._param_checks()
        if checks.keys() != set(self._param_names):  # every parameter has exactly one check
            raise RuntimeError(f"parameter checks out of step with {self._param_names}: {sorted(checks)}")
        for name in self._param_names:
            value = getattr(self, name)
            try:
                checks[name](value)
            except (TypeError, ValueError) as exc:
                text = str(exc)
                if not text.startswith(name):
                    text = f"{name}={value!r}: {text}"
                raise InvalidParameterError(f"{type(self).__name__}: {text}") from None

    def _param_checks(self) -> dict[str, Callable[[Any], object]]:
        """One check per constructor parameter (name -> callable raising TypeError/ValueError)."""
        return {"gamma": lambda g: g is None or check_gamma(g, upper=self.gamma_upper), "dtype": _check_dtype}

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self: _Model, **params: Any) -> _Model:
        """Set constructor parameters (scikit-learn convention); returns self."""
        for name, value in params.items():
            if name not in self._param_names:
                raise ValueError(f"unknown parameter {name!r} for {type(self).__name__}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if not isinstance(v, np.ndarray))
        return f"{type(self).__name__}({args})"


class NudgeN(_NudgeBase):
    """NUDGE-N: move each trained document along the sphere towards its training queries.

    e_i' maximises g_i . e' subject to |e'| = 1 and |e' - e_i|^2 <= gamma; the output rows are unit-norm, so
    search them with cosine or inner product (``similarity_ == "cosine"``).

    Args:
        gamma: fixed step size in [0, 4]; ``None`` chooses it on validation queries.
        metric: validation metric, ``"recall@k"`` (capped at min(|answers|, k)), ``"hit@k"``, ``"mrr@k"`` or
            ``"ndcg@k"``.
        gammas: candidate step sizes (default :data:`DEFAULT_GAMMAS_N`); 0 is always added.
        smoothing: gamma maximises the validation metric; when several gammas tie (plateaus are common on a
            fine grid with few validation queries), the one whose neighbourhood of this width scores best on
            average is taken, then the smallest. 0: the smallest tied gamma.
        move_opposed: also move documents whose training queries point away from them (g . e < 0).
        dtype: output dtype, float32 (default) or float64.

    Example:
        >>> model = NudgeN().fit(doc_embs, train, val)
        >>> scores, rows = search(query_embs, model.embeddings_, k=10)
    """

    variant = "nudge-n"
    similarity = "cosine"
    gamma_upper = 4.0
    _param_names = ("gamma", "metric", "gammas", "smoothing", "move_opposed", "dtype")

    def __init__(
        self,
        gamma: float | None = None,
        *,
        metric: str = "recall@1",
        gammas: Any = None,
        smoothing: float = 0.02,
        move_opposed: bool = False,
        dtype: Any = np.float32,
    ) -> None:
        self.gamma = gamma
        self.metric = metric
        self.gammas = gammas
        self.smoothing = smoothing
        self.move_opposed = move_opposed
        self.dtype = dtype

    def _candidates(self, fixed: float | None) -> np.ndarray:
        if fixed is not None:
            return np.unique([0.0, fixed])
        grid = DEFAULT_GAMMAS_N if self.gammas is None else np.asarray(self.gammas, dtype=np.float64).ravel()
        if grid.size == 0:
            raise ValueError("gammas must hold at least one value")
        for g in grid:
            check_gamma(float(g), upper=self.gamma_upper, name="gammas value")
        return np.unique(np.r_[0.0, grid])

    def _param_checks(self) -> dict[str, Callable[[Any], object]]:
        return {
            **super()._param_checks(),
            "metric": parse_metric,
            "gammas": lambda _: self._candidates(None),
            "smoothing": lambda w: check_gamma(w, upper=None, name="smoothing"),
            "move_opposed": _check_bool("move_opposed"),
        }

    def _choose(
        self, corpus: Corpus, agg: TrainAggregate, base: np.ndarray, val: QueryAnswers | None, fixed: float | None
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        kind, k = parse_metric(self.metric)
        gammas = self._candidates(fixed)
        if val is None:
            if fixed is None:
                raise ValueError("val is required to choose gamma; pass validation queries or fix gamma")
            return fixed, np.unique([0.0, fixed]), None
        geo = n_geometry(base, agg.sums, move_opposed=self.move_opposed)
        moving = agg.docs[geo.rows]
        s, i = corpus.competitors(val.embeddings, moving, k)
        totals = select_gamma_n(val, geo, moving, s, i, gammas, kind, k, corpus.n_docs, corpus.fetch)
        gamma = fixed if fixed is not None else _smoothed_argmax(gammas, totals, self.smoothing)
        return gamma, gammas, totals / len(val)

    def _move(self, base: np.ndarray, sums: np.ndarray, gamma: float) -> np.ndarray:
        rows, _ = nudge_n_rows(base, sums, gamma, move_opposed=self.move_opposed)
        return rows.astype(self._out_dtype(), copy=False)

    def _moving(self, base: np.ndarray, sums: np.ndarray, gamma: float) -> np.ndarray:
        rows = n_geometry(base, sums, move_opposed=self.move_opposed).rows
        return rows if gamma > 0 else rows[:0]


class NudgeM(_NudgeBase):
    """NUDGE-M: add gamma times the unit direction of its training queries to each trained document.

    e_i' = e_i + gamma g_i / |g_i|; gamma maximises validation hit@1 exactly: each validation query is hit on
    the union of the gamma intervals on which one of its answers ranks first, ties in score going to the
    smaller row (as :func:`~nudge_rag.search` does), so the curve equals :func:`~nudge_rag.evaluate` on the
    nudged vectors at every gamma. Output rows are not unit-norm: search them with inner product
    (``similarity_ == "inner_product"``), never cosine.

    Args:
        gamma: fixed step size, 0 <= gamma <= 1e38 (larger steps overflow float32 output); ``None`` chooses it
            on validation queries.
        margin: relative offset of gamma into the optimal segment of the hit@1 curve (capped at half the
            segment): its left end is where one answer exactly ties its competitor. 0 keeps the left end,
            as the reference implementation does.
        dtype: output dtype, float32 (default) or float64.
    """

    variant = "nudge-m"
    similarity = "inner_product"
    gamma_upper = 1e38
    _param_names = ("gamma", "margin", "dtype")

    def __init__(self, gamma: float | None = None, *, margin: float = 1e-4, dtype: Any = np.float32) -> None:
        self.gamma = gamma
        self.margin = margin
        self.dtype = dtype

    def _param_checks(self) -> dict[str, Callable[[Any], object]]:
        return {**super()._param_checks(), "margin": lambda m: check_gamma(m, upper=None, name="margin")}

    def _choose(
        self, corpus: Corpus, agg: TrainAggregate, base: np.ndarray, val: QueryAnswers | None, fixed: float | None
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        if val is None:
            if fixed is None:
                raise ValueError("val is required to choose gamma; pass validation queries or fix gamma")
            return fixed, np.unique([0.0, fixed]), None
        s, i = corpus.competitors(val.embeddings, agg.docs, 2)
        curve = select_gamma_m(val, corpus.fetch, agg.docs, base, m_directions(agg.sums), s, i, n_docs=corpus.n_docs)
        gamma = curve.best(float(self.margin)) if fixed is None else fixed
        if fixed is None:
            check_gamma(gamma, upper=self.gamma_upper, name="the gamma chosen on validation")
        if fixed is None:
            gammas, scores = curve.curve(gamma)
        else:
            gammas = np.unique([0.0, fixed])
            scores = curve.hits(gammas)
        return gamma, gammas, scores

    def _move(self, base: np.ndarray, sums: np.ndarray, gamma: float) -> np.ndarray:
        rows, _ = nudge_m_rows(base, sums, gamma)
        out = rows.astype(self._out_dtype(), copy=False)
        if not np.isfinite(out).all():
            raise ValueError(f"gamma={gamma!r} overflows the {out.dtype} output; use a smaller gamma")
        return out

    def _moving(self, base: np.ndarray, sums: np.ndarray, gamma: float) -> np.ndarray:
        return np.flatnonzero(np.linalg.norm(sums, axis=1) > 0) if gamma > 0 else np.zeros(0, dtype=np.int64)


# Summed validation scores closer than this (relative) count as equal: floating-point noise of fractional metrics.
_TIE_RTOL = 1e-9


def _smoothed_argmax(gammas: np.ndarray, totals: np.ndarray, width: float) -> float:
    """A gamma with the best validation total; among tied gammas, the one whose neighbourhood (+-width/2)
    scores best on average, then the smallest. With ``width == 0``, simply the smallest.

    ``totals`` are per-query scores summed (exact integers for hit@k and recall@1); ties are decided on them
    with a relative tolerance of 1e-9, so a flat curve gives the smallest gamma (0: nothing moves without
    evidence), whatever rounding the summation order introduced.
    """
    width = check_gamma(width, upper=None, name="smoothing")
    tol = _TIE_RTOL * max(1.0, float(np.abs(totals).max()))
    best = np.flatnonzero(totals >= totals.max() - tol)
    if width > 0 and best.size > 1:
        csum = np.r_[0.0, np.cumsum(totals)]
        left = np.searchsorted(gammas, gammas[best] - width / 2, side="left")
        right = np.searchsorted(gammas, gammas[best] + width / 2, side="right")
        avg = (csum[right] - csum[left]) / (right - left)
        best = best[avg >= avg.max() - tol]
    return float(gammas[best[0]])


def _append(corpus: Corpus, new: object) -> Corpus:
    """``corpus.append(new)``: the corpus followed by the documents ``new`` (``NotImplementedError`` for a corpus
    that cannot grow)."""
    append = getattr(corpus, "append", None)
    if append is None:
        raise NotImplementedError(f"{type(corpus).__name__} cannot append documents (it has no append method)")
    grown: Corpus = append(new)
    return grown


def _check_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a NumPy dtype, float32 or float64."""
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if out not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return out


def _check_bool(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")

    return check


def _check_queries(qa: object, name: str, n_docs: int, dim: int) -> QueryAnswers:
    if not isinstance(qa, QueryAnswers):
        raise TypeError(
            f"{name} must be a QueryAnswers (see QueryAnswers.from_lists / from_pairs), got {type(qa).__name__}"
        )
    if qa.dim != dim:
        raise ValueError(f"{name} queries have dimension {qa.dim} but the documents have dimension {dim}")
    qa.check_documents(n_docs, name)
    if len(qa) == 0:
        raise ValueError(f"{name} has no queries")
    return qa
