"""The file store: one file per image in a data directory (local disk or an NFS share).

Several directories may be configured with priorities; new data goes to the
highest-priority directory that is writable, reads find data in any of them.
On disk, per directory::

    <datadir>/.glimpse-store          marker written at set-up; if it disappears the
                                      share is taken as unmounted and the store refuses
                                      writes instead of filling the empty mount point
    <datadir>/<image_id>              committed image data; location file://<datadir>/<id>
    <datadir>/.tmp-<node>~<id>-<rand> data being written by node <node>; renamed over
                                      <image_id> only after fsync, removed on any failure
                                      (and by that node when it starts again: on a
                                      share, other nodes' partial files are live writes)
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from glimpse.domain.errors import StoreFull, StoreUnavailable
from glimpse.stores.base import StoreHealth, WrittenData

MARKER = ".glimpse-store"
TMP_PREFIX = ".tmp-"


class FileStoreDriver:
    type = "file"

    def __init__(
        self,
        datadirs: Sequence[Path],
        *,
        chunk_size: int = 1024 * 1024,
        file_perm: int = 0,
        thin_provisioning: bool = False,
        node_id: str = "",
    ) -> None:
        if not datadirs:
            raise ValueError("a file store needs at least one directory")
        self.datadirs = [d.resolve() for d in datadirs]
        self.chunk_size = chunk_size
        self.file_perm = file_perm
        self.thin_provisioning = thin_provisioning
        self._tmp_prefix = f"{TMP_PREFIX}{re.sub(r'[^A-Za-z0-9_.]', '_', node_id)}~"

    @property
    def datadir(self) -> Path:
        return self.datadirs[0]

    def prepare(self) -> None:
        """Create the directories and their markers at start-up.

        A directory that exists without a marker and is not empty is taken as a
        previous deployment's store and adopted; a missing marker later means the
        share went away.
        """
        for datadir in self.datadirs:
            datadir.mkdir(parents=True, exist_ok=True)
            marker = datadir / MARKER
            if not marker.exists():
                marker.write_text("glimpse file store\n")

    def remove_temporary_files(self) -> int:
        """Delete this node's leftovers of writes interrupted by a crash (and unowned
        ones from before temporary names carried the node); returns how many."""
        removed = 0
        for datadir in self.datadirs:
            if not datadir.is_dir():
                continue
            for entry in datadir.iterdir():
                name = entry.name
                if name.startswith(self._tmp_prefix) or (
                    name.startswith(TMP_PREFIX) and "~" not in name
                ):
                    entry.unlink(missing_ok=True)
                    removed += 1
        return removed

    def stored_files(self) -> list[Path]:
        """Every committed image file, for orphan checks."""
        files: list[Path] = []
        for datadir in self.datadirs:
            if datadir.is_dir():
                files.extend(
                    p for p in datadir.iterdir()
                    if p.is_file() and not p.name.startswith(".")
                )
        return files

    async def list_locations(self) -> list[str]:
        files = await asyncio.to_thread(self.stored_files)
        return [f.as_uri() for f in files]

    def _choose_dir(self) -> Path:
        problems = []
        for datadir in self.datadirs:
            problem = _write_problem(datadir)
            if not problem:
                return datadir
            problems.append(f"{datadir}: {problem}")
        raise StoreUnavailable("File store is read-only: " + "; ".join(problems))

    async def write(self, image_id: str, chunks: AsyncIterator[bytes]) -> WrittenData:
        datadir = await asyncio.to_thread(self._choose_dir)
        final = datadir / image_id
        tmp = datadir / f"{self._tmp_prefix}{image_id}-{secrets.token_hex(4)}"
        try:
            fd = await asyncio.to_thread(
                os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
            )
        except OSError as exc:
            raise StoreUnavailable(f"Cannot write to file store {datadir}: {exc}") from exc
        size = 0
        try:
            try:
                async for chunk in chunks:
                    await _io(datadir, self._write_chunk, fd, chunk)
                    size += len(chunk)
                await _io(datadir, self._finish, fd, size)
            finally:
                os.close(fd)
            await _io(datadir, self._commit, tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return WrittenData(location=final.as_uri(), size=size)

    def _write_chunk(self, fd: int, chunk: bytes) -> None:
        if self.thin_provisioning and chunk.count(0) == len(chunk):
            os.lseek(fd, len(chunk), os.SEEK_CUR)
            return
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def _finish(self, fd: int, size: int) -> None:
        # Trailing holes from thin provisioning need the length set explicitly.
        os.ftruncate(fd, size)
        os.fsync(fd)

    def _commit(self, tmp: Path, final: Path) -> None:
        if self.file_perm > 0:
            os.chmod(tmp, self.file_perm)
        os.replace(tmp, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self._path(location)
        try:
            fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise StoreUnavailable(f"Image data is missing from file store: {path}") from exc
        except OSError as exc:
            raise _translate(exc, self.datadir) from exc
        try:
            remaining = length
            position = offset
            while remaining is None or remaining > 0:
                want = self.chunk_size if remaining is None else min(self.chunk_size, remaining)
                data = await asyncio.to_thread(os.pread, fd, want, position)
                if not data:
                    break
                position += len(data)
                if remaining is not None:
                    remaining -= len(data)
                yield data
        finally:
            os.close(fd)

    async def delete(self, location: str) -> None:
        path = self._path(location)
        try:
            await asyncio.to_thread(path.unlink, True)
        except OSError as exc:
            raise _translate(exc, self.datadir) from exc

    def local_path(self, location: str) -> Path | None:
        return self._path(location)

    async def health(self) -> StoreHealth:
        problems = [
            f"{d}: {p}" for d in self.datadirs if (p := await asyncio.to_thread(_write_problem, d))
        ]
        readable = any(d.is_dir() for d in self.datadirs)
        writable = len(problems) < len(self.datadirs)
        return StoreHealth(ok=readable, writable=writable, detail="; ".join(problems))

    def properties(self) -> dict[str, object]:
        return {
            "data_dir": str(self.datadir),
            "chunk_size": self.chunk_size,
            "thin_provisioning": self.thin_provisioning,
        }

    def owns(self, location: str) -> bool:
        parsed = urlparse(location)
        return parsed.scheme == "file" and Path(unquote(parsed.path)).parent in self.datadirs

    def _path(self, location: str) -> Path:
        if not self.owns(location):
            raise StoreUnavailable(f"Location {location} is not in file store {self.datadir}")
        return Path(unquote(urlparse(location).path))


async def _io(datadir: Path, func: Callable[..., None], *args: Any) -> None:
    """Run blocking file I/O on a thread; disk errors become store errors."""
    try:
        await asyncio.to_thread(func, *args)
    except OSError as exc:
        raise _translate(exc, datadir) from exc


def _write_problem(datadir: Path) -> str:
    if not datadir.is_dir():
        return "the directory does not exist"
    if not (datadir / MARKER).exists():
        return "the store marker is missing (is the share mounted?)"
    if not os.access(datadir, os.W_OK | os.X_OK):
        return "the directory is not writable"
    if os.statvfs(datadir).f_flag & os.ST_RDONLY:
        return "the file system is mounted read-only"
    return ""


def _translate(exc: OSError, datadir: Path) -> StoreUnavailable | StoreFull:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"There is not enough disk space on the image store {datadir}")
    return StoreUnavailable(f"File store {datadir} failed: {exc.strerror or exc}")
