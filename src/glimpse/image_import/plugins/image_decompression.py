"""``image_decompression``: unpack compressed imported data before it is stored.

Recognised by magic bytes at the start of the staged file: gzip (``1f 8b 08``), zip
with exactly one member (``PK\\x03\\x04``), bzip2 (``BZh``) and xz (``fd 37 7a 58 5a
00``). Anything else is left untouched, and so is data whose container_format is
``compressed`` (it is meant to stay compressed; Glance does the same).

Decompression streams into a temporary file beside the staged one, counting the
bytes it produces: more than the image size cap (a decompression bomb) is refused
with :class:`RequestTooLarge` as soon as the cap is passed. Damaged data is refused
with :class:`InvalidImageData`. On success the temporary file replaces the staged
file atomically; on any failure it is removed and the staged file is unchanged.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from glimpse.domain.errors import InvalidImageData, RequestTooLarge
from glimpse.image_import.job import ImportJob
from glimpse.image_import.plugins.offload import check_stop, run_blocking

CHUNK_SIZE = 1024 * 1024
_BZ2_BLOCK = b"1AY&SY"  # first block header (pi)
_BZ2_END = b"\x17\x72\x45\x38\x50\x90"  # end of stream (sqrt(pi)): an empty stream
# Errors of damaged compressed data, as the readers raise them.
_READ_ERRORS = (
    OSError,  # gzip.BadGzipFile and other header problems
    EOFError,  # truncated streams
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,  # includes CRC mismatches, found at the end of a member
    RuntimeError,  # an encrypted zip member
    NotImplementedError,  # a zip compression method Python does not read
    ValueError,
)


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def sniff(head: bytes) -> str | None:
    """The compression of data starting with ``head`` (12 bytes suffice), or None."""
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if (
        len(head) >= 10
        and head.startswith(b"BZh")
        and head[3:4] in b"123456789"
        and head[4:10] in (_BZ2_BLOCK, _BZ2_END)
    ):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return None


class ImageDecompressionPlugin:
    name = "image_decompression"

    def __init__(self, size_cap: int) -> None:
        self.size_cap = size_cap

    async def run(self, job: ImportJob) -> None:
        if job.container_format == "compressed":
            return
        path = job.path
        size_cap = self.size_cap

        def work(stop: threading.Event) -> str | None:
            with open(path, "rb") as f:
                kind = sniff(f.read(12))
            if kind is not None:
                _decompress(path, kind, size_cap, stop)
            return kind

        kind = await run_blocking(work)
        if kind is not None:
            job.messages.append(f"image_decompression: {kind} data decompressed")


def _decompress(path: Path, kind: str, size_cap: int, stop: threading.Event) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".unpacked")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            with _opened(path, kind) as reader:
                total = 0
                while True:
                    check_stop(stop)
                    try:
                        chunk = reader.read(CHUNK_SIZE)
                    except _READ_ERRORS as exc:
                        raise _damaged(kind, exc) from exc
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > size_cap:
                        raise RequestTooLarge(
                            f"The imported {kind} data decompresses to more than the image "
                            f"size cap of {size_cap} bytes."
                        )
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _opened(path: Path, kind: str) -> Iterator[_Reader]:
    """The decompressing reader of ``path``; errors of damaged data translated."""
    with contextlib.ExitStack() as stack:
        try:
            reader = _open(path, kind, stack)
        except _READ_ERRORS as exc:
            raise _damaged(kind, exc) from exc
        yield reader


def _open(path: Path, kind: str, stack: contextlib.ExitStack) -> _Reader:
    if kind == "zip":
        archive = stack.enter_context(zipfile.ZipFile(path))
        members = archive.infolist()
        if len(members) != 1 or members[0].is_dir():
            what = "a directory" if len(members) == 1 else f"{len(members)} entries"
            raise InvalidImageData(
                f"The imported zip archive holds {what}; only an archive of exactly one "
                "file can be decompressed."
            )
        return stack.enter_context(archive.open(members[0]))
    if kind == "gzip":
        return stack.enter_context(gzip.open(path, "rb"))
    if kind == "bzip2":
        return stack.enter_context(bz2.open(path, "rb"))
    return stack.enter_context(lzma.open(path, "rb"))


def _damaged(kind: str, exc: BaseException) -> InvalidImageData:
    detail = str(exc) or type(exc).__name__
    return InvalidImageData(
        f"The imported data looks {kind}-compressed but cannot be decompressed: {detail}."
    )
