"""The disk cache: verified copies of image data in a local directory.

On disk, in ``image_cache_dir``::

    .glimpse-cache-node          the id of the node owning this directory; a node
                                 with another id refuses to use it
    cache.db (-wal, -shm)        the index (see ``cache/index.py``)
    <image_id>                   complete data, verified against the image's md5
                                 checksum before its index row became ``complete``
    incomplete/<image_id>.<rand> a fill in progress: renamed to <image_id> only after
                                 the size and md5 match and the data is fsynced;
                                 removed on any failure

Reads: a complete entry whose checksum, size, inode and mtime still match is served
from its file and the store is not touched. A file changed or removed behind the
cache's back is dropped and the read goes to the store. A whole-image read of an
uncached image fills the cache while the bytes stream to the client (a tee); only
one fill runs per image, concurrent readers read the store. A failed fill (store
error, client gone, disk full, wrong checksum) leaves nothing behind; if only the
cache's writes fail, the client still gets every byte from the store.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from glimpse.cache.base import ByteReader, CachedImage, CleanResult, ImageKey, PruneResult
from glimpse.cache.index import COMPLETE, INCOMPLETE, CacheIndex, Entry, Transaction

log = logging.getLogger(__name__)
_T = TypeVar("_T")

NODE_FILE = ".glimpse-cache-node"
INDEX_FILE = "cache.db"
INCOMPLETE_DIR = "incomplete"
CHUNK = 1024 * 1024
_OWN_FILES = {NODE_FILE, INDEX_FILE, f"{INDEX_FILE}-wal", f"{INDEX_FILE}-shm",
              f"{INDEX_FILE}-journal"}


class CacheDirectoryClaimed(ValueError):
    """The cache directory belongs to another node (two nodes may not share one)."""


class CacheReadError(OSError):
    """A cached file ended early while it was being served."""


class _Fill:
    """One fill in progress: the temporary file, its digest and the bytes written.

    ``lock`` serialises the threads touching it, so the descriptor is never closed
    (and its number reused) while a write is using it, and a fill ends only once.
    """

    def __init__(self, key: ImageKey, path: Path, fd: int) -> None:
        self.key = key
        self.path = path
        self.name = path.name
        self.fd: int | None = fd
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self.finished = False
        self.lock = threading.RLock()

    def write(self, chunk: bytes) -> None:
        with self.lock:
            if self.fd is None:
                raise OSError(errno.EBADF, "the fill was ended")
            view = memoryview(chunk)
            while view:
                view = view[os.write(self.fd, view):]
            self.size += len(chunk)

    def digest(self, chunk: bytes) -> None:
        self.md5.update(chunk)

    def close(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


class DiskImageCache:
    """The image cache of one node, in one directory with a SQLite index."""

    def __init__(
        self,
        directory: Path,
        *,
        node_id: str,
        max_size: int,
        stall_time: int,
        chunk_size: int = CHUNK,
    ) -> None:
        self.directory = directory.expanduser().resolve()
        self.incomplete = self.directory / INCOMPLETE_DIR
        self.node_id = node_id
        self.max_size = max_size
        self.stall_time = stall_time
        self.chunk_size = chunk_size
        self.index = CacheIndex(self.directory / INDEX_FILE)
        self._fills: set[str] = set()  # names of the fills this process runs
        self._tasks: set[asyncio.Task[None]] = set()  # fills finishing or being removed
        self._prepared = False

    # -- set-up -------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the directory, claim it for this node and open the index."""
        if self._prepared:
            return
        self.incomplete.mkdir(parents=True, exist_ok=True)
        self._claim_directory()
        self.index.open()
        self._prepared = True

    def _claim_directory(self) -> None:
        marker = self.directory / NODE_FILE
        # Written under another name then linked: the marker never exists half-written.
        draft = self.directory / f".{NODE_FILE}.{secrets.token_hex(4)}"
        draft.write_text(self.node_id + "\n")
        try:
            os.link(draft, marker)
        except FileExistsError:
            owner = marker.read_text().strip()
            if owner != self.node_id:
                raise CacheDirectoryClaimed(
                    f"Image cache directory {self.directory} belongs to node {owner!r}, "
                    f"not to this node ({self.node_id!r}): each node needs its own "
                    f"image_cache_dir. If node {owner!r} no longer uses it, remove "
                    f"{marker}."
                ) from None
        finally:
            draft.unlink(missing_ok=True)

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.index.close)

    # -- reading ------------------------------------------------------------------

    def reader(self, key: ImageKey, source: ByteReader) -> ByteReader:
        return _CachingReader(self, key, source)

    def cacheable(self, key: ImageKey) -> bool:
        return bool(key.checksum) and 0 < key.size <= self.max_size

    async def read(
        self, key: ImageKey, source: ByteReader, location: str, offset: int,
        length: int | None,
    ) -> AsyncIterator[bytes]:
        end = key.size if length is None else min(key.size, offset + length)
        if self.cacheable(key):
            fd = await self._bookkeeping(self._open_hit, key, os.close)
            if fd is not None:
                async with _closing(self._stream_file(fd, offset, end)) as cached:
                    async for chunk in cached:
                        yield chunk
                return
        fill = None
        if offset == 0 and end >= key.size and self.cacheable(key):
            fill = await self._bookkeeping(self._start_fill, key, self._discard)
        if fill is None:
            async with _closing(source.read(location, offset, length)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        async with _closing(self._tee(fill, source.read(location, 0, key.size))) as teed:
            async for chunk in teed:
                yield chunk

    async def _bookkeeping(
        self, func: Callable[[ImageKey], _T | None], key: ImageKey,
        release: Callable[[_T], object],
    ) -> _T | None:
        """Run an index step on a thread. A failure of the cache is logged and taken
        as a miss (the store serves the read); if the read is cancelled meanwhile,
        what the step acquired (a file, a fill) is released when it finishes."""
        future = asyncio.ensure_future(asyncio.to_thread(func, key))

        def release_late(done: asyncio.Future[_T | None]) -> None:
            if not done.cancelled() and done.exception() is None:
                result = done.result()
                if result is not None:
                    release(result)

        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(release_late)
            raise
        except Exception:
            log.exception("image cache failed for image %s; reading the store", key.image_id)
            return None

    def _open_hit(self, key: ImageKey) -> int | None:
        """A file descriptor of the verified copy of ``key``, or None (a miss)."""
        with self.index.write() as tx:
            entry = tx.entry(key.image_id)
            if entry is None or entry.state != COMPLETE:
                return None
            if entry.checksum != key.checksum or entry.size != key.size:
                log.info("cached copy of image %s is of older data; removing it", key.image_id)
                self._remove_entry(tx, entry)
                return None
            path = self.directory / key.image_id
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                log.warning("cached file of image %s disappeared; dropping the entry",
                            key.image_id)
                tx.delete(key.image_id)
                return None
            st = os.fstat(fd)
            if (st.st_size, st.st_ino, st.st_mtime_ns) != (entry.size, entry.inode,
                                                          entry.mtime_ns):
                os.close(fd)
                log.warning("cached file of image %s was changed on disk; removing it",
                            key.image_id)
                self._remove_entry(tx, entry)
                return None
            tx.record_hit(key.image_id, time.time())
            return fd

    async def _stream_file(self, fd: int, offset: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``offset``..``end`` of an open file, reading one chunk ahead."""
        loop = asyncio.get_running_loop()
        position = offset

        def read_next() -> asyncio.Future[bytes] | None:
            if position >= end:
                return None
            size = min(self.chunk_size, end - position)
            return loop.run_in_executor(None, os.pread, fd, size, position)

        pending = read_next()
        try:
            while pending is not None:
                data = await pending
                pending = None
                if not data:
                    raise CacheReadError(errno.EIO, "cached file ended early")
                position += len(data)
                pending = read_next()
                yield data
        finally:
            # No await here: a cancelled request may not get to run one.
            if pending is not None and not pending.done():
                pending.add_done_callback(lambda _done: os.close(fd))
            else:
                os.close(fd)

    # -- filling ------------------------------------------------------------------

    def _start_fill(self, key: ImageKey) -> _Fill | None:
        """Claim the one fill of ``key``; None when it is cached or being cached."""
        with self.index.write() as tx:
            entry = tx.entry(key.image_id)
            if entry is not None:
                if entry.state == COMPLETE:
                    if entry.checksum == key.checksum and entry.size == key.size:
                        return None  # cached meanwhile
                    self._remove_entry(tx, entry)
                elif self._fill_alive(entry):
                    return None
                else:
                    log.warning("taking over the abandoned cache fill of image %s",
                                key.image_id)
                    self._remove_entry(tx, entry)
            path = self.incomplete / f"{key.image_id}.{secrets.token_hex(6)}"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:
                log.warning("cannot cache image %s: %s", key.image_id, exc)
                return None
            tx.start_fill(key.image_id, key.checksum, key.size, path.name, os.getpid(),
                          time.time())
            self._fills.add(path.name)
            return _Fill(key, path, fd)

    def _fill_alive(self, entry: Entry) -> bool:
        """Whether an incomplete entry's fill is still running (not crashed/stalled)."""
        if entry.fill_pid == os.getpid():
            if entry.fill_name not in self._fills:
                return False
        elif entry.fill_pid is None or not _process_exists(entry.fill_pid):
            return False
        return not self._stalled(entry, time.time())

    def _stalled(self, entry: Entry, now: float) -> bool:
        path = self.incomplete / (entry.fill_name or "")
        try:
            written = path.stat().st_mtime
        except OSError:
            written = entry.last_modified
        return written < now - self.stall_time

    async def _tee(self, fill: _Fill, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Yield the source's chunks while writing them to the fill, one write behind.

        With the image's last chunk, finishing the fill (last write, md5 check, fsync,
        commit) is handed to a task of the cache before the chunk is yielded: a
        client that closes the connection as soon as it has every byte (the server
        then cancels the response) does not lose the copy. Any other end — the store
        failing, the client leaving early, cancellation — removes the fill in a task
        of the cache too, so cleaning up survives the request being cancelled.
        """
        caching = True
        teed = 0
        pending: asyncio.Future[Any] | None = None
        completion: asyncio.Task[None] | None = None
        try:
            async with _closing(chunks) as source:
                async for chunk in source:
                    if caching and completion is None:
                        teed += len(chunk)
                        if teed >= fill.key.size:
                            completion = self._spawn(self._complete(fill, pending, chunk))
                            pending = None
                        else:
                            if pending is not None:
                                caching = await self._settle(fill, pending)
                                pending = None
                            if caching:
                                pending = self._write(fill, chunk)
                    yield chunk
            if completion is not None:
                await asyncio.shield(completion)
        finally:
            if completion is None and not fill.finished:
                await asyncio.shield(self._spawn(self._abandon(fill, pending)))

    @staticmethod
    def _write(fill: _Fill, chunk: bytes) -> asyncio.Future[Any]:
        """Write and hash a chunk on two worker threads at once (both release the GIL)."""
        return asyncio.gather(
            asyncio.to_thread(fill.write, chunk), asyncio.to_thread(fill.digest, chunk)
        )

    async def _settle(self, fill: _Fill, pending: asyncio.Future[Any]) -> bool:
        """Wait for a cache write; on a disk error stop caching (the client goes on)."""
        try:
            await pending
            return True
        except OSError as exc:
            log.warning("stopped caching image %s: %s", fill.key.image_id, exc)
            await asyncio.shield(self._spawn(self._abandon(fill, None)))
            return False

    async def _complete(
        self, fill: _Fill, pending: asyncio.Future[Any] | None, last: bytes
    ) -> None:
        try:
            if pending is not None:
                await pending
            await self._write(fill, last)
            await asyncio.to_thread(self._commit, fill)
        except Exception as exc:
            log.warning("could not keep the cached copy of image %s: %s",
                        fill.key.image_id, exc)
            await self._abandon(fill, None)

    async def _abandon(self, fill: _Fill, pending: asyncio.Future[Any] | None) -> None:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)
        await asyncio.to_thread(self._discard, fill)

    def _spawn(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run cache work that must finish even if the request that started it ends."""
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def fill(self, key: ImageKey, source: ByteReader, location: str) -> bool:
        if not self.cacheable(key):
            return False
        if await asyncio.to_thread(self._is_cached, key):
            return True
        started = await asyncio.to_thread(self._start_fill, key)
        if started is None:
            return await asyncio.to_thread(self._is_cached, key)
        async with _closing(self._tee(started, source.read(location, 0, key.size))) as teed:
            async for _chunk in teed:
                pass
        return await asyncio.to_thread(self._is_cached, key)

    def _is_cached(self, key: ImageKey) -> bool:
        with self.index.read() as tx:
            entry = tx.entry(key.image_id)
        return (entry is not None and entry.state == COMPLETE
                and entry.checksum == key.checksum)

    def _commit(self, fill: _Fill) -> bool:
        """Verify the fill; make it the image's cached copy if it still owns the entry."""
        with fill.lock:
            if fill.finished:
                return False
            return self._commit_locked(fill)

    def _commit_locked(self, fill: _Fill) -> bool:
        key = fill.key
        if fill.size != key.size or fill.md5.hexdigest() != key.checksum:
            log.warning(
                "image %s read from the store does not match its checksum or size "
                "(%d bytes, md5 %s; expected %d, %s); not cached",
                key.image_id, fill.size, fill.md5.hexdigest(), key.size, key.checksum,
            )
            self._discard(fill)
            return False
        assert fill.fd is not None
        try:
            os.fsync(fill.fd)
        except OSError as exc:
            log.warning("stopped caching image %s: %s", key.image_id, exc)
            self._discard(fill)
            return False
        fill.close()
        final = self.directory / key.image_id
        with self.index.write() as tx:
            entry = tx.entry(key.image_id)
            if entry is None or entry.state != INCOMPLETE or entry.fill_name != fill.name:
                # Removed (image deleted, cache cleared or cleaned) while filling.
                fill.path.unlink(missing_ok=True)
                return self._finish(fill, False)
            os.replace(fill.path, final)
            st = os.stat(final)
            tx.complete_fill(key.image_id, st.st_size, st.st_ino, st.st_mtime_ns, time.time())
            tx.dequeue(key.image_id)
        self._finish(fill, True)
        log.info("cached image %s (%d bytes)", key.image_id, key.size)
        if self.max_size >= 0:
            self._prune()
        return True

    def _discard(self, fill: _Fill) -> None:
        with fill.lock:
            if fill.finished:
                return
            with suppress(OSError):
                fill.close()
            try:
                with self.index.write() as tx:
                    entry = tx.entry(fill.key.image_id)
                    if entry is not None and entry.fill_name == fill.name:
                        tx.delete(fill.key.image_id)
                    fill.path.unlink(missing_ok=True)
            finally:
                self._finish(fill, False)

    def _finish(self, fill: _Fill, result: bool) -> bool:
        fill.finished = True
        self._fills.discard(fill.name)
        return result

    def _remove_entry(self, tx: Transaction, entry: Entry) -> None:
        """Remove an entry and its file (a fill's file, for an incomplete one)."""
        if entry.state == COMPLETE:
            (self.directory / entry.image_id).unlink(missing_ok=True)
        elif entry.fill_name:
            (self.incomplete / entry.fill_name).unlink(missing_ok=True)
        tx.delete(entry.image_id)

    # -- management ---------------------------------------------------------------

    async def cached(self) -> list[CachedImage]:
        def run() -> list[CachedImage]:
            with self.index.read() as tx:
                entries = tx.entries(COMPLETE)
            return [
                CachedImage(e.image_id, e.checksum, e.size, e.hits, e.last_accessed,
                            e.last_modified)
                for e in entries
            ]

        return await asyncio.to_thread(run)

    async def queued(self) -> list[str]:
        def run() -> list[str]:
            with self.index.read() as tx:
                return tx.queued()

        return await asyncio.to_thread(run)

    async def queue(self, image_id: str) -> bool:
        def run() -> bool:
            with self.index.write() as tx:
                if tx.entry(image_id) is not None or tx.is_queued(image_id):
                    return False
                tx.enqueue(image_id, time.time())
                return True

        return await asyncio.to_thread(run)

    async def dequeue(self, image_id: str) -> bool:
        def run() -> bool:
            with self.index.write() as tx:
                return tx.dequeue(image_id)

        return await asyncio.to_thread(run)

    async def remove(self, image_id: str) -> bool:
        def run() -> bool:
            with self.index.write() as tx:
                entry = tx.entry(image_id)
                if entry is None:
                    return False
                self._remove_entry(tx, entry)
                return entry.state == COMPLETE

        return await asyncio.to_thread(run)

    async def forget(self, image_id: str) -> None:
        def run() -> None:
            with self.index.write() as tx:
                entry = tx.entry(image_id)
                if entry is not None:
                    self._remove_entry(tx, entry)
                tx.dequeue(image_id)

        try:
            await asyncio.to_thread(run)
        except Exception:
            log.exception("could not drop image %s from the cache", image_id)

    async def clear_cached(self) -> int:
        def run() -> int:
            with self.index.write() as tx:
                entries = tx.entries(COMPLETE)
                for entry in entries:
                    self._remove_entry(tx, entry)
                return len(entries)

        return await asyncio.to_thread(run)

    async def clear_queued(self) -> int:
        def run() -> int:
            with self.index.write() as tx:
                return tx.clear_queue()

        return await asyncio.to_thread(run)

    async def prune(self) -> PruneResult:
        return await asyncio.to_thread(self._prune)

    def _prune(self) -> PruneResult:
        files = pruned = 0
        with self.index.write() as tx:
            total = tx.complete_size()
            while total > self.max_size:
                entry = tx.least_recently_used()
                if entry is None:
                    break
                self._remove_entry(tx, entry)
                total -= entry.size
                files += 1
                pruned += entry.size
        if files:
            log.info("pruned %d cached images (%d bytes) to stay under %d bytes",
                     files, pruned, self.max_size)
        return PruneResult(files, pruned)

    async def clean(self) -> CleanResult:
        return await asyncio.to_thread(self._clean)

    def _clean(self) -> CleanResult:
        stalled = invalid = 0
        with self.index.write() as tx:
            entries = tx.entries()
            fills = set()
            for entry in entries:
                if entry.state == INCOMPLETE:
                    if not self._fill_alive(entry):
                        log.info("removing stalled cache fill of image %s", entry.image_id)
                        self._remove_entry(tx, entry)
                        stalled += 1
                    else:
                        fills.add(entry.fill_name)
                elif not self._file_matches(entry):
                    log.warning("removing invalid cache entry of image %s", entry.image_id)
                    self._remove_entry(tx, entry)
                    invalid += 1
            complete = {e.image_id for e in entries if e.state == COMPLETE}
            for path in self.incomplete.iterdir():
                if path.name not in fills:
                    _remove_path(path)
                    stalled += 1
            for path in self.directory.iterdir():
                if path.name in _OWN_FILES or path == self.incomplete:
                    continue
                if path.name not in complete and not path.name.startswith(f".{NODE_FILE}."):
                    log.warning("removing stray file %s from the image cache", path)
                    _remove_path(path)
                    invalid += 1
        return CleanResult(stalled, invalid)

    def _file_matches(self, entry: Entry) -> bool:
        try:
            st = (self.directory / entry.image_id).stat()
        except OSError:
            return False
        return (st.st_size, st.st_ino, st.st_mtime_ns) == (entry.size, entry.inode,
                                                          entry.mtime_ns)


class _CachingReader:
    """The store reader of one image, decorated with the cache."""

    def __init__(self, cache: DiskImageCache, key: ImageKey, source: ByteReader) -> None:
        self._cache = cache
        self._key = key
        self._source = source

    def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return self._cache.read(self._key, self._source, location, offset, length)


@asynccontextmanager
async def _closing(chunks: AsyncIterator[bytes]) -> AsyncIterator[AsyncIterator[bytes]]:
    """Close a store's stream (its file, its connection) however the reading ends."""
    try:
        yield chunks
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_path(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            return  # never remove directories someone put here
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s from the image cache: %s", path, exc)

