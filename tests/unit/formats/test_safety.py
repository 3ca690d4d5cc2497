"""Hostile and broken images are refused, each with its reason."""

from __future__ import annotations

import struct

import pytest

from glimpse.domain.errors import FormatMismatch, UnsafeImage
from glimpse.formats.stream import FormatPolicy, StreamInspector

from . import builders as b
from .conftest import ALL_FORMATS, Inspect


def refused(inspect: Inspect, data: bytes, reason: str, **kwargs: object) -> UnsafeImage:
    with pytest.raises(UnsafeImage) as info:
        inspect(data, **kwargs)
    assert info.value.reason == reason, info.value.message
    assert info.value.message
    return info.value


def patched(data: bytes, offset: int, value: bytes) -> bytes:
    out = bytearray(data)
    out[offset : offset + len(value)] = value
    return bytes(out)


# -- qcow2 ---------------------------------------------------------------------


QCOW2_CASES = {
    "backing file": (dict(backing_file=b"/etc/passwd"), "backing_file"),
    "backing file size only": (dict(backing_file_size=11), "backing_file"),
    "data file bit": (dict(incompatible=1 << 2), "data_file"),
    "data file extension": (dict(extensions=[(0x44415441, b"/dev/sda")]), "data_file"),
    "unknown incompatible feature": (dict(incompatible=1 << 5), "unknown_features"),
    "extended L2 (not accepted, as in Glance)": (dict(incompatible=1 << 4), "unknown_features"),
    "marked corrupt": (dict(incompatible=1 << 1), "bad_header"),
    "version 1": (dict(version=1), "unsupported_version"),
    "version 4": (dict(version=4), "unsupported_version"),
    "cluster bits too small": (dict(cluster_bits=8), "bad_header"),
    "cluster bits too large": (dict(cluster_bits=22), "bad_header"),
    "aes encryption": (dict(crypt_method=1), "encrypted"),
    "luks encryption": (dict(crypt_method=2), "encrypted"),
    "unknown encryption": (dict(crypt_method=7), "bad_header"),
    "encryption header without encryption": (
        dict(extensions=[(0x0537BE77, bytes(16))]),
        "bad_header",
    ),
    "size beyond int64": (dict(size=2**63 + 512, l1_size=1), "size_too_large"),
    "size beyond its L1 table": (dict(size=1 << 40, l1_size=1), "bad_header"),
    "L1 table beyond the end of file": (dict(l1_table_offset=1 << 30), "bad_header"),
    "refcount table beyond the end of file": (dict(refcount_table_offset=1 << 30), "bad_header"),
    "misaligned L1 table": (dict(l1_table_offset=3 * 65536 + 8), "bad_header"),
    "snapshots beyond the end of file": (
        dict(nb_snapshots=1, snapshots_offset=1 << 30),
        "bad_header",
    ),
    "too many snapshots": (dict(nb_snapshots=70000, snapshots_offset=65536), "bad_header"),
    "huge L1 table": (dict(l1_size=1 << 23), "bad_header"),
    "no refcount table": (dict(refcount_table_clusters=0), "bad_header"),
    "header length out of range": (dict(header_length=64), "bad_header"),
    "refcount order out of range": (dict(refcount_order=7), "bad_header"),
    "unterminated extensions": (
        dict(extensions=[(0x1234, bytes(8))] * 8000, terminate_extensions=False),
        "bad_header",
    ),
}


@pytest.mark.parametrize("case", sorted(QCOW2_CASES))
def test_qcow2_refused(inspect: Inspect, case: str) -> None:
    kwargs, reason = QCOW2_CASES[case]
    refused(inspect, b.qcow2(**kwargs), reason, declared="qcow2")  # type: ignore[arg-type]


def test_qcow2_encryption_allowed_when_configured(inspect: Inspect) -> None:
    data = b.qcow2(crypt_method=2, extensions=[(0x0537BE77, bytes(16))])
    assert inspect(data, declared="qcow2", allow_encrypted=True).format == "qcow2"


