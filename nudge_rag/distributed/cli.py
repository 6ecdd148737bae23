"""``nudge-rag finetune --engine dask``: fit on a corpus in files (.npy shards, Zarr, Parquet) on a Dask cluster.

The corpus vectors never reach the client: the competitor scan runs on the cluster and the nudged corpus is
written by the workers, shard by shard, in the input's layout (``OUT/embeddings/``). Query vectors come from
``--query-embeddings`` / ``--query-ids`` or are embedded with the model; documents are named by ``--doc-ids``
(one per corpus row) or by their row number.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write, atomic_write_text

__all__ = ["add_engine_args", "cmd_finetune_dask"]

ENGINES = ("memory", "dask")


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """The ``--engine`` options of ``nudge-rag finetune``."""
    g = p.add_argument_group("engine (--engine dask: --corpus is a vector corpus: .npy shards, Zarr or Parquet)")
    g.add_argument(
        "--engine",
        choices=ENGINES,
        default="memory",
        help="memory (default): vectors in RAM; dask: the corpus in --corpus, scanned on a Dask cluster",
    )
    g.add_argument(
        "--scheduler", metavar="ADDRESS", help="Dask scheduler address (default: a LocalCluster on this machine)"
    )
    g.add_argument(
        "--vector-column",
        default="embedding",
        metavar="NAME",
        help="Parquet column holding the vectors (default embedding)",
    )


def _query_vectors(args: Any, ds: Any, query_ids: list[str]) -> tuple[np.ndarray, str]:
    from ..data import DataError
    from ..data._io import read_id_list, require_file

    if args.query_embeddings:
        if not args.query_ids:
            raise DataError("--query-embeddings needs --query-ids (a text file with one id per row)")
        path = require_file(args.query_embeddings, "query embeddings file")
        vecs = np.load(path, allow_pickle=False)
        ids = read_id_list(args.query_ids)
        if vecs.ndim != 2 or vecs.shape[0] != len(ids):
            raise DataError(f"{path}: {vecs.shape} query vectors for {len(ids)} query ids")
        pos = {q: i for i, q in enumerate(ids)}
        missing = [q for q in query_ids if q not in pos]
        if missing:
            raise DataError(f"{path}: no vector for {len(missing)} query id(s) (first: {missing[0]!r})")
        return vecs[[pos[q] for q in query_ids]].astype(np.float32), f"queries from {path}"
    texts = ds.texts_of_queries(query_ids)
    if texts is None:
        raise DataError("the queries have no text; pass --query-embeddings and --query-ids")
    from ..embedding import Embedder

    emb = Embedder(args.model, batch_size=args.batch_size, cache_dir=args.cache_dir)
    return emb.encode(texts), f"queries embedded with {emb.name}"


def cmd_finetune_dask(args: Any) -> int:
    """Fit one NUDGE variant on ``--corpus`` on a Dask cluster; write shards, patch, ids and report to ``--out``."""
    from ..data import DataError
    from .client import resolve_client

    if not args.corpus or not args.pairs:
        raise DataError("--engine dask needs --corpus PATH (.npy shards, Zarr or Parquet) and --pairs FILE")
    if args.dataset or args.data:
        raise DataError("--engine dask reads --corpus and --pairs; --dataset / --data are for the memory engine")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} exists and is not a folder")
    client = resolve_client(args.scheduler)
    try:
        return _finetune(args, client, out)
    finally:
        if args.scheduler:  # a client this command connected: close it (the cluster stays up)
            client.close()


def _finetune(args: Any, client: Any, out: Path) -> int:
    from .._report import finetune_report_json, write_json
    from ..data import DataError, load_pairs, make_splits
    from ..data._io import read_id_list
    from ..finetune import finetune_queries
    from ..queries import QueryAnswers
    from .open import open_corpus
    from .writeback import nudged_array, write_npy_shards

    t0 = time.perf_counter()
    print(f"dask: {len(client.scheduler_info().get('workers', {}))} workers; dashboard {client.dashboard_link}")
    corpus = open_corpus(args.corpus, column=args.vector_column, client=client, progress=True)
    doc_ids = read_id_list(args.doc_ids) if args.doc_ids else [str(i) for i in range(corpus.n_docs)]
    if len(doc_ids) != corpus.n_docs:
        raise DataError(f"--doc-ids has {len(doc_ids)} ids but the corpus has {corpus.n_docs} rows")
    ds = load_pairs(args.pairs if len(args.pairs) > 1 else args.pairs[0], doc_ids=doc_ids)
    policy = "official" if args.split == "auto" else args.split
    splits = make_splits(ds, policy, seed=args.seed, val_fraction=args.val_fraction)
    used = list(dict.fromkeys(splits.queries("train") + splits.queries("val")))
    qs, described = _query_vectors(args, ds, used)
    row = {q: i for i, q in enumerate(used)}

    def answers(role: str) -> QueryAnswers:
        ids = splits.queries(role)
        if not ids:
            raise DataError(f"{ds.name}: the {role} split is empty")
        return QueryAnswers.from_pairs(qs[[row[q] for q in ids]], ids, getattr(splits, role), ds.doc_ids)

    train, val = answers("train"), answers("val")
    prep_s = time.perf_counter() - t0
    r = finetune_queries(
        corpus, train, val, variant=args.method, gamma=args.gamma, metric=args.metric, val_source="given"
    )
    model = r.model
    assert model is not None  # a fit, not the baseline
    nudged = nudged_array(corpus.array, model.patch_)  # unit rows everywhere, as the memory engine's output
    names = (
        [Path(p).with_suffix(".npy").name for p in corpus.source.paths]
        if corpus.source is not None and corpus.source.kind in ("npy", "parquet")
        else None
    )
    out.mkdir(parents=True, exist_ok=True)
    r.report.seconds = {"prepare": prep_s, **r.report.seconds}
    report = finetune_report_json(
        r.report,
        "dask",
        dataset={"name": ds.name, "source": str(args.corpus), "n_documents": corpus.n_docs},
        split={"policy": splits.policy, "note": splits.note, "queries": splits.counts()},
        vectors={"source": f"{corpus!r}; {described}", "dimension": corpus.dim},
        method=r.method,
        fit_seconds=r.fit_seconds,
        prepare_seconds=prep_s,
        validation={
            "metric": r.report.val_metric,
            "score_at_gamma_0": model.val_base_score_,
            "score": model.val_score_,
        },
        outputs={
            "embeddings": "embeddings/ (.npy shards, one per input chunk, unit rows with the patch applied)",
            "patch": "patch.npz (rows, new, old)",
            "doc_ids": "doc_ids.txt",
            "model": "model.npz (gamma, validation curve, patch; no N x d matrix: nudge_rag.load)",
            "search_with": "inner_product" if r.similarity == "inner_product" else "cosine (or inner product)",
        },
    )
    with tempfile.TemporaryDirectory(prefix=".nudge-rag-", dir=out) as tmp:
        t = Path(tmp)
        p = model.patch_
        atomic_write(t / "patch.npz", lambda fh: np.savez(fh, rows=p.rows, new=p.new, old=p.old))
        model.save(t / "model.npz")
        atomic_write_text(t / "doc_ids.txt", "".join(f"{d}\n" for d in doc_ids))
        write_json(t / "report.json", report)
        print("writing the nudged shards ...")
        write_npy_shards(nudged, out / "embeddings", names=names, client=client, progress=True)
        for name in ("patch.npz", "model.npz", "doc_ids.txt", "report.json"):
            os.replace(t / name, out / name)
    print(f"\ndata: {corpus!r}; {described}")
    print(f"split: {splits.policy}: {len(train)} train / {len(val)} val queries")
    print(r.report)
    print(
        f"saved {out / 'embeddings'} ({corpus.n_docs} x {corpus.dim} float32, "
        f"{len(nudged.chunks[0])} shards), patch.npz, model.npz, doc_ids.txt and report.json in {out}"
    )
    return 0
