"""The store commands of ``nudge-rag``: ``finetune --store URI``, ``revert``, ``status`` and ``reapply``.

:mod:`nudge_rag.cli` builds the one argument parser: it adds the store options to ``finetune``
(:func:`add_store_finetune_args`) and the three store commands (:func:`add_store_commands`), and dispatches a
``finetune`` given ``--store`` to :func:`cmd_store_finetune`. Pairs files use the library's pairs format
(:mod:`nudge_rag.data.pairs`) with the store's document ids; rows with ``"split": "dev"`` are validation
(otherwise validation is carved from train by the library's rule).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..finetune import Questions
from ._retune import DEFAULT_MIN_NEW_EVENTS

__all__ = [
    "add_store_finetune_args",
    "add_store_commands",
    "STORE_ONLY_OPTIONS",
    "store_errors",
    "redact",
    "cmd_store_finetune",
    "cmd_revert",
    "cmd_status",
    "cmd_reapply",
]

PROG = "nudge-rag"
URI_HELP = (
    "store URI: postgresql://user@host:5432/db?table=T, qdrant:///path?collection=C, "
    "qdrant://host:6333?collection=C, chroma:///path?collection=C, milvus:///file.db?collection=C, "
    "lancedb:///path?table=T, faiss:///index.faiss, sqlite:///file.db?table=T, duckdb:///file.duckdb?table=T, "
    "typesense://host:8108?collection=C (tables: &id_column=...&vector_column=...)"
)
#: ``finetune`` options that only a store fine-tune reads: (dest, flag as the user writes it); each defaults to
#: None, so that any value means the user gave it.
STORE_ONLY_OPTIONS = (
    ("query_vectors", "--query-vectors"),
    ("ann", "--ann"),
    ("scan", "--scan / --per-query"),
    ("dry_run", "--dry-run"),
    ("strict", "--strict"),
    ("report", "--report"),
    ("feedback", "--feedback"),
    ("doc_field", "--doc-field"),
    ("min_new_events", "--min-new-events"),
)


def add_store_finetune_args(p: argparse.ArgumentParser) -> None:
    """The ``--store`` source of ``nudge-rag finetune`` and the options only it reads."""
    g = p.add_argument_group(
        "store (--store URI --pairs FILE: fit inside a vector database, write back only the moved rows)"
    )
    g.add_argument("--store", metavar="URI", help=URI_HELP)
    g.add_argument(
        "--query-vectors",
        metavar="FILE",
        help="question vectors: .npz with 'ids' and 'vectors', or .npy with --query-ids (default: embed with --model)",
    )
    s = g.add_mutually_exclusive_group()
    s.add_argument(
        "--ann",
        action="store_true",
        default=None,
        help="competitor search through the store's ANN index (default: exact, equal to in-memory)",
    )
    s.add_argument(
        "--scan",
        action="store_true",
        default=None,
        help="exact competitor search as one streamed pass over the store (the default where it is faster)",
    )
    s.add_argument(
        "--per-query",
        dest="scan",
        action="store_false",
        help="exact competitor search by the store's own exact search, one query at a time",
    )
    g.add_argument("--dry-run", action="store_true", default=None, help="fit and report, write nothing")
    g.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="exit 3 when rows were skipped because another client changed or deleted them during the fine-tune",
    )
    g.add_argument("--report", metavar="FILE", help="also write the report as JSON")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    f = p.add_argument_group(
        "feedback (--store URI --feedback LOG: re-tune from your users' feedback, building on the previous re-tune)"
    )
    f.add_argument(
        "--feedback",
        metavar="LOG",
        help="a nudge-rag feedback log (SQLite, nudge_rag.feedback.FeedbackLog) instead of --pairs: fits on the "
        "events logged so far, re-validates gamma on held-out feedback, writes nothing until enough new events",
    )
    f.add_argument(
        "--min-new-events",
        type=int,
        metavar="N",
        help=f"with --feedback: usable new events needed before anything is written (default {DEFAULT_MIN_NEW_EVENTS})",
    )
    g.add_argument(
        "--doc-field",
        metavar="FIELD",
        help="the pairs or feedback name documents, whose chunks carry their id in this metadata field",
    )


def add_store_commands(sub: argparse._SubParsersAction) -> None:
    """The ``revert``, ``status`` and ``reapply`` commands (each on one ``--store URI``)."""
    r = sub.add_parser("revert", help="restore the original vectors of every row a store fine-tune wrote")
    r.add_argument("--store", required=True, metavar="URI", help=URI_HELP)
    r.add_argument("--strict", action="store_true", help="exit 3 when rows changed or deleted since were skipped")
    r.set_defaults(func=cmd_revert)
    st = sub.add_parser("status", help="how a store stands against the ledger of nudge-rag's writes")
    st.add_argument("--store", required=True, metavar="URI", help=URI_HELP)
    st.add_argument("--json", action="store_true", help="print one JSON object")
    st.set_defaults(func=cmd_status)
    ra = sub.add_parser("reapply", help="write the nudge again on rows a re-index put back to their original vector")
    ra.add_argument("--store", required=True, metavar="URI", help=URI_HELP)
    ra.set_defaults(func=cmd_reapply)


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a store command reports as a one-line error with exit status 1."""
    from ._base import StoreError

    return (StoreError, KeyError, RuntimeError)


