"""SciFact benchmark of the LlamaIndex integration: no fine-tuning vs NudgeFinetuneEngine (NUDGE-N, NUDGE-M)
vs LlamaIndex's linear adapter (``EmbeddingAdapterFinetuneEngine`` from ``llama-index-finetuning``).

Everything runs through LlamaIndex: nodes carry the precomputed all-MiniLM-L6-v2 vectors of the full
SciFact corpus (5,183 documents), questions are embedded by a ``BaseEmbedding`` that serves the
precomputed query vectors of the same model, and test metrics come from ``index.as_retriever`` results.

Data split: training questions = the 809 claims of BEIR SciFact ``qrels/train.tsv`` (NUDGE sets 10% of
them aside, automatically, to choose gamma; the adapter trains on all of them); test = the 300 claims of
``qrels/test.tsv``. Wall time = building and running the fine-tuning engine (not the evaluation).

The adapter rows need ``llama-index-finetuning`` (and torch), which this package does not depend on;
they are skipped with a note when it is not importable. Usage::

    python benchmarks/bench_llamaindex.py [--data-dir ../shared/data] [--adapter-epochs 4] [--json results.json]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import TextNode
from llama_index.nudge import EmbeddingQAFinetuneDataset, NudgeFinetuneEngine

K = 10


class PrecomputedEmbedding(BaseEmbedding):
    """Serves precomputed vectors of one embedding model by exact text; any other text is an error."""

    _table: dict[str, np.ndarray] = PrivateAttr(default_factory=dict)

    def __init__(self, table: dict[str, np.ndarray], **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2 (precomputed)", **kwargs)
        self._table = table

    @classmethod
    def class_name(cls) -> str:
        return "PrecomputedEmbedding"

    def _lookup(self, text: str) -> list[float]:
        try:
            return self._table[text].tolist()
        except KeyError:
            raise KeyError(f"no precomputed vector for text {text[:60]!r}") from None

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._lookup(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._lookup(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._lookup(text)


def load_scifact(data_dir: Path) -> dict[str, Any]:
    beir = data_dir / "beir" / "scifact"
    vecs = data_dir / "embeddings" / "all-MiniLM-L6-v2" / "scifact"
    with gzip.open(beir / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    with open(beir / "queries.jsonl", encoding="utf-8") as fh:
        queries = [json.loads(line) for line in fh]
    corpus_vecs, query_vecs = np.load(vecs / "corpus.npy"), np.load(vecs / "queries.npy")
    assert corpus_vecs.shape[0] == len(docs) and query_vecs.shape[0] == len(queries)

    def qrels(split: str) -> list[tuple[str, str]]:
        with open(beir / "qrels" / f"{split}.tsv", newline="", encoding="utf-8") as fh:  # CRLF + header
            rows = list(csv.reader(fh, delimiter="\t"))[1:]
        return [(q.strip(), d.strip()) for q, d, s in rows if float(s) > 0]

    node_of = {d["_id"]: str(uuid.uuid5(uuid.NAMESPACE_URL, f"scifact/{d['_id']}")) for d in docs}
    texts = [(d["title"] + " " + d["text"]).strip() for d in docs]
    qtext = {q["_id"]: q["text"] for q in queries}
    table = {t: v for t, v in zip(texts, corpus_vecs)}
    table.update({q["text"]: v for q, v in zip(queries, query_vecs)})
    return {
        "docs": docs,
        "texts": texts,
        "vectors": corpus_vecs,
        "node_of": node_of,
        "qtext": qtext,
        "train": qrels("train"),
        "test": qrels("test"),
        "table": table,
    }


def make_nodes(data: dict[str, Any]) -> list[TextNode]:
    return [
        TextNode(
            id_=data["node_of"][d["_id"]],
            text=text,
            metadata={"beir_id": d["_id"], "title": d["title"]},
            excluded_embed_metadata_keys=["beir_id", "title"],
            embedding=vec.tolist(),
        )
        for d, text, vec in zip(data["docs"], data["texts"], data["vectors"])
    ]


def grouped(data: dict[str, Any], split: str) -> dict[str, set[str]]:
    """question text -> relevant node ids."""
    out: dict[str, set[str]] = {}
    for q, d in data[split]:
        out.setdefault(data["qtext"][q], set()).add(data["node_of"][d])
    return out


def evaluate_retriever(index: VectorStoreIndex, questions: dict[str, set[str]]) -> dict[str, float]:
    """nDCG@10, R@10 and R@1 (binary relevance, BEIR definitions) of ``index.as_retriever`` results."""
    retriever = index.as_retriever(similarity_top_k=K)
    ndcg = recall = r1 = 0.0
    for text, relevant in questions.items():
        got = [r.node.node_id for r in retriever.retrieve(text)]
        gains = [1.0 if n in relevant else 0.0 for n in got]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), K)))
        ndcg += dcg / ideal
        recall += sum(gains) / len(relevant)
        r1 += (gains[:1] == [1.0]) / len(relevant)
    n = len(questions)
    return {"ndcg@10": ndcg / n, "recall@10": recall / n, "recall@1": r1 / n}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    data = load_scifact(Path(args.data_dir))
    embed = PrecomputedEmbedding(data["table"])
    test = grouped(data, "test")
    train_pairs = [(data["qtext"][q], data["node_of"][d]) for q, d in data["train"]]
    print(
        f"SciFact: {len(data['docs'])} documents, {len(grouped(data, 'train'))} training questions "
        f"({len(train_pairs)} pairs), {len(test)} test questions",
        file=sys.stderr,
    )
    rows: list[dict[str, Any]] = []

    def add(label: str, index: VectorStoreIndex, seconds: float | None, note: str = "") -> None:
        t = time.perf_counter()
        metrics = evaluate_retriever(index, test)
        rows.append({"label": label, "metrics": metrics, "seconds": seconds, "note": note})
        print(f"{label}: {metrics} (fine-tune {seconds}s, eval {time.perf_counter() - t:.1f}s)", file=sys.stderr)

    # 1. no fine-tuning
    base_index = VectorStoreIndex(make_nodes(data), embed_model=embed)
    add("No fine-tuning", base_index, None, "SimpleVectorStore")

    # 2. NUDGE-N through the engine, SimpleVectorStore (cosine), updated in place
    index = VectorStoreIndex(make_nodes(data), embed_model=embed)
    t = time.perf_counter()
    report = NudgeFinetuneEngine(index, train_dataset=train_pairs).finetune()
    seconds = time.perf_counter() - t
    add(
        "NudgeFinetuneEngine, NUDGE-N",
        index,
        seconds,
        f"SimpleVectorStore; gamma={report.gamma:.4f}, {report.n_moved} docs moved",
    )

    # 3. NUDGE-M through the engine: needs inner product -> Qdrant collection with Distance.DOT
    try:
        from llama_index.vector_stores.qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient
        from qdrant_client.http.models import Distance, VectorParams
    except ImportError as exc:
        rows.append(
            {"label": "NudgeFinetuneEngine, NUDGE-M", "metrics": None, "seconds": None, "note": f"skipped: {exc}"}
        )
    else:
        with tempfile.TemporaryDirectory(dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None) as tmp:
            client = QdrantClient(path=tmp)
            client.create_collection("scifact", vectors_config=VectorParams(size=384, distance=Distance.DOT))
            store = QdrantVectorStore(collection_name="scifact", client=client)
            index = VectorStoreIndex(
                make_nodes(data), storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed
            )
            t = time.perf_counter()
            report = NudgeFinetuneEngine(index, train_dataset=train_pairs, variant="nudge-m").finetune()
            seconds = time.perf_counter() - t
            add(
                "NudgeFinetuneEngine, NUDGE-M",
                index,
                seconds,
                f"Qdrant local, Distance.DOT; gamma={report.gamma:.4f}, {report.n_moved} docs moved",
            )
            client.close()

    # 4. LlamaIndex's linear adapter (query-side), trained on the same 809 training questions
    try:
        import torch
        from llama_index.finetuning import EmbeddingAdapterFinetuneEngine
        from llama_index.finetuning.embeddings import adapter_utils  # noqa: F401  (imports transformers: not timed)
    except ImportError as exc:
        rows.append(
            {"label": "EmbeddingAdapterFinetuneEngine", "metrics": None, "seconds": None, "note": f"skipped: {exc}"}
        )
        return rows
    torch.set_num_threads(max(1, args.threads))
    corpus = {data["node_of"][d["_id"]]: text for d, text in zip(data["docs"], data["texts"])}
    queries, relevant = {}, {}
    for q, d in data["train"]:
        queries[q] = data["qtext"][q]
        relevant.setdefault(q, []).append(data["node_of"][d])
    dataset = EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant)
    configs = [("default lr 2e-5", {}), ("lr 1e-3, not tuned", {"optimizer_params": {"lr": 1e-3}})]
    for name, extra in configs:
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            engine = EmbeddingAdapterFinetuneEngine(
                dataset,
                embed,
                epochs=args.adapter_epochs,
                batch_size=10,
                dim=384,
                device="cpu",
                model_output_path=out,
                show_progress_bar=False,
                **extra,
            )
            engine.finetune()
            adapted = engine.get_finetuned_model(device="cpu")
            seconds = time.perf_counter() - t
            index = VectorStoreIndex(make_nodes(data), embed_model=adapted)  # documents keep base vectors
            add(
                f"EmbeddingAdapterFinetuneEngine ({name})",
                index,
                seconds,
                f"linear query adapter, {args.adapter_epochs} epochs, batch 10",
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| method | test nDCG@10 | test R@10 | fine-tune wall time | notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        m = r["metrics"]
        cells = ["–"] * 2 if m is None else [f"{100 * m[k]:.1f}" for k in ("ndcg@10", "recall@10")]
        secs = "–" if r["seconds"] is None else f"{r['seconds']:.2f} s"
        lines.append(f"| {r['label']} | {' | '.join(cells)} | {secs} | {r['note']} |")
    return "\n".join(lines)


def main() -> None:
    default_data = Path(
        os.environ.get("NUDGE_RAG_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data")
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(default_data), help="folder holding beir/ and embeddings/")
    parser.add_argument("--adapter-epochs", type=int, default=4, help="epochs of the linear adapter (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the adapter (default 1)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = run(args)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
