"""clvflow.core.cores: work spread over threads gives the results of the plain loop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from clvflow.core.cores import beside, map_in_order


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_map_in_order_gives_the_plain_loops_results_in_order(threads: int) -> None:
    """Issue 11: items that finish out of order (later ones sooner) still come back in the
    order given, each the value of the plain loop."""

    def slow_for_small(i: int) -> int:
        time.sleep(0.002 * (10 - i))
        return i * i

    assert list(map_in_order(slow_for_small, range(10), threads)) == [i * i for i in range(10)]


def test_map_in_order_reads_items_lazily_with_two_per_thread_in_flight() -> None:
    """Issue 11: a generator of million-row draws is never read far ahead: before the first
    result is given, at most 2 x threads items have been taken from it."""
    taken: list[int] = []

    def items():
        for i in range(100):
            taken.append(i)
            yield i

    results = map_in_order(lambda i: i, items(), threads=2)
    assert next(results) == 0
    assert len(taken) <= 4
    assert list(results) == list(range(1, 100))


def test_random_draws_made_while_reading_are_those_of_the_plain_loop() -> None:
    """Issue 11: draws made by the generator that feeds the threads (as the bootstrap makes
    them) are the same draws, in the same order, as in a plain loop."""
    rng = np.random.default_rng(4)
    plain = [rng.integers(0, 1000, 50).sum() for _ in range(20)]
    rng = np.random.default_rng(4)
    draws = (rng.integers(0, 1000, 50) for _ in range(20))
    assert list(map_in_order(np.sum, draws, threads=3)) == plain


def test_an_error_in_a_thread_reaches_the_caller() -> None:
    def fails_at_three(i: int) -> int:
        if i == 3:
            raise ValueError("item 3 is bad")
        return i

    with pytest.raises(ValueError, match="item 3 is bad"):
        list(map_in_order(fails_at_three, range(10), threads=2))


def test_beside_runs_on_a_second_thread_only_with_threads_to_spare() -> None:
    """Issue 11: with 2+ threads the task runs on another thread; with 1 it runs on the
    caller's thread (``--n-jobs 1``: one thread throughout)."""
    here = threading.get_ident()
    with beside(2) as pool:
        assert pool.submit(threading.get_ident).result() != here
    with beside(1) as pool:
        assert pool.submit(threading.get_ident).result() == here


@pytest.mark.parametrize("threads", [1, 2])
def test_beside_gives_a_tasks_error_when_its_result_is_read(threads: int) -> None:
    def fails() -> None:
        raise ValueError("no usable snapshot")

    with beside(threads) as pool:
        future = pool.submit(fails)
        with pytest.raises(ValueError, match="no usable snapshot"):
            future.result()


def test_beside_on_one_thread_runs_a_task_when_its_result_is_first_read() -> None:
    """With one thread a task waits for its result to be asked for (the steps between keep
    their order: e.g. a train's checks before the inputs they guard), and runs once."""
    ran: list[str] = []
    with beside(1) as pool:
        future = pool.submit(lambda: ran.append("task") or len(ran))
        ran.append("step before")
        assert future.result() == 2 and future.result() == 2
    assert ran == ["step before", "task"]


def test_beside_leaves_at_once_on_an_error_without_waiting_for_the_task() -> None:
    """An error in the caller's work is raised without waiting for the second thread's task
    (a train that fails its setup reports it at once); the task still ends on its own."""
    release = threading.Event()
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="setup failed"), beside(2) as pool:
        task = pool.submit(release.wait, 30)
        raise RuntimeError("setup failed")
    assert time.perf_counter() - started < 5 and not task.done()
    release.set()
    assert task.result(timeout=5) is True


def test_boosting_abandoned_by_an_error_beside_it_stops_at_the_next_round() -> None:
    """Issue 11: ``clvflow train`` fits the refit's boosters on the second thread; when the
    first thread fails meanwhile, the boosting stops at its next round instead of running its
    minutes to the end before the process can exit. Boosting not abandoned runs every round."""
    import numpy as np
    import xgboost as xgb

    from clvflow.core.progress import BoostingProgress

    rng = np.random.default_rng(0)
    data = xgb.DMatrix(rng.normal(size=(200, 3)), label=rng.normal(size=200))
    params = {"nthread": 1, "max_depth": 2}
    rounds = 1_000_000  # (hours: it can only end by stopping)
    started = threading.Event()

    def boost() -> int:
        started.set()
        progress = BoostingProgress("test rounds", rounds)
        booster = xgb.train(params, data, num_boost_round=rounds, callbacks=[progress])
        return booster.num_boosted_rounds()

    with pytest.raises(RuntimeError, match="judging failed"), beside(2) as pool:
        task = pool.submit(boost)
        started.wait(10)
        raise RuntimeError("judging failed")
    assert 1 <= task.result(timeout=60) < rounds
    with beside(2) as pool:  # (a new block: its work is not abandoned)
        done = pool.submit(
            lambda: xgb.train(
                params, data, num_boost_round=7, callbacks=[BoostingProgress("test rounds", 7)]
            ).num_boosted_rounds()
        )
        assert done.result(timeout=60) == 7
