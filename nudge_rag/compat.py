"""Drop-in replacements for the reference package's ``NUDGEN`` / ``NUDGEM`` (``nudge-ft``).

Same call, same dict format (``{"q_embs": (Q, d) array, "q_ans_indx": [[doc row, ...], ...]}``), NumPy only.
Repeated answers inside one query's list are merged (counted once) with a warning.
"""

from __future__ import annotations

import warnings

import numpy as np

from .estimators import NudgeM, NudgeN
from .queries import QueryAnswers

__all__ = ["NUDGEN", "NUDGEM", "QueriesAnswersDict"]

QueriesAnswersDict = dict


def _to_qa(data: dict, name: str) -> QueryAnswers:
    try:
        return QueryAnswers.from_reference(data, name)
    except ValueError as exc:
        if "more than once" not in str(exc):
            raise
        warnings.warn(f"{name}: repeated answer indices merged ({exc})", stacklevel=3)
        return QueryAnswers.from_reference(data, name, on_duplicates="merge")


def _gamma(gamma: float | list[float] | tuple[float, ...] | np.ndarray | None) -> float | None:
    if isinstance(gamma, (list, tuple, np.ndarray)):
        vals = list(np.ravel(gamma))
        if len(vals) != 1:
            raise ValueError(f"gamma must be a single value, got {gamma!r}")
        return float(vals[0])
    return gamma


class NUDGEN:
    """NUDGE-N with the reference signature; gamma is searched on a finer grid than the reference's."""

    def __init__(self, device: object = None) -> None:
        self.device = device  # accepted for signature compatibility; computation is NumPy on the CPU

    def finetune_embeddings(
        self,
        embeddings: np.ndarray,
        train_set: dict,
        val_set: dict,
        nontrain_embeddings: np.ndarray | None = None,
        val_batch_size: int = 256,
        val_k: int = 1,
        gamma: float | None = None,
    ) -> np.ndarray:
        """Return the (N, d) float32 nudged embeddings aligned with ``embeddings``."""
        model = NudgeN(gamma=_gamma(gamma), metric=f"recall@{int(val_k)}")
        model.fit(
            embeddings,
            _to_qa(train_set, "train_set"),
            _to_qa(val_set, "val_set"),
            nontrain_embeddings=nontrain_embeddings,
        )
        self.model_ = model
        assert model.embeddings_ is not None  # always set by a fit on an array
        return model.embeddings_


class NUDGEM:
    """NUDGE-M with the reference signature; gamma is the exact maximiser of validation hit@1.

    Like the reference, gamma is the left end of the optimal segment (``NudgeM(margin=0.0)``); the native
    :class:`~nudge_rag.NudgeM` steps just inside it. Unlike the reference, hit@1 counts each validation query
    once (the reference counts each (query, answer) pair, so two tied relevant duplicates score 2 and a tie with
    an irrelevant duplicate scores as a hit), with ties going to the smaller row as in :func:`~nudge_rag.search`;
    so the chosen gamma can differ from the reference's on data with duplicate documents, and then scores better.
    """

    def __init__(self, device: object = None) -> None:
        self.device = device

    def finetune_embeddings(
        self,
        embeddings: np.ndarray,
        train_set: dict,
        val_set: dict,
        nontrain_embeddings: np.ndarray | None = None,
        val_batch_size: int = 256,
        gamma: float | None = None,
    ) -> np.ndarray:
        """Return the (N, d) float32 nudged embeddings aligned with ``embeddings`` (search by inner product)."""
        model = NudgeM(gamma=_gamma(gamma), margin=0.0)
        model.fit(
            embeddings,
            _to_qa(train_set, "train_set"),
            _to_qa(val_set, "val_set"),
            nontrain_embeddings=nontrain_embeddings,
        )
        self.model_ = model
        assert model.embeddings_ is not None  # always set by a fit on an array
        return model.embeddings_
