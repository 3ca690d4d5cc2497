"""How much glimpse.formats adds to streaming an upload.

Streams 1 GiB of a qcow2 image and of a raw image, in 1 MiB chunks, through
the hashing every upload does (md5 ``checksum`` and sha512 ``os_hash_value``),
once without and once with a StreamInspector fed every chunk, and prints the
time of each and the overhead as a ratio. Figures are printed, never asserted.

    python bench/inspect_overhead.py [--gib N] [--repeat N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

try:
    from glimpse.formats.stream import FormatPolicy, StreamInspector
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from glimpse.formats.stream import FormatPolicy, StreamInspector

MiB = 1024 * 1024
GiB = 1024 * MiB
POOL = 32  # distinct random chunks, cycled


def qcow2_header(virtual_size: int) -> bytes:
    """A valid qcow2 v3 prefix: header, refcount table and block, L1 table."""
    cluster = 65536
    l1_size = -(-virtual_size // (cluster * cluster // 8))
    head = bytearray(cluster)
    struct.pack_into(
        ">4sIQIIQIIQQIIQQQQII", head, 0, b"QFI\xfb", 3, 0, 0, 16, virtual_size, 0,
        l1_size, 3 * cluster, cluster, 1, 0, 0, 0, 0, 0, 4, 104,
    )  # fmt: skip
    reftable = struct.pack(">Q", 2 * cluster).ljust(cluster, b"\0")
    refblock = (b"\x00\x01" * 4).ljust(cluster, b"\0")
    return bytes(head) + reftable + refblock + bytes(l1_size * 8)


def chunks(total: int, first: bytes, pool: list[bytes]) -> Iterator[bytes]:
    sent = 0
    if first:
        yield first
        sent = len(first)
    i = 0
    while sent < total:
        chunk = pool[i % len(pool)][: total - sent]
        yield chunk
        sent += len(chunk)
        i += 1


def stream(
    total: int, first: bytes, pool: list[bytes], hashing: bool, inspect: bool, disk_format: str
) -> float:
    """CPU seconds to push the data through the chosen work (CPU time, so that
    other load on the machine does not count)."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha512 = hashlib.sha512()
    inspector = None
    if inspect:
        policy = FormatPolicy(disk_formats=("raw", "qcow2"))
        inspector = StreamInspector(disk_format, "bare", policy)
    size = 0
    start = time.process_time()
    for chunk in chunks(total, first, pool):
        if hashing:
            md5.update(chunk)
            sha512.update(chunk)
        if inspector is not None:
            inspector.feed(chunk)
        size += len(chunk)
    if inspector is not None:
        result = inspector.finish(size)
        assert result.format == disk_format, result
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="data per run (GiB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (best kept)")
    args = parser.parse_args()
    total = int(args.gib * GiB)
    pool = [os.urandom(MiB) for _ in range(POOL)]
    cases = {"qcow2": qcow2_header(2 * total), "raw": b""}
    print(f"streaming {total / GiB:.2f} GiB in 1 MiB chunks through md5 + sha512, "
          f"CPU time, best of {args.repeat}")  # fmt: skip
    print(
        f"{'format':8} {'hash only':>10} {'hash+insp':>10} {'ratio':>7}"
        f" {'insp alone':>11} {'alone/hash':>10}"
    )
    for fmt, first in cases.items():
        plain, both, alone = [], [], []
        for _ in range(args.repeat):
            plain.append(stream(total, first, pool, True, False, fmt))
            both.append(stream(total, first, pool, True, True, fmt))
            alone.append(stream(total, first, pool, False, True, fmt))
        base, with_inspector, inspector_only = min(plain), min(both), min(alone)
        print(
            f"{fmt:8} {base:9.3f}s {with_inspector:9.3f}s {with_inspector / base:7.4f}"
            f" {inspector_only * 1000:9.1f}ms {inspector_only / base:10.4%}"
        )
    print("ratio: (hash + inspect) / hash; alone/hash: the inspector's own CPU time over hashing's")


if __name__ == "__main__":
    main()
