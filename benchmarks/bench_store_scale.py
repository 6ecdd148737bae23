"""Scale benchmark: NUDGE-N fitted on a large store, with the nudge-rag process's peak RSS and the fit time split
into fetch / search / solve / write.

Two phases in separate processes, so that the fit process never held the corpus:

    nice -n 10 .venv/bin/python benchmarks/bench_store_scale.py load --store pgvector --n 1000000 --dir /tmp/scale
    nice -n 10 .venv/bin/python benchmarks/bench_store_scale.py fit --store pgvector --dir /tmp/scale

Store fit against the in-memory fit of the same data, each in its own fresh process (ratio and peak RSS, one run):

    nice -n 10 .venv/bin/python benchmarks/bench_store_scale.py compare --store pgvector --n 1000000 --dir /tmp/scale

``compare`` runs ``memfit`` (regenerates the same data, times ``NudgeN().fit`` on it in RAM) and ``fit`` as two
subprocesses and prints their JSON lines and one summary line: in-memory fit seconds, store fit seconds (open +
fit + write, revert apart), their ratio, and each process's peak RSS (``VmHWM``).
``load`` builds synthetic clustered data (:func:`nudge_rag.synthetic.make_synthetic`, 384-d, 10k training and
1k validation queries), streams the documents into the store and saves the queries; ``fit`` opens the store,
runs :func:`nudge_rag.stores.finetune_store` (exact competitors), reverts, and prints one JSON line.
pgvector runs on a pgserver instance in ``--dir`` (left running between phases; ``stop`` stops it); Qdrant in
local mode on disk (``--dir``/qdrant), which is pure Python and holds the whole collection in the process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nudge_rag.finetune import Questions  # noqa: E402

D = 384


def _pg(dirpath: Path, cleanup: str | None = None):
    import pgserver

    return pgserver.get_server(dirpath / "pg", cleanup_mode=cleanup)


def load(args) -> None:
    from nudge_rag.synthetic import make_synthetic

    t0 = time.perf_counter()
    data = make_synthetic(args.n, n_train=args.train, n_val=args.val, n_test=10, dim=D, seed=0)
    ids = [str(i) for i in range(args.n)]

    def questions(qa, prefix):
        answers = [tuple(ids[int(r)] for r in qa.indices[a:b]) for a, b in zip(qa.indptr[:-1], qa.indptr[1:])]
        return {"texts": [f"{prefix}{j}" for j in range(len(qa))], "answers": answers, "emb": qa.embeddings}

    tr, va = questions(data.train, "t"), questions(data.val, "v")
    args.dir.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.dir / "queries.npz",
        train_emb=tr["emb"],
        val_emb=va["emb"],
        train_ans=np.array([a[0] for a in tr["answers"]]),
        val_ans=np.array([a[0] for a in va["answers"]]),
    )
    docs = data.documents
    t1 = time.perf_counter()
    if args.store == "pgvector":
        import psycopg
        from pgvector.psycopg import register_vector

        srv = _pg(args.dir)
        with psycopg.connect(srv.get_uri(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("DROP TABLE IF EXISTS docs")
            conn.execute(f"CREATE TABLE docs (id text PRIMARY KEY, embedding vector({D}))")
            with conn.cursor() as cur, cur.copy("COPY docs (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
                cp.set_types(["text", "vector"])
                for i in range(args.n):
                    cp.write_row((ids[i], docs[i]))
            conn.execute("ANALYZE docs")
        (args.dir / "uri.txt").write_text(srv.get_uri() + "&table=docs")
    else:
        from qdrant_client import QdrantClient, models

        client = QdrantClient(path=str(args.dir / "qdrant"))
        if client.collection_exists("docs"):
            client.delete_collection("docs")
        client.create_collection("docs", vectors_config=models.VectorParams(size=D, distance=models.Distance.COSINE))
        for b0 in range(0, args.n, 2000):
            client.upsert(
                "docs",
                points=models.Batch(ids=list(range(b0, min(b0 + 2000, args.n))), vectors=docs[b0 : b0 + 2000].tolist()),
                wait=True,
            )
        client.close()
        (args.dir / "uri.txt").write_text(f"qdrant://{args.dir / 'qdrant'}?collection=docs")
    print(
        json.dumps(
            {
                "phase": "load",
                "store": args.store,
                "n": args.n,
                "make_s": round(t1 - t0, 1),
                "load_s": round(time.perf_counter() - t1, 1),
            }
        )
    )


def _vm_hwm_mib() -> float:
    """Peak resident set size of this process (MiB): ``VmHWM`` from /proc, else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memfit(args) -> None:
    """The in-memory reference: the same synthetic data regenerated (not timed), ``NudgeN().fit`` timed."""
    from nudge_rag import NudgeN
    from nudge_rag.synthetic import make_synthetic

    data = make_synthetic(args.n, n_train=args.train, n_val=args.val, n_test=10, dim=D, seed=0)
    t0 = time.perf_counter()
    model = NudgeN().fit(data.documents, data.train, data.val)
    fit_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "phase": "memfit",
                "n": args.n,
                "gamma": float(model.gamma_),
                "moved": int(len(model.patch_.rows)),
                "fit_s": round(fit_s, 2),
                "peak_rss_mib": round(_vm_hwm_mib()),
            }
        )
    )


