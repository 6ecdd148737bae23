"""scikit-learn style estimators: :class:`NudgeN` and :class:`NudgeM`."""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from ._checks import as_matrix, check_gamma, normalize_rows
from ._nudge import TrainAggregate, aggregate_training, m_directions, n_geometry, nudge_m_rows, nudge_n_rows
from ._gamma_search import select_gamma_m, select_gamma_n
from .corpus import ArrayCorpus, Corpus, as_corpus
from .metrics import parse_metric
from .patch import Patch
from .queries import QueryAnswers

__all__ = ["NudgeN", "NudgeM", "NotFittedError", "DEFAULT_GAMMAS_N"]

#: NUDGE-N candidates: 0 to 0.48 in steps of 0.0025 (8x finer than the reference's 25-point grid).
DEFAULT_GAMMAS_N = np.round(np.linspace(0.0, 0.48, 193), 6)


class NotFittedError(RuntimeError):
    """Raised when a fitted attribute or method is used before :meth:`fit`."""


class _NudgeBase:
    variant: ClassVar[str]
    similarity: ClassVar[str]
    gamma_upper: ClassVar[float | None]

    # ------------------------------------------------------------------ public API
    def fit(
        self,
        embeddings: np.ndarray | Corpus,
        train: QueryAnswers,
        val: QueryAnswers | None = None,
        *,
        nontrain_embeddings: np.ndarray | None = None,
    ):
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
        corpus, docs = self._open_corpus(embeddings, nontrain_embeddings)
        train = _check_queries(train, "train", corpus.n_docs, corpus.dim)
        val = None if val is None else _check_queries(val, "val", corpus.n_docs, corpus.dim)
        fixed = self._checked_params()
        if fixed is None and val is None:
            raise ValueError("val is required to choose gamma; pass validation queries or fix gamma in the constructor")
        agg = aggregate_training(train)
        base = np.array(corpus.fetch(agg.docs), dtype=self._out_dtype(), copy=True)
        gamma, gammas, scores = self._choose(corpus, agg, base, val, fixed)
        new = self._move(base, agg.sums, gamma)
        if docs is not None:
            docs[agg.docs] = new
        self._set_state(docs, corpus.n_docs, corpus.dim, agg, base, new, val, gamma, gammas, scores)
        return self

    def _open_corpus(self, embeddings: object, extra: np.ndarray | None) -> tuple[Corpus, np.ndarray | None]:
        """(corpus, unit-row copy of the array or None for a non-array corpus)."""
        if isinstance(embeddings, (np.ndarray, list, tuple)):
            emb = as_matrix(embeddings, "embeddings")
            docs = normalize_rows(emb, "embeddings", self._out_dtype())
            ext = None if extra is None else as_matrix(extra, "nontrain_embeddings", dim=emb.shape[1])
            return ArrayCorpus(docs, ext), docs
        if extra is not None:
            raise ValueError("nontrain_embeddings is only supported when embeddings is an in-memory array")
        corpus = as_corpus(embeddings)
        return corpus, None

    def insert(
        self,
        new_embeddings: np.ndarray | None = None,
        train: QueryAnswers | None = None,
        val: QueryAnswers | None = None,
    ):
        """Add documents and/or training and validation queries without refitting from scratch.

        Answer indices refer to the current documents followed by ``new_embeddings``. gamma stays fixed; only
        documents named by the new training pairs are recomputed, and all validation queries (old and new)
        are re-scored. The result equals a full refit with ``gamma=self.gamma_``. Returns self.
        """
        self._check_fitted()
        if getattr(self, "embeddings_", None) is None:
            raise NotImplementedError(
                f"insert on a {type(self).__name__} fitted on a corpus (not an array) is not supported here; "
                "refit on the corpus with gamma fixed to gamma_"
            )
        if new_embeddings is None and train is None and val is None:
            raise ValueError("insert needs new_embeddings, train or val")
        dim = self.embeddings_.shape[1]
        docs = self.embeddings_
        if new_embeddings is not None:
            new = as_matrix(new_embeddings, "new_embeddings", dim=dim)
            docs = np.concatenate([docs, normalize_rows(new, "new_embeddings", docs.dtype)])
        else:
            docs = docs.copy()
        n = docs.shape[0]
        agg = TrainAggregate(self.train_docs_, self.train_sums_)
        base = self.train_base_
        if train is not None:
            train = _check_queries(train, "train", n, dim)
            extra = aggregate_training(train)
            merged = agg.merge(extra)
            base = docs[merged.docs].copy()  # rows not previously trained are still unmoved
            base[np.searchsorted(merged.docs, agg.docs)] = self.train_base_
            touched = np.searchsorted(merged.docs, extra.docs)
            docs[extra.docs] = self._move(base[touched], merged.sums[touched], self.gamma_)
            agg = merged
        new = docs[agg.docs]
        all_val = self.val_
        if val is not None:
            val = _check_queries(val, "val", n, dim)
            all_val = val if all_val is None else all_val.concat(val)
        if all_val is not None:
            all_val.check_documents(n, "val")
            _, gammas, scores = self._choose(ArrayCorpus(docs), agg, base, all_val, self.gamma_)
        else:
            gammas, scores = np.array([0.0, self.gamma_]), None
        self._set_state(docs, n, dim, agg, base, new, all_val, self.gamma_, gammas, scores)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted state to ``path`` (a portable ``.npz``), atomically."""
        from .persistence import save

        save(self, path)

    # ------------------------------------------------------------------ helpers
    def _set_state(self, docs, n_docs, dim, agg, base, new, val, gamma, gammas, scores) -> None:
        pos = self._moving(base, agg.sums, gamma)
        moved = agg.docs[pos]
        self.patch_ = Patch(moved, new[pos], base[pos])
        self.embeddings_ = docs
        self.n_documents_ = int(n_docs)
        self.gamma_ = float(gamma)
        self.gammas_ = np.asarray(gammas, dtype=np.float64)
        self.val_scores_ = None if scores is None else np.asarray(scores, dtype=np.float64)
        if scores is None:
            self.val_score_ = self.val_base_score_ = None
        else:
            self.val_score_ = float(self.val_scores_[np.searchsorted(self.gammas_, gamma)])
            self.val_base_score_ = float(self.val_scores_[0])
        self.moved_docs_ = moved
        self.n_moved_ = int(moved.size)
        self.similarity_ = self.similarity
        self.n_features_in_ = int(dim)
        self.train_docs_ = agg.docs
        self.train_sums_ = agg.sums
        self.train_base_ = base
        self.val_ = val

    def _check_fitted(self) -> None:
        if not hasattr(self, "gamma_"):
            name = type(self).__name__
            raise NotFittedError(f"this {name} is not fitted yet; call fit(embeddings, train, val) first")

    def _out_dtype(self) -> np.dtype:
        dtype = np.dtype(getattr(self, "dtype", np.float32))
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return dtype

    def _checked_params(self) -> float | None:
        return None if self.gamma is None else check_gamma(self.gamma, upper=self.gamma_upper)

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params):
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
        self, gamma=None, *, metric="recall@1", gammas=None, smoothing=0.02, move_opposed=False, dtype=np.float32
    ):
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
            check_gamma(g, upper=self.gamma_upper, name="gammas value")
        return np.unique(np.r_[0.0, grid])

    def _choose(self, corpus, agg, base, val, fixed):
        kind, k = parse_metric(self.metric)
        gammas = self._candidates(fixed)
        if val is None:
            return fixed, np.array([0.0, fixed]), None
        geo = n_geometry(base, agg.sums, move_opposed=self.move_opposed)
        moving = agg.docs[geo.rows]
        s, i = corpus.competitors(val.embeddings, moving, k)
        scores = select_gamma_n(val, geo, moving, s, i, gammas, kind, k, corpus.n_docs)
        gamma = fixed if fixed is not None else _smoothed_argmax(gammas, scores, self.smoothing)
        return gamma, gammas, scores

    def _move(self, base, sums, gamma):
        rows, _ = nudge_n_rows(base, sums, gamma, move_opposed=self.move_opposed)
        return rows.astype(self._out_dtype(), copy=False)

    def _moving(self, base, sums, gamma):
        rows = n_geometry(base, sums, move_opposed=self.move_opposed).rows
        return rows if gamma > 0 else rows[:0]


class NudgeM(_NudgeBase):
    """NUDGE-M: add gamma times the unit direction of its training queries to each trained document.

    e_i' = e_i + gamma g_i / |g_i|; gamma maximises validation hit@1 exactly (each validation pair contributes
    the interval of gamma on which its answer ranks first). Output rows are not unit-norm: search them with
    inner product (``similarity_ == "inner_product"``), never cosine.

    Args:
        gamma: fixed step size (>= 0); ``None`` chooses it on validation queries.
        margin: relative offset of gamma into the optimal segment of the hit@1 curve (capped at half the
            segment): its left end is where one answer exactly ties its competitor. 0 keeps the left end,
            as the reference implementation does.
        dtype: output dtype, float32 (default) or float64.
    """

    variant = "nudge-m"
    similarity = "inner_product"
    gamma_upper = None
    _param_names = ("gamma", "margin", "dtype")

    def __init__(self, gamma=None, *, margin=1e-4, dtype=np.float32):
        self.gamma = gamma
        self.margin = margin
        self.dtype = dtype

    def _choose(self, corpus, agg, base, val, fixed):
        if val is None:
            return fixed, np.array([0.0, fixed]), None
        s, i = corpus.competitors(val.embeddings, agg.docs, 2)
        curve = select_gamma_m(val, corpus.fetch, agg.docs, base, m_directions(agg.sums), s, i)
        margin = check_gamma(self.margin, upper=None, name="margin")
        gamma = curve.best(margin) if fixed is None else fixed
        if fixed is None:
            gammas, scores = curve.curve(gamma)
        else:
            gammas = np.unique([0.0, fixed])
            scores = curve.hits(gammas)
        return gamma, gammas, scores

    def _move(self, base, sums, gamma):
        rows, _ = nudge_m_rows(base, sums, gamma)
        return rows.astype(self._out_dtype(), copy=False)

    def _moving(self, base, sums, gamma):
        return np.flatnonzero(np.linalg.norm(sums, axis=1) > 0) if gamma > 0 else np.zeros(0, dtype=np.int64)


def _smoothed_argmax(gammas: np.ndarray, scores: np.ndarray, width: float) -> float:
    """A gamma with the best raw validation score; among tied gammas, the one whose neighbourhood
    (+-width/2) scores best on average, then the smallest. With ``width == 0``, simply the smallest."""
    width = check_gamma(width, upper=None, name="smoothing")
    best = np.flatnonzero(scores == scores.max())
    if width > 0 and best.size > 1:
        csum = np.r_[0.0, np.cumsum(scores)]
        left = np.searchsorted(gammas, gammas[best] - width / 2, side="left")
        right = np.searchsorted(gammas, gammas[best] + width / 2, side="right")
        best = best[[int(np.argmax((csum[right] - csum[left]) / (right - left)))]]
    return float(gammas[best[0]])


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

