"""nudge_rag.concurrent: per-item async calls run concurrently, in batches, results in input order, also from
inside a running event loop."""

from __future__ import annotations

import asyncio

import pytest

from nudge_rag.concurrent import gather_in_batches, run_coroutine


def test_results_keep_input_order_and_batches_are_bounded():
    in_flight = {"now": 0, "max": 0}
    done: list[int] = []

    async def square(x: int) -> int:
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        await asyncio.sleep(0.001 * (7 - x % 7))  # later items finish first
        in_flight["now"] -= 1
        return x * x

    assert gather_in_batches(square, list(range(20)), batch=8, done=done.append) == [x * x for x in range(20)]
    assert done == [8, 8, 4] and in_flight["max"] == 8
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        gather_in_batches(square, [1], batch=0)


def test_runs_inside_a_running_event_loop():
    async def app() -> int:  # e.g. a notebook cell: a loop is already running in this thread
        async def one() -> int:
            return 42

        return run_coroutine(one())

    assert asyncio.run(app()) == 42
