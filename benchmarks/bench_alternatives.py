"""What a user would pick instead of NUDGE, side by side on SciFact and NFCorpus (official splits, all-MiniLM-L6-v2).

Rows (test split, x100; every choice made on the validation split, metric recall@1 as NUDGE-N's default):

- no fine-tuning, NUDGE-N, NUDGE-M (``nudge_rag``, defaults);
- a linear query adapter q -> normalise(q W) (d x d, W = identity at start; torch, CPU, Adam), trained on the same
  training pairs with an InfoNCE loss (temperature 0.05) against in-batch negatives or against the full corpus;
  learning rate in {3e-4, 1e-3, 3e-3} and steps in {0, 50, ..., 1000} chosen on validation (0 = identity);
- the adapter followed by NUDGE-N / NUDGE-M (NUDGE fitted on the adapted training queries);
- full fine-tuning of all-MiniLM-L6-v2 (sentence-transformers MultipleNegativesRankingLoss, batch 32, lr 2e-5,
  10% warm-up then linear decay over the planned epochs, training max_seq_length 128, one (query, best document)
  pair per training query), checkpoints after each epoch re-embedding the corpus at max_seq_length 256 (as the base
  vectors); the epoch (0 = base model) chosen on validation; then NUDGE on top of the chosen model's vectors;
- out of distribution (the paper's protocol): all queries pooled and clustered into 2 groups with k-means (seed 0);
  per cluster a seeded 70/10/20 train/val/test split; train + validate on one cluster, test on its held-out queries
  ("in") and on every query of the other cluster ("out"); both directions. Full fine-tuning out of distribution
  (stage ``ood_finetune``, run separately: re-embedding the corpus per checkpoint dominates its cost) uses the
  same settings on the cluster's training queries, the epoch (0 .. ``--epochs``) chosen on the cluster's
  validation queries, then NUDGE-N on top of the chosen model's vectors.

Stages can be run separately (``--stages base adapter ood finetune``); each merges its rows into
``benchmarks/results/alternatives.json`` (atomic write) and ``--report`` rewrites this script's section of
``benchmarks/RESULTS.md``. Fine-tuned vectors are cached under ``<user cache>/bench/finetune/``.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_alternatives.py --stages base adapter ood
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/bench_alternatives.py --stages finetune --epochs 2
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/bench_alternatives.py --stages ood_finetune --epochs 1
    .venv/bin/python benchmarks/bench_alternatives.py --report
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from nudge_rag import NudgeM, NudgeN, QueryAnswers, evaluate
from nudge_rag.data.locate import user_cache_dir
from nudge_rag.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "benchmarks" / "results" / "alternatives.json"
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
SHARED = Path(os.environ.get("NUDGE_RAG_DATA_DIR", ROOT.parent / "shared" / "data"))
METRICS = ("recall@1", "recall@10", "ndcg@10")
VAL_METRIC = "recall@1"
LRS = (3e-4, 1e-3, 3e-3)
MAX_STEPS, EVAL_EVERY, BATCH, TAU = 1000, 50, 256, 0.05
START, END = "<!-- bench_alternatives:start -->", "<!-- bench_alternatives:end -->"


# ---------------------------------------------------------------------------------------------- data
def load(name: str):
    from nudge_rag.data import find_beir, load_dataset
    from nudge_rag.prepare import VectorSource, prepare

    ds = load_dataset(find_beir(name, SHARED, download=False), name=name)
    return prepare(ds, VectorSource(), policy="official", need_test=True)


def with_queries(qa: QueryAnswers, emb: np.ndarray) -> QueryAnswers:
    return dataclasses.replace(qa, embeddings=np.ascontiguousarray(emb, dtype=np.float32))


def unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n == 0, 1, n)).astype(np.float32)


def scores(docs, qa, sim="cosine") -> dict:
    return {k: round(100 * v, 2) for k, v in evaluate(docs, qa, METRICS, similarity=sim).items()}


def nudge_rows(docs, train, val, tests: dict[str, QueryAnswers], prefix: str = "") -> list[dict]:
    out = []
    for label, est in (("NUDGE-N", NudgeN()), ("NUDGE-M", NudgeM())):
        t0 = time.perf_counter()
        est.fit(docs, train, val)
        sec = time.perf_counter() - t0
        sim = "inner_product" if label == "NUDGE-M" else "cosine"
        row = {
            "method": prefix + label,
            "train_seconds": round(sec, 2),
            "gamma": float(est.gamma_),
            "val": scores(est.embeddings_, val, sim),
        }
        row.update({name: scores(est.embeddings_, qa, sim) for name, qa in tests.items()})
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------- adapter
def train_adapter(docs, train, val, negatives: str, seed: int = 0):
    """Best (W, info) over LRS x steps on validation ``VAL_METRIC``; W = identity is the step-0 candidate."""
    import torch

    torch.manual_seed(seed)
    D = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
    pairs = train.pair_rows() if hasattr(train, "pair_rows") else None
    q_rows = np.repeat(np.arange(len(train)), np.diff(train.indptr))
    Q = torch.from_numpy(np.ascontiguousarray(train.embeddings[q_rows], dtype=np.float32))
    A = torch.from_numpy(train.indices.astype(np.int64))
    del pairs
    base = scores(docs, val)[VAL_METRIC]
    best = {"val": base, "lr": None, "steps": 0, "seconds": 0.0}
    best_w = np.eye(docs.shape[1], dtype=np.float32)
    t_all = time.perf_counter()
    for lr in LRS:
        g = torch.Generator().manual_seed(seed)
        W = torch.nn.Parameter(torch.eye(docs.shape[1]))
        opt = torch.optim.Adam([W], lr=lr)
        t0 = time.perf_counter()
        for step in range(1, MAX_STEPS + 1):
            idx = torch.randint(0, Q.shape[0], (min(BATCH, Q.shape[0]),), generator=g)
            q = torch.nn.functional.normalize(Q[idx] @ W, dim=1)
            if negatives == "in-batch":
                d = D[A[idx]]
                logits = q @ d.T / TAU
                same = A[idx][None, :] == A[idx][:, None]  # a document twice in the batch is not a negative
                logits = logits.masked_fill(same & ~torch.eye(len(idx), dtype=torch.bool), float("-inf"))
                target = torch.arange(len(idx))
            else:
                logits = q @ D.T / TAU
                target = A[idx]
            loss = torch.nn.functional.cross_entropy(logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % EVAL_EVERY == 0:
                w = W.detach().numpy().copy()
                v = scores(docs, with_queries(val, unit(val.embeddings @ w)))[VAL_METRIC]
                if v > best["val"]:
                    best = {"val": v, "lr": lr, "steps": step, "seconds": round(time.perf_counter() - t0, 2)}
                    best_w = w
    best["search_seconds"] = round(time.perf_counter() - t_all, 1)
    return best_w, best


def adapter_rows(docs, train, val, tests: dict[str, QueryAnswers], with_nudge: bool = True) -> list[dict]:
    out = []
    for neg in ("in-batch", "full-corpus"):
        W, info = train_adapter(docs, train, val, neg)
        mapped = {n: with_queries(qa, unit(qa.embeddings @ W)) for n, qa in tests.items()}
        tr, va = with_queries(train, unit(train.embeddings @ W)), with_queries(val, unit(val.embeddings @ W))
        label = f"adapter ({neg} negatives)"
        row = {
            "method": label,
            "train_seconds": info["seconds"],
            "search_seconds": info["search_seconds"],
            "lr": info["lr"],
            "steps": info["steps"],
            "val": scores(docs, va),
        }
        row.update({n: scores(docs, qa) for n, qa in mapped.items()})
        out.append(row)
        if with_nudge:
            for r in nudge_rows(docs, tr, va, mapped, prefix=f"{label} + "):
                r["train_seconds"] = round(r["train_seconds"] + info["seconds"], 2)
                out.append(r)
    return out


# ---------------------------------------------------------------------------------------------- stages
def stage_base(p) -> list[dict]:
    tests = {"test": p.test}
    rows = [
        {"method": "no fine-tuning", "train_seconds": 0.0, "val": scores(p.docs, p.val), "test": scores(p.docs, p.test)}
    ]
    return rows + nudge_rows(p.docs, p.train, p.val, tests)


def stage_adapter(p) -> list[dict]:
    return adapter_rows(p.docs, p.train, p.val, {"test": p.test})


def ood_clusters(p, seed: int = 0):
    """All queries pooled; k-means (2 groups, seed 0) on their vectors; per cluster 70/10/20 train/val/test."""
    from sklearn.cluster import KMeans

    pooled = p.train.concat(p.val).concat(p.test)
    labels = KMeans(n_clusters=2, random_state=seed, n_init=10).fit_predict(pooled.embeddings)
    parts = []
    for c in (0, 1):
        rows = np.flatnonzero(labels == c)
        rows = rows[np.random.RandomState(seed).permutation(rows.size)]
        n_tr, n_va = int(0.7 * rows.size), int(0.1 * rows.size)
        parts.append(
            {
                "rows": {"train": rows[:n_tr], "val": rows[n_tr : n_tr + n_va], "test": rows[n_tr + n_va :]},
                "all_rows": rows,
                "all": pooled.subset(rows),
                "train": pooled.subset(rows[:n_tr]),
                "val": pooled.subset(rows[n_tr : n_tr + n_va]),
                "test": pooled.subset(rows[n_tr + n_va :]),
            }
        )
    return parts


def stage_ood(p) -> list[dict]:
    parts = ood_clusters(p)
    out = []
    for a, b in ((0, 1), (1, 0)):
        A, B = parts[a], parts[b]
        tests = {"test_in": A["test"], "test_out": B["all"]}
        base = {"method": "no fine-tuning", "train_seconds": 0.0, "val": scores(p.docs, A["val"])}
        base.update({n: scores(p.docs, qa) for n, qa in tests.items()})
        rows = [base] + nudge_rows(p.docs, A["train"], A["val"], tests)
        rows += adapter_rows(p.docs, A["train"], A["val"], tests, with_nudge=False)
        sizes = {k: len(A[k]) for k in ("all", "train", "val", "test")} | {"other": len(B["all"])}
        for r in rows:
            r.update(direction=f"train on cluster {a}, out = cluster {b}", sizes=sizes)
        out += rows
    return out


# ---------------------------------------------------------------------------------------------- full fine-tuning
def _ft_dir(name: str, planned: int, tag: str = "") -> Path:
    """Cache of one fine-tuning schedule: ``<user cache>/bench/finetune/<name>[/<tag>]/of<planned>/e<epoch>``
    (the learning-rate schedule depends on the planned epoch count, so a checkpoint belongs to one plan)."""
    root = user_cache_dir() / "bench" / "finetune" / name
    return (root / tag if tag else root) / f"of{planned}"


def finetune_checkpoints(
    p,
    name: str,
    epochs: int,
    train: QueryAnswers | None = None,
    tag: str = "",
    batch: int = 32,
    lr: float = 2e-5,
    seed: int = 0,
) -> list[dict]:
    """Train all-MiniLM-L6-v2 with MNRL on ``train`` (default: the training split; its queries need ids); after
    each epoch embed the corpus and every query of train + val + test, in that order (cached per epoch)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from nudge_rag.embedding import _default_model_path

    out_dir = _ft_dir(name, epochs, tag)
    train = p.train if train is None else train
    metas = []
    done = all((out_dir / f"e{e}" / "meta.json").is_file() for e in range(1, epochs + 1))
    if not done:
        torch.manual_seed(seed)
        model = SentenceTransformer(_default_model_path(), device="cpu")
        ds = p.dataset
        q_text = dict(zip(ds.query_ids, ds.query_texts))
        pairs = []
        for i, qid in enumerate(train.ids):
            lo, hi = train.indptr[i], train.indptr[i + 1]
            best = lo + int(np.argmax(train.relevance[lo:hi]))  # first of the most relevant answers
            pairs.append((q_text[qid], ds.doc_texts[int(train.indices[best])]))
        loss_fn = MultipleNegativesRankingLoss(model)
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        steps_per_epoch = (len(pairs) + batch - 1) // batch
        total = steps_per_epoch * epochs
        warm = max(1, total // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
        )
        rng = np.random.RandomState(seed)
        train_sec = 0.0
        for epoch in range(1, epochs + 1):
            model.train()
            model.max_seq_length = 128
            t0 = time.perf_counter()
            order = rng.permutation(len(pairs))
            for s in range(steps_per_epoch):
                chunk = [pairs[j] for j in order[s * batch : (s + 1) * batch]]
                feats = [model.tokenize([c[k] for c in chunk]) for k in (0, 1)]
                loss = loss_fn(feats, None)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                if s % 10 == 0:
                    print(
                        f"{name} epoch {epoch} step {s}/{steps_per_epoch} loss {loss.item():.3f} "
                        f"{time.perf_counter() - t0:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            train_sec += time.perf_counter() - t0
            ep_dir = out_dir / f"e{epoch}"
            if (ep_dir / "meta.json").is_file():
                continue
            model.eval()
            model.max_seq_length = 256
            t1 = time.perf_counter()
            docs = model.encode(
                ds.doc_texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            ).astype(np.float32)
            doc_sec = time.perf_counter() - t1
            qids = list(p.train.ids) + list(p.val.ids) + list(p.test.ids)
            t2 = time.perf_counter()
            qv = model.encode(
                [q_text[q] for q in qids],
                batch_size=64,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32)
            q_sec = time.perf_counter() - t2
            ep_dir.mkdir(parents=True, exist_ok=True)
            np.save(ep_dir / "corpus.npy", docs)
            np.save(ep_dir / "queries.npy", qv)
            meta = {
                "epoch": epoch,
                "train_seconds_cumulative": round(train_sec, 1),
                "corpus_embed_seconds": round(doc_sec, 1),
                "query_embed_seconds": round(q_sec, 1),
                "n_pairs": len(pairs),
                "batch": batch,
                "lr": lr,
                "train_max_seq_length": 128,
                "embed_max_seq_length": 256,
                "planned_epochs": epochs,
            }
            atomic_write_text(ep_dir / "meta.json", json.dumps(meta))
            print(f"{name} epoch {epoch}: {meta}", file=sys.stderr, flush=True)
    for e in range(1, epochs + 1):
        metas.append(json.loads((out_dir / f"e{e}" / "meta.json").read_text()))
    return metas


def stage_finetune(p, name: str, epochs: int) -> list[dict]:
    metas = finetune_checkpoints(p, name, epochs)
    n_tr, n_va = len(p.train), len(p.val)
    cands = [(0, p.docs, p.train, p.val, p.test, {"train_seconds_cumulative": 0.0})]
    for m in metas:
        d = _ft_dir(name, epochs) / f"e{m['epoch']}"
        docs, qv = np.load(d / "corpus.npy"), np.load(d / "queries.npy")
        cands.append(
            (
                m["epoch"],
                docs,
                with_queries(p.train, qv[:n_tr]),
                with_queries(p.val, qv[n_tr : n_tr + n_va]),
                with_queries(p.test, qv[n_tr + n_va :]),
                m,
            )
        )
    per_epoch = [{"epoch": c[0], "val": scores(c[1], c[3])} for c in cands]
    best = max(cands, key=lambda c: (scores(c[1], c[3])[VAL_METRIC], -c[0]))
    epoch, docs, tr, va, te, meta = best
    row = {
        "method": "full fine-tuning (MNRL)",
        "epochs": epoch,
        "train_seconds": meta["train_seconds_cumulative"],
        "reembed_corpus_seconds": meta.get("corpus_embed_seconds"),
        "query_embed_seconds": meta.get("query_embed_seconds"),
        "train_max_seq_length": 128,
        "embed_max_seq_length": 256,
        "n_pairs": metas[0]["n_pairs"] if metas else None,
        "per_epoch_val": per_epoch,
        "val": scores(docs, va),
        "test": scores(docs, te),
    }
    rows = [row]
    for r in nudge_rows(docs, tr, va, {"test": te}, prefix="full fine-tuning + "):
        r["train_seconds"] = round(r["train_seconds"] + meta["train_seconds_cumulative"], 2)
        rows.append(r)
    return rows


def stage_ood_finetune(p, name: str, epochs: int, save=None) -> list[dict]:
    """Full fine-tuning out of distribution: per direction, MNRL on the cluster's training queries, the epoch
    (0 = base model, 1 .. ``epochs``) chosen on the cluster's validation queries; then NUDGE on top.
    ``save(rows so far)`` is called after each direction (a run stopped for time keeps the first one)."""
    parts = ood_clusters(p)
    out = []
    for a, b in ((0, 1), (1, 0)):
        A, B = parts[a], parts[b]
        metas = finetune_checkpoints(p, name, epochs, train=A["train"], tag=f"ood-cluster{a}")
        cands = [(0, p.docs, A["train"], A["val"], {"test_in": A["test"], "test_out": B["all"]}, None)]
        for m in metas:
            d = _ft_dir(name, epochs, f"ood-cluster{a}") / f"e{m['epoch']}"
            docs, qv = np.load(d / "corpus.npy"), np.load(d / "queries.npy")  # queries in pooled order
            tests = {
                "test_in": with_queries(A["test"], qv[A["rows"]["test"]]),
                "test_out": with_queries(B["all"], qv[B["all_rows"]]),
            }
            cands.append(
                (
                    m["epoch"],
                    docs,
                    with_queries(A["train"], qv[A["rows"]["train"]]),
                    with_queries(A["val"], qv[A["rows"]["val"]]),
                    tests,
                    m,
                )
            )
        per_epoch = [{"epoch": c[0], "val": scores(c[1], c[3])} for c in cands]
        epoch, docs, tr, va, tests, meta = max(cands, key=lambda c: (scores(c[1], c[3])[VAL_METRIC], -c[0]))
        t_train = meta["train_seconds_cumulative"] if meta else 0.0
        row = {
            "method": "full fine-tuning (MNRL)",
            "epochs": epoch,
            "train_seconds": t_train,
            "reembed_corpus_seconds": meta.get("corpus_embed_seconds") if meta else None,
            "n_pairs": metas[0]["n_pairs"] if metas else None,
            "per_epoch_val": per_epoch,
            "val": scores(docs, va),
        }
        row.update({n: scores(docs, qa) for n, qa in tests.items()})
        rows = [row]
        for r in nudge_rows(docs, tr, va, tests, prefix="full fine-tuning + "):
            r["train_seconds"] = round(r["train_seconds"] + t_train, 2)
            rows.append(r)
        sizes = {k: len(A[k]) for k in ("all", "train", "val", "test")} | {"other": len(B["all"])}
        for r in rows:
            r.update(direction=f"train on cluster {a}, out = cluster {b}", sizes=sizes)
        out += rows
        if save is not None:
            save(out)
    return out


# ---------------------------------------------------------------------------------------------- output
def merge(name: str, stage: str, rows: list[dict], extra: dict) -> None:
    data = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else {}
    data.setdefault(name, {})[stage] = {"rows": rows, **extra}
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS_JSON, json.dumps(data, indent=1) + "\n")