@pytest.mark.parametrize("length", [4, 100, 511, 600])
def test_truncated_qcow2_is_refused(inspect: Inspect, length: int) -> None:
    refused(inspect, b.qcow2()[:length], "bad_header", declared="raw")


def test_qcow2_backing_file_refused_before_end_of_stream() -> None:
    inspector = StreamInspector("qcow2", "bare", FormatPolicy(disk_formats=ALL_FORMATS))
    data = b.qcow2(backing_file=b"/etc/shadow")
    with pytest.raises(UnsafeImage) as info:
        inspector.feed(data[: b.MiB])
    assert info.value.reason == "backing_file"


# -- vmdk ----------------------------------------------------------------------


def test_vmdk_parent_file_hint_is_a_backing_file(inspect: Inspect) -> None:
    desc = b.vmdk_descriptor(capacity=2048, parent_hint="base.vmdk")
    refused(inspect, b.vmdk(descriptor=desc), "backing_file", declared="vmdk")


@pytest.mark.parametrize(
    "extents",
    [
        ['RW 1024 SPARSE "disk.vmdk"', 'RW 1024 SPARSE "disk.vmdk"'],
        ['RW 2048 FLAT "/etc/passwd" 0'],
        ['RW 2048 FLAT "passwd" 0'],
        ['RW 2048 SPARSE "/etc/passwd"'],
        ['RW 2048 SPARSE "..\\\\other.vmdk"'],
        ['RW 2048 VMFS "disk-flat.vmdk"'],
        ["RW 2048 ZERO"],
        [],
    ],
)
def test_vmdk_foreign_or_extra_extents(inspect: Inspect, extents: list[str]) -> None:
    desc = b.vmdk_descriptor(capacity=2048, extents=extents)
    refused(inspect, b.vmdk(descriptor=desc), "vmdk_extent", declared="vmdk")


def test_vmdk_descriptor_file_pointing_at_etc_passwd(inspect: Inspect) -> None:
    desc = b.vmdk_descriptor(create_type="monolithicFlat", extents=['RW 2048 FLAT "/etc/passwd" 0'])
    refused(inspect, desc.encode(), "vmdk_extent", declared="vmdk")
    refused(inspect, desc.encode(), "vmdk_extent", declared="raw")


def test_vmdk_descriptor_file_naming_a_sibling(inspect: Inspect) -> None:
    # oslo accepts this one: the extent has no '/' and the type is allowed.
    desc = b.vmdk_descriptor(extents=['RW 2048 SPARSE "other-image-id"'])
    refused(inspect, desc.encode(), "vmdk_extent", declared="vmdk")


@pytest.mark.parametrize("create_type", ["twoGbMaxExtentSparse", "vmfsSparse", "custom"])
def test_vmdk_type_not_allowed(inspect: Inspect, create_type: str) -> None:
    desc = b.vmdk_descriptor(create_type=create_type)
    refused(inspect, b.vmdk(descriptor=desc), "vmdk_type", declared="vmdk")


def test_vmdk_allowed_types_are_configurable(inspect: Inspect) -> None:
    refused(inspect, b.vmdk(), "vmdk_type", declared="vmdk", vmdk_allowed_types=())
    refused(
        inspect,
        b.vmdk(),
        "vmdk_type",
        declared="vmdk",
        vmdk_allowed_types=("streamOptimized",),
    )
    ok = inspect(b.vmdk(), declared="vmdk", vmdk_allowed_types=("MONOLITHICSPARSE",))
    assert ok.format == "vmdk"


VMDK_CASES = {
    "descriptor and header disagree on size": (
        dict(capacity=4096, descriptor=b.vmdk_descriptor(capacity=2048)),
        "bad_header",
    ),
    "size beyond int64": (
        dict(capacity=2**62, descriptor=b.vmdk_descriptor(capacity=2**62)),
        "size_too_large",
    ),
    "descriptor at the wrong place": (dict(desc_offset=2), "bad_header"),
    "descriptor beyond end of file": (dict(desc_size=200), "bad_header"),
    "grain directory beyond end of file": (dict(gd_offset=10**9), "bad_header"),
    "grain size not a power of two": (dict(grain=100), "bad_header"),
    "version 9": (dict(version=9), "bad_header"),
    "footer disagrees on size": (
        dict(stream_optimized=True, footer_capacity=1 << 40),
        "bad_header",
    ),
}


