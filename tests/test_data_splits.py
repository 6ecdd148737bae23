"""Split policies: official (+ seeded validation carve) and the paper's pooled protocol."""

from __future__ import annotations

import numpy as np
import pytest

from nudge_rag.data import (
    DataError,
    RetrievalDataset,
    load_beir,
    make_splits,
    official_splits,
    paper_splits,
    shared_data_dir,
)

SHARED = shared_data_dir()
needs_shared = pytest.mark.skipif(SHARED is None or not (SHARED / "beir").is_dir(), reason="shared BEIR data absent")


def _toy(n_train=20, n_dev=0, n_test=5, graded=False) -> RetrievalDataset:
    qrels, qids = {}, []
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rows = []
        for i in range(n):
            q = f"{split}{i}"
            qids.append(q)
            rows += [(q, f"d{i % 7}", 2.0 if graded else 1.0), (q, f"d{(i + 1) % 7}", 1.0)]
        if rows:
            qrels[split] = rows
    return RetrievalDataset("toy", [f"d{i}" for i in range(7)], None, qids, None, qrels)


def _disjoint(s):
    parts = [set(s.queries(r)) for r in ("train", "val", "test")]
    return not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_official_uses_dev_when_present():
    s = official_splits(_toy(n_dev=4))
    assert s.counts() == {"train": 20, "val": 4, "test": 5} and s.note == ""


def test_carve_is_seeded_deterministic_and_keeps_pairs_together():
    ds = _toy(n_train=50)
    a, b = official_splits(ds, seed=0), official_splits(ds, seed=0)
    assert a.val == b.val and a.train == b.train
    assert a.counts() == {"train": 45, "val": 5, "test": 5}
    assert official_splits(ds, seed=1).val != a.val
    assert sorted(a.train + a.val) == sorted(ds.qrels["train"])  # every pair kept, none duplicated
    assert _disjoint(a) and "10% of train" in a.note


def test_paper_protocol_sizes_order_and_seed():
    ds = _toy(n_train=60, n_dev=15, n_test=25)
    s = paper_splits(ds, seed=0)
    assert s.counts() == {"train": 70, "val": 10, "test": 20}
    pooled = ds.split_queries("train") + ds.split_queries("dev") + ds.split_queries("test")
    perm = np.random.RandomState(0).permutation(100)
    assert s.queries("train") == [pooled[i] for i in perm[:70]]
    assert s.queries("val") == [pooled[i] for i in perm[70:80]]
    assert s.queries("test") == [pooled[i] for i in perm[80:]]
    assert _disjoint(s)


def test_paper_caps_at_10000():
    ds = _toy(n_train=120_000, n_test=0)
    c = paper_splits(ds).counts()
    assert c == {"train": 100_000, "val": 10_000, "test": 10_000}


def test_auto_and_errors():
    no_test = _toy(n_test=0)
    assert make_splits(no_test, "auto").policy == "official"  # no test needed
    assert make_splits(no_test, "auto", need_test=True).policy == "paper"
    with pytest.raises(DataError, match="test split is empty"):
        make_splits(no_test, "official", need_test=True)
    with pytest.raises(DataError, match="cannot carve a validation set from 1"):
        official_splits(_toy(n_train=1))
    with pytest.raises(DataError, match="too few"):
        paper_splits(_toy(n_train=3, n_test=0))
    with pytest.raises(ValueError, match="split policy"):
        make_splits(no_test, "random")


@needs_shared
def test_real_split_sizes():
    sci = load_beir(SHARED / "beir" / "scifact")
    assert make_splits(sci, "official").counts() == {"train": 729, "val": 80, "test": 300}
    assert make_splits(sci, "paper").counts() == {"train": 778, "val": 110, "test": 221}
    nf = load_beir(SHARED / "beir" / "nfcorpus")
    assert make_splits(nf, "official").counts() == {"train": 2590, "val": 324, "test": 323}
    p = make_splits(nf, "paper")
    assert p.counts() == {"train": 2267, "val": 323, "test": 647}
    graded = {s for *_, s in p.test}
    assert graded == {1.0, 2.0}  # graded relevance survives pooling
