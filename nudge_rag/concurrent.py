"""Calling an async per-item API concurrently from synchronous code: the one helper both adapters use to embed
questions through a model that has no batch call (LlamaIndex ``aget_query_embedding``, LangChain
``aembed_query``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["run_coroutine", "gather_in_batches"]

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
