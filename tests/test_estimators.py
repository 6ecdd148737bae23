"""Fitting, gamma selection, insertion, bad input and persistence of NudgeN / NudgeM."""

import os

import numpy as np
import pytest

from nudge_rag import (
    DEFAULT_GAMMAS_N,
    InvalidParameterError,
    NotFittedError,
    NudgeM,
    NudgeN,
    QueryAnswers,
    evaluate,
    load,
    search,
)
from nudge_rag.metrics import hit_at_k


@pytest.mark.parametrize("metric", ["recall@1", "ndcg@10", "mrr@5", "hit@3", "recall@4"])
def test_pruned_validation_curve_equals_dense_evaluation(small_problem, metric):
    docs, train, val, _ = small_problem
    grid = np.linspace(0, 0.48, 9)
    model = NudgeN(metric=metric, gammas=grid).fit(docs, train, val)
    np.testing.assert_allclose(model.gammas_, grid)
    for g, score in zip(model.gammas_, model.val_scores_):
        dense = NudgeN(gamma=g).fit(docs, train).embeddings_
        assert score == pytest.approx(evaluate(dense, val, [metric])[metric], abs=1e-9), g


def test_nudge_n_choice_and_report(small_problem):
    docs, train, val, test = small_problem
    model = NudgeN().fit(docs, train, val)
    assert 0 < model.gamma_ <= 0.48 and model.gamma_ in DEFAULT_GAMMAS_N
    assert model.val_score_ >= model.val_base_score_
    assert model.val_scores_[0] == model.val_base_score_ and model.gammas_[0] == 0
    assert model.similarity_ == "cosine" and model.n_moved_ == model.moved_docs_.size > 0
    assert model.embeddings_.dtype == np.float32 and model.embeddings_.shape == docs.shape
    before = evaluate(docs, test)["recall@1"]
    after = evaluate(model.embeddings_, test)["recall@1"]
    assert after > before