def redact(message: str, store_arg: str) -> str:
    """``message`` with every credential of the store URI ``store_arg`` replaced by ``***`` (the whole URI by
    ``<store URI>`` when it does not parse)."""
    try:
        from ._registry import parse_uri

        for secret in parse_uri(store_arg).secrets():
            message = message.replace(secret, "***")
    except ValueError:
        message = message.replace(store_arg, "<store URI>")
    return message


# ---------------------------------------------------------------------------------------------- pairs
def _read_pairs(files: list[str]) -> tuple[Questions, Questions | None, dict[str, str] | None, int]:
    """(train, dev or None, query id -> text or None, number of test pairs) from pairs files naming store ids."""
    from ..data import load_pairs
    from ..data.pairs import _rows

    named: dict[str, None] = {}
    for f in files:
        for _, row in _rows(Path(f)):
            for key in ("doc_id", "doc_ids"):
                v = row.get(key)
                for d in v if isinstance(v, list) else ([] if v is None else [v]):
                    named[str(d)] = None
    ds = load_pairs(files, doc_ids=list(named))
    texts = ds.query_text_map()

    def questions(split: str) -> Questions | None:
        judgements = ds.qrels.get(split) or []
        if not judgements:
            return None
        per: dict[str, dict[str, float]] = {}
        for qid, did, rel in judgements:
            answers = per.setdefault(qid, {})
            answers[did] = max(rel, answers.get(did, 0.0))
        qids = tuple(per)
        return Questions(qids, tuple(tuple(per[q]) for q in qids), tuple(tuple(per[q].values()) for q in qids), qids)

    train = questions("train")
    if train is None:
        raise ValueError(f"no training pairs in {', '.join(files)}")
    return train, questions("dev"), texts, len(ds.qrels.get("test") or [])


