"""The jobs a node runs in the background of its event loop (imports, location tasks):
started, awaited when idle, cancelled at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class BackgroundJobs:
    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def spawn(self, job: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(job, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def wait_idle(self) -> None:
        """Wait for every running job (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def cancel_all(self) -> None:
        for job in list(self._running):
            job.cancel()
        await asyncio.gather(*list(self._running), return_exceptions=True)
