"""BEIR loader: the real shared sets (counts from their README) and small malformed fixtures."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import pytest

from nudge_rag.data import DataError, MissingDataError, load_beir, load_dataset, read_corpus, shared_data_dir

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = shared_data_dir()
needs_shared = pytest.mark.skipif(SHARED is None or not (SHARED / "beir").is_dir(), reason="shared BEIR data absent")


@pytest.fixture(scope="module")
def scifact():
    return load_beir(SHARED / "beir" / "scifact")


@pytest.fixture(scope="module")
def nfcorpus():
    return load_beir(SHARED / "beir" / "nfcorpus")


def _distinct_docs(rows):
    return len({d for _, d, _ in rows})


@needs_shared
def test_scifact_counts_match_readme(scifact):
    assert len(scifact.doc_ids) == 5183 and len(scifact.query_ids) == 1109
    assert scifact.splits == ("train", "test")  # BEIR SciFact has no dev split
    train, test = scifact.qrels["train"], scifact.qrels["test"]
    assert (len(scifact.split_queries("train")), len(train), _distinct_docs(train)) == (809, 919, 565)
    assert (len(scifact.split_queries("test")), len(test), _distinct_docs(test)) == (300, 339, 283)
    assert {s for *_, s in train + test} == {1.0}
    assert scifact.doc_ids[0] == "4983" and isinstance(scifact.doc_ids[0], str)  # numeric ids stay strings


@needs_shared
def test_nfcorpus_counts_and_graded_scores_match_readme(nfcorpus):
    assert len(nfcorpus.doc_ids) == 3633 and len(nfcorpus.query_ids) == 3237
    expected = {
        "train": (2590, 110_575, 3588, {1.0: 110_575}),
        "dev": (324, 11_385, 3119, {1.0: 10_864, 2.0: 521}),
        "test": (323, 12_334, 3128, {1.0: 11_758, 2.0: 576}),
    }
    for split, (n_q, n_pairs, n_docs, scores) in expected.items():
        rows = nfcorpus.qrels[split]
        assert len(nfcorpus.split_queries(split)) == n_q
        assert len(rows) == n_pairs
        assert _distinct_docs(rows) == n_docs
        assert dict(Counter(s for *_, s in rows)) == scores
    # splits share no query; \uXXXX escapes are decoded
    train, dev, test = (set(nfcorpus.split_queries(s)) for s in ("train", "dev", "test"))
    assert not (train & dev or train & test or dev & test)
    assert all("\\u" not in t for t in nfcorpus.doc_texts[:200])


@needs_shared
def test_document_text_is_title_space_text_stripped(scifact):
    with gzip.open(SHARED / "beir" / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        import json

        first = json.loads(fh.readline())
    assert scifact.doc_texts[0] == (first["title"] + " " + first["text"]).strip()


def test_fixture_crlf_zero_scores_graded_and_titles():
    ds = load_dataset(FIXTURES / "beir_ok")
    assert ds.doc_ids == ["d1", "d2", "3", "d4"]
    assert ds.doc_texts == ["Alpha first document", "second document", "Gamma third document", "fourth, no title"]
    assert ds.qrels["train"] == [("q1", "d1", 1.0), ("q2", "d2", 1.0)]  # q5's score-0 row dropped, no "\r" in ids
    assert ds.qrels["test"] == [("q3", "3", 2.0), ("q3", "d4", 1.0)]
    assert ds.splits == ("train", "test")


def test_gzipped_corpus_reads_like_plain(tmp_path):
    plain = FIXTURES / "beir_ok" / "corpus.jsonl"
    gz = tmp_path / "corpus.jsonl.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_corpus(gz) == read_corpus(plain)


@pytest.mark.parametrize(
    "folder, where, what",
    [
        ("beir_bad_json", "corpus.jsonl:3:", "invalid JSON"),
        ("beir_unknown_doc", "train.tsv:3:", "corpus-id 'MISSING-7' is not in"),
        ("beir_bad_qrels", "train.tsv:3:", "expected 3 tab-separated columns"),
        ("beir_empty_split", "test.tsv", "test split is empty"),
    ],
)
def test_malformed_fixtures_name_file_and_line(folder, where, what):
    with pytest.raises(DataError) as info:
        load_beir(FIXTURES / folder)
    msg = str(info.value)
    assert where in msg and what in msg
    assert "\n" not in msg


def test_missing_files_raise_missing_data_error(tmp_path):
    with pytest.raises(MissingDataError, match="not found"):
        load_beir(tmp_path / "nope")
    shutil.copytree(FIXTURES / "beir_ok", tmp_path / "noqueries")
    (tmp_path / "noqueries" / "queries.jsonl").unlink()
    with pytest.raises(MissingDataError, match="queries file not found"):
        load_dataset(tmp_path / "noqueries")
    shutil.rmtree(tmp_path / "noqueries" / "qrels")
    (tmp_path / "noqueries" / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    with pytest.raises(MissingDataError, match="no qrels"):
        load_beir(tmp_path / "noqueries")


def test_unknown_query_and_duplicate_doc(tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(FIXTURES / "beir_ok", d)
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    with pytest.raises(DataError, match=r"test.tsv:2: query-id 'q9' is not in the queries file"):
        load_beir(d)
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td1\tmany\n")
    with pytest.raises(DataError, match=r"test.tsv:2: score must be a number"):
        load_beir(d)
    with pytest.raises(DataError, match=r"dup_corpus.jsonl:2: duplicate document id 'd1' \(first on line 1\)"):
        read_corpus(FIXTURES / "pairs_bad" / "dup_corpus.jsonl")
    with pytest.raises(DataError, match=r"no_text_corpus.jsonl:1: missing field 'text'"):
        read_corpus(FIXTURES / "pairs_bad" / "no_text_corpus.jsonl")
