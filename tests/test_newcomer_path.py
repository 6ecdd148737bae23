"""The newcomer's path (issue 19 item 6): own-data formats in --help and README, a folder of text files as a
corpus, evaluate on the fine-tune's recorded split (and refusing an overlapping one), timings by phase, and honest
validation notes. Real SciFact rows throughout (the ``subset`` fixture of ``test_cli``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nudge_rag.cli import main
from nudge_rag.data import load_pairs, read_text_folder
from nudge_rag.finetune import FinetuneReport, finetune_pairs, finetune_queries, group_pairs, validation_notes
from tests import test_cli as _cli

ROOT = Path(__file__).resolve().parents[1]
subset = _cli.subset  # fixture: a real SciFact subset (BEIR folder + precomputed vectors)
_isolated = _cli._isolated  # autouse fixture: cache and data dir confined to the test


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _text_folder(subset, root: Path, n_questions: int | None = None) -> tuple[Path, dict[str, str]]:
    """The subset's abstracts as .txt / .md files in nested folders; returns the folder and SciFact id -> doc id."""
    corpus = root / "docs"
    ids = {}
    records = subset["corpus"]
    if n_questions is not None:  # only the documents of the first questions, and 20 others
        asked = list(dict.fromkeys(q for q, _, _ in subset["qrels"]["train"]))[:n_questions]
        named = {d for q, d, _ in subset["qrels"]["train"] if q in asked}
        records = [r for r in records if r["_id"] in named] + [r for r in records if r["_id"] not in named][:20]
    for n, rec in enumerate(records):
        rel = f"abstracts/{rec['_id']}.txt" if n % 2 else f"notes/deep/{rec['_id']}.md"
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpus / rel).write_text(f"{rec['title']}\n\n{rec['text']}\n", encoding="utf-8")
        ids[rec["_id"]] = rel
    (corpus / ".hidden").mkdir()
    (corpus / ".hidden" / "skip.txt").write_text("not a document", encoding="utf-8")
    (corpus / "abstracts" / "image.png").write_bytes(b"\x89PNG")
    return corpus, ids


def _pairs_file(subset, path: Path, doc_id: dict[str, str], n: int = 60) -> Path:
    text = dict(zip(subset["query_ids"], subset["query_texts"]))
    rows = [
        r
        for r in subset["qrels"]["train"]
        if r[0] in list(dict.fromkeys(q for q, _, _ in subset["qrels"]["train"]))[:n]
    ]
    path.write_text("".join(json.dumps({"query": text[q], "doc_id": doc_id[d]}) + "\n" for q, d, _ in rows))
    return path


# ---------------------------------------------------------------------------------------------- formats
def test_finetune_help_and_readme_document_the_own_data_formats(capsys):
    rc, out, _ = _run(capsys, "finetune", "--help")
    assert rc == 0
    for needle in (
        '"query"',
        '"doc_ids"',
        '"relevance"',
        '"split"',
        "query_id",
        "dev or val",
        "test (held out",
        '"_id"',
        '"title"',
        '"text"',
        ".txt/.md",
        "relative to the folder",
    ):
        assert needle in out, needle
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "`query`",
        "`query_id`",
        "`doc_id`",
        "`relevance`",
        "`split`",
        "`dev`",
        "`test`",
        "`.txt`",
        "relative to the folder",
        '"_id"',
        '"title"',
    ):
        assert needle in section, needle


# ---------------------------------------------------------------------------------------------- corpus folder
def test_a_folder_of_text_files_is_a_corpus_with_relative_path_ids(subset, tmp_path):
    corpus, doc_id = _text_folder(subset, tmp_path)
    ids, texts = read_text_folder(corpus)
    assert ids == sorted(doc_id.values()) and all("\\" not in i and not i.startswith(".") for i in ids)
    first = subset["corpus"][0]
    assert texts[ids.index(doc_id[first["_id"]])].startswith(first["title"])
    ds = load_pairs(_pairs_file(subset, tmp_path / "pairs.jsonl", doc_id), corpus)
    assert ds.doc_ids == ids and len(ds.qrels["train"]) > 0
    (tmp_path / "mine").mkdir()
    corpus.rename(tmp_path / "mine" / "corpus")  # DIR/corpus/ beside the pairs is found by --data DIR
    _pairs_file(subset, tmp_path / "mine" / "pairs.jsonl", doc_id)
    from nudge_rag.data import load_dataset

    assert load_dataset(tmp_path / "mine").doc_ids == ids


def test_an_empty_corpus_folder_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.pdf").write_bytes(b"%PDF")
    with pytest.raises(Exception, match=r"empty: no \.txt or \.md files"):
        read_text_folder(tmp_path / "empty")


@pytest.mark.integration  # embeds the folder's texts with the real model
@pytest.mark.slow
def test_cli_finetunes_with_a_corpus_folder(subset, tmp_path, capsys):
    pytest.importorskip("sentence_transformers")
    corpus, doc_id = _text_folder(subset, tmp_path, n_questions=30)
    pairs = _pairs_file(subset, tmp_path / "pairs.jsonl", doc_id, n=30)
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "finetune", "--pairs", pairs, "--corpus", corpus, "--out", out)
    assert rc == 0, err
    assert (out / "doc_ids.txt").read_text().splitlines() == sorted(doc_id.values())
    report = json.loads((out / "report.json").read_text())
    assert set(report["seconds"]) == {"load_data", "load_model", "embed", "fit"}
    assert report["seconds"]["embed"] > report["seconds"]["fit"] > 0  # the fit is timed alone
    assert "seconds: load data" in stdout and "load model" in stdout and "embed" in stdout


