"""Generation that keeps its work (issue 19 item 3) and one parser (issue 17 item 4), LlamaIndex side.

The LLM is a deterministic ``CustomLLM`` subclass that writes questions from the passage in the prompt, so the
tests are fast; the kill test runs generation in a real subprocess and kills it with SIGKILL after its first save.
"""

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
from llama_index.nudge import generate_question_pairs
from llama_index.nudge.local_llm import LocalQuestionLLM

import nudge_rag.generate as core

N = 24

# Shared by this process and the killed subprocess: nodes and a deterministic LLM that logs what it is asked.
FAKE = textwrap.dedent(
    '''
    import re, time
    from typing import Any
    from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from llama_index.core.llms.custom import CustomLLM
    from llama_index.core.schema import TextNode

    def make_nodes(n):
        return [TextNode(id_=f"n{i}", text=f"Passage {i} reports that compound {i} lowers enzyme activity.")
                for i in range(n)]

    class PassageLLM(CustomLLM):
        """Asks about the passage number in the prompt; appends it to ``log`` (one line per call)."""
        log: str = ""
        delay: float = 0.0

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="passage-llm", is_chat_model=False)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            i = re.search(r"Passage (\\d+) reports", prompt).group(1)
            if self.log:
                with open(self.log, "a") as fh:
                    fh.write(i + "\\n")
            time.sleep(self.delay)
            return CompletionResponse(text=f"1. What does compound {i} do to enzyme activity?\\n"
                                           f"2. Which enzyme does compound {i} inhibit?")

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
            raise NotImplementedError
    '''
)
_ns: dict[str, Any] = {}
exec(compile(FAKE, "<fake llm>", "exec"), _ns)  # noqa: S102 - the same source the subprocess runs
make_nodes, PassageLLM = _ns["make_nodes"], _ns["PassageLLM"]


def _asked(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_a_killed_generation_resumes_without_redoing_saved_chunks(tmp_path):
    out, log1, log2 = tmp_path / "qa.json", tmp_path / "first.log", tmp_path / "second.log"
    script = FAKE + textwrap.dedent(
        f"""
        from llama_index.nudge import generate_question_pairs
        generate_question_pairs(make_nodes({N}), PassageLLM(log={str(log1)!r}, delay=0.3), output_path={str(out)!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert out.exists(), (
            f"no batch saved (exit {proc.poll()}): {proc.stderr.read().decode() if proc.stderr else ''}"
        )
        still_running = proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # a kill after the first saved batch: the run was not finished, and what was saved is whole batches of 8
    assert still_running and proc.returncode == -signal.SIGKILL
    saved = json.loads(out.read_text())
    saved_nodes = {d for docs in saved["relevant_docs"].values() for d in docs}
    assert 8 <= len(saved_nodes) < N and len(saved_nodes) % 8 == 0
    assert len(saved["queries"]) == 2 * len(saved_nodes)

    result = generate_question_pairs(make_nodes(N), PassageLLM(log=str(log2)), output_path=out)
    redone = {f"n{i}" for i in _asked(log2)}
    assert redone == {f"n{i}" for i in range(N)} - saved_nodes  # nothing saved is asked again
    assert len(_asked(log2)) == N - len(saved_nodes)
    assert result.n_resumed == len(saved_nodes) and result.n_succeeded == N - len(saved_nodes)
    assert set(result.dataset.corpus) == {f"n{i}" for i in range(N)} and result.n_questions == 2 * N
    assert all(result.dataset.queries[q] == t for q, t in saved["queries"].items())


def test_the_default_batch_is_small_and_saved_after_each_batch(tmp_path, monkeypatch):
    import llama_index.nudge.dataset as ds  # each save is EmbeddingQAFinetuneDataset.save_json

    writes: list[int] = []
    real = ds.atomic_write_text

    def counting(path: Any, text: str) -> None:
        writes.append(len(json.loads(text)["corpus"]))
        real(path, text)

    monkeypatch.setattr(ds, "atomic_write_text", counting)
    generate_question_pairs(make_nodes(20), PassageLLM(), output_path=tmp_path / "qa.json")
    assert writes == [8, 16, 20]


def test_progress_is_per_chunk(capsys):
    generate_question_pairs(make_nodes(10), PassageLLM(), show_progress=True, batch_size=4)
    err = capsys.readouterr().err
    assert "generating questions" in err and "10/10" in err and "chunk" in err


def test_the_local_model_runs_synchronously_in_batched_passes(monkeypatch):
    """No fake concurrency for the CPU-bound local model: one synchronous ``complete_batch`` per batch."""
    batches: list[int] = []

    def complete_batch(self: Any, prompts: list[str]) -> list[str]:
        batches.append(len(prompts))
        return [" What does compound 1 do to enzyme activity?" for _ in prompts]

    async def acomplete(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the local model must not be called through acomplete")

    monkeypatch.setattr(LocalQuestionLLM, "complete_batch", complete_batch)
    monkeypatch.setattr(LocalQuestionLLM, "acomplete", acomplete)
    result = generate_question_pairs(make_nodes(19), LocalQuestionLLM(), num_questions_per_chunk=1, num_workers=4)
    assert batches == [8, 8, 3] and result.n_succeeded == 19


def test_bad_batch_size_or_workers_are_refused():
    for kwargs in ({"batch_size": 0}, {"num_workers": True}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            generate_question_pairs(make_nodes(1), PassageLLM(), **kwargs)


def test_one_parser_and_one_prompt_from_the_core():
    import llama_index.nudge.generate as li_gen
    from langchain_nudge import DEFAULT_QUESTION_PROMPT as LC_PROMPT
    from langchain_nudge import generation as lc_gen

    assert li_gen.parse_questions is core.parse_questions
    assert lc_gen.parse_questions is core.parse_questions
    assert li_gen.DEFAULT_QUESTION_PROMPT == core.instruction_prompt("{context_str}", "{num_questions_per_chunk}")
    human = LC_PROMPT.messages[-1].format(document="DOC", num_questions=3).content
    assert human == core.instruction_prompt("DOC", "3", json_output=True)
