"""nudge_rag.finetune: pair grouping, the one validation carve, the estimator factory and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nudge_rag import NudgeM, NudgeN, QueryAnswers
from nudge_rag.data.splits import carve
from nudge_rag.finetune import (
    DEFAULT_VAL_FRACTION,
    FinetuneReport,
    carve_rows,
    finetune_pairs,
    finetune_queries,
    group_pairs,
    insert_questions,
    make_model,
    n_validation,
    validation_metric,
)


def test_group_pairs_groups_dedups_and_drops():
    pairs = [
        ("q a", "d1"),
        ("q b", "d2", 2.0),
        ("q a", "d1", 3.0),  # same answer again: highest relevance kept
        ("q a", ["d3", "d4"]),
        ("  ", "d1"),  # blank question: dropped
        ("q c", "d5", 0),  # no positive answer: dropped
        ("q d", []),  # no answer: dropped
    ]
    qs = group_pairs(pairs)
    assert qs.texts == ("q a", "q b") and qs.ids == ("q0", "q1")
    assert qs.answers == (("d1", "d3", "d4"), ("d2",)) and qs.relevance == ((3.0, 1.0, 1.0), (2.0,))
    assert qs.n_dropped == 3 and qs.n_pairs == 4 and len(qs) == 2
    assert qs.unknown({"d1", "d2", "d3"}) == ["d4"]
    with pytest.raises(ValueError, match="pair 0 must be"):
        group_pairs([("only a question",)])
    with pytest.raises(ValueError, match="finite"):
        group_pairs([("q", "d", float("nan"))])


def test_one_carving_rule_for_every_caller():
    # floor(fraction * n), at least 1, at most n - 1; RandomState(seed) permutation; original order kept
    assert DEFAULT_VAL_FRACTION == 0.1
    assert [n_validation(n) for n in (2, 9, 10, 19, 807, 809)] == [1, 1, 1, 1, 80, 80]
    rest, val = carve_rows(809, 0.1, 0)
    expected = np.sort(np.random.RandomState(0).permutation(809)[:80])
    np.testing.assert_array_equal(val, expected)
    assert np.union1d(rest, val).size == 809 and np.intersect1d(rest, val).size == 0
    # the data layer's carve (CLI "official" split without a dev set) gives the same queries
    judgements = [(f"q{i}", f"d{i % 7}", 1) for i in range(809)]
    _, carved = carve(judgements, 0.1, 0)
    assert [int(q[1:]) for q, _, _ in carved] == val.tolist()
    # grouped pairs carve the same positions
    qs = group_pairs([(f"question {i}", f"d{i}") for i in range(809)])
    assert [int(t.split()[1]) for t in qs.carve()[1].texts] == val.tolist()
    with pytest.raises(ValueError, match="cannot carve a validation split from 1 question"):
        carve_rows(1)
    with pytest.raises(ValueError, match="val_fraction"):
        carve_rows(10, 1.5)


def test_make_model_and_validation_metric():
    m = make_model("NUDGE_N", metric="ndcg@10")
    assert isinstance(m, NudgeN) and validation_metric(m) == "ndcg@10"
    assert isinstance(make_model("m", gamma=0.5), NudgeM) and validation_metric(make_model("nudge-m")) == "hit@1"
    assert validation_metric(make_model()) == "recall@1"
    with pytest.raises(ValueError, match="hit@1"):
        make_model("nudge-m", metric="ndcg@10")
    with pytest.raises(ValueError, match="variant"):
        make_model("nudge-x")
    with pytest.raises(TypeError, match="solver_params for NudgeN"):
        make_model("nudge-n", bogus=1)


def test_finetune_queries_equals_the_estimator_and_reports_the_patch(small_problem, tmp_path):
    docs, train, val, test = small_problem
    result = finetune_queries(docs, train, val, test=test)
    direct = NudgeN().fit(docs, train, val)
    assert result.model.gamma_ == direct.gamma_ > 0
    np.testing.assert_array_equal(result.embeddings, direct.embeddings_)
    r = result.report
    assert r.n_moved == len(result.model.patch_) == direct.n_moved_ and r.val_source == "given"
    assert r.val_metric == "recall@1" and r.val_score == direct.val_score_ and len(r.gammas) == len(r.val_scores)
    assert r.test_metrics_after["recall@1"] >= r.test_metrics_before["recall@1"]
    r.save(tmp_path / "r.json")
    assert FinetuneReport.load(tmp_path / "r.json") == r
    json.loads(r.to_json())
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        FinetuneReport.load(tmp_path / "bad.json")


def test_finetune_pairs_carves_embeds_and_fits_like_the_estimator(small_problem):
    docs, train, _, _ = small_problem
    answers = train.answer_lists()
    texts = [f"question {i}" for i in range(len(train))]
    vectors = dict(zip(texts, train.embeddings))
    qs = group_pairs([(t, f"doc{a[0]}") for t, a in zip(texts, answers)])
    row_of = {f"doc{i}": i for i in range(docs.shape[0])}
    result = finetune_pairs(docs, qs, row_of=row_of, embed_queries=lambda ts: np.stack([vectors[t] for t in ts]))
    rest, val = carve_rows(len(train), 0.1, 0)
    direct = NudgeN().fit(docs, train.subset(rest), train.subset(val))
    assert result.report.val_source == "carved" and result.report.n_val_questions == val.size == 12
    assert result.model.gamma_ == direct.gamma_
    np.testing.assert_allclose(result.embeddings, direct.embeddings_, atol=1e-6)
    fixed = finetune_pairs(
        docs, qs, row_of=row_of, embed_queries=lambda ts: np.stack([vectors[t] for t in ts]), gamma=0.1
    )
    assert fixed.report.val_source == "none" and fixed.report.gamma_fixed and fixed.report.n_val_questions == 0
    with pytest.raises(ValueError, match="no usable training pairs"):
        finetune_pairs(docs, group_pairs([]), row_of=row_of, embed_queries=lambda ts: None)
    with pytest.raises(ValueError, match="not in the corpus: 'nope'"):
        finetune_pairs(
            docs,
            group_pairs([("q", "nope"), ("r", "doc1")]),
            row_of=row_of,
            embed_queries=lambda ts: np.ones((len(ts), docs.shape[1])),
        )
    assert isinstance(result.train, QueryAnswers)


def test_by_document_expands_documents_to_their_current_chunks():
    """Pairs by document: a document id stands for all its chunks, read at fit time (issue 20, item 3)."""
    q = group_pairs([("a", "D1"), ("a", "n9", 2.0), ("b", "D2"), ("c", ["D1", "n1"], 3.0)])
    e = q.by_document({"D1": ["n1", "n2"], "D2": []})  # D2 was deleted: no chunks left
    assert e.texts == ("a", "c") and e.ids == ("q0", "q2")
    assert e.answers == (("n1", "n2", "n9"), ("n1", "n2"))
    assert e.relevance == ((1.0, 1.0, 2.0), (3.0, 3.0))  # a chunk named twice keeps the highest relevance
    assert e.n_dropped == q.n_dropped + 1
    assert q.answers[0] == ("D1", "n9")  # not mutated
    # an edit re-chunks the document: the same pairs follow the new chunks
    assert q.by_document({"D1": ["n7"], "D2": ["n8"]}).answers == (("n7", "n9"), ("n8",), ("n7", "n1"))


def test_check_known_names_the_unknown_ids_and_insert_questions_carves_only_from_enough_new_questions():
    qs = group_pairs([(f"question {i}?", f"d{i}") for i in range(8)])
    qs.check_known({f"d{i}" for i in range(8)})
    with pytest.raises(ValueError, match=r"train: 7 node id\(s\) not in the index: 'd1', .*'d5' \(and 2 more\)\. hint"):
        qs.check_known({"d0"}, "train", "node id(s)", "the index", ". hint")
    train, val = insert_questions(qs, None, (0.25, 0))
    assert train is not None and val is not None and (len(train), len(val)) == (6, 2)
    assert insert_questions(qs, None, None) == (qs, None)  # gamma fixed without validation: nothing carved
    one = group_pairs([("only question?", "d0")])
    assert insert_questions(one, None, (0.25, 0)) == (one, None)
    assert insert_questions(group_pairs([]), one) == (None, one)
    with pytest.raises(ValueError, match="no usable training pairs"):
        insert_questions(group_pairs([]), None)
    with pytest.raises(ValueError, match="val_dataset has no usable question"):
        insert_questions(one, group_pairs([]))
