"""``insert`` for an estimator fitted on a :class:`~nudge_rag.corpus.Corpus` (not an in-memory array).

Imports no optional dependency: it works for any corpus that can ``fetch``, ``competitors`` and, to add
documents, ``append``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._nudge import TrainAggregate, aggregate_training
from ..queries import QueryAnswers

__all__ = ["insert_on_corpus"]


def insert_on_corpus(
    model: Any, new_embeddings: Any = None, train: QueryAnswers | None = None, val: QueryAnswers | None = None
) -> Any:
    """Add documents and/or pairs to ``model`` (fitted on ``model.corpus_``); gamma stays ``model.gamma_``.

    New documents are appended to the corpus (``corpus.append``: new chunks of a Dask corpus); only documents
    named by the new training pairs are recomputed; all validation queries (old and new) are re-scored with one
    ``competitors`` scan. Equals an insert on the same fit over an in-memory array. Returns ``model``.
    """
    from ..estimators import _check_queries  # the estimators import this module lazily

    corpus = getattr(model, "corpus_", None)
    if corpus is None:
        raise NotImplementedError(
            f"this {type(model).__name__} has neither embeddings_ nor corpus_ (e.g. loaded from a file after a corpus "
            "fit): refit on the corpus with gamma fixed to gamma_"
        )
    if new_embeddings is None and train is None and val is None:
        raise ValueError("insert needs new_embeddings, train or val")
    if new_embeddings is not None:
        if not hasattr(corpus, "append"):
            raise NotImplementedError(f"{type(corpus).__name__} cannot append documents (it has no append method)")
        corpus = corpus.append(new_embeddings)
    n, dim = corpus.n_docs, corpus.dim
    agg = TrainAggregate(model.train_docs_, model.train_sums_)
    base = model.train_base_
    # the nudged vectors of every trained document before this insert: the patch rows moved, the rest did not
    new_all = np.array(base, dtype=model._out_dtype(), copy=True)
    new_all[np.searchsorted(agg.docs, model.patch_.rows)] = model.patch_.new
    if train is not None:
        train = _check_queries(train, "train", n, dim)
        extra = aggregate_training(train)
        merged = agg.merge(extra)
        pos_old = np.searchsorted(merged.docs, agg.docs)
        fresh = np.setdiff1d(merged.docs, agg.docs)
        base = np.empty((merged.docs.size, dim), dtype=model._out_dtype())
        base[pos_old] = model.train_base_
        base[np.searchsorted(merged.docs, fresh)] = corpus.fetch(fresh)  # untrained so far: still unmoved
        grown = np.array(base, copy=True)
        grown[pos_old] = new_all
        touched = np.searchsorted(merged.docs, extra.docs)
        grown[touched] = model._move(base[touched], merged.sums[touched], model.gamma_)
        agg, new_all = merged, grown
    all_val = model.val_
    if val is not None:
        val = _check_queries(val, "val", n, dim)
        all_val = val if all_val is None else all_val.concat(val)
    if all_val is not None:
        all_val.check_documents(n, "val")
        _, gammas, scores = model._choose(corpus, agg, base, all_val, model.gamma_)
    else:
        gammas, scores = np.unique([0.0, model.gamma_]), None
    model._set_state(None, n, dim, agg, base, new_all, all_val, model.gamma_, gammas, scores)
    model.corpus_ = corpus
    return model
