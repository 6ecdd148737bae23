"""The ``nudge-rag`` command line, one argument parser: ``finetune``, ``evaluate``, ``demo``, ``generate``, and
the store commands ``revert``, ``status`` and ``reapply``.

``finetune`` reads one of three sources, each fitted through :mod:`nudge_rag.finetune` and reported by
:func:`nudge_rag._report.finetune_report_json`: a dataset or your own files in memory (default), a corpus in files
on a Dask cluster (``--engine dask``, :mod:`nudge_rag.distributed.cli`), or the vectors inside a vector database
(``--store URI``, :mod:`nudge_rag.stores.cli`).

Exit status: 0 on success, 1 on bad input (missing file, malformed line, unknown id, empty split, missing
optional dependency), 2 on a usage error. Errors are one line on stderr; outputs are written atomically.
Run ``nudge-rag COMMAND --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from ._report import curve_of, finetune_report_json, format_table, plot_demo, require_matplotlib, write_json
from .data import DataError
from .evaluation import DEFAULT_METRICS, evaluate
from .files import atomic_write
from .finetune import VARIANTS, FinetuneResult, baseline, finetune_queries, validation_notes
from .metrics import metric_names
from .prepare import DataSource, Prepared, VectorSource, load_source, prepare

__all__ = ["main", "build_parser"]

PROG = "nudge-rag"

#: The own-data formats, shown by ``nudge-rag finetune --help`` (and in the README, "Your own data").
OWN_DATA_HELP = """\
your own data (--data DIR holding corpus.jsonl + pairs.jsonl, or --corpus FILE_OR_DIR with --pairs FILE):
  pairs file, JSON lines, one question -> document(s) per line:
    {"query": "what is NUDGE?", "doc_id": "d1"}
    {"query": "...", "doc_ids": ["d2", "d7"], "relevance": [2, 1], "split": "test"}
    {"query_id": "q9", "query": "...", "doc_id": "d3"}
  or CSV/TSV with a header: query and/or query_id, doc_id (several: "d2|d7"), relevance, split.
    query_id     optional; without it a question is identified by its exact text
    relevance    optional, default 1; pairs with relevance <= 0 are dropped
    split        train (default), dev or val (validation: chooses gamma), test (held out for scoring);
                 without dev pairs, --val-fraction of the training questions is carved as validation;
                 a pairs folder may instead hold train.jsonl, dev.jsonl, test.jsonl
  corpus file, JSON lines: {"_id" (or "id", "doc_id"): "d1", "title": "optional", "text": "..."}
    (.jsonl, .jsonl.gz, or CSV/TSV with those columns), or a folder of .txt/.md files (also DIR/corpus/):
    a document's id is its path relative to the folder, with forward slashes (e.g. notes/intro.md)
