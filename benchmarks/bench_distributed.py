#!/usr/bin/env python
"""Benchmark: NUDGE-N on a 5M x 384 float32 corpus stored as .npy shards, on a Dask LocalCluster (2 workers).

Steps, each in its own process so that peak RSS numbers are not polluted by the other steps:

1. ``gen``: write clustered synthetic documents (like ``nudge_rag.synthetic``) as ``--shards`` .npy files of
   ``--rows / --shards`` rows under ``--dir`` (default /tmp), plus 10k training / 1k validation queries (answers
   anywhere in the corpus) and, for step 3, a second query set whose answers lie in the first 1M rows.
2. ``dask``: ``open_corpus`` + ``NudgeN().fit`` on a LocalCluster with 2 single-threaded worker processes,
   then ``write_back`` in place (only shards holding moved rows). Reports fit and write-back time, the client's
   peak RSS (this process: ``ru_maxrss``; the LocalCluster scheduler runs in it too) and each worker's peak RSS
   (``ru_maxrss`` in the worker, which counts the memory-mapped shard pages it touched).
3. ``memory``: the in-memory solver on the first 1M rows loaded into RAM (same generator, same query counts).

The shards are deleted at the end (``--keep`` keeps them). Not a timed test.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_distributed.py [--rows 5000000] [--dir /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM = 384
DOCS_PER_CLUSTER = 50
IN_MEMORY_ROWS = int(os.environ.get("NUDGE_BENCH_IN_MEMORY_ROWS", 1_000_000))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def gen(args) -> dict:
    root = Path(args.work)
    shards = root / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n_clusters = max(1, args.rows // DOCS_PER_CLUSTER)
    centers = _unit(rng.standard_normal((n_clusters, DIM), dtype=np.float32))
    per = args.rows // args.shards
    t0 = time.perf_counter()
    for j in range(args.shards):
        r = np.random.default_rng(1000 + j)
        m = per if j < args.shards - 1 else args.rows - per * (args.shards - 1)
        block = centers[r.integers(0, n_clusters, m)]
        block += 0.35 * r.standard_normal((m, DIM), dtype=np.float32) / np.sqrt(DIM)
        np.save(shards / f"shard-{j:03d}.npy", _unit(block))
        del block
    del centers
    gen_s = time.perf_counter() - t0

    def queries(limit: int, seed: int) -> dict:
        r = np.random.default_rng(seed)
        answered = np.sort(r.choice(limit, 20_000, replace=False))
        offsets = _unit(r.standard_normal((answered.size, DIM), dtype=np.float32))
        docs = _read_rows(shards, answered, per)
        out = {}
        for name, n in (("train", 10_000), ("val", 1_000)):
            pick = r.choice(answered.size, n, p=_zipf(answered.size))
            noise = 2.0 * r.standard_normal((n, DIM), dtype=np.float32) / np.sqrt(DIM)
            out[f"{name}_q"] = _unit(docs[pick] + offsets[pick] + noise)
            out[f"{name}_a"] = answered[pick]
        return out

    np.savez(root / "queries_full.npz", **queries(args.rows, 1))
    np.savez(root / "queries_1m.npz", **queries(min(IN_MEMORY_ROWS, args.rows), 2))
    return {"gen_seconds": gen_s, "bytes_on_disk": sum(f.stat().st_size for f in shards.glob("*.npy"))}


def _zipf(n: int) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** 0.5
    return p / p.sum()


def _read_rows(shards: Path, rows: np.ndarray, per: int) -> np.ndarray:
    out = np.empty((rows.size, DIM), dtype=np.float32)
    files = sorted(shards.glob("*.npy"))
    which = np.minimum(rows // per, len(files) - 1)
    for j in np.unique(which):
        sel = which == j
        out[sel] = np.load(files[j], mmap_mode="r")[rows[sel] - j * per]
    return out


def _pairs(data, name: str):
    from nudge_rag import QueryAnswers

    return QueryAnswers.from_lists(data[f"{name}_q"], data[f"{name}_a"][:, None].tolist())


def run_dask(args) -> dict:
    import distributed

    from nudge_rag import NudgeN
    from nudge_rag.distributed import open_corpus, write_back

    root = Path(args.work)
    data = np.load(root / "queries_full.npz")
    train, val = _pairs(data, "train"), _pairs(data, "val")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit=args.worker_memory
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        corpus = open_corpus(root / "shards", client=client)
        model = NudgeN().fit(corpus, train, val)
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        written = write_back(corpus, model.patch_)
        write_s = time.perf_counter() - t1
        workers = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        cpu = client.run(lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2]))
        outgoing = client.run(lambda dask_worker: getattr(dask_worker, "transfer_outgoing_bytes_total", 0))
    return {
        "n_docs": corpus.n_docs,
        "chunks": int(corpus.array.numblocks[0]),
        "fit_seconds": fit_s,
        "write_back_seconds": write_s,
        "shards_rewritten": len(written),
        "gamma": model.gamma_,
        "n_moved": model.n_moved_,
        "val_base": model.val_base_score_,
        "val": model.val_score_,
        "client_peak_rss_mib": _peak_mib(),
        "worker_peak_rss_mib": sorted(workers.values()),
        "worker_cpu_seconds": sorted(cpu.values()),
        "client_cpu_seconds": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        "worker_transfer_bytes": int(sum(outgoing.values())),
    }


def run_memory(args) -> dict:
    from nudge_rag import NudgeN

    root = Path(args.work)
    files = sorted((root / "shards").glob("*.npy"))
    per = np.load(files[0], mmap_mode="r").shape[0]
    docs = np.concatenate([np.load(f) for f in files[: max(1, IN_MEMORY_ROWS // per)]])[:IN_MEMORY_ROWS]
    data = np.load(root / "queries_1m.npz")
    train, val = _pairs(data, "train"), _pairs(data, "val")
    t0, c0 = time.perf_counter(), time.process_time()
    model = NudgeN().fit(docs, train, val)
    return {
        "n_docs": int(docs.shape[0]),
        "fit_seconds": time.perf_counter() - t0,
        "fit_cpu_seconds": time.process_time() - c0,
        "gamma": model.gamma_,
        "n_moved": model.n_moved_,
        "peak_rss_mib": _peak_mib(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--shards", type=int, default=40)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--worker-memory", default="4GiB", help="LocalCluster memory_limit per worker")
    ap.add_argument("--keep", action="store_true", help="keep the shards")
    ap.add_argument("--step", choices=("all", "gen", "dask", "memory"), default="all")
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step != "all":
        out = {"gen": gen, "dask": run_dask, "memory": run_memory}[args.step](args)
        print("RESULT " + json.dumps(out))
        return
    work = Path(args.dir) / f"nudge-bench-distributed-{os.getpid()}"
    results = {}
    try:
        for step in ("gen", "dask", "memory"):
            cmd = [
                sys.executable,
                __file__,
                "--step",
                step,
                "--work",
                str(work),
                "--rows",
                str(args.rows),
                "--shards",
                str(args.shards),
                "--worker-memory",
                args.worker_memory,
            ]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.stderr.write(proc.stderr[-4000:])
                raise SystemExit(f"step {step} failed")
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
            results[step] = json.loads(line[7:]) | {"step_seconds": time.perf_counter() - t0}
            print(step, json.dumps(results[step]), flush=True)
            print("load average:", os.getloadavg(), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    d, m = results["dask"], results["memory"]
    print(
        f"dask {d['n_docs']} docs: fit {d['fit_seconds']:.1f} s; in-memory {m['n_docs']}: {m['fit_seconds']:.1f} s; "
        f"ratio {d['fit_seconds'] / m['fit_seconds']:.2f} (per document "
        f"{(d['fit_seconds'] / d['n_docs']) / (m['fit_seconds'] / m['n_docs']):.2f})"
    )


if __name__ == "__main__":
    main()
