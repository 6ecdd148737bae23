"""The closed forms against brute force, and their corner cases."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge_rag import NudgeM, NudgeN, QueryAnswers
from nudge_rag._nudge import aggregate_training, n_geometry, nudge_n_rows

from .conftest import unit


def _brute_force_n(e, g, gamma, n=400_000, seed=0):
    """max g.x over unit x with |x - e|^2 <= gamma, by dense sampling of the sphere."""
    x = unit(np.random.default_rng(seed).standard_normal((n, e.size)))
    ok = ((x - e) ** 2).sum(axis=1) <= gamma
    return (x[ok] @ g).max()


@pytest.mark.parametrize("gamma", [0.05, 0.2, 0.48, 1.5])
def test_nudge_n_closed_form_beats_brute_force(gamma):
    rng = np.random.default_rng(7)
    for _ in range(5):
        e = unit(rng.standard_normal((1, 3)))[0]
        g = rng.standard_normal(3)
        if g @ e < 0:
            g = -g
        new, moved = nudge_n_rows(e[None], g[None], gamma)
        x = new[0].astype(np.float64)
        assert moved == 1
        assert abs(np.linalg.norm(x) - 1) < 1e-6
        assert ((x - e) ** 2).sum() <= gamma + 1e-6
        best = _brute_force_n(e, g, gamma)
        assert x @ g >= best - 1e-6  # no feasible point is better ...
        assert x @ g <= best + 0.02 * np.linalg.norm(g)  # ... and sampling gets close to it


def test_nudge_n_snaps_to_g_inside_the_cap():
    e = np.array([[1.0, 0.0, 0.0]], np.float32)
    g = np.array([[0.9, 0.1, 0.0]])
    new, _ = nudge_n_rows(e, g, 0.48)
    np.testing.assert_allclose(new[0], g[0] / np.linalg.norm(g[0]), atol=1e-6)


def test_parallel_and_opposed_documents_do_not_move():
    e = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    g = np.array([[2.0, 1e-9], [-1.0, 0.5], [0.0, -3.0]])  # (nearly) parallel, opposed, anti-parallel
    new, moved = nudge_n_rows(e, g, 0.3)
    assert np.isfinite(new).all() and moved == 0
    np.testing.assert_array_equal(new, e)
    new, moved = nudge_n_rows(e, g, 0.3, move_opposed=True)
    assert moved == 1 and np.isfinite(new).all()  # the opposed one moves; anti-parallel has no direction
    assert new[1] @ g[1] > e[1] @ g[1]
    assert abs(np.linalg.norm(new[1]) - 1) < 1e-6 and ((new[1] - e[1]) ** 2).sum() <= 0.3 + 1e-6


def test_training_aggregate_counts_each_query_once_per_document():
    q = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    qa = QueryAnswers.from_lists(q, [[4], [4, 1], [1]])
    agg = aggregate_training(qa)
    assert agg.docs.tolist() == [1, 4]
    np.testing.assert_allclose(agg.sums, [[1, 2], [1, 1]])


@st.composite
def problems(draw):
    n = draw(st.integers(3, 25))
    d = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    docs = rng.standard_normal((n, d)).astype(draw(st.sampled_from([np.float32, np.float64])))
    n_q = draw(st.integers(1, 12))
    answers = [sorted(set(rng.integers(0, n, rng.integers(1, 3)).tolist())) for _ in range(n_q)]
    queries = rng.standard_normal((n_q, d)).astype(np.float32)
    return docs, QueryAnswers.from_lists(queries, answers)


@settings(max_examples=60, deadline=None)
@given(problems(), st.floats(0.0, 4.0))
def test_property_nudge_n_feasible_and_untrained_fixed(problem, gamma):
    docs, train = problem
    before = docs.copy()
    model = NudgeN(gamma=gamma).fit(docs, train)
    np.testing.assert_array_equal(docs, before)  # input untouched
    out = model.embeddings_.astype(np.float64)
    base = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert (((out - base) ** 2).sum(axis=1) <= gamma + 1e-5).all()
    untouched = np.setdiff1d(np.arange(len(docs)), train.indices)
    np.testing.assert_allclose(out[untouched], base[untouched], atol=1e-6)
    assert set(model.moved_docs_.tolist()) <= set(train.indices.tolist())


@settings(max_examples=40, deadline=None)
@given(problems(), st.floats(0.0, 3.0))
def test_property_nudge_m_moves_by_gamma(problem, gamma):
    docs, train = problem
    out = NudgeM(gamma=gamma).fit(docs, train).embeddings_.astype(np.float64)
    base = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    step = np.linalg.norm(out - base, axis=1)
    trained = np.zeros(len(docs), bool)
    trained[train.indices] = True
    np.testing.assert_allclose(step[~trained], 0, atol=1e-6)
    g_norm = np.linalg.norm(aggregate_training(train).sums, axis=1)
    np.testing.assert_allclose(step[aggregate_training(train).docs[g_norm > 0]], gamma, atol=1e-5)


def test_geometry_outputs_finite_for_near_parallel():
    e = unit(np.array([[1.0, 1e-4, 0.0]]))
    g = np.array([[1.0, 1.1e-4, 0.0]])
    geo = n_geometry(e, g)
    assert np.isfinite(geo.z).all() and np.isfinite(geo.vectors(0.01)).all()
