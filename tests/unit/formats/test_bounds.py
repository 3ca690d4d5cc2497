"""Memory and work per byte stay bounded, whatever the image claims."""

from __future__ import annotations

import tracemalloc

import pytest
from oslo_utils.imageutils import format_inspector as fi

from glimpse.formats.detect import TAIL_SIZE, Detector
from glimpse.formats.stream import FormatPolicy, StreamInspector

from . import builders as b
from .conftest import ALL_FORMATS

HEADS = {
    "raw": lambda: bytes(b.MiB),
    "qcow2": lambda: b.qcow2(),
    "vmdk streamOptimized": lambda: b.vmdk(stream_optimized=True),
    "vhd dynamic": lambda: b.vhd_dynamic(),
    "vhdx": lambda: b.vhdx(),
    "vdi": lambda: b.vdi(),
    "luks": lambda: b.luks(),
    "iso": lambda: b.iso(),
}

STREAM = 192 * b.MiB
LIMIT = 6 * b.MiB  # captured headers (VMDK descriptor: 1 MiB max) + a tail, with room


@pytest.mark.parametrize("case", sorted(HEADS))
def test_memory_is_bounded_while_streaming(case: str) -> None:
    head = HEADS[case]()
    body = bytes(b.MiB)
    policy = FormatPolicy(disk_formats=ALL_FORMATS, allow_encrypted=True)
    inspector = StreamInspector(None, "bare", policy)
    tracemalloc.start()
    try:
        inspector.feed(head)
        for _ in range(STREAM // b.MiB):
            inspector.feed(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < LIMIT, f"{case}: {peak} bytes held while streaming"


@pytest.mark.parametrize("case", sorted(HEADS) + ["vmdk text descriptor"])
def test_no_inspector_is_fed_after_the_headers(case: str) -> None:
    """After the first chunks, feeding is a length, a head and a tail: no inspector runs."""
    if case == "vmdk text descriptor":
        head = b.vmdk_descriptor().encode().ljust(b.MiB, b" ")
    else:
        head = HEADS[case]()
    detector = Detector()
    detector.feed(head)
    for _ in range(4):
        detector.feed(bytes(b.MiB))
    assert detector._active == {}


def test_end_regions_fit_the_tail() -> None:
    detector = Detector()
    for name in list(detector._inspectors):
        inspector = detector.inspector(name)
        for region_name in inspector.context_info:
            region = inspector.region(region_name)
            if isinstance(region, fi.EndCaptureRegion):
                assert region.length <= TAIL_SIZE


def test_a_region_far_into_the_file_is_waited_for_cheaply() -> None:
    """A VHDX whose metadata region is claimed at 1 TiB keeps one inspector fed,
    at the cost of a bounds test per chunk, and is refused at the end."""
    data = bytearray(b.vhdx())
    # region table entry 2 (metadata) -> 1 TiB, in both tables
    for table in (192 * 1024, 256 * 1024):
        data[table + 16 + 32 + 16 : table + 16 + 32 + 24] = (1 << 40).to_bytes(8, "little")
    detector = Detector()
    detector.feed(bytes(data))
    for _ in range(8):
        detector.feed(bytes(b.MiB))
    assert set(detector._active) == {"vhdx"}
    assert sum(detector.inspector("vhdx").context_info.values()) < 256 * 1024


def test_trickled_bytes_are_batched(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client sending one byte at a time costs the detector one call per 64 KiB."""
    calls = []
    original = Detector.feed

    def counting(self: Detector, chunk: bytes) -> list[str]:
        calls.append(len(chunk))
        return original(self, chunk)

    monkeypatch.setattr(Detector, "feed", counting)
    data = b.qcow2(cluster_bits=12, size=b.MiB) + bytes(256 * 1024)
    inspector = StreamInspector("qcow2", "bare", FormatPolicy(disk_formats=ALL_FORMATS))
    for i in range(len(data)):
        inspector.feed(data[i : i + 1])
    assert inspector.finish(len(data)).format == "qcow2"
    assert len(calls) <= len(data) // (64 * 1024) + 1
