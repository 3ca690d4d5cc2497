"""Every format is recognised, with qemu's virtual size, whatever the chunking."""

from __future__ import annotations

import pytest

from glimpse.formats.stream import FormatPolicy, InspectionResult, StreamInspector

from . import builders as b
from .conftest import ALL_FORMATS, Inspect

VALID = {
    "raw": (lambda: bytes(300 * 1024), "raw", 300 * 1024),
    "qcow2 v3": (lambda: b.qcow2(size=3 << 30), "qcow2", 3 << 30),
    "qcow2 v2": (lambda: b.qcow2(version=2, size=1 << 30), "qcow2", 1 << 30),
    "qcow2 512-byte clusters": (lambda: b.qcow2(cluster_bits=9, size=8 << 20), "qcow2", 8 << 20),
    "vmdk monolithicSparse": (lambda: b.vmdk(capacity=4096), "vmdk", 4096 * 512),
    "vmdk streamOptimized": (
        lambda: b.vmdk(capacity=4096, stream_optimized=True),
        "vmdk",
        4096 * 512,
    ),
    "vhd fixed": (lambda: b.vhd_fixed(size=2 * b.MiB), "vhd", 2 * b.MiB),
    "vhd dynamic": (lambda: b.vhd_dynamic(size=16 * b.MiB), "vhd", 16 * b.MiB),
    "vhdx": (lambda: b.vhdx(size=5 << 30), "vhdx", 5 << 30),
    "vdi dynamic": (lambda: b.vdi(disk_size=8 * b.MiB), "vdi", 8 * b.MiB),
    "vdi static": (
        lambda: b.vdi(disk_size=2 * b.MiB, image_type=2, allocated=2),
        "vdi",
        2 * b.MiB,
    ),
    "ploop v2": (lambda: b.ploop(size=64 * b.MiB), "ploop", 64 * b.MiB),
    "ploop v1": (lambda: b.ploop(size=64 * b.MiB, magic=b"WithoutFreeSpace"), "ploop", 64 * b.MiB),
    "iso": (lambda: b.iso(blocks=40), "iso", 40 * 2048),
    "mbr-partitioned raw": (lambda: b.mbr(size=b.MiB), "gpt", b.MiB),
}


@pytest.mark.parametrize("chunk", [4096, 65537, b.MiB])
@pytest.mark.parametrize("case", sorted(VALID))
def test_detects_format_and_virtual_size(inspect: Inspect, case: str, chunk: int) -> None:
    build, fmt, vsize = VALID[case]
    data = build()
    result = inspect(data, chunk=chunk)
    assert result == InspectionResult(format=fmt, virtual_size=vsize)


@pytest.mark.parametrize("case", ["vmdk monolithicSparse", "vdi dynamic", "vhd dynamic"])
def test_tiny_chunks(inspect: Inspect, case: str) -> None:
    build, fmt, vsize = VALID[case]
    assert inspect(build(), chunk=7) == InspectionResult(fmt, vsize)


def test_declared_format_matches(inspect: Inspect) -> None:
    assert inspect(b.qcow2(), declared="qcow2").format == "qcow2"
    assert inspect(b.vmdk(), declared="vmdk").format == "vmdk"
    assert inspect(b.vhd_fixed(), declared="vhd").format == "vhd"
    assert inspect(b.vhdx(), declared="vhdx").format == "vhdx"
    assert inspect(b.vdi(), declared="vdi").format == "vdi"
    assert inspect(b.ploop(), declared="ploop").format == "ploop"
    assert inspect(b.iso(), declared="iso").format == "iso"
    assert inspect(b.mbr(), declared="gpt").format == "gpt"


@pytest.mark.parametrize("declared", ["raw", "ami", "aki", "ari"])
def test_raw_like_formats_take_raw_and_partitioned_data(inspect: Inspect, declared: str) -> None:
    assert inspect(bytes(4096), declared=declared) == InspectionResult("raw", 4096)
    assert inspect(b.mbr(), declared=declared) == InspectionResult("gpt", b.MiB)


def test_hybrid_iso_with_mbr_is_iso(inspect: Inspect) -> None:
    data = bytearray(b.iso())
    data[:512] = b.mbr(size=512)
    assert inspect(bytes(data), declared="iso") == InspectionResult("iso", len(data))


def test_fixed_vhd_of_a_partitioned_disk_is_vhd(inspect: Inspect) -> None:
    data = b.vhd_fixed(size=b.MiB, content=b.mbr(size=512))
    assert inspect(data, declared="vhd") == InspectionResult("vhd", b.MiB)


def test_fixed_vhd_of_an_iso_is_vhd(inspect: Inspect) -> None:
    content = b.iso(blocks=32)
    data = b.vhd_fixed(size=len(content), content=content)
    assert inspect(data, declared="vhd").format == "vhd"


def test_vhd_size_by_geometry_for_old_creators(inspect: Inspect) -> None:
    # Virtual PC ('vpc ') images are sized by their CHS geometry, as qemu does.
    data = b.vhd_fixed(size=b.MiB, creator=b"vpc ", chs=(4, 16, 17))
    assert inspect(data).virtual_size == 4 * 16 * 17 * 512


def test_luks_when_encryption_is_allowed(inspect: Inspect) -> None:
    data = b.luks(payload_offset=4096, data=b.MiB)
    result = inspect(data, declared="luks", allow_encrypted=True)
    assert result == InspectionResult("luks", b.MiB)


def test_empty_upload_is_raw_without_size(inspect: Inspect) -> None:
    assert inspect(b"", declared="raw") == InspectionResult("raw", None)


def test_no_declared_format_only_detects(inspect: Inspect) -> None:
    assert inspect(b.qcow2(size=1 << 20), declared=None) == InspectionResult("qcow2", 1 << 20)


def test_empty_chunks_are_ignored() -> None:
    inspector = StreamInspector("qcow2", "bare", FormatPolicy(disk_formats=ALL_FORMATS))
    data = b.qcow2()
    inspector.feed(b"")
    inspector.feed(data)
    inspector.feed(b"")
    assert inspector.finish(len(data)).format == "qcow2"


def test_finish_with_a_different_size_is_a_caller_bug() -> None:
    inspector = StreamInspector("raw", "bare", FormatPolicy(disk_formats=ALL_FORMATS))
    inspector.feed(b"x" * 10)
    with pytest.raises(ValueError):
        inspector.finish(11)


@pytest.mark.parametrize("case", sorted(VALID))
def test_one_big_chunk(inspect: Inspect, case: str) -> None:
    build, fmt, vsize = VALID[case]
    data = build()
    assert inspect(data, chunk=len(data) or 1) == InspectionResult(fmt, vsize)
