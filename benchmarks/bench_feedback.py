"""Feedback-driven NUDGE on real SciFact (issue 20): replay the training claims as clicks, re-tune between batches.

(a) Replay: the SciFact training claims (qrels/train.tsv pairs, file order) are logged as click events in 5
    batches (the test claims are never logged); after each batch ``retune_store`` runs and the test claims are
    scored (R@1, nDCG@10, exact search over the whole corpus). In the same run, a full refit on all events so far
    (a fresh store holding the original vectors, ``finetune_store`` with the same train / held-out split, gamma
    chosen on validation) is timed for the cost ratio. After the last batch the re-tuned vectors are compared
    with one fit on every event at the same gamma (bit for bit) and at its own gamma.
(c) ``--framework``: the same replay through a LangChain app (``langchain_chroma.Chroma``), feedback captured by
    ``langchain_nudge.feedback`` from simulated clicks on the retrieved results.
(b) Noise: a share (0, 10, 20, 40 %) of the events name a wrong document (the highest-ranked non-relevant
    document for that claim under the original vectors: what a user would click by mistake), NUDGE-N and
    NUDGE-M, replayed in 5 batches; final test scores, gamma, and what the validation rule did.

Question vectors come from the log (precomputed all-MiniLM-L6-v2 vectors in the shared data folder); ``--embed``
logs events without vectors so each re-tune embeds its new questions with the real model (and the full refit
all of them). Run from the repository root:

    .venv/bin/python benchmarks/bench_feedback.py [--store memory|chroma] [--embed] [--framework] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nudge_rag import QueryAnswers, evaluate  # noqa: E402
from nudge_rag.feedback import FeedbackLog  # noqa: E402
from nudge_rag.finetune import group_pairs  # noqa: E402
from nudge_rag.stores import MemoryStore, finetune_store, retune_store  # noqa: E402
from nudge_rag.stores._retune import held_out  # noqa: E402
from tests.support.scifact import SciFactTexts  # noqa: E402

BATCHES = 5
NOISE = (0.0, 0.1, 0.2, 0.4)


def open_store(kind: str, sf: SciFactTexts, folder: str, similarity: str = "cosine"):
    if kind == "memory":
        return MemoryStore({d: sf.vectors[i].astype(np.float64).tolist() for i, d in enumerate(sf.doc_ids)},
                           similarity=similarity)  # fmt: skip
    import chromadb

    from nudge_rag.stores import ChromaStore

    client = chromadb.PersistentClient(path=os.path.join(folder, "chroma"))
    col = client.create_collection("scifact", metadata={"hnsw:space": "cosine" if similarity == "cosine" else "ip"})
    for b0 in range(0, len(sf.doc_ids), 2000):
        col.add(ids=sf.doc_ids[b0 : b0 + 2000], embeddings=sf.vectors[b0 : b0 + 2000])
    return ChromaStore(col, client=client)


def test_set(sf: SciFactTexts) -> QueryAnswers:
    ans: dict[str, list[int]] = {}
    for q, d in sf.test_raw:
        ans.setdefault(q, []).append(sf.row_of[d])
    qs = sorted(ans)
    return QueryAnswers.from_lists(np.stack([sf.qvec[q] for q in qs]), [ans[q] for q in qs])


def scores(store, sf: SciFactTexts, test: QueryAnswers, similarity: str = "cosine") -> dict[str, float]:
    m = store.fetch(sf.doc_ids)
    got = evaluate(m, test, ["recall@1", "ndcg@10"], similarity=similarity)
    return {k: round(100 * float(v), 2) for k, v in got.items()}


def embedder():
    from nudge_rag.embedding import load_model

    model = load_model()

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=64, normalize_embeddings=True), dtype=np.float32)

    return embed


def events_of(sf: SciFactTexts, pairs: list[tuple[str, str]], with_vectors: bool) -> list[dict]:
    return [
        dict(question=sf.qtext[q], doc_ids=[d], source="click", vector=sf.qvec[q] if with_vectors else None)
        for q, d in pairs
    ]


def replay(args: argparse.Namespace, sf: SciFactTexts, test: QueryAnswers) -> dict:
    pairs = sf.train_raw
    embed = embedder() if args.embed else None
    vectors = {sf.qtext[q]: sf.qvec[q] for q, _ in pairs}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(args.store, sf, tmp)
        log = FeedbackLog(os.path.join(tmp, "fb.sqlite"))
        base = scores(store, sf, test)
        rows.append({"batch": 0, "events": 0, **{f"test_{k}": v for k, v in base.items()}})
        seen: list[tuple[str, str]] = []
        for b, part in enumerate(np.array_split(np.arange(len(pairs)), BATCHES), 1):
            batch = [pairs[int(i)] for i in part]
            seen += batch
            log.record_many(events_of(sf, batch, not args.embed))
            t = time.perf_counter()
            r = retune_store(store, log, embed=embed)
            retune_s = time.perf_counter() - t
            after = scores(store, sf, test)
            # the full refit on everything so far, from the original vectors (a fresh store), same split
            with tempfile.TemporaryDirectory() as tmp2:
                fresh = open_store(args.store, sf, tmp2)
                train = group_pairs([(sf.qtext[q], d) for q, d in seen if not held_out(sf.qtext[q])])
                val = group_pairs([(sf.qtext[q], d) for q, d in seen if held_out(sf.qtext[q])])
                t = time.perf_counter()
                full, _ = finetune_store(fresh, train, val, embed_queries=embed if embed else vectors)
                full_s = time.perf_counter() - t
                full_scores = scores(fresh, sf, test)
                if b == BATCHES:  # one fit on every event at the re-tune's gamma: bit for bit?
                    same = open_store(args.store, sf, os.path.join(tmp2, "same"))
                    finetune_store(same, train, val, embed_queries=vectors, gamma=r.gamma)
                    a, c = store.fetch(sf.doc_ids), same.fetch(sf.doc_ids)
                    equal = {"gamma": r.gamma, "rows_differing": int((a != c).any(1).sum()),
                             "max_abs_diff": float(np.abs(a - c).max())}  # fmt: skip
                    a2 = fresh.fetch(sf.doc_ids)
                    free = {"gamma_full": full.gamma, "gamma_retune": r.gamma, "rows_differing":
                            int((a != a2).any(1).sum()), "max_abs_diff": float(np.abs(a - a2).max()),
                            "test_full": full_scores, "test_retune": after}  # fmt: skip
            rows.append({
                "batch": b, "events": len(seen), "used": r.events_used, "held_out": r.events_held_out,
                "val_questions": r.n_val_questions, "gamma": r.gamma, "gamma_best": r.gamma_best,
                "reason": r.reason, "embedded": r.questions_embedded, "touched": r.docs_touched,
                "written": r.written, "retune_s": round(retune_s, 3), "retune_phases": {k: round(v, 3) for k, v in
                r.seconds.items()}, "full_s": round(full_s, 3), "full_written": full.written,
                "full_gamma": full.gamma, "ratio": round(retune_s / full_s, 3),
                **{f"test_{k}": v for k, v in after.items()},
                **{f"full_test_{k}": v for k, v in full_scores.items()},
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        reverted = store.revert()
        back = scores(store, sf, test)
        log.close()
    return {"rows": rows, "equal_at_same_gamma": equal, "vs_full_fit": free, "revert": reverted.summary(),
            "after_revert": back}  # fmt: skip


def wrong_documents(sf: SciFactTexts) -> dict[str, str]:
    """Claim id -> the highest-ranked non-relevant document under the original vectors (a plausible mis-click)."""
    rel: dict[str, set[str]] = {}
    for q, d in sf.train_raw:
        rel.setdefault(q, set()).add(d)
    qs = sorted(rel)
    out = {}
    for b0 in range(0, len(qs), 256):
        part = qs[b0 : b0 + 256]
        sims = np.stack([sf.qvec[q] for q in part]) @ sf.vectors.T  # (256, 5183): a block, not queries x corpus
        top = np.argsort(-sims, axis=1)[:, :20]
        for q, row in zip(part, top):
            out[q] = next(sf.doc_ids[int(j)] for j in row if sf.doc_ids[int(j)] not in rel[q])
    return out


def noise_curve(args: argparse.Namespace, sf: SciFactTexts, test: QueryAnswers) -> list[dict]:
    wrong = wrong_documents(sf)
    rng = np.random.default_rng(0)
    draw = rng.random(len(sf.train_raw))
    rows = []
    for variant in ("nudge-n", "nudge-m"):
        sim = "cosine" if variant == "nudge-n" else "inner_product"
        for p in NOISE:
            pairs = [(q, wrong[q] if u < p else d) for (q, d), u in zip(sf.train_raw, draw)]
            with tempfile.TemporaryDirectory() as tmp:
                store = open_store("memory", sf, tmp, similarity=sim)
                log = FeedbackLog(os.path.join(tmp, "fb.sqlite"))
                gammas, zero = [], 0
                for part in np.array_split(np.arange(len(pairs)), BATCHES):
                    log.record_many(events_of(sf, [pairs[int(i)] for i in part], True))
                    r = retune_store(store, log, variant=variant)
                    gammas.append(r.gamma)
                    zero += r.gamma == 0
                after = scores(store, sf, test, sim)
                log.close()
            row = {"variant": variant, "noise": p, "wrong_events": int(sum(u < p for u in draw)),
                   "gammas": gammas, "batches_gamma_0": zero, "val_score": r.val_score,
                   "val_base_score": r.val_base_score, **{f"test_{k}": v for k, v in after.items()}}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def framework_replay(sf: SciFactTexts, test: QueryAnswers) -> dict:
    """(c) A LangChain app over ``langchain_chroma.Chroma``: the training claims are asked through
    ``langchain_nudge.feedback.FeedbackRetriever`` (top 10; it logs each retrieval with its query vector), a
    simulated user clicks the first relevant abstract shown (``record_feedback``), and the store is re-tuned
    between the 5 batches through the core store over the LangChain store."""
    from langchain_chroma import Chroma
    from langchain_core.embeddings import Embeddings
    from langchain_nudge.feedback import FeedbackCallbackHandler, FeedbackRetriever
    from langchain_nudge.vectorstores._core import core_store

    known = dict(zip(sf.texts, sf.vectors)) | {sf.qtext[q]: v for q, v in sf.qvec.items()}

    class Precomputed(Embeddings):  # the precomputed all-MiniLM-L6-v2 vectors of the SciFact texts
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [known[t].tolist() for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return known[text].tolist()

    rel: dict[str, set[str]] = {}
    for q, d in sf.train_raw:
        rel.setdefault(q, set()).add(d)
    claims = list(rel)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lc = Chroma("scifact", embedding_function=Precomputed(), persist_directory=os.path.join(tmp, "chroma"),
                    collection_metadata={"hnsw:space": "cosine"})  # fmt: skip
        for b0 in range(0, len(sf.doc_ids), 2000):
            lc.add_texts(sf.texts[b0 : b0 + 2000], ids=sf.doc_ids[b0 : b0 + 2000])
        handler = FeedbackCallbackHandler(os.path.join(tmp, "fb.sqlite"))
        retriever = FeedbackRetriever(vectorstore=lc, feedback=handler, search_kwargs={"k": 10})
        core = core_store(lc)
        assert core is not None
        rows.append({"batch": 0, **{f"test_{k}": v for k, v in scores(core, sf, test).items()}})
        log = FeedbackLog(os.path.join(tmp, "fb.sqlite"))
        t_retrieve = 0.0
        for b, part in enumerate(np.array_split(np.arange(len(claims)), BATCHES), 1):
            clicks = 0
            for i in part:
                q = claims[int(i)]
                t = time.perf_counter()
                docs = retriever.invoke(sf.qtext[q])
                t_retrieve += time.perf_counter() - t
                hit = [doc for doc in docs if doc.id in rel[q]]
                if hit:
                    handler.record_feedback(sf.qtext[q], hit[0], source="click")
                    clicks += 1
            handler.flush()
            t = time.perf_counter()
            r = retune_store(core, log)
            row = {"batch": b, "claims": len(part), "clicks": clicks, "used": r.events_used,
                   "held_out": r.events_held_out, "impressions_skipped": r.events_skipped_not_relevant,
                   "embedded": r.questions_embedded, "gamma": r.gamma, "written": r.written,
                   "retune_s": round(time.perf_counter() - t, 2),
                   **{f"test_{k}": v for k, v in scores(core, sf, test).items()}}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
        handler.close()
        reverted = core.revert()
        back = scores(core, sf, test)
        log.close()
    return {"rows": rows, "retrieval_ms_mean": round(1000 * t_retrieve / len(claims), 2),
            "revert": reverted.summary(), "after_revert": back}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", choices=("memory", "chroma"), default="memory")
    ap.add_argument("--embed", action="store_true", help="log events without vectors: re-tunes embed with MiniLM")
    ap.add_argument("--skip-noise", action="store_true")
    ap.add_argument("--framework", action="store_true", help="also (c): the replay through a LangChain app")
    ap.add_argument("--out", default="benchmarks/results/feedback.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    sf = SciFactTexts()
    test = test_set(sf)
    out: dict = {"store": args.store, "embed": args.embed, "replay": replay(args, sf, test)}
    if not args.skip_noise:
        out["noise"] = noise_curve(args, sf, test)
    if args.framework:
        out["framework"] = framework_replay(sf, test)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    print(f"wrote {args.out} in {out['seconds']} s")


if __name__ == "__main__":
    main()