@pytest.mark.parametrize("case", sorted(VMDK_CASES))
def test_vmdk_lying_headers(inspect: Inspect, case: str) -> None:
    kwargs, reason = VMDK_CASES[case]
    refused(inspect, b.vmdk(**kwargs), reason, declared="vmdk")  # type: ignore[arg-type]


def test_vmdk_stream_optimized_without_footer(inspect: Inspect) -> None:
    data = b.vmdk(stream_optimized=True)[:-1536]
    refused(inspect, data, "bad_header", declared="vmdk")


# -- vhd -----------------------------------------------------------------------


def test_vhd_differencing_disk(inspect: Inspect) -> None:
    refused(inspect, b.vhd_dynamic(disk_type=4), "backing_file", declared="vhd")


def test_vhd_bad_checksum(inspect: Inspect) -> None:
    refused(inspect, b.vhd_fixed(bad_checksum=True), "bad_header", declared="vhd")


def test_vhd_fixed_footer_claims_more_data_than_the_file(inspect: Inspect) -> None:
    data = bytes(b.MiB) + b.vhd_footer(size=64 * b.MiB)
    refused(inspect, data, "bad_header", declared="vhd")


def test_vhd_dynamic_footer_only_at_the_end(inspect: Inspect) -> None:
    data = bytes(b.MiB) + b.vhd_footer(size=b.MiB, disk_type=3, data_offset=512)
    refused(inspect, data, "bad_header", declared="vhd")


def test_vhd_start_and_end_footers_differ(inspect: Inspect) -> None:
    other = b.vhd_footer(size=1 << 40, disk_type=3, data_offset=512)
    refused(inspect, b.vhd_dynamic(end_footer=other), "bad_header", declared="vhd")


def test_vhd_dynamic_truncated(inspect: Inspect) -> None:
    refused(inspect, b.vhd_dynamic()[:-512], "bad_header", declared="vhd")


def test_vhd_block_table_too_small(inspect: Inspect) -> None:
    refused(inspect, b.vhd_dynamic(size=64 * b.MiB, max_entries=2), "bad_header", declared="vhd")


def test_vhd_block_table_beyond_end_of_file(inspect: Inspect) -> None:
    refused(inspect, b.vhd_dynamic(table_offset=1 << 30), "bad_header", declared="vhd")


def test_vhd_fixed_with_start_copy(inspect: Inspect) -> None:
    footer = b.vhd_footer(size=512)
    refused(inspect, footer + bytes(512) + footer, "bad_header", declared="vhd")


# -- vhdx ----------------------------------------------------------------------


VHDX_CASES = {
    "has parent": (dict(has_parent=True), "backing_file"),
    "parent locator": (dict(parent_locator=True), "backing_file"),
    "unreplayed log": (dict(log_guid=b"\x01" * 16), "bad_header"),
    "region beyond the end of file": (
        dict(extra_regions=[(b"\x07" * 16, 64 * b.MiB, b.MiB, 0)]),
        "bad_header",
    ),
    "unknown required region": (
        dict(extra_regions=[(b"\x07" * 16, 3 * b.MiB, 4096, 1)]),
        "bad_header",
    ),
    "unknown required metadata item": (
        dict(extra_items=[(b"\x09" * 16, 64 * 1024 + 48, 8, 4)]),
        "bad_header",
    ),
    "block size out of range": (dict(block_size=4096), "bad_header"),
    "size beyond int64": (dict(size=2**63 + 1), "size_too_large"),
}


@pytest.mark.parametrize("case", sorted(VHDX_CASES))
def test_vhdx_refused(inspect: Inspect, case: str) -> None:
    kwargs, reason = VHDX_CASES[case]
    refused(inspect, b.vhdx(**kwargs), reason, declared="vhdx")  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [100, 200 * 1024, 2 * b.MiB + 100])