def test_nudge_m_gamma_is_exact_hit_at_1_maximiser(small_problem):
    docs, train, val, _ = small_problem
    model = NudgeM().fit(docs, train, val)
    assert model.similarity_ == "inner_product"

    def hit1(gamma):
        emb = NudgeM(gamma=gamma).fit(docs, train).embeddings_
        return hit_at_k(search(val.embeddings, emb, 1)[1], val, 1).mean()

    dense = max(hit1(g) for g in np.linspace(0, 3, 301))
    assert hit1(model.gamma_) == pytest.approx(model.val_score_)
    assert model.val_score_ >= dense - 1e-12
    assert model.val_score_ >= model.val_base_score_
    # the curve is the step function of the same intervals
    pts = model.gammas_
    for a, b in list(zip(pts[:-1], pts[1:]))[:: max(1, len(pts) // 15)]:
        mid = (a + b) / 2
        assert hit1(mid) == pytest.approx(NudgeM(gamma=mid).fit(docs, train, val).val_score_)
    # the reference's choice, the left end of the optimal segment, scores the same on the curve
    left = NudgeM(margin=0.0).fit(docs, train, val)
    assert left.gamma_ < model.gamma_ <= left.gamma_ * (1 + 1e-4) and left.val_score_ == model.val_score_


def test_gamma_zero_wins_when_nudging_cannot_help(rng):
    docs = np.eye(5, dtype=np.float32)
    train = QueryAnswers.from_lists(np.eye(5, dtype=np.float32)[[1]] + 0.1, [[1]])
    val = QueryAnswers.from_lists(np.eye(5, dtype=np.float32)[[0, 2]], [[0], [2]])  # already perfect
    for cls in (NudgeN, NudgeM):
        model = cls().fit(docs, train, val)
        assert model.gamma_ == 0 and model.val_score_ == 1.0
        np.testing.assert_allclose(model.embeddings_, docs)


def test_fixed_gamma_skips_search_and_val_optional(small_problem):
    docs, train, val, _ = small_problem
    model = NudgeN(gamma=0.1).fit(docs, train)
    assert model.gamma_ == 0.1 and model.val_score_ is None
    with_val = NudgeN(gamma=0.1).fit(docs, train, val)
    np.testing.assert_array_equal(model.embeddings_, with_val.embeddings_)
    assert with_val.gammas_.tolist() == [0.0, 0.1]


def test_determinism(small_problem):
    docs, train, val, _ = small_problem
    for cls in (NudgeN, NudgeM):
        a, b = cls().fit(docs, train, val), cls().fit(docs, train, val)
        assert a.gamma_ == b.gamma_
        np.testing.assert_array_equal(a.embeddings_, b.embeddings_)


def test_inputs_never_modified(small_problem):
    docs, train, val, _ = small_problem
    snaps = [docs.copy(), train.embeddings.copy(), train.indices.copy(), val.embeddings.copy()]
    NudgeN().fit(docs, train, val)
    NudgeM().fit(docs.astype(np.float64), train, val)
    for now, was in zip([docs, train.embeddings, train.indices, val.embeddings], snaps):
        np.testing.assert_array_equal(now, was)


def test_float64_in_float32_out_unless_asked(small_problem):
    docs, train, val, _ = small_problem
    assert NudgeN().fit(docs.astype(np.float64), train, val).embeddings_.dtype == np.float32
    assert NudgeN(dtype=np.float64).fit(docs, train, val).embeddings_.dtype == np.float64


@pytest.mark.parametrize("cls", [NudgeN, NudgeM])
def test_insertion_equals_refit(small_problem, cls):
    docs, train, val, _ = small_problem
    rng = np.random.default_rng(5)
    new_docs = rng.standard_normal((7, docs.shape[1])).astype(np.float32)
    t1, t2 = train.subset(range(80)), train.subset(range(80, 120))
    extra_train = QueryAnswers.from_lists(new_docs[:3] + 0.1, [[60], [61, 5], [62]])
    v1, v2 = val.subset(range(25)), val.subset(range(25, 40))
    extra_val = QueryAnswers.from_lists(new_docs[3:5] + 0.2, [[63], [64]])

    model = cls().fit(docs, t1, v1)
    gamma = model.gamma_
    model.insert(new_embeddings=new_docs)
    model.insert(train=t2.concat(extra_train))
    model.insert(val=v2.concat(extra_val))

    all_docs = np.concatenate([docs, new_docs])
    refit = cls(gamma=gamma).fit(all_docs, t1.concat(t2).concat(extra_train), v1.concat(v2).concat(extra_val))
    assert model.gamma_ == gamma
    np.testing.assert_allclose(model.embeddings_, refit.embeddings_, atol=1e-5)
    np.testing.assert_array_equal(model.moved_docs_, refit.moved_docs_)
    assert model.val_score_ == pytest.approx(refit.val_score_)
    assert model.val_base_score_ == pytest.approx(refit.val_base_score_)
    assert len(model.val_) == 40 + 2


def test_insert_only_touches_named_documents(small_problem):
    docs, train, val, _ = small_problem
    model = NudgeN().fit(docs, train, val)
    before = model.embeddings_.copy()
    model.insert(train=QueryAnswers.from_lists(docs[[50]] + 0.5, [[50]]))
    changed = np.flatnonzero(np.abs(model.embeddings_ - before).max(axis=1) > 0)
    assert changed.tolist() == [50]


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda d, t, v: NudgeN().fit(d[:, :5], t, v), ValueError, "dimension 16 but the documents have dimension 5"),
        (lambda d, t, v: NudgeN().fit(d.astype(np.int32), t, v), TypeError, "float32 or float64"),
        (lambda d, t, v: NudgeN().fit(np.where(np.eye(*d.shape) > 0, np.nan, d), t, v), ValueError, "NaN or inf"),
        (lambda d, t, v: NudgeN().fit(d[:20], t, v), IndexError, "train names document row"),
        (lambda d, t, v: NudgeN().fit(d, t, None), ValueError, "val is required"),
        (lambda d, t, v: NudgeN(gamma=-0.1).fit(d, t, v), ValueError, "gamma must be finite and >= 0"),
        (lambda d, t, v: NudgeN(gamma=4.5).fit(d, t, v), ValueError, "<= 4.0"),
        (lambda d, t, v: NudgeM(gamma=float("nan")).fit(d, t, v), ValueError, "finite"),
        (lambda d, t, v: NudgeN(metric="p@1").fit(d, t, v), ValueError, "unknown metric"),
        (lambda d, t, v: NudgeN().fit(d, {"q_embs": 1}, v), TypeError, "must be a QueryAnswers"),
        (lambda d, t, v: NudgeN().fit(np.vstack([d, np.zeros((1, 16), np.float32)]), t, v), ValueError, "zero vector"),
        (lambda d, t, v: NudgeN().fit(d[0], t, v), ValueError, "2-D"),
        (lambda d, t, v: NudgeN(gammas=[]).fit(d, t, v), ValueError, "at least one value"),
    ],
)
def test_bad_input_raises_clearly(small_problem, make, exc, match):
    docs, train, val, _ = small_problem
    with pytest.raises(exc, match=match):
        make(docs, train, val)