"""


# ---------------------------------------------------------------------------------------------- parser
def _add_data_args(p: argparse.ArgumentParser, *, default_dataset: str | None = None) -> None:
    g = p.add_argument_group("data (one of --dataset, --data, --pairs)")
    g.add_argument(
        "--dataset",
        metavar="NAME",
        help="BEIR dataset by name, e.g. scifact or nfcorpus"
        + (f" (default: {default_dataset})" if default_dataset else ""),
    )
    g.add_argument("--data", metavar="DIR", help="dataset folder: BEIR layout or corpus + pairs files")
    g.add_argument(
        "--corpus",
        metavar="FILE_OR_DIR",
        help="corpus file (.jsonl, .jsonl.gz, .csv) or folder of .txt/.md files (id: relative path), with --pairs",
    )
    g.add_argument(
        "--pairs", metavar="FILE", action="append", default=[], help="pairs file (.jsonl or .csv; repeatable)"
    )
    g.add_argument(
        "--data-dir",
        metavar="DIR",
        help="root holding beir/<name>/ (default: $NUDGE_RAG_DATA_DIR, ../shared/data, user cache)",
    )
    g.add_argument("--no-download", action="store_true", help="never download a missing BEIR dataset")
    g.add_argument(
        "--split",
        choices=("auto", "official", "paper"),
        default="auto",
        help="official: the dataset's splits (val carved from train when there is no dev split); "
        "paper: pooled random 70/10/20 split; auto (default): official, except that demo uses "
        "paper when the data has no test split and evaluate uses the split recorded by the finetune "
        "output it scores (a split whose test questions trained that output is refused)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the validation carve / paper split (default 0)")
    g.add_argument("--val-fraction", type=float, default=0.1, help="share of train carved as validation (default 0.1)")
    v = p.add_argument_group("vectors (default: precomputed vectors beside the data, else the model + cache)")
    v.add_argument("--doc-embeddings", metavar="PATH", help="(N, d) .npy document vectors, or a finetune output folder")
    v.add_argument("--doc-ids", metavar="FILE", help="document ids, one per row of --doc-embeddings")
    v.add_argument("--query-embeddings", metavar="PATH", help="(Q, d) .npy query vectors")
    v.add_argument(
        "--query-ids",
        metavar="FILE",
        help="query ids, one per row of --query-embeddings (or of a .npy --query-vectors)",
    )
    v.add_argument(
        "--model", metavar="NAME_OR_PATH", help="sentence-transformers model (default: all-MiniLM-L6-v2, offline)"
    )
    v.add_argument("--batch-size", type=int, default=64, help="embedding batch size (default 64)")
    v.add_argument(
        "--cache-dir", metavar="DIR", help="embedding cache root (default: $NUDGE_RAG_CACHE_DIR or the user cache dir)"
    )
    v.add_argument(
        "--no-precomputed", action="store_true", help="embed with the model even when precomputed vectors exist"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nudge-rag``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="NUDGE: fine-tune stored document embeddings so that questions retrieve their documents.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  nudge-rag demo                                  # SciFact: no fine-tuning vs NUDGE-M vs NUDGE-N\n"
            "  nudge-rag demo --dataset nfcorpus --split paper --plot nudge.png\n"
            "  nudge-rag finetune --dataset scifact --out nudged/ --method nudge-n\n"
            "  nudge-rag evaluate --dataset scifact --doc-embeddings nudged/ --metric hit@5\n"
            "  nudge-rag finetune --data my_data/ --out nudged/   # my_data: corpus.jsonl + pairs.jsonl\n"
            "  nudge-rag finetune --store 'postgresql://me@db/app?table=docs' --pairs pairs.jsonl\n"
            "  nudge-rag status --store 'postgresql://me@db/app?table=docs'\n"
            "  nudge-rag revert --store 'postgresql://me@db/app?table=docs'\n"
            "  nudge-rag demo --data my_data/                     # held-out test: the paper's split\n"
            "\nexit status: 0 ok, 1 bad input (one-line error on stderr), 2 usage error"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "finetune",
        help="nudge document embeddings: from a dataset or your files (--out DIR), or inside a store (--store URI)",
        description=(
            "Fit NUDGE on one source and write the nudged vectors:\n"
            "  a BEIR dataset (--dataset) or your own files (--data, or --corpus with --pairs), saved to --out;\n"
            "  a corpus of vector files on a Dask cluster (--engine dask --corpus --pairs --out);\n"
            "  the vectors inside a vector database (--store URI --pairs), written back in place."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=OWN_DATA_HELP,
    )
    _add_data_args(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder: embeddings.npy, doc_ids.txt, model.npz, report.json (required unless --store)",
    )
    p.add_argument("--method", choices=VARIANTS, default="nudge-n", help="NUDGE variant (default nudge-n)")
    p.add_argument("--gamma", type=float, help="fixed step size (default: chosen on validation queries)")
    p.add_argument("--metric", help="validation metric for choosing gamma with nudge-n (default recall@1)")
    from .distributed.cli import add_engine_args  # --engine dask (NumPy-only import)

    add_engine_args(p)
    from .stores.cli import add_store_commands, add_store_finetune_args  # NumPy-only import

    add_store_finetune_args(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("evaluate", help="retrieval metrics of a set of embeddings on a split")
    _add_data_args(p)
    p.add_argument("--on", choices=("train", "val", "test"), default="test", help="split to score (default test)")
    p.add_argument(
        "--similarity",
        choices=("inner_product", "cosine"),
        default="inner_product",
        help="search similarity (default inner_product; right for NUDGE-M and NUDGE-N output)",
    )
    p.add_argument("--metric", action="append", default=[], help="extra metric, e.g. recall@5 or hit@3 (repeatable)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="no fine-tuning vs NUDGE-M vs NUDGE-N on a real dataset (default scifact)")
    _add_data_args(p, default_dataset="scifact")
    p.add_argument("--metric", help="NUDGE-N validation metric (default recall@1)")
    p.add_argument("--plot", metavar="FILE", help="save validation curves and before/after bars (png/pdf/svg)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=cmd_demo)

    from .generate import add_generate_command  # issue 11: `nudge-rag generate` lives in nudge_rag/generate.py

    add_generate_command(sub)
    add_store_commands(sub)  # revert, status, reapply
    return parser


# ---------------------------------------------------------------------------------------------- helpers
def _sources(args: argparse.Namespace) -> tuple[DataSource, VectorSource]:
    src = DataSource(args.dataset, args.data, args.corpus, list(args.pairs), args.data_dir, not args.no_download)
    vs = VectorSource(
        args.doc_embeddings,
        args.doc_ids,
        args.query_embeddings,
        args.query_ids,
        args.model,
        args.batch_size,
        args.cache_dir,
        not args.no_precomputed,
    )
    if args.batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0 < args.val_fraction < 1:
        raise DataError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    return src, vs


def _load(args: argparse.Namespace, *, need_test: bool) -> Prepared:
    t0 = time.perf_counter()
    src, vs = _sources(args)
    ds = load_source(src, vs, default_dataset="scifact" if args.command == "demo" else None)
    load_data_s = time.perf_counter() - t0
    # Only demo (which trains and tests in one run) may fall back to the paper's split: evaluating a finetune
    # output on a re-drawn test split would score queries it was trained on.
    policy = "official" if args.split == "auto" and args.command != "demo" else args.split
    p = prepare(ds, vs, policy=policy, seed=args.seed, val_fraction=args.val_fraction, need_test=need_test)
    p.seconds = time.perf_counter() - t0
    p.timings["load_data"] = load_data_s
    return p


def _describe(p: Prepared) -> list[str]:
    c = p.splits.counts()
    note = f" ({p.splits.note})" if p.splits.note else ""
    return [
        f"data: {p.dataset.name} ({p.dataset.source}): {len(p.dataset.doc_ids)} documents",
        f"split: {p.splits.policy}{note}: {c['train']} train / {c['val']} val / {c['test']} test queries",
        f"vectors: {p.vectors} [{p.docs.shape[1]} dims; data + vectors {p.seconds:.1f} s]",
    ]


def _split_info(p: Prepared, args: argparse.Namespace | None = None, *, ids: bool = False) -> dict:
    """The split as recorded in a report; with ``ids``, the questions that trained and validated (so that
    ``evaluate`` can refuse a test split that overlaps them)."""
    info: dict = {"policy": p.splits.policy, "note": p.splits.note, "queries": p.splits.counts()}
    if args is not None:
        info.update(seed=args.seed, val_fraction=args.val_fraction)
    if ids:
        info.update(train_query_ids=p.splits.queries("train"), val_query_ids=p.splits.queries("val"))
    return info


def _timings(p: Prepared, r: FinetuneResult) -> dict[str, float]:
    """Seconds per phase: reading the data, loading the embedding model, embedding, and the fit (solve) alone."""
    t = p.timings
    return {
        "load_data": t.get("load_data", 0.0),
        "load_model": t.get("load_model", 0.0),
        "embed": t.get("embed", 0.0),
        "fit": r.fit_seconds or 0.0,
    }


def _recorded_split(args: argparse.Namespace) -> tuple[Path, dict] | None:
    """``(report path, split)`` recorded by the ``finetune`` whose output folder is ``--doc-embeddings``."""
    if not args.doc_embeddings or not (Path(args.doc_embeddings) / "report.json").is_file():
        return None
    path = Path(args.doc_embeddings) / "report.json"
    try:
        split = json.loads(path.read_text(encoding="utf-8")).get("split")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise DataError(f"{path}: not a fine-tuning report ({exc})") from None
    return (path, split) if isinstance(split, dict) and split.get("policy") else None


def _refuse_overlap(p: Prepared, recorded: tuple[Path, dict]) -> None:
    """``DataError`` when test questions of ``p`` trained or validated the fine-tune that recorded ``split``."""
    path, split = recorded
    if "train_query_ids" in split:
        used = set(split["train_query_ids"]) | set(split.get("val_query_ids", []))
    else:  # an older report: the same split drawn again
        from .data import make_splits

        seed, fraction = split.get("seed", 0), split.get("val_fraction", 0.1)
        again = make_splits(p.dataset, split["policy"], seed=seed, val_fraction=fraction)
        used = set(again.queries("train")) | set(again.queries("val"))
    tested = p.splits.queries("test")
    overlap = [q for q in tested if q in used]
    if overlap:
        raise DataError(
            f"--split {p.splits.policy}: {len(overlap)} of the {len(tested)} test questions trained or validated "
            f"the fine-tune in {path.parent} (first: {overlap[0]!r}); its scores would be inflated. Evaluate on "
            f"the split it recorded: --split {split['policy']} (the default)"
        )


def _fit(
    p: Prepared,
    method: str,
    *,
    gamma: float | None = None,
    metric: str | None = None,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
) -> FinetuneResult:
    """One NUDGE variant on the prepared splits (gamma chosen on ``p.val`` unless fixed), scored on val/test."""
    return finetune_queries(
        p.docs,
        p.train,
        p.val,
        variant=method,
        gamma=gamma,
        metric=metric,
        test=p.test,
        metrics=metrics,
        val_source="given",
    )


def _baseline(p: Prepared, metrics: tuple[str, ...] = DEFAULT_METRICS) -> FinetuneResult:
    return baseline(p.docs, p.val, p.test, metrics=metrics)


def _result_json(r: FinetuneResult) -> dict:
    out = {
        "method": r.method,
        "similarity": r.similarity,
        "fit_seconds": r.fit_seconds,
        "val_metrics": r.val_metrics,
        "test_metrics": r.test_metrics,
    }
    if r.model is not None:
        out.update(gamma=r.fitted.gamma_, n_moved=r.fitted.n_moved_, validation=_validation_json(r))
    return out


def _validation_json(r: FinetuneResult) -> dict:
    return {
        "metric": r.report.val_metric,
        "score_at_gamma_0": r.fitted.val_base_score_,
        "score": r.fitted.val_score_,
        "curve": curve_of(r.model),
    }


#: ``finetune`` options that only the file sources (memory, dask) read: (dest, flag).
_FILE_ONLY_OPTIONS = (
    ("dataset", "--dataset"),
    ("data", "--data"),
    ("corpus", "--corpus"),
    ("out", "--out"),
    ("doc_embeddings", "--doc-embeddings"),
    ("doc_ids", "--doc-ids"),
    ("query_embeddings", "--query-embeddings"),
)


class UsageError(ValueError):
    """Options that do not go together (exit status 2, like an argparse usage error)."""


def _finetune_source(args: argparse.Namespace) -> str:
    """``"store"``, ``"dask"`` or ``"memory"``; :class:`UsageError` for an option the chosen source does not read
    or a missing ``--out``."""
    from .stores.cli import STORE_ONLY_OPTIONS

    def given(dest: str) -> bool:
        return getattr(args, dest, None) not in (None, [])

    if args.store:
        wrong = [flag for dest, flag in _FILE_ONLY_OPTIONS if given(dest)]
        if args.engine != "memory":
            wrong.append("--engine")
        if wrong:
            raise UsageError(f"--store fine-tunes the vectors in the store; {', '.join(wrong)} are for file sources")
        return "store"
    wrong = [flag for dest, flag in STORE_ONLY_OPTIONS if given(dest)]
    if wrong:
        raise UsageError(f"{', '.join(wrong)} need --store URI")
    if not args.out:
        raise UsageError("finetune needs --out DIR (or --store URI to fine-tune inside a vector database)")
    return args.engine


def _metric_list(extra: Sequence[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys((*DEFAULT_METRICS, *extra)))
    metric_names(names)  # validates, raising ValueError with the offending name
    return names


# ---------------------------------------------------------------------------------------------- commands
def cmd_finetune(args: argparse.Namespace) -> int:
    """``nudge-rag finetune``: fit one NUDGE variant on the chosen source and write the nudged vectors."""
    source = _finetune_source(args)
    if source == "store":  # the vectors inside a vector database, written back in place
        from .stores.cli import cmd_store_finetune

        return cmd_store_finetune(args)
    if source == "dask":  # corpus in files, scanned on a Dask cluster
        from .distributed.cli import cmd_finetune_dask

        return cmd_finetune_dask(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} exists and is not a folder")
    metrics = _metric_list([args.metric] if args.metric else [])
    p = _load(args, need_test=False)
    base = _baseline(p, metrics)
    r = _fit(p, args.method, gamma=args.gamma, metric=args.metric, metrics=metrics)
    r.report.seconds = {**_timings(p, r), **r.report.seconds}
    report = finetune_report_json(
        r.report,
        "memory",
        dataset={"name": p.dataset.name, "source": p.dataset.source, "n_documents": len(p.dataset.doc_ids)},
        split=_split_info(p, args, ids=True),
        vectors={"source": p.vectors, "dimension": int(p.docs.shape[1])},
        method=r.method,
        fit_seconds=r.fit_seconds,
        validation=_validation_json(r),
        notes=validation_notes(r.report),
        metrics={
            "val": {"before": base.val_metrics, "after": r.val_metrics},
            "test": None if p.test is None else {"before": base.test_metrics, "after": r.test_metrics},
        },
        outputs={
            "embeddings": "embeddings.npy",
            "doc_ids": "doc_ids.txt",
            "model": "model.npz",
            "search_with": "inner_product" if r.similarity == "inner_product" else "cosine (or inner product)",
        },
    )
    ids_text = "".join(f"{d}\n" for d in p.dataset.doc_ids)
    if any("\n" in d or "\r" in d for d in p.dataset.doc_ids):
        raise DataError("a document id contains a line break; cannot write doc_ids.txt")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".nudge-rag-", dir=out) as tmp:
        t = Path(tmp)
        atomic_write(t / "embeddings.npy", lambda fh: np.save(fh, np.asarray(r.vectors, dtype=np.float32)))
        atomic_write(t / "doc_ids.txt", lambda fh: fh.write(ids_text.encode("utf-8")))
        r.fitted.save(t / "model.npz")
        write_json(t / "report.json", report)
        for name in ("embeddings.npy", "doc_ids.txt", "model.npz", "report.json"):
            os.replace(t / name, out / name)
    for line in _describe(p):
        print(line)
    rep = r.report
    measured = rep.val_score is not None
    print(rep)
    for note in validation_notes(rep):
        if note.startswith("warning: "):
            print(f"{PROG} finetune: {note}", file=sys.stderr)
        elif measured:
            print(note)
    if measured:
        rows = [
            {"label": "before (val)", "metrics": base.val_metrics},
            {"label": "after (val)", "metrics": r.val_metrics},
        ]
        print(format_table(rows, metrics))
    print(
        f"saved {out / 'embeddings.npy'} ({r.vectors.shape[0]} x {r.vectors.shape[1]} float32), "
        f"doc_ids.txt, model.npz and report.json in {out}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``nudge-rag evaluate``: metrics of given (or raw) embeddings on one split."""
    metrics = _metric_list(args.metric)
    recorded = _recorded_split(args)
    if recorded is not None and args.split == "auto":  # the split the fine-tune used, not a re-drawn one
        split = recorded[1]
        args.split = split["policy"]
        args.seed = split.get("seed", args.seed)
        args.val_fraction = split.get("val_fraction", args.val_fraction)
    p = _load(args, need_test=args.on == "test")
    if recorded is not None and args.on == "test":
        _refuse_overlap(p, recorded)
    qa = {"train": p.train, "val": p.val, "test": p.test}[args.on]
    assert qa is not None  # need_test made sure a test split exists
    scores = evaluate(p.docs, qa, metrics, similarity=args.similarity)
    for line in _describe(p):
        print(line)
    label = "given embeddings" if args.doc_embeddings else "original embeddings"
    print(format_table([{"label": label, "metrics": scores}], metrics))
    print(f"{args.on} split, {len(qa)} queries, {args.similarity}, x100")
    if args.json:
        write_json(
            args.json,
            {
                "command": "evaluate",
                "dataset": p.dataset.name,
                "split": _split_info(p),
                "on": args.on,
                "similarity": args.similarity,
                "vectors": p.vectors,
                "n_queries": len(qa),
                "metrics": scores,
            },
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``nudge-rag demo``: no fine-tuning vs NUDGE-M vs NUDGE-N on the test split, with fit times."""
    t0 = time.perf_counter()
    metrics = DEFAULT_METRICS
    if args.plot:
        require_matplotlib()  # fail before the work, not after
        from matplotlib.figure import Figure

        kinds = Figure().canvas.get_supported_filetypes()
        if (Path(args.plot).suffix.lstrip(".").lower() or "png") not in kinds:
            raise ValueError(f"--plot {args.plot}: unsupported image type; use one of: {', '.join(sorted(kinds))}")
    p = _load(args, need_test=True)
    results = [_baseline(p, metrics)]
    results.append(_fit(p, "nudge-m", metrics=metrics))
    results.append(_fit(p, "nudge-n", metric=args.metric, metrics=metrics))
    for line in _describe(p):
        print(line)
    rows = [
        {
            "label": r.label,
            "metrics": r.test_metrics,
            "gamma": None if r.model is None else f"{r.fitted.gamma_:.4g}",
            "fit": None if r.fit_seconds is None else f"{r.fit_seconds:.2f}",
        }
        for r in results
    ]
    print()
    print(format_table(rows, metrics, extra=(("gamma", "gamma"), ("fit", "fit s"))))
    assert p.test is not None  # need_test=True
    print(
        f"\ntest split ({len(p.test)} queries), x100; recall@k capped at min(|relevant|, k); "
        f"gamma chosen on {len(p.val)} validation queries (NUDGE-M: hit@1, NUDGE-N: "
        f"{results[2].report.val_metric})"
    )
    if args.plot:
        plot_demo(args.plot, results, metrics, f"NUDGE on {p.dataset.name} ({p.splits.policy} split)")
        print(f"plot saved to {args.plot}")
    if args.json:
        write_json(
            args.json,
            {
                "command": "demo",
                "nudge_rag_version": __version__,
                "dataset": p.dataset.name,
                "source": p.dataset.source,
                "split": _split_info(p),
                "vectors": p.vectors,
                "results": [_result_json(r) for r in results],
                "seconds": time.perf_counter() - t0,
            },
        )
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


# ---------------------------------------------------------------------------------------------- entry
def _one_line(exc: BaseException) -> str:
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and not isinstance(exc, DataError):
        msg = f"file not found: {exc.filename}"
    return " ".join(msg.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nudge-rag`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    from .stores.cli import redact, store_errors

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "finetune":
            _finetune_source(args)
    except SystemExit as exc:  # --help / --version (0) or a usage error (2)
        return int(exc.code or 0)
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    store_arg = getattr(args, "store", None)
    errors: tuple[type[BaseException], ...] = (DataError, ValueError, TypeError, IndexError, OSError, ImportError)
    if store_arg:  # a store command: its errors too, and never a credential in the message
        errors += store_errors()
    try:
        return int(args.func(args))
    except errors as exc:
        msg = _one_line(exc)
        print(f"{PROG} {args.command}: error: {redact(msg, store_arg) if store_arg else msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
