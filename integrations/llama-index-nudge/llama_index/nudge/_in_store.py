"""The database-backed path of ``NudgeFinetuneEngine``: fit, insert and question generation on a vector store
read by id, never whole (the core store of :func:`llama_index.nudge._backends.core_store`).

A fit reads the vectors the pairs name and one competitor search per validation question, and writes back only
the moved vectors, by node id (:func:`~llama_index.nudge._backends.fit_in_store`). An insert adds the new nodes
to the index (so to the store), then applies the core estimators' insert semantics on the store
(:func:`nudge_rag.distributed.insert.insert_on_corpus`): gamma stays, only documents named by the new training
pairs are recomputed, every validation question is re-scored, and only vectors that changed are written.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from llama_index.core.schema import BaseNode
from llama_index.nudge._backends import fit_in_store, store_class_name
from llama_index.nudge._capture import check_unique, embed_missing, embed_queries, node_text
from llama_index.nudge._stores import INNER_PRODUCT
from llama_index.nudge.dataset import PairsInput, check_insert_questions, collect_questions
from llama_index.nudge.generate import generate_for_nodes
from llama_index.nudge.report import NudgeFinetuneReport, record_insert, with_store_info

from nudge_rag.finetune import Questions
from nudge_rag.stores import BaseStore, StoreCorpus, StoreError

__all__ = ["InStorePath", "nodes_by_id", "present_ids"]

logger = logging.getLogger(__name__)


def present_ids(store: BaseStore, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` the store holds (one batched read when all are there, else one read per id)."""
    wanted = sorted({str(i) for i in ids})
    if not wanted:
        return set()
    try:
        store.fetch(wanted)
        return set(wanted)
    except (StoreError, ValueError):
        pass
    found = set()
    for i in wanted:
        try:
            store.fetch([i])
            found.add(i)
        except (StoreError, ValueError):
            pass
    return found


def nodes_by_id(index: Any, node_ids: Sequence[str]) -> list[BaseNode]:
    """The nodes ``node_ids`` (text and metadata), in that order: from the docstore, else from the vector store's
    ``get_nodes(node_ids)``. ``ValueError`` naming the ids found in neither."""
    found: dict[str, BaseNode] = {}
    for nid in node_ids:
        node = index.docstore.get_node(nid, raise_error=False)
        if node is not None:
            found[nid] = node
    rest = [n for n in node_ids if n not in found]
    if rest and getattr(index.vector_store, "stores_text", False):
        try:
            got = index.vector_store.get_nodes(node_ids=rest)
        except NotImplementedError:
            got = []
        found.update({n.node_id: n for n in got if n.node_id in set(rest)})
    missing = [n for n in node_ids if n not in found]
    if missing:
        raise ValueError(
            f"{len(missing)} node id(s) are in neither the docstore nor the vector store (first: {missing[0]!r})"
        )
    return [found[n] for n in node_ids]


class _StoreWithAdded(StoreCorpus):
    """A :class:`StoreCorpus` over a store the new nodes were already added to (by the index): ``append`` has
    nothing left to do; the new nodes are numbered by id like every other document."""

    def append(self, new_embeddings: Any) -> StoreCorpus:
        return self