def compare(args) -> None:
    """``memfit`` and ``fit`` in two fresh processes, then the ratio of their fit times."""
    out = {}
    for phase in ("memfit", "fit"):
        cmd = [sys.executable, __file__, phase, "--store", args.store, "--n", str(args.n), "--dir", str(args.dir)]
        cmd += ["--train", str(args.train), "--val", str(args.val)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"{phase} failed:\n{res.stderr[-3000:]}")
        line = [x for x in res.stdout.splitlines() if x.startswith("{")][-1]
        print(line, flush=True)
        out[phase] = json.loads(line)
    mem, st = out["memfit"], out["fit"]
    store_s = st["open_s"] + st["fit_s"]
    print(
        json.dumps(
            {
                "phase": "compare",
                "store": args.store,
                "n": st["n"],
                "memory_fit_s": mem["fit_s"],
                "store_fit_s": round(store_s, 2),
                "ratio": round(store_s / mem["fit_s"], 3),
                "same_gamma": mem["gamma"] == st["gamma"],
                "same_moved": mem["moved"] == st["moved"],
                "memory_peak_rss_mib": mem["peak_rss_mib"],
                "store_peak_rss_mib": st["peak_rss_mib"],
            }
        )
    )


def fit(args) -> None:
    from nudge_rag.stores import finetune_store, open_store

    z = np.load(args.dir / "queries.npz")

    def questions(emb, ans, prefix):
        texts = tuple(f"{prefix}{j}" for j in range(len(ans)))
        return Questions(texts, tuple((str(a),) for a in ans), tuple((1.0,) for _ in ans), texts), dict(zip(texts, emb))

    train, tv = questions(z["train_emb"], z["train_ans"], "t")
    val, vv = questions(z["val_emb"], z["val_ans"], "v")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    store = open_store((args.dir / "uri.txt").read_text())
    open_s = time.perf_counter() - t0
    report, _ = finetune_store(
        store, train, val, embed_queries={**tv, **vv}, scan=args.store == "pgvector", show_progress=False
    )
    t1 = time.perf_counter()
    fit_s = t1 - t0 - open_s
    reverted = store.revert()
    revert_s = time.perf_counter() - t1
    store.close()
    print(
        json.dumps(
            {
                "phase": "fit",
                "store": args.store,
                "n": report.n_documents,
                "train": len(train),
                "val": len(val),
                "gamma": report.gamma,
                "moved": report.n_moved,
                "written": report.written,
                "vectors_read": report.vectors_read,
                "val_score": [report.val_base_score, report.val_score],
                "open_s": round(open_s, 2),
                "fit_s": round(fit_s, 2),
                "seconds": report.seconds,
                "revert_s": round(revert_s, 2),
                "reverted": int(reverted.restored),
                "rss_before_open_mib": round(rss0),
                "peak_rss_mib": round(_vm_hwm_mib()),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phase", choices=("load", "fit", "memfit", "compare", "stop"))
    p.add_argument("--store", choices=("pgvector", "qdrant"), default="pgvector")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--train", type=int, default=10_000)
    p.add_argument("--val", type=int, default=1_000)
    p.add_argument("--dir", type=Path, required=True)
    args = p.parse_args()
    if args.phase == "load":
        load(args)
    elif args.phase == "fit":
        fit(args)
    elif args.phase == "memfit":
        memfit(args)
    elif args.phase == "compare":
        compare(args)
    else:
        _pg(args.dir, "stop").cleanup()


if __name__ == "__main__":
    main()