def test_vhdx_truncated(inspect: Inspect, length: int) -> None:
    refused(inspect, b.vhdx()[:length], "bad_header", declared="vhdx")


def test_vhdx_without_any_header(inspect: Inspect) -> None:
    data = patched(patched(b.vhdx(), 64 * 1024, b"xxxx"), 128 * 1024, b"xxxx")
    refused(inspect, data, "bad_header", declared="vhdx")


# -- vdi -----------------------------------------------------------------------


VDI_CASES = {
    "parent uuid": (dict(parent=b"\x01" * 16), "backing_file"),
    "link uuid": (dict(link=b"\x01" * 16), "backing_file"),
    "version 1.0": (dict(version=0x00010000), "unsupported_version"),
    "undo image type": (dict(image_type=3), "bad_header"),
    "sector size": (dict(sector_size=4096), "bad_header"),
    "block size": (dict(block_size=4096), "bad_header"),
    "disk larger than its blocks": (dict(disk_size=64 * b.MiB, blocks=4), "bad_header"),
    "size beyond int64": (dict(disk_size=2**63 + 512, blocks=4), "size_too_large"),
    "block map beyond end of file": (dict(blocks=100000, offset_data=1024), "bad_header"),
    "data beyond end of file": (dict(allocated=4, truncate_to=4096), "bad_header"),
    "misaligned data": (dict(offset_data=1000), "bad_header"),
    "more allocated than blocks": (dict(allocated=9), "bad_header"),
}


@pytest.mark.parametrize("case", sorted(VDI_CASES))
def test_vdi_refused(inspect: Inspect, case: str) -> None:
    kwargs, reason = VDI_CASES[case]
    refused(inspect, b.vdi(**kwargs), reason, declared="vdi")  # type: ignore[arg-type]


def test_vdi_truncated_header(inspect: Inspect) -> None:
    refused(inspect, b.vdi()[:300], "bad_header", declared="raw")


# -- ploop, iso, luks, qed -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        (dict(version=1), "bad_header"),
        (dict(tracks=0, bat_entries=4), "bad_header"),
        (dict(bat_entries=1), "bad_header"),
        (dict(size=2**63 + 512 * 2048, bat_entries=1), "size_too_large"),
        (dict(ext_off=1 << 30), "bad_header"),
    ],
)
def test_ploop_refused(inspect: Inspect, kwargs: dict[str, int], reason: str) -> None:
    refused(inspect, b.ploop(**kwargs), reason, declared="ploop")  # type: ignore[arg-type]


def test_ploop_block_table_beyond_end_of_file(inspect: Inspect) -> None:
    refused(inspect, b.ploop(size=1 << 40)[:4096], "bad_header", declared="ploop")


def test_iso_volume_larger_than_file(inspect: Inspect) -> None:
    refused(inspect, b.iso(blocks=1000, file_blocks=40), "bad_header", declared="iso")


def test_iso_bad_block_size(inspect: Inspect) -> None:
    refused(inspect, b.iso(block_size=3000), "bad_header", declared="iso")


def test_luks_refused_unless_allowed(inspect: Inspect) -> None:
    refused(inspect, b.luks(), "encrypted", declared="luks")
    refused(inspect, b.luks(), "encrypted", declared="raw")


def test_luks_version_2(inspect: Inspect) -> None:
    refused(inspect, b.luks(version=2), "unsupported_version", allow_encrypted=True)


def test_luks_payload_beyond_end_of_file(inspect: Inspect) -> None:
    data = b.luks(payload_offset=4096)[:4096]
    refused(inspect, data, "bad_header", declared="luks", allow_encrypted=True)


def test_qed_is_banned(inspect: Inspect) -> None:
    refused(inspect, b.qed(), "banned_format", declared="raw")


# -- partition tables --------------------------------------------------------------


def test_mbr_with_invalid_boot_flag(inspect: Inspect) -> None:
    refused(inspect, b.mbr(boot_flag=0x12), "mbr", declared="raw")