def _fmt(m: dict | None) -> str:
    return " | ".join(f"{m[k]:.1f}" if m else "–" for k in METRICS) if m else " | ".join("–" for _ in METRICS)


def _time(r: dict) -> str:
    t = r.get("train_seconds")
    s = "" if t is None else f"{t:.1f}"
    if r.get("search_seconds"):
        s += f" (grid {r['search_seconds']:.0f})"
    if r.get("reembed_corpus_seconds"):
        s += f" (+ {r['reembed_corpus_seconds']:.0f} s re-embedding)"
    return s


def _choice(r: dict) -> str:
    if "lr" in r:
        return "identity (0 steps)" if not r["steps"] else f"lr {r['lr']:g}, {r['steps']} steps"
    if "epochs" in r:
        return f"{r['epochs']} epoch(s)"
    if "gamma" in r:
        return f"γ = {r['gamma']:.3g}"
    return ""


def _planned(rows: list[dict]) -> int:
    """The planned epoch count of a fine-tuning stage (its last candidate epoch)."""
    return max(e["epoch"] for r in rows for e in r.get("per_epoch_val", []))


def report() -> str:
    data = json.loads(RESULTS_JSON.read_text())
    lines = [
        START,
        "## Alternatives to NUDGE: query adapters and full fine-tuning (official splits)",
        "",
        "Produced by `benchmarks/bench_alternatives.py` (see its docstring for every setting); raw numbers in",
        "`benchmarks/results/alternatives.json`. ×100, all-MiniLM-L6-v2, choices made on validation",
        "(recall@1). Train time in seconds on the shared 2-core CPU machine (adapter: training to the chosen",
        "step; fine-tuning: the chosen epochs, plus the time to re-embed the corpus once).",
        "",
        "```bash",
        "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_alternatives.py --stages base adapter ood",
    ]
    for name in ("scifact", "nfcorpus"):  # the fine-tuning commands as run: planned epochs per data set
        for stage in ("finetune", "ood_finetune"):
            rows = data.get(name, {}).get(stage, {}).get("rows", [])
            if rows:
                lines.append(
                    "OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/bench_alternatives.py "
                    f"--datasets {name} --stages {stage} --epochs {_planned(rows)}"
                )
    lines += [".venv/bin/python benchmarks/bench_alternatives.py --report", "```", ""]
    for name in ("scifact", "nfcorpus"):
        if name not in data:
            continue
        lines += [
            f"### {name}: test split",
            "",
            "| method | chosen | val R@1 | R@1 | R@10 | nDCG@10 | train s |",
            "|---|---|---|---|---|---|---|",
        ]
        for stage in ("base", "adapter", "finetune"):
            for r in data[name].get(stage, {}).get("rows", []):
                lines.append(
                    f"| {r['method']} | {_choice(r)} | {r['val'][VAL_METRIC]:.1f} | {_fmt(r.get('test'))} "
                    f"| {_time(r)} |"
                )
        if "finetune" not in data[name]:
            lines.append("| full fine-tuning (MNRL) | not run (see below) | | | | | |")
        lines.append("")
        ft = data[name].get("finetune", {}).get("rows", [])
        if ft:
            lines += [
                "Full fine-tuning, validation R@1 per epoch (0 = base model; the planned schedule is "
                f"{_planned(ft)} epochs): "
                + ", ".join(f"{e['epoch']}: {e['val'][VAL_METRIC]:.2f}" for e in ft[0]["per_epoch_val"])
                + ".",
                "",
            ]
        ood = data[name].get("ood", {}).get("rows", [])
        ood_ft = data[name].get("ood_finetune", {}).get("rows", [])
        ood = [r for d in dict.fromkeys(r["direction"] for r in ood) for r in ood + ood_ft if r["direction"] == d]
        if ood:
            lines += [
                f"### {name}: out of distribution (k-means, 2 clusters, seed 0)",
                "",
                "| direction | method | chosen | R@1 in | R@10 in | nDCG@10 in | R@1 out | R@10 out | nDCG@10 out "
                "| train s |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for r in ood:
                lines.append(
                    f"| {r['direction']} | {r['method']} | {_choice(r)} | {_fmt(r['test_in'])} | {_fmt(r['test_out'])} "
                    f"| {_time(r)} |"
                )
            sz = [next(r["sizes"] for r in ood if r["direction"].startswith(f"train on cluster {c}")) for c in (0, 1)]
            lines += [
                "",
                "Queries per cluster (train / val / test-in; the other cluster is test-out): "
                + "; ".join(f"cluster {c}: {z['train']} / {z['val']} / {z['test']}" for c, z in enumerate(sz))
                + ".",
                "",
            ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_report() -> None:
    text = RESULTS_MD.read_text()
    sec = report()
    if START in text and END in text:
        text = text[: text.index(START)] + sec.rstrip("\n") + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + sec
    atomic_write_text(RESULTS_MD, text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["scifact", "nfcorpus"])
    ap.add_argument("--stages", nargs="+", default=[], choices=["base", "adapter", "ood", "finetune", "ood_finetune"])
    ap.add_argument("--epochs", type=int, default=2, help="planned fine-tuning epochs (each one a candidate)")
    ap.add_argument("--report", action="store_true", help="rewrite this script's section of benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    for name in args.datasets:
        if not args.stages:
            break
        p = load(name)
        for stage in args.stages:
            t0 = time.perf_counter()
            if stage == "finetune":
                rows = stage_finetune(p, name, args.epochs)
            elif stage == "ood_finetune":

                def save(rows, name=name, stage=stage, t0=t0):
                    extra = {"seconds": round(time.perf_counter() - t0, 1), "queries": p.splits.counts()}
                    merge(name, stage, rows, extra)

                rows = stage_ood_finetune(p, name, args.epochs, save=save)
            else:
                rows = {"base": stage_base, "adapter": stage_adapter, "ood": stage_ood}[stage](p)
            merge(name, stage, rows, {"seconds": round(time.perf_counter() - t0, 1), "queries": p.splits.counts()})
            print(f"{name} {stage}: {time.perf_counter() - t0:.0f} s", flush=True)
            for r in rows:
                print("  ", r.get("direction", ""), r["method"], r.get("test") or (r.get("test_in"), r.get("test_out")))
    if args.report:
        write_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
