"""Drop-in compatibility with the reference package nudge-ft (import name ``nudge``), run side by side."""

import contextlib
import io

import numpy as np
import pytest

import nudge_rag
from nudge_rag import NUDGEM, NUDGEN
from nudge_rag.synthetic import make_synthetic

pytestmark = pytest.mark.integration  # runs the reference package nudge-ft (imports torch) side by side

nudge = pytest.importorskip("nudge", reason="nudge-ft is part of the dev extras: pip install 'nudge-rag[dev]'")


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def ref_inputs():
    data = make_synthetic(3000, 1500, 300, 10, dim=32, seed=3)
    as_dict = lambda qa: {"q_embs": qa.embeddings, "q_ans_indx": qa.answer_lists()}  # noqa: E731
    return data.documents, as_dict(data.train), as_dict(data.val)


def test_nudge_m_same_gamma_and_vectors(ref_inputs):
    docs, train, val = ref_inputs
    ref = _quiet(nudge.NUDGEM(device="cpu").finetune_embeddings, docs, train, val)
    ours = NUDGEM().finetune_embeddings(docs, train, val)
    assert isinstance(ours, np.ndarray) and ours.shape == docs.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.04, 0.2, 0.46])
def test_nudge_n_same_vectors_for_same_gamma(ref_inputs, gamma):
    docs, train, val = ref_inputs
    ref = _quiet(nudge.NUDGEN(device="cpu").finetune_embeddings, docs, train, val, gamma=gamma)
    ours = NUDGEN().finetune_embeddings(docs, train, val, gamma=gamma)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_nudge_n_search_at_least_as_good_on_validation(ref_inputs):
    docs, train, val = ref_inputs
    ref = _quiet(nudge.NUDGEN(device="cpu").finetune_embeddings, docs, train, val)
    ours = NUDGEN().finetune_embeddings(docs, train, val)
    qa = nudge_rag.QueryAnswers.from_reference(val, "val")
    score = lambda emb: nudge_rag.evaluate(emb, qa, ["recall@1"])["recall@1"]  # noqa: E731
    assert score(ours) >= score(ref) - 1e-9


def test_reference_options_accepted(ref_inputs):
    docs, train, val = ref_inputs
    nontrain = np.random.default_rng(0).standard_normal((50, docs.shape[1])).astype(np.float32)
    ref = _quiet(nudge.NUDGEN(device="cpu").finetune_embeddings, docs, train, val, nontrain, 64, 3, 0.1)
    ours = NUDGEN(device="cpu").finetune_embeddings(docs, train, val, nontrain, 64, 3, 0.1)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    ref_m = _quiet(nudge.NUDGEM(device="cpu").finetune_embeddings, docs, train, val, nontrain)
    np.testing.assert_allclose(NUDGEM().finetune_embeddings(docs, train, val, nontrain), ref_m, atol=1e-5)


def test_duplicate_answers_merged_with_warning(ref_inputs):
    docs, train, val = ref_inputs
    dup = {"q_embs": train["q_embs"], "q_ans_indx": [a + a[:1] for a in train["q_ans_indx"]]}
    with pytest.warns(UserWarning, match="merged"):
        out = NUDGEN().finetune_embeddings(docs, dup, val, gamma=0.1)
    np.testing.assert_allclose(out, NUDGEN().finetune_embeddings(docs, train, val, gamma=0.1))
