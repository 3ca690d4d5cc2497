"""The stores' janitor: clean-ups retried in the background until the back end answers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from glimpse.stores.threads import Janitor


def wait_until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_chore_is_retried_until_it_succeeds() -> None:
    janitor = Janitor("test", interval=0.01)
    calls: list[float] = []

    def flaky() -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("back end away")

    janitor.defer("removing things", flaky, "back end away")
    assert janitor.pending() == ["removing things"]
    wait_until(lambda: janitor.pending() == [])
    assert len(calls) == 3


def test_while_one_chore_fails_the_others_wait_for_the_next_round() -> None:
    """A failure means the back end is still away: trying the rest would only wait out
    the same timeout once more per chore."""
    janitor = Janitor("test", interval=0.01)
    back = threading.Event()
    order: list[str] = []

    def first() -> None:
        order.append("first")
        if not back.is_set():
            raise TimeoutError("no answer")

    def second() -> None:
        order.append("second")

    janitor.defer("first", first, "no answer")
    janitor.defer("second", second, "no answer")
    wait_until(lambda: order.count("first") >= 3)
    assert "second" not in order
    back.set()
    wait_until(lambda: janitor.pending() == [])
    assert order[-2:] == ["first", "second"]
    assert order.count("second") == 1


def test_it_gives_up_and_says_what_is_left(caplog: pytest.LogCaptureFixture) -> None:
    janitor = Janitor("test", interval=0.01, give_up_after=0.1)

    def never() -> None:
        raise TimeoutError("no answer")

    with caplog.at_level(logging.WARNING, logger="glimpse.stores.threads"):
        janitor.defer("aborting upload 42", never, "no answer")
        wait_until(lambda: janitor.pending() == [])
    messages = [r.getMessage() for r in caplog.records]
    assert any("aborting upload 42 failed (no answer); retrying" in m for m in messages)
    assert any("giving up on aborting upload 42" in m for m in messages)


def test_the_thread_ends_when_idle_and_a_new_chore_starts_another() -> None:
    janitor = Janitor("test", interval=0.01)
    done: list[str] = []
    janitor.defer("one", lambda: done.append("one"), "away")
    wait_until(lambda: janitor.pending() == [] and janitor._thread is None)
    janitor.defer("two", lambda: done.append("two"), "away")
    wait_until(lambda: done == ["one", "two"])