def test_mbr_check_made_nonfatal(inspect: Inspect) -> None:
    data = b.mbr(boot_flag=0x12)
    result = inspect(data, declared="raw", gpt_safety_checks_nonfatal=("mbr",))
    assert result.format == "gpt"


# -- polyglots -----------------------------------------------------------------------


def test_qcow2_that_is_also_an_iso(inspect: Inspect) -> None:
    data = b.qcow2()
    data = patched(data, 32 * 1024, b.iso()[32 * 1024 : 34 * 1024])
    err = refused(inspect, data, "multiple_formats", declared="qcow2")
    assert "ISO" in err.message and "qcow2" in err.message


def test_qcow2_with_a_vhd_footer(inspect: Inspect) -> None:
    data = b.qcow2() + b.vhd_footer(size=b.MiB)
    refused(inspect, data, "multiple_formats", declared="qcow2")


def test_qcow2_with_an_mbr_signature(inspect: Inspect) -> None:
    refused(inspect, b.qcow2(at_510=b"\x55\xaa"), "multiple_formats", declared="qcow2")


def test_vdi_that_is_also_an_iso(inspect: Inspect) -> None:
    data = b.vdi(disk_size=4 * b.MiB) + bytes(64 * 1024)
    data = patched(data, 32 * 1024, b.iso()[32 * 1024 : 34 * 1024])
    refused(inspect, data, "multiple_formats", declared="vdi")


def test_vdi_with_an_mbr_signature(inspect: Inspect) -> None:
    data = patched(b.vdi(), 510, b"\x55\xaa")
    refused(inspect, data, "multiple_formats", declared="vdi")


def test_vmdk_that_is_also_an_iso(inspect: Inspect) -> None:
    data = b.vmdk(sectors=80)
    data = patched(data, 32 * 1024, b.iso()[32 * 1024 : 34 * 1024])
    refused(inspect, data, "multiple_formats", declared="vmdk")


def test_iso_carrying_a_qcow2_signature(inspect: Inspect) -> None:
    data = patched(b.iso(), 0, b"QFI\xfb" + bytes(4))
    refused(inspect, data, "unsupported_version", declared="iso")


def test_iso_carrying_a_truncated_vmdk_header(inspect: Inspect) -> None:
    data = patched(b.iso(), 0, b"KDMV" + bytes(60))
    refused(inspect, data, "bad_header", declared="iso")


# -- mismatch ------------------------------------------------------------------------


def test_raw_declared_qcow2_data(inspect: Inspect) -> None:
    with pytest.raises(FormatMismatch) as info:
        inspect(b.qcow2(), declared="raw")
    assert info.value.reason == "format_mismatch"


def test_qcow2_declared_raw_data_fails_on_the_first_chunk() -> None:
    inspector = StreamInspector("qcow2", "bare", FormatPolicy(disk_formats=ALL_FORMATS))
    with pytest.raises(FormatMismatch):
        inspector.feed(bytes(b.MiB))


def test_iso_declared_raw_data_fails_once_the_descriptor_has_passed() -> None:
    inspector = StreamInspector("iso", "bare", FormatPolicy(disk_formats=ALL_FORMATS))
    inspector.feed(bytes(32 * 1024))
    with pytest.raises(FormatMismatch):
        inspector.feed(bytes(32 * 1024))


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        ("vmdk", b.qcow2()),
        ("vhd", b.vdi()),
        ("vhdx", b.vhd_fixed()),
        ("iso", bytes(64 * 1024)),
        ("ami", b.qcow2()),
        ("aki", b.vmdk()),
        ("gpt", bytes(4096)),
        ("vdi", b.ploop()),
        ("ploop", bytes(4096)),
        ("raw", b.iso()),
        ("raw", b.vhd_fixed()),
    ],
)
def test_mismatches(inspect: Inspect, declared: str, data: bytes) -> None:
    with pytest.raises(FormatMismatch):
        inspect(data, declared=declared)


def test_struct_sanity() -> None:
    # builders lay out what the tests think they do
    assert struct.unpack(">I", b.qcow2(version=2)[4:8]) == (2,)
