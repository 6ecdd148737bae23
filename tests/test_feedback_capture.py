"""nudge_rag.feedback_capture.FeedbackRecorder: impressions in the background, durable feedback, never a raise from
a hook. The framework hooks are tested against the real frameworks in the adapters' test suites."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

from nudge_rag.feedback import FeedbackLog
from nudge_rag.feedback_capture import FeedbackCaptureWarning, FeedbackRecorder


def test_impressions_are_batched_and_never_pairs(tmp_path):
    path = tmp_path / "f.sqlite"
    with FeedbackRecorder(path, linger=5.0) as rec:
        for i in range(200):
            rec.retrieved(f"question {i}", [f"d{i}", f"d{i + 1}", f"d{i}"], vector=np.full(4, i, np.float32))
        with FeedbackLog(path) as log:
            assert len(log) == 0  # still lingering: nothing on the retrieval path touched the disk
        rec.flush()
        with FeedbackLog(path) as log:
            events = log.events()
            assert len(log.questions()) == 0
    assert [e.question for e in events] == [f"question {i}" for i in range(200)]
    assert events[7].retrieved == ("d7", "d8") and events[7].doc_ids == () and events[7].source == "retrieved"
    np.testing.assert_array_equal(events[7].vector, np.full(4, 7, np.float32))


def test_feedback_is_durable_on_return_ordered_after_impressions_and_linked(tmp_path):
    path = tmp_path / "f.sqlite"
    rec = FeedbackRecorder(path, linger=30.0)  # impressions would wait 30 s: feedback must not
    rec.retrieved("q", ["c1", "c2"], vector=[1.0, 0.0], key=("run", 1), aliases={"c2": "paper-2"})
    event_id = rec.record_feedback(("run", 1), ["c2", "c1", "paper-2"], grade=2.0, source="thumbs_up")
    with FeedbackLog(path) as log:  # a second connection sees it at once
        shown, judged = log.events()
    assert shown.source == "retrieved" and judged.id == event_id  # the earlier impression went in first
    assert (judged.question, judged.doc_ids, judged.grade, judged.retrieved) == (
        "q",
        ("paper-2", "c1"),
        2.0,
        ("c1", "c2"),
    )
    np.testing.assert_array_equal(judged.vector, np.array([1.0, 0.0], np.float32))
    with pytest.raises(KeyError):
        rec.record_feedback(("run", 2), "c1")
    with pytest.raises(ValueError, match="grade"):  # a bad event is refused by the log, and raised
        rec.record_feedback("q", "c1", grade=-1)
    rec.close()


def test_feedback_from_many_threads(tmp_path):
    path = tmp_path / "f.sqlite"
    rec = FeedbackRecorder(path)
    ids: list[int] = []

    def work(t: int) -> None:
        for i in range(20):
            rec.retrieved(f"t{t} q{i}", [f"d{i}"])
            ids.append(rec.record_feedback(f"t{t} q{i}", f"d{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.close()
    with FeedbackLog(path) as log:
        events = log.events()
        assert len(events) == 240 and len(log.questions()) == 120
    assert sorted(ids) == sorted(e.id for e in events if e.source == "click")


def test_hook_side_problems_warn_and_the_recorder_refuses_once_closed(tmp_path):
    path = tmp_path / "f.sqlite"
    rec = FeedbackRecorder(path, max_pending=1, linger=30.0)
    with pytest.warns(FeedbackCaptureWarning, match="non-empty"):
        rec.retrieved("  ", ["a"])
    with pytest.warns(FeedbackCaptureWarning, match="dropped"):  # the writer lingers, the queue holds one
        for q in ("q1", "q2", "q3", "q3", "q3"):
            rec.retrieved(q, ["a"])
    assert rec.dropped >= 1 and rec.last("q3").ids == ("a",)  # still remembered in memory
    with sqlite3.connect(path) as other:
        other.execute("DROP TABLE events")
    with pytest.warns(FeedbackCaptureWarning, match="'q1' not logged"):
        rec.flush()
    assert rec.errors >= 1
    rec.close()
    with pytest.raises(RuntimeError, match="closed"):
        rec.record_feedback("q1", "a")
    with pytest.warns(FeedbackCaptureWarning, match="closed"):
        rec.retrieved("q4", ["a"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec.close()  # twice is fine
    with pytest.raises(ValueError, match="linger"):
        FeedbackRecorder(path, linger=-1)


@pytest.mark.integration  # a second Python process
def test_queued_impressions_are_written_at_interpreter_exit(tmp_path):
    path = tmp_path / "f.sqlite"
    script = (
        "import sys\nfrom nudge_rag.feedback_capture import FeedbackRecorder\n"
        "rec = FeedbackRecorder(sys.argv[1], linger=30.0)\n"
        "for i in range(5):\n    rec.retrieved(f'q{i}', ['a'])\n"
    )  # never closed: the interpreter's exit writes the queue (without waiting out the 30 s linger)
    done = subprocess.run([sys.executable, "-c", script, str(path)], timeout=20, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with FeedbackLog(path) as log:
        assert [e.question for e in log.events()] == [f"q{i}" for i in range(5)]