class InStorePath:
    """The database-store methods of ``NudgeFinetuneEngine`` (fit, insert, generation, revert) and the solver and
    generation arguments both of its paths share (a mixin: it reads the engine's attributes)."""

    _core: BaseStore | None
    _index: Any
    _embed_model: Any
    _llm: Any
    _model: Any
    _row_ids: list[str]
    _base: np.ndarray | None
    _report: NudgeFinetuneReport | None
    _train_source: PairsInput | None
    _val_source: PairsInput | None
    _store_name: str
    _store_similarity: str
    generate_for: list[str] | None
    generation_path: Any
    generation_kwargs: dict[str, Any]
    num_questions_per_chunk: int
    show_progress: bool
    _question_vectors: dict[str, np.ndarray]
    val_fraction: float
    seed: int

    variant: str
    gamma: float | None
    nudge_kwargs: dict[str, Any]

    def revert(self) -> int:
        """Put back the original vector of every node a fit wrote into a database store (bit for bit; the
        originals are kept beside the store, so this works after a restart too). Returns the number restored.
        Nodes added by :meth:`insert` stay, with the vectors they were added with."""
        return self._database_store("revert").revert().restored

    def status(self) -> Any:
        """How the database store stands against the ledger of this library's writes: a
        :class:`nudge_rag.stores.StoreStatus` (``nudged``, ``overwritten`` since (e.g. re-ingested),
        ``reapplicable``, ``missing`` (deleted since), the generations; ``print`` it for one line). Sees upserts
        made by an ``IngestionPipeline`` or ``insert_nodes`` after the fit."""
        return self._database_store("status").status()

    def reapply(self) -> Any:
        """Write the nudge again on nodes that a re-index put back to their original vector (nodes whose content
        changed are left alone); returns a :class:`nudge_rag.stores.ReapplyResult`."""
        return self._database_store("reapply").reapply()

    def _database_store(self, what: str) -> Any:
        if self._core is None:
            raise NotImplementedError(f"{what}() is for database stores; an in-memory fit keeps the nodes' vectors")
        return self._core

    def _embed_questions(self, texts: list[str], dim: int) -> np.ndarray:
        """Query vectors of ``texts``: the precomputed ones given, the others embedded by the base embed model
        (batched or concurrent, with a progress bar when ``show_progress``)."""
        return embed_queries(
            self._embed_model, list(texts), dim, known=self._question_vectors, show_progress=self.show_progress
        )

    def _solver_args(self) -> dict[str, Any]:
        """Arguments of :func:`nudge_rag.finetune.finetune_pairs` (both paths)."""
        params = dict(self.nudge_kwargs)
        base_sim = "inner_product" if self._store_similarity == INNER_PRODUCT else "cosine"
        return dict(
            variant=self.variant,
            gamma=self.gamma,
            val_fraction=self.val_fraction,
            seed=self.seed,
            metric=params.pop("metric", None),
            params=params,
            base_similarity=base_sim,
            report_cls=NudgeFinetuneReport,
        )

    def _generate(
        self, nodes_of: Any, node_row: dict[str, int], generate_for: Sequence[str] | None, seconds: dict[str, float]
    ) -> tuple[Questions, dict[str, Any]]:
        """Questions generated by the LLM about ``generate_for`` (both paths; ``nodes_of(rows)``: the nodes)."""
        t = time.perf_counter()
        result = generate_for_nodes(
            nodes_of,
            node_row,
            generate_for,
            self._llm,  # None: Settings.llm when configured, else the offline local model
            self.num_questions_per_chunk,
            output_path=self.generation_path,
            show_progress=self.show_progress,
            **self.generation_kwargs,
        )
        seconds["generate"] = time.perf_counter() - t
        questions = collect_questions(result.dataset, "generated questions")
        assert questions is not None
        return questions, result.stats()

    def _finetune_in_store(self) -> NudgeFinetuneReport:
        """Fit on the database store itself: read the vectors the pairs name, one competitor search per
        validation question, write back only the moved vectors by node id. A refit reverts first."""
        core = self._core
        assert core is not None
        t = time.perf_counter()
        seconds: dict[str, float] = {}
        train = collect_questions(self._train_source, "train_dataset")
        generation = None
        if train is None:
            train, generation = self._generate_in_store(seconds)
        val = collect_questions(self._val_source, "val_dataset")
        if self._model is not None or self._report is not None:
            core.revert()  # a refit starts from the original vectors
        embed = lambda texts: self._embed_questions(texts, core.dim)  # noqa: E731
        result, corpus = fit_in_store(core, train, val, embed_queries=embed, **self._solver_args())
        seconds["total"] = time.perf_counter() - t
        report = with_store_info(result.report, self._store_name, self._store_similarity, seconds)
        report.n_written, report.n_embedded_nodes = len(result.model.patch_), 0
        report.generation = generation
        self._model, self._row_ids, self._base, self._report = result.model, corpus.ids, None, report
        return report

    def _generate_in_store(self, seconds: dict[str, float]) -> tuple[Questions, dict[str, Any]]:
        """Questions generated from the texts of ``generate_for`` (default: the nodes the index's docstore holds,
        as for FAISS; a store that holds the text itself is never read whole, so it needs ``generate_for``)."""
        ids = self.generate_for
        if ids is None:
            ids = list(dict.fromkeys(self._index.index_struct.nodes_dict.values()))
            if not ids:
                raise ValueError(
                    f"generating questions for the {self._store_name} needs generate_for=[node ids]: the nodes' "
                    "texts live in the store, which is read by id, never whole (or pass train_dataset)"
                )
        check_unique(ids, "generate_for")
        nodes = nodes_by_id(self._index, ids)
        nodes_of = lambda rows: nodes if rows is None else [nodes[r] for r in rows]  # noqa: E731
        return self._generate(nodes_of, {nid: r for r, nid in enumerate(ids)}, None, seconds)

    def _insert_in_store(
        self, nodes: Sequence[BaseNode] | None, train_dataset: PairsInput | None, val_dataset: PairsInput | None
    ) -> NudgeFinetuneReport:
        """``insert`` on a database store: add ``nodes`` to the index, then move what the new pairs name.

        Everything is validated and embedded before the store is written; if the fit or the write fails, the
        added nodes are deleted again and the vectors restored.
        """
        core = self._core
        assert core is not None and self._report is not None
        if self._model is None:
            raise NotImplementedError(
                f"this engine was reopened from a persist dir (written by an older version) of a fit in the "
                f"{self._store_name} that keeps no solver state: call finetune() again with all pairs (it reverts "
                "and refits)"
            )
        if nodes is None and train_dataset is None and val_dataset is None:
            raise ValueError("insert needs nodes, train_dataset or val_dataset")
        t = time.perf_counter()
        new_nodes = list(nodes or [])
        if new_nodes and store_class_name(self._index.vector_store) == "FaissVectorStore":
            raise NotImplementedError(
                "insert(nodes) on a FaissVectorStore is not supported: the FAISS index numbers vectors by position, "
                "so add the nodes to the index and call finetune() again (pairs alone can be inserted)"
            )
        if not all(isinstance(n, BaseNode) for n in new_nodes):
            raise TypeError("nodes must be LlamaIndex nodes (BaseNode)")
        new_ids = [n.node_id for n in new_nodes]
        check_unique(new_ids, "the new nodes")
        clash = sorted(present_ids(core, new_ids))
        if clash:
            raise ValueError(
                f"{len(clash)} new node id(s) already exist in the {self._store_name} (first: {clash[0]!r})"
            )
        empty = [n.node_id for n in new_nodes if not node_text(n).strip()]
        if empty:
            raise ValueError(f"{len(empty)} new node(s) have no text to index (first: {empty[0]!r})")
        train = collect_questions(train_dataset, "train_dataset")
        val = collect_questions(val_dataset, "val_dataset")
        named = {str(d) for qs in (train, val) if qs is not None for d in qs.documents()}
        known = set(new_ids) | present_ids(core, named - set(new_ids))
        carve = (self.val_fraction, self.seed) if self._model.val_ is not None else None
        train, val = check_insert_questions(train, val, known, (), carve)
        dim = core.dim
        vectors, missing = embed_missing(
            [n.embedding for n in new_nodes],
            dim,
            lambda rows: [new_nodes[i] for i in rows],
            self._embed_model,
            self.show_progress,
        )
        copies = []
        for node, vec in zip(new_nodes, vectors):
            c = node.model_copy()
            c.embedding = vec.tolist()
            copies.append(c)
        qvecs = {
            name: self._embed_questions(list(qs.texts), dim)
            for name, qs in (("train", train), ("val", val))
            if qs is not None
        }

        if copies:
            self._index.insert_nodes(copies)
        try:
            model, corpus, n_written = self._insert_fit(core, vectors if copies else None, train, val, qvecs)
        except BaseException:
            if copies:
                try:
                    self._index.delete_nodes(new_ids)
                except Exception:  # pragma: no cover - best effort; the original error matters
                    logger.exception("could not delete the nodes added by the failed insert: %s", new_ids[:5])
            raise
        report = record_insert(
            self._report,
            model,
            train,
            val,
            time.perf_counter() - t,
            n_written=n_written,
            n_new_nodes=len(new_nodes),
            n_adopted_nodes=0,
            n_embedded_nodes=int(missing.sum()),
        )
        self._model, self._row_ids = model, corpus.ids
        return report

    def _insert_fit(
        self,
        core: BaseStore,
        added: np.ndarray | None,
        train: Questions | None,
        val: Questions | None,
        qvecs: dict[str, np.ndarray],
    ) -> tuple[Any, StoreCorpus, int]:
        """The core insert on a fresh corpus over the store (same rows as the fit, the store's current count;
        ``added``: vectors of the nodes just added to it), then one write of the vectors that changed. Returns
        (model, corpus, rows written)."""
        corpus = _StoreWithAdded(core, self._row_ids)
        named = sorted({str(d) for qs in (train, val) if qs is not None for d in qs.documents()})
        row_of = dict(zip(named, corpus.rows_of(named).tolist()))
        old = self._model
        previous = getattr(old, "corpus_", None)  # None once reloaded from a persist dir
        memo = {} if previous is None else {id(previous): corpus}
        model = copy.deepcopy(old, memo)  # never deep-copies the store (connection, client)
        model.corpus_ = corpus
        model.insert(
            added,
            None if train is None else train.query_answers(qvecs["train"], row_of),
            None if val is None else val.query_answers(qvecs["val"], row_of),
        )
        before = dict(zip(old.patch_.rows.tolist(), old.patch_.new))
        after = dict(zip(model.patch_.rows.tolist(), model.patch_.new))
        rows = [r for r, v in after.items() if r not in before or not np.array_equal(before[r], v)]
        vecs = [after[r] for r in rows]
        dropped = [r for r in before if r not in after]  # moved before, not now (e.g. gamma 0): unit originals
        olds = dict(zip(old.patch_.rows.tolist(), old.patch_.old))
        rows += dropped
        vecs += [olds[r] for r in dropped]
        if rows:
            core.write(corpus.ids_of(np.asarray(rows)), np.stack(vecs))
        return model, corpus, len(rows)
