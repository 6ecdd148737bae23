"""Plain pairs format (JSONL and CSV) for users' own data."""

from __future__ import annotations

from pathlib import Path

import pytest

from nudge_rag.data import DataError, MissingDataError, load_dataset, load_pairs, load_pairs_dir

FIXTURES = Path(__file__).parent / "fixtures"


def test_jsonl_pairs_queries_by_text_graded_and_splits():
    ds = load_dataset(FIXTURES / "pairs_jsonl")
    assert ds.doc_ids == ["a", "b", "c"]
    assert ds.doc_texts[0] == "Apples Apples are red or green fruit."
    assert ds.query_ids == ["q0", "q1", "t1", "q3"]
    assert ds.query_texts == ["which fruit is yellow?", "red fruit", "small red fruit", "green fruit"]
    # the same text is the same query; relevance 0 is not relevant; "val" means dev
    assert ds.qrels == {
        "train": [("q0", "b", 1.0), ("q1", "a", 1.0), ("q1", "c", 2.0)],
        "dev": [("q3", "a", 1.0)],
        "test": [("t1", "c", 1.0)],
    }


def test_csv_variant_matches_jsonl():
    csv_ds = load_pairs_dir(FIXTURES / "pairs_csv")
    assert csv_ds.doc_texts == [
        "Apples Apples are red, or green, fruit.",
        "Bananas are long and yellow.",
        "Cherries Cherries are small and red.",
    ]
    assert csv_ds.qrels["train"] == [("q0", "b", 1.0), ("q1", "a", 1.0), ("q1", "c", 2.0)]
    assert csv_ds.qrels["test"] == [("q2", "c", 1.0)]  # empty relevance cell -> 1


def test_pairs_without_corpus_use_known_doc_ids(tmp_path):
    p = tmp_path / "pairs.jsonl"
    p.write_text('{"query_id": "x", "doc_id": 7}\n{"query_id": "y", "doc_id": "8", "split": "test"}\n')
    ds = load_pairs(p, doc_ids=["7", "8", "9"])
    assert ds.doc_texts is None and ds.query_texts is None
    assert ds.qrels == {"train": [("x", "7", 1.0)], "test": [("y", "8", 1.0)]}
    with pytest.raises(DataError, match=r"pairs.jsonl:1: doc_id '7' is not in the document id list"):
        load_pairs(p, doc_ids=["8"])


def test_split_files_set_the_split(tmp_path):
    (tmp_path / "corpus.jsonl").write_bytes((FIXTURES / "pairs_jsonl" / "corpus.jsonl").read_bytes())
    (tmp_path / "train.jsonl").write_text('{"query": "yellow", "doc_id": "b"}\n')
    (tmp_path / "test.csv").write_text("query,doc_id\nred,a\n")
    ds = load_dataset(tmp_path)
    assert ds.qrels == {"train": [("q0", "b", 1.0)], "test": [("q1", "a", 1.0)]}


@pytest.mark.parametrize(
    "pairs, message",
    [
        ("pairs.jsonl", r"pairs.jsonl:2: missing 'doc_id' \(or 'doc_ids'\)"),
        ("unknown_doc.csv", r"unknown_doc.csv:3: doc_id 'zzz' is not in corpus.jsonl"),
        ("bad_relevance.jsonl", r"bad_relevance.jsonl:1: 'relevance' must be a number, got 'high'"),
        ("bad_split.jsonl", r"bad_split.jsonl:2: 'split' must be train, dev/val or test, got 'holdout'"),
        ("ragged.csv", r"ragged.csv:3: expected 2 columns"),
    ],
)
def test_malformed_pairs_name_file_and_line(pairs, message):
    with pytest.raises(DataError, match=message):
        load_pairs(FIXTURES / "pairs_bad" / pairs, FIXTURES / "pairs_bad" / "corpus.jsonl")


def test_conflicting_query_text_and_missing_query(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"query_id": "x", "query": "one", "doc_id": "a"}\n{"query_id": "x", "query": "two", "doc_id": "b"}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: query_id 'x' was given a different text"):
        load_pairs(p, FIXTURES / "pairs_jsonl" / "corpus.jsonl")
    p.write_text('{"doc_id": "a"}\n')
    with pytest.raises(DataError, match=r"p.jsonl:1: each row needs"):
        load_pairs(p, FIXTURES / "pairs_jsonl" / "corpus.jsonl")
    p.write_text('{"query": "q", "doc_id": "a", "relevance": 0}\n')
    with pytest.raises(DataError, match=r"p.jsonl: no relevant"):
        load_pairs(p, FIXTURES / "pairs_jsonl" / "corpus.jsonl")


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(MissingDataError, match="dataset folder not found"):
        load_dataset(tmp_path / "nothing")
    with pytest.raises(MissingDataError, match="no corpus file"):
        load_dataset(tmp_path)
    with pytest.raises(MissingDataError, match="pairs file not found"):
        load_pairs(tmp_path / "p.jsonl", FIXTURES / "pairs_jsonl" / "corpus.jsonl")
