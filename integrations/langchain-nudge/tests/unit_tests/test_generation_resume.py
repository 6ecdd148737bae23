"""Generation that keeps its work (issue 19 item 3), LangChain side: saved per completed batch to a pairs file,
resumed after a real SIGKILL without asking the model again about saved documents; per-document progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_nudge import agenerate_questions, generate_questions
from langchain_nudge.llms import LocalQuestionLLM

from nudge_rag.data import load_pairs
from nudge_rag.generate import read_saved_pairs

N = 24

# Shared by this process and the killed subprocess: documents and a deterministic LangChain LLM (an ``LLM``
# subclass) that writes questions about the passage number in its prompt and logs each document it is asked about.
FAKE = textwrap.dedent(
    """
    import re, time
    from typing import Any
    from langchain_core.documents import Document
    from langchain_core.language_models.llms import LLM

    def make_docs(n):
        return [Document(id=f"d{i}", page_content=f"Passage {i} reports that compound {i} lowers enzyme activity.")
                for i in range(n)]

    class PassageLLM(LLM):
        log: str = ""
        delay: float = 0.0

        @property
        def _llm_type(self) -> str:
            return "passage-llm"

        def _call(self, prompt: str, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> str:
            i = re.search(r"Passage (\\d+) reports", prompt).group(1)
            if self.log:
                with open(self.log, "a") as fh:
                    fh.write(i + "\\n")
            time.sleep(self.delay)
            return ('{"questions": ["What does compound %s do to enzyme activity?", '
                    '"Which enzyme does compound %s inhibit?"]}' % (i, i))
    """
)
_ns: dict[str, Any] = {}
exec(compile(FAKE, "<fake llm>", "exec"), _ns)  # noqa: S102 - the same source the subprocess runs
make_docs, PassageLLM = _ns["make_docs"], _ns["PassageLLM"]


def _asked(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_a_killed_generation_resumes_without_redoing_saved_documents(tmp_path):
    out, log1, log2 = tmp_path / "pairs.jsonl", tmp_path / "first.log", tmp_path / "second.log"
    script = FAKE + textwrap.dedent(
        f"""
        from langchain_nudge import generate_questions
        generate_questions(make_docs({N}), PassageLLM(log={str(log1)!r}, delay=0.3), max_concurrency=1,
                           output_path={str(out)!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.stat().st_size) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
        assert out.exists(), f"no batch saved (exit {proc.poll()}): {err}"
        still_running = proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert still_running and proc.returncode == -signal.SIGKILL
    saved_docs = {d for _, d in read_saved_pairs(out)}
    assert 8 <= len(saved_docs) < N and len(saved_docs) % 8 == 0  # whole batches of the default size 8

    result = generate_questions(make_docs(N), PassageLLM(log=str(log2)), output_path=out)
    assert {f"d{i}" for i in _asked(log2)} == {f"d{i}" for i in range(N)} - saved_docs
    assert len(_asked(log2)) == N - len(saved_docs)  # nothing saved is asked again
    assert result.n_resumed == len(saved_docs) and result.n_succeeded == N - len(saved_docs)
    assert result.n_questions == 2 * N and {d for _, d in result.pairs} == {f"d{i}" for i in range(N)}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 2 * N and {x["doc_id"] for x in lines} == {f"d{i}" for i in range(N)}


async def test_async_generation_saves_and_resumes(tmp_path):
    out = tmp_path / "pairs.jsonl"
    first = await agenerate_questions(make_docs(10), PassageLLM(), output_path=out, batch_size=4)
    assert first.n_questions == 20 and len(read_saved_pairs(out)) == 20
    log = tmp_path / "asked.log"
    second = await agenerate_questions(make_docs(12), PassageLLM(log=str(log)), output_path=out)
    assert sorted(_asked(log)) == ["10", "11"] and second.n_resumed == 10 and second.n_questions == 24
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d.id, "text": d.page_content}) + "\n" for d in make_docs(12)))
    assert len(load_pairs(out, corpus).query_ids) == 24  # the core's pairs format


def test_saving_needs_document_ids(tmp_path):
    from langchain_core.documents import Document

    with pytest.raises(ValueError, match="1 document\\(s\\) have no id"):
        generate_questions([Document(page_content="Passage 1 reports x.")], PassageLLM(), output_path=tmp_path / "p")


def test_progress_is_per_document(capsys):
    generate_questions(make_docs(10), PassageLLM(), show_progress=True, batch_size=4)
    err = capsys.readouterr().err
    assert "generating questions" in err and "10/10" in err and "document" in err


def test_the_local_llm_batches_prompts_into_one_synchronous_call(monkeypatch):
    """``batch`` on the local model is one ``_generate`` call over every prompt of the batch (batched forward
    passes in the core's LocalGenerator), not one call per document."""
    calls: list[int] = []

    class FakeCore:
        def complete_text(self, prompts: list[str], **kwargs: Any) -> list[str]:
            calls.append(len(prompts))
            return [" What does compound 1 do to enzyme activity?" for _ in prompts]

    llm = LocalQuestionLLM()
    monkeypatch.setattr(LocalQuestionLLM, "_generator", lambda self: FakeCore())
    result = generate_questions(make_docs(19), llm, questions_per_document=1)
    assert calls == [8, 8, 3] and result.n_succeeded == 19
