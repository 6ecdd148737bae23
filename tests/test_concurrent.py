"""nudge_rag.concurrent: per-item async calls run concurrently, in batches, results in input order, also from
inside a running event loop."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from nudge_rag.concurrent import embed_questions, gather_in_batches, run_coroutine


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


def test_embed_questions_batched_async_precomputed_and_dimension_checks():
    def vec(t: str) -> list[float]:
        return [float(len(t)), 1.0, 0.0]

    calls: list[int] = []

    def batch(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        return [vec(t) for t in texts]

    async def one(t: str) -> list[float]:
        return vec(t)

    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    want = np.asarray([vec(t) for t in texts], dtype=np.float32)
    got = embed_questions(texts, 3, batch=batch, known={"bb": [9.0, 9.0, 9.0]}, batch_size=2)
    assert got.dtype == np.float32 and calls == [2, 2]  # "bb" was precomputed: 4 texts in 2 calls
    np.testing.assert_array_equal(np.delete(got, 1, 0), np.delete(want, 1, 0))
    np.testing.assert_array_equal(got[1], [9, 9, 9])
    np.testing.assert_array_equal(embed_questions(texts, None, one_async=one, batch_size=2), want)
    assert embed_questions([], 3, batch=batch).shape == (0, 3)
    with pytest.raises(ValueError, match=r"precomputed question vectors have dimension \[2\]"):
        embed_questions(texts, 3, batch=batch, known={"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match="the embed model returns 3-dimensional query vectors but the stored"):
        embed_questions(texts, 4, one_async=one)