def _query_vectors(
    args: argparse.Namespace, texts: dict[str, str] | None, wanted: list[str]
) -> Callable[[list[str]], np.ndarray]:
    """A callable query ids -> (n, d) vectors: from --query-vectors, else embedded with --model."""
    if args.query_vectors:
        path = Path(args.query_vectors)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "ids" not in z or "vectors" not in z:
                    raise ValueError(f"{path}: a .npz of query vectors needs arrays 'ids' and 'vectors'")
                ids, vecs = [str(i) for i in z["ids"]], np.asarray(z["vectors"])
        else:
            if not args.query_ids:
                raise ValueError("--query-vectors FILE.npy needs --query-ids FILE")
            vecs = np.load(path, allow_pickle=False)
            ids = Path(args.query_ids).read_text(encoding="utf-8").splitlines()
        if vecs.ndim != 2 or len(ids) != vecs.shape[0]:
            raise ValueError(f"{path}: {len(ids)} query ids for vectors of shape {vecs.shape}")
        table = dict(zip(ids, vecs))
        return lambda q: np.stack([_need(table, i, path) for i in q]).astype(np.float32)
    if texts is None:
        raise ValueError("the pairs have no question texts: pass --query-vectors")
    from ..embedding import embed_texts

    return lambda q: embed_texts([texts[i] for i in q], args.model, progress=not args.no_progress)


def _need(table: dict[str, np.ndarray], qid: str, path: Path) -> np.ndarray:
    if qid not in table:
        raise ValueError(f"{path}: no vector for query id {qid!r}")
    return table[qid]


# ---------------------------------------------------------------------------------------------- commands
def cmd_store_finetune(args: argparse.Namespace) -> int:
    """``nudge-rag finetune --store URI --pairs FILE``: fit on the store, write the moved rows, report."""
    from .._report import finetune_report_json, write_json
    from ..finetune import validation_notes
    from ._finetune import finetune_store
    from ._registry import open_store, parse_uri

    if args.feedback:
        return _store_retune(args)
    if args.min_new_events is not None:
        raise ValueError("--min-new-events is for --feedback LOG")
    if not args.pairs:
        raise ValueError("--store needs --pairs FILE (pairs naming the store's document ids) or --feedback LOG")
    if args.query_vectors and args.model:
        raise ValueError("--query-vectors and --model are alternatives: give one")
    train, dev, texts, n_test = _read_pairs(args.pairs)
    if n_test:
        print(
            f"{PROG} finetune: note: {n_test} pairs with split 'test' are not used: a store fine-tune trains on "
            "'train' and validates on 'dev' pairs; score the test pairs with your app's own retrieval afterwards",
            file=sys.stderr,
        )
    embed = _query_vectors(args, texts, list(train.ids))
    uri = parse_uri(args.store)
    store = open_store(args.store)
    try:
        store_desc = store.describe()
        report, _ = finetune_store(
            store,
            train,
            dev,
            embed_queries=embed,
            variant=args.method,
            gamma=args.gamma,
            metric=args.metric,
            exact=not args.ann,
            scan=args.scan,
            write=not args.dry_run,
            val_fraction=args.val_fraction,
            seed=args.seed,
            show_progress=not args.no_progress,
            store_name=uri.redacted(),
            revert_hint=f"nudge-rag revert --store '{uri.redacted()}'",
            doc_field=args.doc_field,
        )
    finally:
        store.close()
    if args.report:
        write_json(args.report, finetune_report_json(report, "store", dry_run=bool(args.dry_run)))
    print(f"store: {store_desc}")
    print(
        f"pairs: {report.n_train_questions} training questions ({report.n_train_pairs} pairs), "
        f"{report.n_val_questions} validation ({report.val_source})"
    )
    print(
        f"read: {report.vectors_read} vectors by id; searched: {report.search.get('searched_queries', 0)} "
        f"queries in {report.search.get('search_calls', 0)} calls "
        f"({report.search_strategy}, k <= {report.search.get('search_k_max', 0)})"
    )
    print(report)
    for note in validation_notes(report):
        print(f"{PROG} finetune: {note}" if note.startswith("warning") else note, file=sys.stderr)
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    print(
        f"wrote: {report.written} vectors, generation {report.generation} (originals in the ledger; the store "
        f"ranks by {report.store_similarity})"
    )
    skipped = report.skipped_changed + report.skipped_missing
    if skipped:
        print(
            f"{PROG} finetune: warning: skipped {report.skipped_changed} rows changed and {report.skipped_missing} "
            f"deleted by another client after the fit read them (e.g. {report.skipped_ids_sample[:5]}); "
            "they keep their new content",
            file=sys.stderr,
        )
    print(f"to revert: {report.revert}")
    return 3 if skipped and args.strict else 0


