"""Latency a feedback capture hook adds to a retrieval (issue 20 item 2), LangChain and LlamaIndex, on FAISS.

Both stores hold the full SciFact corpus (5,183 abstracts) with the precomputed all-MiniLM-L6-v2 vectors, and the
queries (SciFact claims) are embedded by a lookup of their precomputed vectors, so a retrieval is the framework's
own work plus an exact FAISS inner-product search of k=10: the cheapest realistic retrieval, where a hook's cost
shows most. Conditions, timed per retrieval with ``time.perf_counter`` around ``retriever.invoke`` /
``retriever.retrieve``:

* ``no hook``;
* ``no-op handler``: a handler that does nothing, i.e. what the framework's own callback / event dispatch costs;
* ``hook, memory only``: the handler with ``impressions=False`` (retrievals remembered to link feedback, not written);
* ``hook, logged``: the handler as shipped: each impression handed to the background writer thread;
* ``inline record (rejected design)``: a handler that calls ``FeedbackLog.record`` (one committed, fsynced
  transaction) inside the retrieval, to show what the writer thread keeps off the retrieval path.

Conditions run in blocks of ``--block`` queries in rotating order over the same queries (the writer is flushed,
untimed, after each block so its work does not spill into the next condition's block). Also timed: a durable
``record_feedback`` (returns once committed). Usage, from the repository root::

    .venv/bin/python benchmarks/bench_capture_latency.py [--n 300] [--block 25] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the SciFact loader with the precomputed vectors
sys.path.insert(0, str(ROOT / "integrations" / "llama-index-nudge"))
sys.path.insert(0, str(ROOT / "integrations" / "langchain-nudge"))

from nudge_rag.feedback import FeedbackLog  # noqa: E402
from tests.support import SciFactTexts, scifact_available  # noqa: E402

K = 10
CONDITIONS = ("no hook", "no-op handler", "hook, memory only", "hook, logged", "inline record (rejected design)")


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "n": int(a.size)}


def run_blocks(
    queries: list[str], retrieve: dict[str, Any], flush: dict[str, Any], block: int
) -> dict[str, list[float]]:
    """Each condition retrieves every query once, in blocks of ``block`` queries, conditions rotating per block."""
    times: dict[str, list[float]] = {c: [] for c in retrieve}
    names = list(retrieve)
    for b, start in enumerate(range(0, len(queries), block)):
        chunk = queries[start : start + block]
        for c in names[b % len(names) :] + names[: b % len(names)]:
            fn = retrieve[c]
            for q in chunk:
                t = time.perf_counter()
                fn(q)
                times[c].append((time.perf_counter() - t) * 1e3)
            flush[c]()
    return times


# ------------------------------------------------------------------------------------------ LangChain
def bench_langchain(data: SciFactTexts, queries: list[str], tmp: Path, block: int, warmup: int) -> dict[str, Any]:
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.embeddings import Embeddings
    from langchain_nudge.feedback import FeedbackCallbackHandler

    class Lookup(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [data.known[t].tolist() for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return data.known[text].tolist()

    store = FAISS.from_embeddings(
        list(zip(data.texts, data.vectors.tolist())), Lookup(), ids=data.doc_ids,
        distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
    )  # fmt: skip
    retriever = store.as_retriever(search_kwargs={"k": K})

    class InlineRecord(BaseCallbackHandler):
        def __init__(self, path: Path) -> None:
            self.log, self.queries = FeedbackLog(path), {}

        def on_retriever_start(self, serialized: Any, query: str, *, run_id: Any, **kw: Any) -> None:
            self.queries[run_id] = query

        def on_retriever_end(self, documents: Any, *, run_id: Any, **kw: Any) -> None:
            ids = [d.id for d in documents]
            self.log.record(self.queries.pop(run_id), (), grade=0.0, source="retrieved", retrieved=ids)

    class Noop(BaseCallbackHandler):
        run_inline = True

    memory = FeedbackCallbackHandler(tmp / "lc-memory.sqlite", impressions=False)
    logged = FeedbackCallbackHandler(tmp / "lc-logged.sqlite")
    inline = InlineRecord(tmp / "lc-inline.sqlite")
    hooks: dict[str, list[Any]] = dict(zip(CONDITIONS, ([], [Noop()], [memory], [logged], [inline])))
    retrieve = {c: (lambda q, h=h: retriever.invoke(q, config={"callbacks": h})) for c, h in hooks.items()}
    return measure(queries, retrieve, logged, memory, tmp / "lc-logged.sqlite", block, warmup)


def measure(
    queries: list[str], retrieve: dict[str, Any], logged: Any, memory: Any, log_path: Path, block: int, warmup: int
) -> dict[str, Any]:
    """Time every condition's retrievals (warm-up untimed), then 50 ``record_feedback`` calls on the logging hook;
    close both hooks and count the impressions that reached ``log_path``."""
    flush = {c: (logged.flush if c == "hook, logged" else (lambda: None)) for c in CONDITIONS}
    run_blocks(queries[:warmup], retrieve, flush, block)
    times = run_blocks(queries, retrieve, flush, block)
    feedback = []
    for q in queries[:50]:
        t = time.perf_counter()
        logged.record_feedback(q, logged.last(q).ids[0], source="click")
        feedback.append((time.perf_counter() - t) * 1e3)
    logged.close()
    memory.close()
    with FeedbackLog(log_path) as log:
        written = sum(e.source == "retrieved" for e in log.iter_events())
    return {"times": times, "record_feedback": feedback, "impressions_written": written}


# ------------------------------------------------------------------------------------------ LlamaIndex
def bench_llamaindex(data: SciFactTexts, queries: list[str], tmp: Path, block: int, warmup: int) -> dict[str, Any]:
    import faiss
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent
    from llama_index.core.schema import TextNode
    from llama_index.nudge.feedback import FeedbackEventHandler
    from llama_index.vector_stores.faiss import FaissVectorStore

    class Lookup(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return data.known[query].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return data.known[text].tolist()

    nodes = [TextNode(id_=d, text=t, embedding=v.tolist()) for d, t, v in zip(data.doc_ids, data.texts, data.vectors)]
    ctx = StorageContext.from_defaults(vector_store=FaissVectorStore(faiss_index=faiss.IndexFlatIP(384)))
    index = VectorStoreIndex(nodes, storage_context=ctx, embed_model=Lookup())
    retriever = index.as_retriever(similarity_top_k=K)

    class InlineRecord(BaseEventHandler):
        log: Any = None

        def handle(self, event: Any, **kw: Any) -> None:
            if isinstance(event, RetrievalEndEvent):
                ids = [n.node.node_id for n in event.nodes]
                self.log.record(str(event.str_or_query_bundle), (), grade=0.0, source="retrieved", retrieved=ids)

    class Noop(BaseEventHandler):
        def handle(self, event: Any, **kw: Any) -> None:
            pass

    dispatcher = get_dispatcher()
    memory = FeedbackEventHandler(tmp / "li-memory.sqlite", impressions=False)
    logged = FeedbackEventHandler(tmp / "li-logged.sqlite")
    inline = InlineRecord(log=FeedbackLog(tmp / "li-inline.sqlite"))
    hooks = dict(zip(CONDITIONS, (None, Noop(), memory, logged, inline)))

    def run(q: str, hook: Any) -> None:
        if hook is not None:
            dispatcher.add_event_handler(hook)
        try:
            retriever.retrieve(q)
        finally:
            if hook is not None:
                dispatcher.event_handlers.pop()

    retrieve = {c: (lambda q, h=hook: run(q, h)) for c, hook in hooks.items()}
    # attach / detach is a list append / pop (sub-microsecond); it is inside the timed call for all hooked conditions
    return measure(queries, retrieve, logged, memory, tmp / "li-logged.sqlite", block, warmup)


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="timed retrievals per condition (SciFact claims)")
    ap.add_argument("--block", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=25)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not scifact_available():
        sys.exit("SciFact data or its precomputed vectors not found (see tests/support/scifact.py)")
    data = SciFactTexts()
    claims = [data.qtext[q] for q, _ in data.test_raw + data.train_raw]
    claims = list(dict.fromkeys(claims))
    queries, warm = claims[: args.n], claims[args.n : args.n + args.warmup]
    load_before = os.getloadavg()
    started = time.time()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("LangChain", bench_langchain), ("LlamaIndex", bench_llamaindex)):
            res = fn(data, warm + queries, Path(tmp), args.block, len(warm))
            out[name] = {
                "retrieval": {c: stats(v) for c, v in res["times"].items()},
                "record_feedback": stats(res["record_feedback"]),
                "impressions_written": res["impressions_written"],
            }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    out["meta"] = {
        "n": args.n, "block": args.block, "k": K, "commit": commit.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), "seconds": round(time.time() - started, 1),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
    }  # fmt: skip
    print(f"{out['meta']}\n")
    print("| framework | condition | median ms | p95 ms | median added ms |")
    print("|---|---|---|---|---|")
    for name in ("LangChain", "LlamaIndex"):
        r = out[name]["retrieval"]
        base = r["no hook"]["median_ms"]
        for c in CONDITIONS:
            added = "–" if c == "no hook" else f"{r[c]['median_ms'] - base:+.3f}"
            print(f"| {name} | {c} | {r[c]['median_ms']:.3f} | {r[c]['p95_ms']:.3f} | {added} |")
        fb = out[name]["record_feedback"]
        print(f"| {name} | record_feedback (durable, n={fb['n']}) | {fb['median_ms']:.3f} | {fb['p95_ms']:.3f} | – |")
    for name in ("LangChain", "LlamaIndex"):
        print(f"{name}: impressions written by the background writer: {out[name]['impressions_written']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