# ---------------------------------------------------------------------------------------------- evaluate
def test_evaluate_uses_the_recorded_split_and_refuses_an_overlapping_one(subset, tmp_path, capsys):
    official, paper = tmp_path / "official", tmp_path / "paper"
    assert _run(capsys, "finetune", "--data", subset["folder"], "--out", official)[0] == 0
    rc, out, err = _run(capsys, "finetune", "--data", subset["folder"], "--split", "paper", "--out", paper)
    assert rc == 0, err
    recorded = json.loads((paper / "report.json").read_text())
    assert recorded["split"]["policy"] == "paper" and recorded["split"]["seed"] == 0
    trained = set(recorded["split"]["train_query_ids"]) | set(recorded["split"]["val_query_ids"])

    # the default is the split the fine-tune recorded: paper here, whose test questions it never saw
    rc, out, err = _run(
        capsys, "evaluate", "--data", subset["folder"], "--doc-embeddings", paper, "--json", tmp_path / "e.json"
    )
    assert rc == 0, err
    assert "split: paper" in out
    scored = json.loads((tmp_path / "e.json").read_text())
    assert scored["split"]["policy"] == "paper"
    after = recorded["metrics"]["test"]["after"]
    assert all(scored["metrics"][k] == pytest.approx(after[k]) for k in after)

    # the official test split holds questions the paper-split fine-tune trained on: refused, naming them
    official_test = list(dict.fromkeys(q for q, _, _ in subset["qrels"]["test"]))
    overlap = [q for q in official_test if q in trained]
    assert overlap
    rc, out, err = _run(
        capsys, "evaluate", "--data", subset["folder"], "--doc-embeddings", paper, "--split", "official"
    )
    assert rc == 1 and out == ""
    assert f"{len(overlap)} of the {len(official_test)} test questions trained or validated" in err
    assert f"(first: {overlap[0]!r})" in err and "--split paper" in err and len(err.strip().splitlines()) == 1

    # and the other way round
    rc, _, err = _run(capsys, "evaluate", "--data", subset["folder"], "--doc-embeddings", official, "--split", "paper")
    assert rc == 1 and "test questions trained or validated" in err
    rc, out, err = _run(capsys, "evaluate", "--data", subset["folder"], "--doc-embeddings", official)
    assert rc == 0 and "split: official" in out, err


# ---------------------------------------------------------------------------------------------- timings, notes
def test_finetune_prints_time_by_phase_and_warns_on_a_small_validation_set(subset, tmp_path, capsys):
    rc, out, err = _run(capsys, "finetune", "--data", subset["folder"], "--out", tmp_path / "o")
    assert rc == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert list(report["seconds"]) == ["load_data", "load_model", "embed", "fit"]
    assert report["seconds"]["fit"] == report["fit_seconds"]
    seconds_line = next(line for line in out.splitlines() if line.startswith("seconds: "))
    assert [part.rsplit(" ", 1)[0] for part in seconds_line[9:].split(", ")] == [
        "load data",
        "load model",
        "embed",
        "fit",
    ]
    # 15 validation questions (10% of 150): the choice of gamma is flagged as noisy, on stderr
    assert "warning: gamma was chosen on only 15 validation question(s) (fewer than 30)" in err
    assert "validation recall@1 on 15 questions" in out
    assert any("fewer than 30" in n for n in report["notes"])


def test_validation_notes_on_real_scifact(scifact):
    docs, train, val, test = scifact
    big = finetune_queries(docs, train, val, variant="nudge-n").report
    assert big.n_val_questions >= 30 and big.gamma > 0
    won = round((big.val_score - big.val_base_score) * big.n_val_questions)
    assert won > 2 and validation_notes(big) == []

    small = finetune_queries(docs, train, val.subset(np.arange(8)), variant="nudge-n").report
    notes = validation_notes(small)
    assert notes[0].startswith("warning: gamma was chosen on only 8 validation question(s)")

    # gamma = 0 when no gamma beat no change: a one-line reason
    zero = FinetuneReport(gamma=0.0, val_metric="recall@1", val_score=0.7, val_base_score=0.7, n_val_questions=80)
    assert validation_notes(zero) == [
        "gamma = 0: no gamma beat no change on the 80 validation question(s) (recall@1 70.0), so no document moved"
    ]
    # a win by one question out of 80 may be noise
    close = FinetuneReport(gamma=0.3, val_metric="recall@1", val_score=0.7125, val_base_score=0.7, n_val_questions=80)
    assert validation_notes(close)[0].startswith("warning: gamma 0.3 beats no change by only 1 of 80")


def test_fixed_gamma_without_validation_reports_nothing_measured(scifact):
    docs, train, _, _ = scifact
    texts = [f"question {i}" for i in range(len(train))]
    questions = group_pairs([(t, list(a)) for t, a in zip(texts, train.answer_lists())])
    vectors = dict(zip(texts, train.embeddings))
    result = finetune_pairs(
        docs,
        questions,
        row_of={r: r for r in range(docs.shape[0])},
        embed_queries=lambda ts: np.stack([vectors[t] for t in ts]),
        gamma=0.5,
    )
    rep = result.report
    assert rep.val_score is None and rep.n_val_questions == 0
    assert validation_notes(rep) == [
        "gamma fixed at 0.5 without validation questions: no validation score was measured"
    ]
    assert {"load_model", "embed_questions", "fit"} <= set(rep.seconds)