def _store_retune(args: argparse.Namespace) -> int:
    """``nudge-rag finetune --store URI --feedback LOG``: :func:`~nudge_rag.stores.retune_store`, then report."""
    from .._report import finetune_report_json, write_json
    from ..finetune import validation_notes
    from ._registry import open_store, parse_uri
    from ._retune import retune_store

    if args.pairs:
        raise ValueError("--feedback LOG and --pairs FILE are alternatives: give one")
    if args.gamma is not None:
        raise ValueError("--feedback re-validates gamma on held-out feedback; --gamma is for --pairs")
    if args.query_vectors:
        raise ValueError("--feedback takes question vectors from the log (or embeds with --model), not --query-vectors")
    if not Path(args.feedback).is_file():
        raise ValueError(f"feedback log not found: {args.feedback}")

    def embed(texts: list[str]) -> np.ndarray:
        from ..embedding import embed_texts

        return embed_texts(texts, args.model, progress=not args.no_progress)

    uri = parse_uri(args.store)
    store = open_store(args.store)
    try:
        report = retune_store(
            store,
            args.feedback,
            embed=embed,
            variant=args.method,
            metric=args.metric,
            min_new_events=DEFAULT_MIN_NEW_EVENTS if args.min_new_events is None else args.min_new_events,
            val_fraction=args.val_fraction,
            doc_field=args.doc_field,
            write=not args.dry_run,
            store_name=uri.redacted(),
        )
    finally:
        store.close()
    if args.report:
        write_json(args.report, finetune_report_json(report, "store", dry_run=bool(args.dry_run)))
    print(
        f"feedback: {report.events_new} new events (log ids {report.events_from + 1}..{report.events_to}): "
        f"{report.events_used} used, {report.events_held_out} of them held out for validation; skipped "
        f"{report.events_skipped_unknown} naming unknown or deleted documents, {report.events_skipped_not_relevant} "
        "not relevance (grade 0 or no document)"
    )
    if not report.applied:
        print(f"nothing written: {report.reason}")
        return 0
    print(report)
    if report.reason:
        print(report.reason)
    for note in validation_notes(report):
        print(f"{PROG} finetune: {note}" if note.startswith("warning") else note, file=sys.stderr)
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    print(f"wrote: {report.written} vectors; to revert: nudge-rag revert --store '{uri.redacted()}'")
    skipped = report.skipped_changed + report.skipped_missing
    return 3 if skipped and args.strict else 0


def cmd_revert(args: argparse.Namespace) -> int:
    """``nudge-rag revert --store URI``: restore the original of every row still holding what nudge-rag wrote."""
    from ._registry import open_store

    with open_store(args.store) as store:
        label = store.label
        result = store.revert()
    if not (result.restored or result.already or result.changed or result.missing):
        print(f"nothing to revert in {label} (the ledger holds no rows)")
        return 0
    print(f"{label}: {result.summary()}")
    left = len(result.changed) + len(result.missing)
    return 3 if left and args.strict else 0


def cmd_status(args: argparse.Namespace) -> int:
    """``nudge-rag status --store URI [--json]``: nudged / overwritten / missing rows and the generations."""
    import json

    from ._registry import open_store

    with open_store(args.store) as store:
        status = store.status()
    print(json.dumps(status.to_dict(), indent=2) if args.json else str(status))
    return 0


def cmd_reapply(args: argparse.Namespace) -> int:
    """``nudge-rag reapply --store URI``: nudge again the rows a re-index put back to their original vector."""
    from ._registry import open_store

    with open_store(args.store) as store:
        label = store.label
        result = store.reapply()
    print(f"{label}: {result.summary()}")
    return 0
