"""Split policies: which queries train, validate (choose gamma) and test.

- ``"official"``: the dataset's own train/dev/test splits; when there is no dev split, a seeded
  ``val_fraction`` of the train queries becomes the validation set (SciFact: 10% of train).
- ``"paper"``: the NUDGE paper's protocol: pool the queries of all splits (train, dev, test order), permute
  them with ``numpy.random.RandomState(seed)``, take 10% validation and 20% test (each at most 10,000),
  and train on the rest.
- ``"auto"``: ``"official"`` unless a test split is needed and the data has none, then ``"paper"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..finetune import carve_rows
from .dataset import Judgement, RetrievalDataset
from .errors import DataError

__all__ = ["Splits", "make_splits", "official_splits", "paper_splits", "carve", "POLICIES"]

POLICIES = ("official", "paper", "auto")


@dataclass(frozen=True)
class Splits:
    """Relevant judgements per role; ``test`` may be empty when the data has no test split."""

    train: list[Judgement]
    val: list[Judgement]
    test: list[Judgement]
    policy: str
    note: str = ""

    def queries(self, role: str) -> list[str]:
        """Distinct query ids of ``role`` (``"train"``, ``"val"`` or ``"test"``) in order."""
        return list(dict.fromkeys(q for q, _, _ in getattr(self, role)))

    def counts(self) -> dict[str, int]:
        """Number of queries per role."""
        return {r: len(self.queries(r)) for r in ("train", "val", "test")}


def _group(judgements: list[Judgement]) -> dict[str, list[Judgement]]:
    out: dict[str, list[Judgement]] = {}
    for j in judgements:
        out.setdefault(j[0], []).append(j)
    return out


def _take(groups: dict[str, list[Judgement]], qids: list[str]) -> list[Judgement]:
    return [j for q in qids for j in groups[q]]


def carve(judgements: list[Judgement], fraction: float, seed: int) -> tuple[list[Judgement], list[Judgement]]:
    """Split judgements by query with the one carving rule, :func:`nudge_rag.finetune.carve_rows`.

    A seeded ``fraction`` of the distinct queries (``max(1, floor(fraction * n))``, at most ``n - 1``; the
    first of ``numpy.random.RandomState(seed).permutation(n)``) vs the rest; both parts keep the original
    order. Returns ``(rest, carved)``.
    """
    groups = _group(judgements)
    qids = list(groups)
    if len(qids) < 2:
        raise DataError(f"cannot carve a validation set from {len(qids)} training query(ies); need at least 2")
    rest, val = carve_rows(len(qids), fraction, seed)
    return _take(groups, [qids[i] for i in rest]), _take(groups, [qids[i] for i in val])


def official_splits(ds: RetrievalDataset, *, seed: int = 0, val_fraction: float = 0.1) -> Splits:
    """The dataset's own splits; validation carved from train when there is no dev split."""
    if not ds.qrels.get("train"):
        present = ", ".join(ds.splits) or "none"
        raise DataError(f"{ds.name}: the train split is empty or missing (splits present: {present})")
    train, note = ds.qrels["train"], ""
    if ds.qrels.get("dev"):
        val = ds.qrels["dev"]
    else:
        train, val = carve(train, val_fraction, seed)
        note = f"no dev split: validation = {val_fraction:.0%} of train (seed {seed})"
    return Splits(train, val, list(ds.qrels.get("test", [])), "official", note)


def paper_splits(
    ds: RetrievalDataset,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    cap: int = 10_000,
) -> Splits:
    """The NUDGE paper's pooled random split (see module docstring)."""
    pooled: dict[str, list[Judgement]] = {}
    for split in ("train", "dev", "test"):
        for j in ds.qrels.get(split, ()):
            pooled.setdefault(j[0], []).append(j)
    qids = list(pooled)
    n = len(qids)
    n_val = min(cap, int(val_fraction * n))
    n_test = min(cap, int(test_fraction * n))
    n_train = n - n_val - n_test
    if n_val < 1 or n_test < 1 or n_train < 1:
        raise DataError(
            f"{ds.name}: {n} queries are too few for the paper's split (train {n_train}, val {n_val}, test {n_test})"
        )
    perm = np.random.RandomState(seed).permutation(n)
    parts = [perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]]
    train, val, test = ([j for i in part for j in pooled[qids[i]]] for part in parts)
    note = f"pooled {n} queries, seed {seed}"
    return Splits(train, val, test, "paper", note)


def make_splits(
    ds: RetrievalDataset,
    policy: str = "official",
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    need_test: bool = False,
) -> Splits:
    """Apply a split policy (``"official"``, ``"paper"`` or ``"auto"``).

    ``val_fraction`` is the share of train carved as validation by ``"official"`` when there is no dev split.

    Raises :class:`DataError` when ``need_test`` and the resulting test split is empty.
    """
    if policy not in POLICIES:
        raise ValueError(f"split policy must be one of {POLICIES}, got {policy!r}")
    if policy == "auto":
        policy = "official" if (ds.qrels.get("test") or not need_test) and ds.qrels.get("train") else "paper"
    if policy == "paper":
        splits = paper_splits(ds, seed=seed)  # the protocol's fractions are fixed (10% / 20%)
    else:
        splits = official_splits(ds, seed=seed, val_fraction=val_fraction)
    if need_test and not splits.test:
        raise DataError(f"{ds.name}: the test split is empty (the data has no test pairs; use the paper split)")
    return splits