@pytest.mark.parametrize(
    "model, name, shown",
    [
        (NudgeN(move_opposed="no"), "move_opposed", "'no'"),
        (NudgeN(move_opposed=1), "move_opposed", "1"),
        (NudgeN(metric="p@1"), "metric", "'p@1'"),
        (NudgeN(gammas=["a"]), "gammas", "['a']"),
        (NudgeN(gammas=[0.1, 5.0]), "gammas", "5.0"),
        (NudgeN(smoothing=-1), "smoothing", "-1"),
        (NudgeN(dtype="int8"), "dtype", "'int8'"),
        (NudgeN(dtype="no such type"), "dtype", "'no such type'"),
        (NudgeN(gamma="0.1"), "gamma", "'0.1'"),
        (NudgeM(margin=float("inf")), "margin", "inf"),
        (NudgeM(gamma=-2.0), "gamma", "-2.0"),
        (NudgeM(dtype=np.int64), "dtype", "int64"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_parameters_are_validated_at_the_start_of_fit(small_problem, model, name, shown):
    """One scikit-learn style _validate_params: fit refuses a bad parameter before reading any input, and
    the ValueError names the class, the parameter and the value received."""
    docs, train, val, _ = small_problem
    with pytest.raises(InvalidParameterError) as err:
        model.fit("not even an array", "nor queries")  # parameters are checked first
    assert isinstance(err.value, ValueError)
    text = str(err.value)
    assert text.startswith(f"{type(model).__name__}: {name}") and shown in text, text
    with pytest.raises(ValueError, match=name):
        model.fit(docs, train, val)
    assert not hasattr(model, "gamma_")


@pytest.mark.parametrize("cls", [NudgeN, NudgeM])
def test_every_parameter_has_one_check(cls):
    assert cls()._param_checks().keys() == set(cls._param_names) == set(cls().get_params())
    cls()._validate_params()  # the defaults are valid


def test_init_only_stores_parameters():
    """scikit-learn convention: no validation in __init__ (set_params / clone work with any value)."""
    model = NudgeN(move_opposed="no", gamma=-1)
    assert model.get_params()["move_opposed"] == "no"
    model.set_params(move_opposed=True, gamma=0.1)._validate_params()


def test_not_fitted_and_failed_insert_leaves_model_unchanged(small_problem, tmp_path):
    docs, train, val, _ = small_problem
    with pytest.raises(NotFittedError, match="not fitted yet"):
        NudgeN().insert(new_embeddings=docs)
    model = NudgeN().fit(docs, train, val)
    before = model.embeddings_.copy()
    with pytest.raises(IndexError):
        model.insert(train=QueryAnswers.from_lists(docs[:1], [[999]]))
    with pytest.raises(ValueError, match="dimension"):
        model.insert(new_embeddings=np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(model.embeddings_, before)
    assert model.embeddings_.shape == docs.shape


@pytest.mark.parametrize("cls", [NudgeN, NudgeM])
def test_save_load_round_trip(small_problem, tmp_path, cls):
    docs, train, val, _ = small_problem
    model = cls().fit(docs, train, val)
    path = tmp_path / "model.npz"
    model.save(path)
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary left behind
    back = load(path)
    assert type(back) is cls and back.gamma_ == model.gamma_ and back.similarity_ == model.similarity_
    np.testing.assert_array_equal(back.embeddings_, model.embeddings_)
    np.testing.assert_array_equal(back.val_scores_, model.val_scores_)
    assert back.get_params().keys() == model.get_params().keys()
    # a loaded model keeps inserting like the original
    extra = QueryAnswers.from_lists(docs[[40, 41]] + 0.3, [[40], [41]])
    np.testing.assert_allclose(back.insert(train=extra).embeddings_, model.insert(train=extra).embeddings_, atol=1e-6)


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, a=np.ones(2))
    with pytest.raises(ValueError, match="not a nudge-rag model file"):
        load(bad)
    (tmp_path / "y.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a nudge-rag model file"):
        load(tmp_path / "y.npz")


def test_save_is_atomic_when_writing_fails(small_problem, tmp_path, monkeypatch):
    docs, train, val, _ = small_problem
    model = NudgeN().fit(docs, train, val)
    path = tmp_path / "m.npz"
    model.save(path)
    original = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        NudgeM().fit(docs, train, val).save(path)
    assert path.read_bytes() == original and os.listdir(tmp_path) == ["m.npz"]


def test_nontrain_embeddings_compete_in_validation(small_problem):
    docs, train, val, _ = small_problem
    # exact copies of every validation answer, placed outside the corpus, make validation hard
    distractors = val.embeddings * 1.0
    plain = NudgeN().fit(docs, train, val)
    hard = NudgeN().fit(docs, train, val, nontrain_embeddings=distractors)
    assert hard.val_base_score_ < plain.val_base_score_


# ------------------------------------------------------------------ issue 13: reliability cases


def test_flat_validation_curve_moves_nothing():
    """Case 3: validation answers no nudge can reach give a constant curve, hence gamma 0 and no move."""
    rng = np.random.default_rng(3)
    eye = np.eye(8, dtype=np.float32)
    docs = np.concatenate([eye[:6], (rng.standard_normal((40, 8)) * 0.05 + eye[7]).astype(np.float32)])
    tq = np.tile(eye[7] + 0.5 * eye[6], (40, 1)) + 0.01 * rng.standard_normal((40, 8)).astype(np.float32)
    train = QueryAnswers.from_lists(tq, [[6 + i] for i in range(40)])
    val = QueryAnswers.from_lists(np.stack([eye[0], eye[3], eye[3] + 0.01 * eye[4]]), [[0], [1], [2]])
    model = NudgeN().fit(docs, train, val)
    assert np.unique(model.val_scores_).size == 1
    assert model.gamma_ == 0 and model.n_moved_ == 0


def test_nudge_m_every_answer_duplicated_matches_evaluate():
    """Case 1: answers whose exact duplicate sits at a smaller row miss at gamma 0; the gain must be seen."""
    rng = np.random.default_rng(0)
    base = (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(rng.standard_normal((60, 16)))
    docs = np.concatenate([base, base, rng.standard_normal((20, 16))]).astype(np.float32)
    offsets = rng.standard_normal((60, 16))

    def queries(n, seed):
        r = np.random.default_rng(seed)
        a = r.integers(0, 60, n)
        return QueryAnswers.from_lists(
            base[a] + 0.7 * offsets[a] / 4 + 0.3 * r.standard_normal((n, 16)), [[60 + int(x)] for x in a]
        )

    train, val = queries(120, 1), queries(20, 2)
    model = NudgeM().fit(docs, train, val)
    assert model.val_base_score_ == evaluate(docs, val, ["hit@1"])["hit@1"] == 0.0
    assert model.gamma_ > 0 and model.val_score_ == evaluate(model.embeddings_, val, ["hit@1"])["hit@1"] > 0.3
    left = NudgeM(margin=0.0).fit(docs, train, val)  # the NUDGEM drop-in's choice scores the same
    assert evaluate(left.embeddings_, val, ["hit@1"])["hit@1"] == model.val_score_


@pytest.mark.parametrize("cls", [NudgeN, NudgeM])
def test_same_result_for_any_block_size(small_problem, monkeypatch, cls):
    """Case 4 (in process): the query/document tiling of the gamma search does not change gamma or vectors."""
    import importlib

    import nudge_rag._gamma_search as gs

    search_module = importlib.import_module("nudge_rag.search")  # the attribute nudge_rag.search is the function

    docs, train, val, _ = small_problem
    ref = cls().fit(docs, train, val)
    monkeypatch.setattr(gs, "VAL_BLOCK", 7)
    monkeypatch.setattr(gs, "_PAIR_TILE", 64)
    monkeypatch.setattr(search_module, "QUERY_BLOCK", 7)  # the static top-k scan (static_topk)
    monkeypatch.setattr(search_module, "DOC_BLOCK", 5)
    other = cls().fit(docs, train, val)
    assert other.gamma_ == ref.gamma_
    np.testing.assert_array_equal(other.embeddings_, ref.embeddings_)


_THREAD_SCRIPT = """
import hashlib, sys
import numpy as np
from nudge_rag import NudgeM, NudgeN, QueryAnswers
z = np.load(sys.argv[1])
qa = lambda p: QueryAnswers(z[p + "_emb"], z[p + "_ptr"], z[p + "_idx"], z[p + "_rel"])
for cls in (NudgeM, NudgeN):
    m = cls().fit(z["docs"], qa("train"), qa("val"))
    print(cls.__name__, repr(m.gamma_), hashlib.sha256(m.embeddings_.tobytes()).hexdigest())
"""


@pytest.mark.integration
def test_same_result_for_any_thread_count(scifact, tmp_path):
    """Case 4: NudgeM / NudgeN on SciFact give bit-identical gamma and vectors with 1 and 2 BLAS threads."""
    import subprocess
    import sys

    docs, train, val, _ = scifact
    arrays = {"docs": docs}
    for name, qa in (("train", train), ("val", val)):
        arrays.update(
            {
                f"{name}_emb": qa.embeddings,
                f"{name}_ptr": qa.indptr,
                f"{name}_idx": qa.indices,
                f"{name}_rel": qa.relevance,
            }
        )
    np.savez(tmp_path / "problem.npz", **arrays)
    out = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        run = subprocess.run(
            [sys.executable, "-c", _THREAD_SCRIPT, str(tmp_path / "problem.npz")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        out.append(run.stdout)
    assert out[0] == out[1] and out[0].count("\n") == 2


def test_overflowing_inputs_are_refused_or_normalised(small_problem):
    """Case 5: nothing turns silently into NaN/inf."""
    docs, train, val, _ = small_problem
    plain = NudgeN().fit(docs, train, val)
    huge = NudgeN().fit(docs.astype(np.float64) * 1e39, train, val)  # documents are normalised: same answer
    assert np.isfinite(huge.embeddings_).all() and huge.gamma_ == plain.gamma_
    np.testing.assert_allclose(huge.embeddings_, plain.embeddings_, atol=1e-6)
    assert np.isfinite(NudgeM().fit(docs.astype(np.float64) * 1e-60, train, val).embeddings_).all()
    with pytest.raises(ValueError, match="gamma must be <= 1e"):
        NudgeM(gamma=1e39).fit(docs, train)
    with pytest.raises(ValueError, match="beyond the float32 range"):
        QueryAnswers.from_lists(val.embeddings.astype(np.float64) * 1e39, val.answer_lists())


@pytest.mark.parametrize("cls", [NudgeN, NudgeM])
def test_insertion_equals_refit_bit_for_bit(small_problem, cls):
    """Case 13: insert is exactly a refit with gamma fixed (training sums accumulate in pair order)."""
    docs, train, val, _ = small_problem
    t1, t2 = train.subset(range(70)), train.subset(range(70, 120))
    model = cls().fit(docs, t1, val)
    model.insert(train=t2)
    refit = cls(gamma=model.gamma_).fit(docs, t1.concat(t2), val)
    np.testing.assert_array_equal(model.embeddings_, refit.embeddings_)
    np.testing.assert_array_equal(model.train_sums_, refit.train_sums_)
    assert model.val_score_ == refit.val_score_
