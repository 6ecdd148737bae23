"""``nudge-rag`` end to end on a real SciFact subset in a temporary folder (no mocks)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nudge_rag import load
from nudge_rag.cli import main
from nudge_rag.data import shared_data_dir

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = shared_data_dir()
pytestmark = pytest.mark.skipif(SHARED is None or not (SHARED / "embeddings").is_dir(), reason="shared data absent")


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _read_qrels(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> dict:
    """A data root holding ``beir/scisub`` (real SciFact rows) and matching precomputed vectors."""
    src = SHARED / "beir" / "scifact"
    root = tmp_path_factory.mktemp("root")
    corpus, queries = _read_jsonl(src / "corpus.jsonl.gz"), _read_jsonl(src / "queries.jsonl")
    qrels = {s: _read_qrels(src / "qrels" / f"{s}.tsv") for s in ("train", "test")}
    keep_q = {s: list(dict.fromkeys(r[0] for r in rows))[: {"train": 150, "test": 60}[s]] for s, rows in qrels.items()}
    wanted_q = {q for qs in keep_q.values() for q in qs}
    rows = {s: [r for r in qrels[s] if r[0] in wanted_q] for s in qrels}
    wanted_d = {r[1] for rs in rows.values() for r in rs}
    d_rows = [i for i, rec in enumerate(corpus) if rec["_id"] in wanted_d or i % 20 == 0]
    q_rows = [i for i, rec in enumerate(queries) if rec["_id"] in wanted_q]
    out = root / "beir" / "scisub"
    (out / "qrels").mkdir(parents=True)
    (out / "corpus.jsonl").write_text("".join(json.dumps(corpus[i]) + "\n" for i in d_rows), encoding="utf-8")
    (out / "queries.jsonl").write_text("".join(json.dumps(queries[i]) + "\n" for i in q_rows), encoding="utf-8")
    for s, rs in rows.items():
        body = "query-id\tcorpus-id\tscore\r\n" + "".join("\t".join(r) + "\r\n" for r in rs)
        (out / "qrels" / f"{s}.tsv").write_bytes(body.encode())
    emb = root / "embeddings" / "all-MiniLM-L6-v2" / "scisub"
    emb.mkdir(parents=True)
    ref = SHARED / "embeddings" / "all-MiniLM-L6-v2" / "scifact"
    docs, qs = np.load(ref / "corpus.npy")[d_rows], np.load(ref / "queries.npy")[q_rows]
    np.save(emb / "corpus.npy", docs)
    np.save(emb / "queries.npy", qs)
    return {
        "root": root,
        "folder": out,
        "doc_ids": [corpus[i]["_id"] for i in d_rows],
        "query_ids": [queries[i]["_id"] for i in q_rows],
        "docs": docs,
        "queries": qs,
        "qrels": rows,
        "corpus": [corpus[i] for i in d_rows],
        "query_texts": [queries[i]["text"] for i in q_rows],
    }


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.delenv("NUDGE_RAG_DATA_DIR", raising=False)
    monkeypatch.setenv("NUDGE_RAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NUDGE_RAG_OFFLINE", "1")


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_demo_table_on_real_subset(subset, tmp_path, capsys):
    rc, out, err = _run(
        capsys, "demo", "--dataset", "scisub", "--data-dir", subset["root"], "--json", tmp_path / "d.json"
    )
    assert rc == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("method"))
    assert header.split() == ["method", "R@1", "R@10", "nDCG@10", "MRR@10", "gamma", "fit", "s"]
    for label in ("no fine-tuning", "NUDGE-M", "NUDGE-N"):
        assert any(line.startswith(label) for line in lines)
    assert "precomputed" in out and "split: official" in out and err == ""
    report = json.loads((tmp_path / "d.json").read_text())
    base, m, n = report["results"]
    assert [r["method"] for r in report["results"]] == ["none", "nudge-m", "nudge-n"]
    assert report["split"]["queries"] == {"train": 135, "val": 15, "test": 60}
    assert m["gamma"] > 0 and n["gamma"] > 0 and m["fit_seconds"] > 0
    assert n["test_metrics"]["recall@1"] > base["test_metrics"]["recall@1"]
    assert len(n["validation"]["curve"]["gamma"]) == len(n["validation"]["curve"]["score"]) > 10


def test_finetune_outputs_and_evaluate_agree(subset, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "finetune", "--data", subset["folder"], "--method", "nudge-m", "--out", out)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["doc_ids.txt", "embeddings.npy", "model.npz", "report.json"]
    report = json.loads((out / "report.json").read_text())
    vecs = np.load(out / "embeddings.npy")
    model = load(out / "model.npz")
    assert vecs.dtype == np.float32 and vecs.shape == subset["docs"].shape
    np.testing.assert_array_equal(vecs, model.embeddings_)
    assert (out / "doc_ids.txt").read_text().split("\n")[:-1] == subset["doc_ids"]
    assert report["gamma"] == model.gamma_ > 0 and report["n_moved"] == model.n_moved_ > 0
    assert report["validation"]["metric"] == "hit@1" and report["similarity"] == "inner_product"
    assert report["metrics"]["val"]["after"]["recall@1"] >= report["metrics"]["val"]["before"]["recall@1"]
    assert f"gamma = {model.gamma_:.4g}" in stdout
    assert report["command"] == "finetune" and report["engine"] == "memory" and "nudge_rag_version" in report
    assert set(report["seconds"]) >= {"load_data", "embed", "fit"}
    assert f"{model.n_moved_} of {len(subset['doc_ids'])} documents moved" in stdout
    n_val = report["n_val_questions"]
    assert f"validation hit@1 on {n_val} questions: " in stdout and "documents moved" in stdout

    rc, _, err = _run(
        capsys,
        "evaluate",
        "--data",
        subset["folder"],
        "--doc-embeddings",
        out,
        "--metric",
        "hit@3",
        "--json",
        tmp_path / "e.json",
    )
    assert rc == 0, err
    scores = json.loads((tmp_path / "e.json").read_text())["metrics"]
    after = report["metrics"]["test"]["after"]
    assert set(scores) == {"recall@1", "recall@10", "ndcg@10", "mrr@10", "hit@3"}
    assert all(scores[k] == pytest.approx(after[k]) for k in after)


def test_finetune_from_user_vectors_and_pairs_matches_beir_run(subset, tmp_path, capsys):
    """Vectors from "any provider" (.npy + ids, rows shuffled) with a pairs file: no model, same result."""
    rng = np.random.default_rng(0)
    d_perm, q_perm = rng.permutation(len(subset["doc_ids"])), rng.permutation(len(subset["query_ids"]))
    np.save(tmp_path / "docs.npy", subset["docs"][d_perm])
    (tmp_path / "docs.txt").write_text("".join(subset["doc_ids"][i] + "\n" for i in d_perm))
    np.save(tmp_path / "queries.npy", subset["queries"][q_perm])
    (tmp_path / "queries.txt").write_text("".join(subset["query_ids"][i] + "\n" for i in q_perm))
    with open(tmp_path / "pairs.jsonl", "w") as fh:
        for split, rows in subset["qrels"].items():
            for q, d, s in rows:
                fh.write(json.dumps({"query_id": q, "doc_id": d, "relevance": int(s), "split": split}) + "\n")
    rc, _, err = _run(
        capsys,
        "finetune",
        "--pairs",
        tmp_path / "pairs.jsonl",
        "--doc-embeddings",
        tmp_path / "docs.npy",
        "--doc-ids",
        tmp_path / "docs.txt",
        "--query-embeddings",
        tmp_path / "queries.npy",
        "--query-ids",
        tmp_path / "queries.txt",
        "--out",
        tmp_path / "user",
    )
    assert rc == 0, err
    rc, _, err = _run(capsys, "finetune", "--data", subset["folder"], "--out", tmp_path / "beir")
    assert rc == 0, err
    user = json.loads((tmp_path / "user" / "report.json").read_text())
    beir = json.loads((tmp_path / "beir" / "report.json").read_text())
    assert "documents from" in user["vectors"]["source"] and "queries from" in user["vectors"]["source"]
    assert user["gamma"] == beir["gamma"] and user["method"] == "nudge-n"
    for split in ("val", "test"):
        for when in ("before", "after"):
            assert user["metrics"][split][when] == pytest.approx(beir["metrics"][split][when])
    ids_user = (tmp_path / "user" / "doc_ids.txt").read_text().split()
    order = {d: i for i, d in enumerate(ids_user)}
    vecs_user = np.load(tmp_path / "user" / "embeddings.npy")[[order[d] for d in subset["doc_ids"]]]
    np.testing.assert_allclose(vecs_user, np.load(tmp_path / "beir" / "embeddings.npy"), atol=1e-6)


@pytest.mark.integration
def test_subprocess_paper_split_with_plot(subset, tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "curve.png"
    env = {**os.environ, "NUDGE_RAG_CACHE_DIR": str(tmp_path / "cache"), "NUDGE_RAG_OFFLINE": "1"}
    env.pop("NUDGE_RAG_DATA_DIR", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nudge_rag.cli",
            "demo",
            "--dataset",
            "scisub",
            "--data-dir",
            str(subset["root"]),
            "--split",
            "paper",
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "split: paper (pooled 210 queries, seed 0): 147 train / 21 val / 42 test" in proc.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration  # embeds with the real model
def test_user_pairs_demo_embeds_once_then_uses_cache(subset, tmp_path, capsys):
    pytest.importorskip("sentence_transformers")
    data = tmp_path / "mine"
    data.mkdir()
    train = subset["qrels"]["train"]
    queries = list(dict.fromkeys(q for q, _, _ in train))[:20]
    text = dict(zip(subset["query_ids"], subset["query_texts"]))
    pairs = [(q, d) for q, d, _ in train if q in queries]
    docs = {d for _, d in pairs}
    relevant = [r for r in subset["corpus"] if r["_id"] in docs]
    corpus = relevant + [r for r in subset["corpus"] if r["_id"] not in docs][:8]
    with open(data / "corpus.jsonl", "w") as fh:
        fh.writelines(json.dumps({"id": r["_id"], "title": r["title"], "text": r["text"]}) + "\n" for r in corpus)
    with open(data / "pairs.jsonl", "w") as fh:
        fh.writelines(json.dumps({"query": text[q], "doc_id": d}) + "\n" for q, d in pairs)
    rc, out, err = _run(capsys, "demo", "--data", data)
    assert rc == 0, err
    assert "split: paper" in out and "documents embedded with sentence-transformers/all-MiniLM-L6-v2;" in out
    assert "(cached)" not in out
    rc, out, err = _run(capsys, "demo", "--data", data)
    assert rc == 0, err
    assert out.count("(cached)") == 2  # documents and queries both came from the cache


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--data", FIXTURES / "beir_bad_json"], "corpus.jsonl:3: invalid JSON"),
        (["demo", "--data", FIXTURES / "beir_empty_split"], "test.tsv: the test split is empty"),
        (
            ["evaluate", "--pairs", "missing.jsonl", "--corpus", FIXTURES / "pairs_jsonl" / "corpus.jsonl"],
            "pairs file not found: missing.jsonl",
        ),
        (["demo", "--dataset", "notthere", "--data-dir", FIXTURES], "place the BEIR files at"),
        (["evaluate", "--data", FIXTURES / "pairs_bad"], "pairs.jsonl:2: missing 'doc_id'"),
        (
            ["demo", "--data", FIXTURES / "beir_ok", "--doc-embeddings", "nope.npy", "--doc-ids", "x.txt"],
            "embeddings file not found: nope.npy",
        ),
    ],
)
def test_errors_are_one_line_with_status_1(argv, message, capsys):
    rc, out, err = _run(capsys, *argv)
    assert rc == 1
    assert err.count("\n") == 1 and message in err and err.startswith(f"nudge-rag {argv[0]}: error: ")


def test_failed_finetune_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("old")
    rc, _, err = _run(capsys, "finetune", "--data", FIXTURES / "beir_unknown_doc", "--out", out)
    assert rc == 1 and "train.tsv:3: corpus-id 'MISSING-7' is not in corpus.jsonl" in err
    assert [p.name for p in out.iterdir()] == ["report.json"] and (out / "report.json").read_text() == "old"


def test_usage_errors_and_help(capsys):
    assert main(["finetune", "--dataset", "scifact"]) == 2  # --out missing
    assert main(["demo", "--split", "random"]) == 2
    assert main(["--version"]) == 0
    capsys.readouterr()


COMMANDS = ("finetune", "evaluate", "demo", "generate", "revert", "status", "reapply")


def test_one_parser_lists_every_command(capsys):
    """Issue 17 item 5: one argument parser; ``nudge-rag --help`` names every command, each has its own help."""
    rc, out, _ = _run(capsys, "--help")
    assert rc == 0
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()]
    assert tuple(c for c in listed if c in COMMANDS) == COMMANDS
    for command in COMMANDS:
        rc, out, _ = _run(capsys, command, "--help")
        assert rc == 0 and out.startswith(f"usage: nudge-rag {command}")
    for command in ("revert", "status", "reapply"):
        rc, _, err = _run(capsys, command)  # --store is required
        assert rc == 2 and "--store" in err


def test_finetune_help_shows_every_source(capsys):
    rc, out, _ = _run(capsys, "finetune", "--help")
    assert rc == 0
    for option in ("--dataset", "--data", "--corpus", "--pairs", "--out", "--store URI", "--query-vectors",
                   "--scan", "--per-query", "--ann", "--strict", "--dry-run", "--engine {memory,dask}",
                   "--scheduler", "sqlite:///", "duckdb:///", "typesense://"):  # fmt: skip
        assert option in out, option


@pytest.mark.parametrize(
    "argv, message",
    [
        (["finetune", "--dataset", "scifact", "--out", "o", "--strict"], "--strict need --store URI"),
        (["finetune", "--data", "d", "--out", "o", "--per-query"], "--scan / --per-query need --store URI"),
        (["finetune", "--store", "faiss:///i.faiss", "--pairs", "p", "--out", "o"], "--out are for file sources"),
        (["finetune", "--store", "faiss:///i.faiss", "--engine", "dask"], "--engine are for file sources"),
        (["finetune", "--pairs", "p.jsonl", "--corpus", "c.jsonl"], "finetune needs --out DIR (or --store URI"),
    ],
)
def test_options_of_another_source_are_usage_errors(argv, message, capsys):
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_store_errors_are_one_line_and_never_show_a_password(tmp_path, capsys):
    (tmp_path / "p.jsonl").write_text('{"query_id": "q", "query": "x", "doc_id": "d"}\n')
    rc, _, err = _run(capsys, "status", "--store", "nosuch://me:s3cret@host/db")
    assert rc == 1 and "unknown store scheme 'nosuch'" in err and "s3cret" not in err and err.count("\n") == 1
    uri = "postgresql://me:s3cret@127.0.0.1:1/db?table=t&connect_timeout=1"
    rc, _, err = _run(capsys, "finetune", "--store", uri, "--pairs", tmp_path / "p.jsonl", "--query-vectors",
                      tmp_path / "missing.npz")  # fmt: skip
    assert rc == 1 and err.startswith("nudge-rag finetune: error: ") and "s3cret" not in err


def test_the_three_finetune_sources_build_their_report_in_one_function():
    """Memory, Dask and store fine-tunes each write their JSON report through ``finetune_report_json`` and print
    the core report's ``__str__``; none assembles the shared fields itself."""
    import ast
    import inspect

    from nudge_rag import cli
    from nudge_rag.distributed import cli as dask_cli
    from nudge_rag.stores import cli as store_cli

    for fn in (cli.cmd_finetune, dask_cli._finetune, store_cli.cmd_store_finetune):
        tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(fn)))
        called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert "finetune_report_json" in called, fn.__qualname__
        assert not strings & {"nudge_rag_version", "command", "gamma_fixed"}, fn.__qualname__
        assert not any("gamma = " in t for t in strings), fn.__qualname__  # the gamma line is the report's


