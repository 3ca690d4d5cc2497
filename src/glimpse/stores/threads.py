"""Threads for drivers whose client libraries block (librbd, python-swiftclient, boto3).

Each driver operation gets its own :class:`SerialWorker`: one private thread, so that

- a hung back end ties up its own threads only, never the event loop's default pool
  that the database and the other stores use;
- calls of one operation run in order on one thread (librbd image handles and HTTP
  connections are not shared between threads);
- clean-up queued after a cancelled call runs only once that call has finished, so an
  interrupted upload can always remove what it wrote.

:class:`ChunkPipe` hands bytes from the event loop to a blocking consumer, such as an
HTTP request body being sent by a worker thread, with a bounded number in flight.

:class:`Janitor` retries, on a daemon thread of its own, the clean-ups that failed
because the back end was away (the segments of an aborted Swift upload, an S3 multipart
upload to abort), so that nothing stays behind once the back end answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class SerialWorker:
    """One private thread running one operation's blocking calls in order."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(func, *args, **kwargs)
        )

    async def cleanup(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func`` after everything queued so far, even if the caller is cancelled
        (again) meanwhile; its own errors are the caller's to log, not to raise."""
        task = asyncio.ensure_future(self.run(func, *args))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    def close(self) -> None:
        """Let the thread exit once its queue is done; never waits."""
        self._executor.shutdown(wait=False)


class PipeAborted(Exception):
    """The producer gave up; the consumer must fail its request rather than finish it."""


_END = object()
_ABORT = object()


class ChunkPipe:
    """Chunks from the event loop to a worker thread that iterates this pipe.

    The producer awaits :meth:`put` (at most ``depth`` chunks wait in the pipe), then
    calls :meth:`close` for a normal end or :meth:`abort` to make the consumer's
    iteration raise :class:`PipeAborted`.
    """

    def __init__(self, depth: int = 4) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._space = asyncio.Semaphore(depth)

    async def put(self, chunk: bytes, consumer: asyncio.Future[Any]) -> None:
        """Queue ``chunk``; if ``consumer`` ends first (it failed), raise its error."""
        acquire = asyncio.ensure_future(self._space.acquire())
        try:
            await asyncio.wait({acquire, consumer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not acquire.done():
                acquire.cancel()
        if not acquire.done() or acquire.cancelled():
            consumer.result()  # raises the consumer's error
            raise PipeAborted("the consumer stopped reading before the data ended")
        self._queue.put(chunk)

    def close(self) -> None:
        self._queue.put(_END)

    def abort(self) -> None:
        self._queue.put(_ABORT)

    def __iter__(self) -> Iterator[bytes]:
        """The consumer's side; runs on the worker thread."""
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _ABORT:
                raise PipeAborted("upload aborted")
            self._loop.call_soon_threadsafe(self._space.release)
            assert isinstance(item, bytes)
            yield item


@dataclass
class _Chore:
    what: str
    func: Callable[[], None]
    deadline: float
    due: float
    attempts: int = 0


class Janitor:
    """Clean-ups retried on one daemon thread until they succeed or ``give_up_after``
    seconds pass: every ``interval`` seconds for the first minute, then every
    ``slow_interval``.

    Only clean-ups that are safe to repeat at any later time belong here: ones naming
    what no other upload can own (a unique segment prefix, a multipart upload id). A
    chore that fails ends the round (the back end is still away: the others would only
    wait for the same timeout). Chores live in memory: a restart forgets them, and each
    is logged when deferred, so an operator can finish it by hand.
    """

    def __init__(
        self, name: str, *, interval: float = 2.0, slow_interval: float = 30.0,
        give_up_after: float = 3600.0,
    ) -> None:
        self.name = name
        self.interval = interval
        self.slow_interval = slow_interval
        self.give_up_after = give_up_after
        self._chores: list[_Chore] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def defer(self, what: str, func: Callable[[], None], why: object) -> None:
        """Retry ``func`` (``what`` it does, for the log) until it returns; ``why`` is
        the error of the attempt that failed just now."""
        now = time.monotonic()
        log.warning("%s: %s failed (%s); retrying in the background", self.name, what, why)
        with self._lock:
            self._chores.append(_Chore(what, func, deadline=now + self.give_up_after,
                                       due=now + self.interval))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"{self.name}-janitor", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def pending(self) -> list[str]:
        """What is still to be cleaned up."""
        with self._lock:
            return [chore.what for chore in self._chores]

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._chores:
                    self._thread = None  # a later defer() starts another
                    return
                wait = min(chore.due for chore in self._chores) - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                due = [c for c in self._chores if c.due <= time.monotonic()]
            for chore in due:
                if not self._attempt(chore):
                    break

    def _attempt(self, chore: _Chore) -> bool:
        chore.attempts += 1
        try:
            chore.func()
        except Exception as exc:
            now = time.monotonic()
            with self._lock:
                if now >= chore.deadline:
                    self._chores.remove(chore)
                    log.error("%s: giving up on %s after %d attempts: %s", self.name,
                              chore.what, chore.attempts, exc)
                    return False
                first_minute = now < chore.deadline - self.give_up_after + 60
                chore.due = now + (self.interval if first_minute else self.slow_interval)
                # The others due now wait for the next round with this one.
                for other in self._chores:
                    other.due = max(other.due, chore.due)
            return False
        with self._lock:
            self._chores.remove(chore)
        log.info("%s: %s done (attempt %d)", self.name, chore.what, chore.attempts)
        return True
