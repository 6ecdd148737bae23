import numpy as np
import pytest

from nudge_rag import QueryAnswers


def test_from_lists_csr_layout():
    q = np.eye(3, 4, dtype=np.float32)
    qa = QueryAnswers.from_lists(q, [[2, 0], [1], [3, 4, 5]], [[1, 2], [1], [1, 1, 3]])
    assert len(qa) == 3 and qa.dim == 4 and qa.n_pairs == 6
    assert qa.indptr.tolist() == [0, 2, 3, 6]
    assert qa.answers_of(2).tolist() == [3, 4, 5]
    assert qa.relevance.tolist() == [1, 2, 1, 1, 1, 3]
    assert qa.pair_rows().tolist() == [0, 0, 1, 2, 2, 2]


def test_from_pairs_maps_ids_and_drops_non_relevant():
    q = np.ones((3, 2), dtype=np.float64)
    pairs = [("a", "d2"), ("b", "d0", 2), ("a", "d1", 0), ("c", "d1", 1)]
    qa = QueryAnswers.from_pairs(q, ["a", "b", "c"], pairs, ["d0", "d1", "d2"])
    assert qa.answer_lists() == [[2], [0], [1]]
    assert qa.relevance.tolist() == [1, 2, 1]
    assert qa.ids == ("a", "b", "c")


def test_from_pairs_empty_query_raises_or_drops():
    q = np.ones((2, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="no relevant document.*'b'"):
        QueryAnswers.from_pairs(q, ["a", "b"], [("a", "x")], ["x"])
    qa = QueryAnswers.from_pairs(q, ["a", "b"], [("a", "x")], ["x"], drop_empty=True)
    assert qa.ids == ("a",) and len(qa) == 1


@pytest.mark.parametrize(
    "pairs, match",
    [([("zz", "x")], "unknown query id 'zz'"), ([("a", "nope")], "unknown document id 'nope'")],
)
def test_from_pairs_unknown_ids(pairs, match):
    with pytest.raises(ValueError, match=match):
        QueryAnswers.from_pairs(np.ones((1, 2), np.float32), ["a"], pairs, ["x"])


def test_duplicate_ids_rejected():
    with pytest.raises(ValueError, match="duplicate document id 'x'"):
        QueryAnswers.from_pairs(np.ones((1, 2), np.float32), ["a"], [("a", "x")], ["x", "x"])


@pytest.mark.parametrize(
    "emb, answers, exc, match",
    [
        (np.ones((2, 3), np.float32), [[0], []], ValueError, "empty answer list"),
        (np.ones((2, 3), np.float32), [[0], [-1]], ValueError, "must be >= 0"),
        (np.ones((2, 3), np.float32), [[0, 0], [1]], ValueError, "more than once"),
        (np.ones((2, 3), np.float32), [[0]], ValueError, "2 query embeddings but 1 answer lists"),
        (np.ones((2, 3), np.int64), [[0], [1]], TypeError, "float32 or float64"),
        (np.ones(3, np.float32), [[0]], ValueError, "2-D"),
        (np.array([[np.nan, 1.0]]), [[0]], ValueError, "NaN or inf"),
        (np.ones((1, 3), np.float32), [[0.5]], TypeError, "integers"),
    ],
)
def test_bad_inputs(emb, answers, exc, match):
    with pytest.raises(exc, match=match):
        QueryAnswers.from_lists(emb, answers)


def test_merge_duplicates_keeps_first():
    qa = QueryAnswers.from_lists(np.ones((1, 2), np.float32), [[3, 1, 3]], [[2, 1, 5]], on_duplicates="merge")
    assert qa.answer_lists() == [[3, 1]] and qa.relevance.tolist() == [2, 1]


def test_subset_and_concat_round_trip():
    q = np.arange(8, dtype=np.float32).reshape(4, 2) + 1
    qa = QueryAnswers.from_lists(q, [[0], [1, 2], [3], [4, 5, 6]], ids=list("abcd"))
    sub = qa.subset([3, 1])
    assert sub.answer_lists() == [[4, 5, 6], [1, 2]] and sub.ids == ("d", "b")
    both = qa.subset([0, 1]).concat(qa.subset([2, 3]))
    assert both.answer_lists() == qa.answer_lists()
    np.testing.assert_array_equal(both.embeddings, q)


def test_check_documents_names_the_row():
    qa = QueryAnswers.from_lists(np.ones((1, 2), np.float32), [[7]])
    with pytest.raises(IndexError, match="row 7 but there are only 5 documents"):
        qa.check_documents(5, "train")


@pytest.mark.parametrize(
    "answers, exc, match",
    [
        ([0, 1], TypeError, r"answers\[0\] must be a list of document rows, got int"),
        ([[2**70], [1]], ValueError, r"answers\[0\] names document row .* out of range"),
        ([[[0]], [1]], TypeError, r"answers\[0\] must hold integers"),
        ("ab", TypeError, "answers must be a list of answer lists"),
    ],
)
def test_malformed_answer_lists_are_named(answers, exc, match):
    """Issue 13, case 12: the message says which list is wrong and how (no silent flattening)."""
    with pytest.raises(exc, match=match):
        QueryAnswers.from_lists(np.eye(2, dtype=np.float32), answers)


def test_pair_with_non_numeric_relevance_is_named():
    q = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"pair 1 has relevance 'x', not a number"):
        QueryAnswers.from_pairs(q, ["a", "b"], [("a", "d", 1), ("b", "d", "x")], ["d"])
