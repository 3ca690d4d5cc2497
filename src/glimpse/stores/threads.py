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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

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
