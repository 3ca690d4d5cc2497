"""Fuzz the inspection path: random data and mutated headers of every format.

Whatever the bytes, the only exception that may leave the inspector is our own
refusal (``UnsafeImage`` and its subclass ``FormatMismatch``); what the
inspectors hold stays bounded, and each example runs in bounded time.

Runs a few hundred examples per target by default, derandomized under CI so a
run is reproducible; set GLIMPSE_FUZZ_EXAMPLES for a longer local session.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glimpse.domain.errors import UnsafeImage
from glimpse.formats.detect import SIGNATURES
from glimpse.formats.limits import INT64_MAX
from glimpse.formats.stream import FormatPolicy, StreamInspector

from . import builders as b
from .conftest import ALL_FORMATS

EXAMPLES = int(os.environ.get("GLIMPSE_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CAPTURE_LIMIT = 4 * b.MiB  # bytes all inspectors may hold at once
SECONDS_PER_EXAMPLE = 10.0  # generous: an example takes milliseconds

SEEDS: dict[str, Callable[[], bytes]] = {
    "qcow2": lambda: b.qcow2(cluster_bits=9, size=4 * b.MiB),
    "qcow2 v2": lambda: b.qcow2(version=2, cluster_bits=12, size=b.MiB),
    "qcow2 backing": lambda: b.qcow2(cluster_bits=9, size=b.MiB, backing_file=b"/etc/passwd"),
    "vmdk": lambda: b.vmdk(),
    "vmdk streamOptimized": lambda: b.vmdk(stream_optimized=True),
    "vmdk descriptor": lambda: b.vmdk_descriptor().encode(),
    "vhd fixed": lambda: b.vhd_fixed(size=64 * 1024),
    "vhd dynamic": lambda: b.vhd_dynamic(),
    "vhdx": lambda: b.vhdx(),
    "vdi": lambda: b.vdi(),
    "ploop": lambda: b.ploop(size=b.MiB),
    "iso": lambda: b.iso(blocks=18),
    "mbr": lambda: b.mbr(size=4096),
    "luks": lambda: b.luks(payload_offset=8, data=4096),
    "qed": lambda: b.qed(size=4096),
}
BUILT = {name: build() for name, build in SEEDS.items()}

# Where the fields live: mutations land near them more often than anywhere else.
HOT_SPOTS = [0, 0x40, 0x170, 0x200, 446, 510, 32 * 1024, 64 * 1024, 128 * 1024, 192 * 1024,
             256 * 1024, 2 * b.MiB, 2 * b.MiB + 64 * 1024]  # fmt: skip
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**63 - 1, 2**63,
               2**64 - 1, 512, 4096, 1 << 20, 1 << 30]  # fmt: skip

declared_formats = st.sampled_from([None, *ALL_FORMATS])
containers = st.sampled_from([None, "bare", "ovf", "ova", "docker", "compressed", "ami"])
chunks = st.sampled_from([1, 7, 512, 4096, 65536, 65537, b.MiB])


@st.composite
def mutation(draw: st.DrawFn) -> tuple[int, bytes]:
    if draw(st.booleans()):
        position = draw(st.sampled_from(HOT_SPOTS)) + draw(st.integers(0, 600))
    else:
        position = draw(st.integers(0, 5 * b.MiB))
    kind = draw(st.sampled_from(["bytes", "int"]))
    if kind == "bytes":
        return position, draw(st.binary(min_size=1, max_size=16))
    value = draw(st.sampled_from(INTERESTING))
    fmt = draw(st.sampled_from(["<I", ">I", "<Q", ">Q", "<H", ">H"]))
    mask = (1 << (8 * struct.calcsize(fmt))) - 1
    return position, struct.pack(fmt, value & mask)


def run(
    data: bytes,
    declared: str | None,
    container: str | None,
    chunk: int,
    policy: FormatPolicy,
) -> None:
    if len(data) > 64 * 1024:
        # Tiny chunks over megabytes only measure Python's call overhead; the
        # service feeds chunks of about 1 MiB.
        chunk = max(chunk, 4096)
    started = time.monotonic()
    try:
        inspector = StreamInspector(declared, container, policy)
        seen = 0
        for i in range(0, len(data), chunk):
            inspector.feed(data[i : i + chunk])
            if inspector._detector.size == seen:
                continue  # batched: the detector has not run
            seen = inspector._detector.size
            held = sum(
                sum(inspector._detector.inspector(name).context_info.values())
                for name in inspector._detector._inspectors
            )
            assert held <= CAPTURE_LIMIT, f"inspectors hold {held} bytes"
        result = inspector.finish(len(data))
    except UnsafeImage as exc:
        assert exc.reason and exc.message
    else:
        assert result.format in {"raw", *SIGNATURES, "gpt"}
        assert result.virtual_size is None or 0 < result.virtual_size <= INT64_MAX
    assert time.monotonic() - started < SECONDS_PER_EXAMPLE


policies = st.builds(
    FormatPolicy,
    disk_formats=st.just(ALL_FORMATS),
    require_image_format_match=st.booleans(),
    vmdk_allowed_types=st.sampled_from(
        [(), ("streamOptimized", "monolithicSparse"), ("monolithicFlat", "twoGbMaxExtentSparse")]
    ),
    gpt_safety_checks_nonfatal=st.sampled_from([(), ("mbr",)]),
    allow_encrypted=st.booleans(),
)


@FUZZ
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    mutations=st.lists(mutation(), max_size=6),
    truncate=st.none() | st.integers(0, 5 * b.MiB),
    declared=declared_formats,
    container=containers,
    chunk=chunks,
    policy=policies,
)
def test_mutated_headers(
    seed: str,
    mutations: list[tuple[int, bytes]],
    truncate: int | None,
    declared: str | None,
    container: str | None,
    chunk: int,
    policy: FormatPolicy,
) -> None:
    data = bytearray(BUILT[seed])
    for position, value in mutations:
        if position < len(data):
            data[position : position + len(value)] = value
    if truncate is not None:
        del data[truncate:]
    run(bytes(data), declared, container, chunk, policy)


@FUZZ
@given(
    magic=st.sampled_from([b""] + [m for sigs in SIGNATURES.values() for o, m in sigs if o == 0]),
    body=st.binary(max_size=70 * 1024),
    declared=declared_formats,
    container=containers,
    chunk=chunks,
    policy=policies,
)
def test_random_data_behind_a_signature(
    magic: bytes,
    body: bytes,
    declared: str | None,
    container: str | None,
    chunk: int,
    policy: FormatPolicy,
) -> None:
    run(magic + body, declared, container, chunk, policy)


@FUZZ
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    other=st.sampled_from(sorted(SEEDS)),
    offset=st.sampled_from([0x40, 510, 32 * 1024, -512, -1536]),
)
def test_splices_of_two_formats(seed: str, other: str, offset: int) -> None:
    """Polyglot attempts: one format's bytes laid over another's at a signature spot."""
    data = bytearray(BUILT[seed])
    piece = BUILT[other][:2048]
    start = offset if offset >= 0 else max(0, len(data) + offset)
    data[start : start + len(piece)] = piece
    policy = FormatPolicy(disk_formats=ALL_FORMATS)
    run(bytes(data), None, "bare", 65536, policy)
