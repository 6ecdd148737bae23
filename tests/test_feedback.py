"""The feedback log: durable appends (kill -9 loses no acknowledged event), several appending processes at once,
events grouped into questions as every fit takes them, bad events refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nudge_rag.feedback import FeedbackLog

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
APPENDER = """
import sys
from nudge_rag.feedback import FeedbackLog
log = FeedbackLog(sys.argv[1])
tag, n = sys.argv[2], int(sys.argv[3])
for j in range(n):
    i = log.record(f"{tag} question {j}", [f"doc{j % 7}"], source="click", vector=[float(j), 1.0, 0.0])
    print(i, flush=True)  # acknowledged: the event is committed
"""


def test_events_round_trip_and_group_into_questions(tmp_path):
    with FeedbackLog(tmp_path / "fb.sqlite") as log:
        a = log.record("what lowers blood pressure?", ["d1"], source="click", retrieved=["d9", "d1"])
        log.record("what lowers blood pressure?", ["d2", "d1"], grade=2.0, source="thumbs_up", vector=[0.5, 0.5])
        log.record("is coffee bad?", "d3", source="cited")
        log.record("is coffee bad?", ["d4"], grade=0.0, source="thumbs_down")  # judged not relevant
        log.record("anything about tea?", [], source="retrieved", retrieved=["d5"])  # a query with no judgement
        assert len(log) == 5 and log.last_id() == a + 4
        events = log.events()
        assert [e.source for e in events] == ["click", "thumbs_up", "cited", "thumbs_down", "retrieved"]
        assert events[0].retrieved == ("d9", "d1") and events[0].vector is None
        np.testing.assert_array_equal(events[1].vector, np.array([0.5, 0.5], dtype=np.float32))
        q = log.questions()
        assert q.texts == ("what lowers blood pressure?", "is coffee bad?")
        assert q.answers == (("d1", "d2"), ("d3",)) and q.relevance == ((2.0, 2.0), (1.0,))
        assert log.questions(after=a + 1).texts == ("is coffee bad?",)  # only what came later
        assert set(log.vectors()) == {"what lowers blood pressure?"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(question="", doc_ids=["d"]), "non-empty question"),
        (dict(question="q", doc_ids=[]), "at least one document"),
        (dict(question="q", doc_ids=["d"], grade=-1), "grade must be"),
        (dict(question="q", doc_ids=["d"], grade=float("nan")), "grade must be"),
        (dict(question="q", doc_ids=["d"], source=""), "source must be"),
        (dict(question="q", doc_ids=["d"], vector=[float("nan")]), "finite"),
    ],
)
def test_bad_events_are_refused_and_nothing_is_written(tmp_path, kwargs, match):
    with FeedbackLog(tmp_path / "fb.sqlite") as log:
        with pytest.raises(ValueError, match=match):
            log.record_many([{"question": "fine", "doc_ids": ["d0"]}, kwargs])
        assert len(log) == 0


def test_a_file_that_is_not_a_log_is_refused(tmp_path):
    import sqlite3

    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        c.execute("INSERT INTO meta VALUES ('marker', 'something else')")
    with pytest.raises(ValueError, match="not a nudge-rag feedback log"):
        FeedbackLog(path)


@pytest.mark.integration
def test_several_processes_append_at_once(tmp_path):
    path = tmp_path / "fb.sqlite"
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), f"p{k}", "150"], stdout=subprocess.PIPE,
                         text=True, env=ENV)
        for k in range(4)
    ]  # fmt: skip
    acknowledged = [int(line) for p in procs for line in p.communicate(timeout=300)[0].split()]
    assert all(p.returncode == 0 for p in procs)
    with FeedbackLog(path) as log:
        events = log.events()
    assert len(events) == len(acknowledged) == 600 and sorted(e.id for e in events) == sorted(acknowledged)
    assert {e.question.split()[0] for e in events} == {"p0", "p1", "p2", "p3"}


@pytest.mark.integration
@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_event(tmp_path):
    path = tmp_path / "fb.sqlite"
    rng = np.random.default_rng(1)
    acknowledged: list[int] = []
    for attempt in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(path), f"run{attempt}", "100000"], stdout=subprocess.PIPE,
            text=True, env=ENV,
        )  # fmt: skip
        for _ in range(int(rng.integers(50, 400))):
            acknowledged.append(int(proc.stdout.readline()))
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read().split()  # lines printed before the kill landed: acknowledged too
        acknowledged += [int(x) for x in rest]
        proc.wait()
        with FeedbackLog(path) as log:  # opens cleanly after the kill
            ids = {e.id for e in log.events()}
        missing = set(acknowledged) - ids
        assert not missing, f"attempt {attempt}: {len(missing)} acknowledged events lost"
