"""Blocking plugin work (file I/O, decompression, inspection) in a worker thread.

The work function receives a ``threading.Event`` that is set when the import is
cancelled; it checks it between chunks, stops, and removes what it wrote. The
caller is released only after the thread has finished, so no file is left behind
by a cancelled import.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Cancelled(Exception):
    """Raised inside the worker thread when it sees the stop flag."""


def check_stop(stop: threading.Event) -> None:
    if stop.is_set():
        raise Cancelled()


async def run_blocking(work: Callable[[threading.Event], T]) -> T:
    """Run ``work(stop)`` in a thread; on cancellation set ``stop`` and wait for it."""
    stop = threading.Event()
    future = asyncio.ensure_future(asyncio.to_thread(work, stop))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(BaseException):
            await future
        raise
