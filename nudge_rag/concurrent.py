"""Calling an async per-item API concurrently from synchronous code, and the one question-embedding loop both
adapters use (a batched query call where the model has one, else its async per-query call run concurrently:
LlamaIndex ``aget_query_embedding``, LangChain ``aembed_query``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

__all__ = ["run_coroutine", "gather_in_batches", "embed_questions", "QUERY_BATCH_SIZE"]

#: Questions per batched (or concurrent) call of an embed model while embedding questions.
QUERY_BATCH_SIZE = 256

T = TypeVar("T")
R = TypeVar("R")


def run_coroutine(coro: Coroutine[Any, Any, R]) -> R:
    """Run ``coro`` to completion from synchronous code, also when this thread already runs an event loop (a
    notebook): then in a fresh loop on a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def gather_in_batches(
    call: Callable[[T], Awaitable[R]],
    items: Sequence[T],
    *,
    batch: int,
    done: Callable[[int], object] | None = None,
) -> list[R]:
    """``[await call(x) for x in items]`` with ``batch`` calls in flight at a time, results in input order;
    ``done(n)`` after each batch of n (e.g. a progress bar's ``update``)."""
    if batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")

    async def run() -> list[R]:
        out: list[R] = []
        for b0 in range(0, len(items), batch):
            chunk = items[b0 : b0 + batch]
            out += await asyncio.gather(*(call(x) for x in chunk))
            if done is not None:
                done(len(chunk))
        return out

    return run_coroutine(run())


def embed_questions(
    texts: Sequence[str],
    dim: int | None = None,
    *,
    batch: Callable[[list[str]], Sequence[Any]] | None = None,
    one_async: Callable[[str], Awaitable[Any]] | None = None,
    known: Mapping[str, Any] | None = None,
    batch_size: int = QUERY_BATCH_SIZE,
    show_progress: bool = False,
    model: str = "the embed model returns",
    hint: str = "",
) -> np.ndarray:
    """(len(texts), dim) float32 query vectors of ``texts``.

    Texts in ``known`` (precomputed vectors: text -> vector) are not embedded. The others go through ``batch``
    (a batched query call, ``batch_size`` texts a call) when given, else ``one_async`` (one text a call) run
    concurrently, ``batch_size`` at a time. A tqdm bar ("Embedding questions") counts them when ``show_progress``.

    Raises:
        ValueError: precomputed vectors (checked before any call) or the model's vectors (``model``: its name and
            verb, ``hint`` appended) whose dimension is not ``dim`` (``None``: any one dimension, the same for all).
    """
    known = known or {}
    vecs: list[Any] = [known.get(t) for t in texts]
    given = sorted({len(v) for v in vecs if v is not None} - {dim}) if dim is not None else []
    if given:
        raise ValueError(
            f"dimension mismatch: the precomputed question vectors have dimension {given} but the stored document "
            f"vectors have dimension {dim}"
        )
    todo = [i for i, v in enumerate(vecs) if v is None]
    if todo:
        if batch is None and one_async is None:
            raise ValueError("embed_questions needs a batched call or an async per-question call")
        from tqdm.auto import tqdm

        pending = [texts[i] for i in todo]
        with tqdm(total=len(pending), desc="Embedding questions", unit="q", disable=not show_progress) as bar:
            if batch is not None:
                fresh: list[Any] = []
                for b0 in range(0, len(pending), batch_size):
                    fresh += list(batch(pending[b0 : b0 + batch_size]))
                    bar.update(min(batch_size, len(pending) - b0))
            else:
                assert one_async is not None
                fresh = gather_in_batches(one_async, pending, batch=batch_size, done=bar.update)
        for i, v in zip(todo, fresh):
            vecs[i] = v
    dims = sorted({len(v) for v in vecs})
    if len(dims) > 1 or (dim is not None and dims and dims != [dim]):
        want = f" but the stored document vectors have {dim} dimensions" if dim is not None else ""
        raise ValueError(
            f"dimension mismatch: {model} {'/'.join(map(str, dims))}-dimensional query vectors{want}{hint}"
        )
    return np.asarray(vecs, dtype=np.float32).reshape(len(vecs), dims[0] if dims else (dim or 0))
