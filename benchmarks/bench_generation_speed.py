"""Local question generation speed, side by side in one run: transformers settings (dtype, batch size, threads)
and llama.cpp (``llama-cpp-python``) on the same GGUF, with the question quality of each.

The same 40 SciFact abstracts (a seeded random draw, seed 0, from the whole corpus) and the same few-shot prompt
(:func:`nudge_rag.generate.build_prompt`, passage cut at 500 characters), greedy decoding, at most 32 new tokens,
stopping at the first line break: :class:`nudge_rag.generate.LocalGenerator` with each setting below. Each
setting's model is loaded and warmed up on one prompt before its timing starts (load time reported apart).

Quality per setting: how many passages gave a usable question (:func:`nudge_rag.generate.clean_question`), and
how often a question retrieves its own abstract among all 5,183 SciFact abstracts with all-MiniLM-L6-v2
(hit@1, hit@10; the shared precomputed document vectors), plus how many questions equal the float32 baseline's.

    OMP_NUM_THREADS=2 nice -n 10 .venv/bin/python benchmarks/bench_generation_speed.py --out /tmp/genspeed.json

``--settings`` picks settings by name (default: ``DEFAULT_SETTINGS``; llama.cpp settings are skipped with a note when
llama-cpp-python is not installed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nudge_rag.generate import LocalGenerator, build_prompt, clean_question, native_bf16  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NUDGE_RAG_DATA_DIR", ROOT.parent / "shared" / "data"))

#: name -> LocalGenerator settings; the first is the default before issue 19 (float32, batch 8, torch's threads)
SETTINGS: dict[str, dict] = {
    "fp32_b8": {"dtype": "float32", "batch_size": 8},
    "fp32_b1": {"dtype": "float32", "batch_size": 1},
    "fp32_b8_t1": {"dtype": "float32", "batch_size": 8, "threads": 1},
    "bf16_b8": {"dtype": "bfloat16", "batch_size": 8},
    "bf16_b16": {"dtype": "bfloat16", "batch_size": 16},
    "bf16_b40": {"dtype": "bfloat16", "batch_size": 40},
    "bf16_b8_t1": {"dtype": "bfloat16", "batch_size": 8, "threads": 1},
    "llama_cpp": {"backend": "llama.cpp"},
    "llama_cpp_t1": {"backend": "llama.cpp", "threads": 1},
}
#: what one run measures by default (the rest on request: thread counts mean little on a shared machine)
DEFAULT_SETTINGS = ["fp32_b8", "bf16_b8", "bf16_b16", "llama_cpp", "llama_cpp_t1"]


def _llama_version() -> str | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    return str(llama_cpp.__version__)


def load_abstracts(n: int, seed: int = 0):
    from nudge_rag.data import find_beir, load_dataset
    from nudge_rag.prepare import VectorSource, prepare

    ds = load_dataset(find_beir("scifact", SHARED, download=False), name="scifact")
    p = prepare(ds, VectorSource(), policy="official", need_test=True)
    rows = np.random.RandomState(seed).permutation(len(ds.doc_ids))[:n]
    return [ds.doc_texts[int(r)] for r in rows], rows, p.docs


def quality(questions: list[str | None], rows: np.ndarray, docs: np.ndarray, embedder) -> dict:
    kept = [(q, int(r)) for q, r in zip(questions, rows) if q]
    out = {"usable": len(kept), "of": len(questions)}
    if kept:
        qv = embedder.encode([q for q, _ in kept])
        scores = qv @ docs.T  # (<= 40, 5183): small
        order = np.argsort(-scores, axis=1)[:, :10]
        src = np.array([r for _, r in kept])
        out["hit@1"] = round(float((order[:, 0] == src).mean()), 3)
        out["hit@10"] = round(float((order == src[:, None]).any(axis=1).mean()), 3)
    return out


def run_setting(name: str, kw: dict, passages: list[str]) -> dict:
    gen = LocalGenerator(**kw)
    t0 = time.perf_counter()
    gen.complete([build_prompt(passages[0])])  # load (and convert once) + warm up
    load_s = time.perf_counter() - t0
    prompts = [build_prompt(p, max_chars=gen.max_passage_chars) for p in passages]
    t1 = time.perf_counter()
    raw = gen.complete(prompts)
    seconds = time.perf_counter() - t1
    questions = [clean_question(c[0], p) for c, p in zip(raw, passages)]
    n_q = sum(q is not None for q in questions)
    return {
        "setting": name,
        "kwargs": kw,
        "load_s": round(load_s, 1),
        "seconds": round(seconds, 1),
        "questions": n_q,
        "questions_per_s": round(n_q / seconds, 3),
        "passages_per_s": round(len(passages) / seconds, 3),
        "texts": questions,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--settings", nargs="*", default=DEFAULT_SETTINGS, choices=list(SETTINGS))
    ap.add_argument("--out", type=Path, help="write every result (with the questions) as JSON here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from nudge_rag.embedding import Embedder

    passages, rows, docs = load_abstracts(args.n)
    embedder = Embedder(cache_dir=False, progress=False)
    llama_version = _llama_version()
    env = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "native_bf16": native_bf16(),
        "llama_cpp_python": llama_version,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    print(json.dumps(env), flush=True)
    results = []
    for name in args.settings:
        kw = SETTINGS[name]
        if kw.get("backend") == "llama.cpp" and _llama_version() is None:  # checked late: it may be building
            print(json.dumps({"setting": name, "skipped": "llama-cpp-python is not installed"}), flush=True)
            continue
        r = run_setting(name, kw, passages)
        r["quality"] = quality(r["texts"], rows, docs, embedder)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "texts"}), flush=True)
    base = next((r for r in results if r["setting"] == "fp32_b8"), None)
    summary = []
    for r in results:
        row = {"setting": r["setting"], "questions_per_s": r["questions_per_s"], **r["quality"]}
        if base is not None:
            row["speedup_vs_fp32_b8"] = round(r["questions_per_s"] / base["questions_per_s"], 2)
            row["same_as_fp32_b8"] = sum(a == b for a, b in zip(r["texts"], base["texts"]) if a)
        summary.append(row)
    env["loadavg_end"] = os.getloadavg()
    env["llama_cpp_python"] = _llama_version()
    print(json.dumps({"summary": summary, "loadavg_end": env["loadavg_end"]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"env": env, "results": results, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
