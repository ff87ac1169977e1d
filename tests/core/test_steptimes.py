"""clvflow.core.steptimes: exclusive per-step times, as ``make bench-train`` splits a train run."""

from __future__ import annotations

import pytest

from clvflow.core import steptimes


@pytest.fixture
def clock(monkeypatch):
    """A hand-driven clock: ``now[0]`` wall seconds, ``now[1]`` CPU seconds."""
    now = [0.0, 0.0]
    monkeypatch.setattr(steptimes, "_clocks", lambda: (now[0], now[1]))
    steptimes.reset()
    yield now
    steptimes.reset()


def _advance(now: list[float], wall: float, cpu: float) -> None:
    now[0] += wall
    now[1] += cpu


def test_nested_steps_are_counted_once_to_the_innermost(clock) -> None:
    """Issue 11 item 3 (bench-train split): a step inside another pauses the outer one, so the
    kinds add up to the total: outer 2 + 3 s, inner 4 s (twice), nothing counted twice."""
    with steptimes.timed("outer"):
        _advance(clock, 2.0, 1.0)
        with steptimes.timed("inner"):
            _advance(clock, 4.0, 3.0)
        _advance(clock, 3.0, 0.5)
        with steptimes.timed("inner"):
            _advance(clock, 4.0, 1.0)
    _advance(clock, 10.0, 10.0)  # outside any step: not recorded
    assert steptimes.totals() == {
        "outer": {"wall": 5.0, "cpu": 1.5, "calls": 1},
        "inner": {"wall": 8.0, "cpu": 4.0, "calls": 2},
    }


def test_decorated_function_is_timed_even_when_it_raises(clock) -> None:
    """Issue 11 item 3: the decorator form records the call, also when it fails, and keeps the
    function's name and result; reset() forgets."""

    @steptimes.timed_step("work")
    def work(fail: bool) -> int:
        _advance(clock, 1.5, 1.0)
        if fail:
            raise ValueError("bad")
        return 7

    assert work(False) == 7
    with pytest.raises(ValueError, match="bad"):
        work(True)
    assert work.__name__ == "work"
    assert steptimes.totals() == {"work": {"wall": 3.0, "cpu": 2.0, "calls": 2}}
    steptimes.reset()
    assert steptimes.totals() == {}


def test_steps_on_two_threads_each_nest_on_their_own(clock) -> None:
    """Issue 11 (the refit's inputs built beside the internal backtest's bootstrap): a step on
    another thread neither pauses nor is paused by the steps of this one; each thread's nesting
    is its own, and both are counted."""
    import threading

    with steptimes.timed("outer"):
        _advance(clock, 1.0, 1.0)

        def other() -> None:
            with steptimes.timed("beside"):
                _advance(clock, 2.0, 2.0)
                with steptimes.timed("inner"):
                    _advance(clock, 4.0, 4.0)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        _advance(clock, 1.0, 1.0)
    # (the other thread's 6 s ran inside "outer": both threads count them)
    assert steptimes.totals() == {
        "outer": {"wall": 8.0, "cpu": 8.0, "calls": 1},
        "beside": {"wall": 2.0, "cpu": 2.0, "calls": 1},
        "inner": {"wall": 4.0, "cpu": 4.0, "calls": 1},
    }
