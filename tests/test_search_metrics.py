import numpy as np
import pytest

from nudge_rag import QueryAnswers, evaluate, hit_at_k, mrr_at_k, ndcg_at_k, recall_at_k, search
from nudge_rag.search import RunningTopK


def test_search_matches_brute_force_across_blocks(rng):
    docs = rng.standard_normal((1000, 8)).astype(np.float32)
    qs = rng.standard_normal((37, 8)).astype(np.float32)
    s, i = search(qs, docs, 5, doc_block=64, query_block=10)
    full = qs @ docs.T
    expect = np.argsort(-full, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(i, expect)
    np.testing.assert_allclose(s, np.take_along_axis(full, expect, axis=1), rtol=1e-5)
    assert s.dtype == np.float32 and i.dtype == np.int64


def test_cosine_differs_from_inner_product():
    docs = np.array([[10.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    q = np.array([[0.5, 0.9]], dtype=np.float32)
    assert search(q, docs, 1)[1][0, 0] == 0
    assert search(q, docs, 1, similarity="cosine")[1][0, 0] == 1


def test_ties_prefer_smaller_index_and_k_capped():
    docs = np.ones((5, 3), dtype=np.float32)
    s, i = search(np.ones((1, 3), np.float32), docs, 10, doc_block=2)
    assert i.tolist() == [[0, 1, 2, 3, 4]]


def test_running_topk_threshold_path(rng):
    top = RunningTopK(3, 4)
    blocks = [rng.standard_normal((3, 50)).astype(np.float32) for _ in range(5)]
    for b, blk in enumerate(blocks):
        top.push(blk, np.arange(b * 50, b * 50 + 50))
    full = np.concatenate(blocks, axis=1)
    np.testing.assert_array_equal(top.index, np.argsort(-full, axis=1)[:, :4])


@pytest.mark.parametrize("bad, match", [(0, "positive integer"), (2.5, "positive integer")])
def test_search_bad_k(bad, match):
    with pytest.raises(ValueError, match=match):
        search(np.ones((1, 2), np.float32), np.ones((3, 2), np.float32), bad)


def test_search_dimension_mismatch():
    with pytest.raises(ValueError, match="dimension 3, expected 2"):
        search(np.ones((1, 3), np.float32), np.ones((3, 2), np.float32))


@pytest.fixture
def graded():
    # query 0: relevant {5: 2, 9: 1}; query 1: relevant {1: 1, 2: 1, 3: 1}
    return QueryAnswers.from_lists(np.ones((2, 2), np.float32), [[5, 9], [1, 2, 3]], [[2, 1], [1, 1, 1]])


def test_hand_computed_metrics(graded):
    retrieved = np.array([[9, 0, 5], [7, 8, 3]])
    # query 0: hits at ranks 1 and 3; query 1: hit at rank 3
    np.testing.assert_allclose(recall_at_k(retrieved, graded, 1), [1.0, 0.0])
    np.testing.assert_allclose(recall_at_k(retrieved, graded, 3), [1.0, 1 / 3])
    np.testing.assert_allclose(hit_at_k(retrieved, graded, 2), [1.0, 0.0])
    np.testing.assert_allclose(mrr_at_k(retrieved, graded, 3), [1.0, 1 / 3])
    dcg0 = 1 / np.log2(2) + 2 / np.log2(4)
    idcg0 = 2 / np.log2(2) + 1 / np.log2(3)
    dcg1 = 1 / np.log2(4)
    idcg1 = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    np.testing.assert_allclose(ndcg_at_k(retrieved, graded, 3), [dcg0 / idcg0, dcg1 / idcg1])


def test_recall_capped_at_k(graded):
    retrieved = np.array([[5, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(recall_at_k(retrieved, graded, 1), [1.0, 1.0])


def test_evaluate_end_to_end():
    docs = np.eye(4, dtype=np.float32)
    qa = QueryAnswers.from_lists(np.eye(4, dtype=np.float32)[[0, 1]], [[0], [3]])
    # query 1 ranks doc 1 first, then docs 0, 2, 3 tie at 0 and are ordered by row: its answer is 4th
    out = evaluate(docs, qa, ["recall@1", "mrr@4", "hit@2"])
    assert out == {"recall@1": 0.5, "mrr@4": pytest.approx((1 + 1 / 4) / 2), "hit@2": 0.5}
    with pytest.raises(ValueError, match="unknown metric 'p@3'"):
        evaluate(docs, qa, ["p@3"])


def test_ties_at_the_cut_off_keep_the_smaller_rows():
    """Issue 13, case 2: of documents tied for the k-th place, the smaller rows are returned, for any blocks."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 6)).astype(np.float32)
    docs = np.concatenate([base[[3]], rng.standard_normal((40, 6)).astype(np.float32), np.repeat(base[[3]], 5, 0)])
    q = base[[3]] * 3
    for k in (1, 2, 3):
        for block in (4, 7, 1000):
            _, idx = search(q, docs, k, doc_block=block)
            assert idx[0].tolist() == [0, 41, 42][:k], (k, block)


def test_evaluate_accepts_lists_and_a_single_metric_name():
    """Issue 13, case 12: evaluate takes what search takes, and one metric name as a string."""
    docs = np.eye(3, dtype=np.float32)
    qa = QueryAnswers.from_lists(docs, [[0], [1], [0]])
    assert evaluate(docs.tolist(), qa, "recall@1") == {"recall@1": pytest.approx(2 / 3)}
    with pytest.raises(TypeError, match="QueryAnswers"):
        evaluate(docs, [[0]])