def test_report_str_is_a_few_lines_without_the_curve():
    from nudge_rag.finetune import FinetuneReport
    from nudge_rag.stores._finetune import StoreFinetuneReport

    curve = [i / 100 for i in range(193)]
    r = FinetuneReport(variant="nudge-n", gamma=0.0512, val_metric="recall@1", gammas=curve, val_scores=curve,
                       val_score=0.62, val_base_score=0.5, n_documents=5183, n_moved=412, n_val_questions=81,
                       seconds={"fit": 1.234})  # fmt: skip
    text = str(r)
    assert text.splitlines() == [
        "nudge-n: gamma = 0.0512; 412 of 5183 documents moved",
        "validation recall@1 on 81 questions: 50.0 -> 62.0",
        "seconds: fit 1.23",
    ]
    fixed = FinetuneReport(variant="nudge-m", gamma=0.1, gamma_fixed=True, n_documents=10, n_moved=3)
    assert str(fixed).splitlines() == ["nudge-m: gamma = 0.1 (fixed); 3 of 10 documents moved",
                                       "validation: no validation measured"]  # fmt: skip
    store = StoreFinetuneReport(**r.to_dict(), written=410, skipped_changed=1, skipped_missing=1)
    lines = str(store).splitlines()
    assert len(lines) <= 8 and "rows written: 410; skipped: 1 changed, 1 deleted by another client" in lines
    assert "0.93" not in str(store) and len(str(store)) < 400  # the curve stays an attribute
    assert store.gammas == curve


@pytest.mark.integration  # embeds with the real model
def test_precomputed_with_wrong_row_count_falls_back_to_the_model(tmp_path, capsys):
    pytest.importorskip("sentence_transformers")
    import shutil

    shutil.copytree(FIXTURES / "beir_ok", tmp_path / "beir" / "tiny")
    emb = tmp_path / "embeddings" / "all-MiniLM-L6-v2" / "tiny"
    emb.mkdir(parents=True)
    np.save(emb / "corpus.npy", np.ones((3, 384), np.float32))  # the corpus has 4 documents
    np.save(emb / "queries.npy", np.ones((5, 384), np.float32))
    rc, out, err = _run(capsys, "demo", "--dataset", "tiny", "--data-dir", tmp_path)
    assert rc == 0, err
    assert "skipped: 3 x 5 rows for 4 documents x 5 queries" in out
    assert "documents embedded with sentence-transformers/all-MiniLM-L6-v2" in out
