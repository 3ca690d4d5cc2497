"""The operator's options and the container format."""

from __future__ import annotations

import pytest

from glimpse.domain.errors import FormatMismatch, UnsafeImage
from glimpse.formats.stream import FormatPolicy, InspectionResult, StreamInspector

from . import builders as b
from .conftest import Inspect

GLANCE_DEFAULT_DISK_FORMATS = (
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
)  # fmt: skip


def test_declared_format_not_enabled_is_refused_before_any_data() -> None:
    policy = FormatPolicy(disk_formats=("raw", "iso"))  # guide 3.4.2: only raw and iso
    with pytest.raises(UnsafeImage) as info:
        StreamInspector("qcow2", "bare", policy)
    assert info.value.reason == "banned_format"
    assert "raw, iso" in info.value.message


def test_only_raw_and_iso_enabled(inspect: Inspect) -> None:
    formats = ("raw", "iso")
    assert inspect(bytes(8192), declared="raw", disk_formats=formats).format == "raw"
    assert inspect(b.iso(), declared="iso", disk_formats=formats).format == "iso"
    with pytest.raises(FormatMismatch):
        inspect(b.qcow2(), declared="raw", disk_formats=formats)


def test_everything_but_qcow2(inspect: Inspect) -> None:
    formats = tuple(f for f in GLANCE_DEFAULT_DISK_FORMATS if f != "qcow2")
    assert inspect(b.vmdk(), declared="vmdk", disk_formats=formats).format == "vmdk"
    with pytest.raises(UnsafeImage) as info:
        inspect(b.qcow2(), declared="qcow2", disk_formats=formats)
    assert info.value.reason == "banned_format"
    with pytest.raises(FormatMismatch):
        inspect(b.qcow2(), declared="vmdk", disk_formats=formats)


def test_mismatch_allowed_when_match_not_required(inspect: Inspect) -> None:
    # Like Glance: a disk declared raw keeps its byte size as virtual size...
    data = b.qcow2()
    result = inspect(data, declared="raw", require_image_format_match=False)
    assert result == InspectionResult("qcow2", len(data))
    # ...and other declared formats get no virtual size.
    result = inspect(bytes(4096), declared="qcow2", require_image_format_match=False)
    assert result == InspectionResult("raw", None)


def test_safety_still_applies_when_match_not_required(inspect: Inspect) -> None:
    with pytest.raises(UnsafeImage) as info:
        inspect(
            b.qcow2(backing_file=b"/etc/passwd"), declared="raw", require_image_format_match=False
        )
    assert info.value.reason == "backing_file"


@pytest.mark.parametrize("container", ["bare", "ovf", "ova", "docker", "compressed", "ami", None])
def test_unsafe_data_refused_whatever_the_container(inspect: Inspect, container: str) -> None:
    with pytest.raises(UnsafeImage) as info:
        inspect(b.qcow2(backing_file=b"/etc/passwd"), declared="qcow2", container=container)
    assert info.value.reason == "backing_file"


@pytest.mark.parametrize("container", ["ova", "docker", "compressed"])
def test_archive_containers_accept_opaque_data(inspect: Inspect, container: str) -> None:
    tar_like = b"disk.vmdk".ljust(257, b"\0") + b"ustar\x0000" + bytes(4096)
    assert inspect(tar_like, declared="vmdk", container=container) == InspectionResult("raw", None)


def test_archive_container_holding_another_format_is_a_mismatch(inspect: Inspect) -> None:
    with pytest.raises(FormatMismatch):
        inspect(b.qcow2(), declared="vmdk", container="ova")


def test_archive_container_holding_the_declared_format(inspect: Inspect) -> None:
    result = inspect(b.vmdk(), declared="vmdk", container="ova")
    assert result == InspectionResult("vmdk", 2048 * 512)


def test_ovf_container_data_is_the_disk(inspect: Inspect) -> None:
    with pytest.raises(FormatMismatch):
        inspect(bytes(4096), declared="vmdk", container="ovf")


def test_mbr_signature_in_an_archive_means_nothing(inspect: Inspect) -> None:
    data = b.mbr(boot_flag=0x33)  # would fail the MBR checks if taken as a disk
    assert inspect(data, declared="raw", container="compressed").format == "raw"


def test_operator_defined_format_accepts_unrecognised_data(inspect: Inspect) -> None:
    formats = ("raw", "dmg")
    assert inspect(bytes(4096), declared="dmg", disk_formats=formats).format == "raw"
    with pytest.raises(FormatMismatch):
        inspect(b.qcow2(), declared="dmg", disk_formats=formats)


def test_encrypted_raw_volume_when_allowed(inspect: Inspect) -> None:
    # Cinder uploads encrypted volumes as disk_format raw holding LUKS.
    data = b.luks()
    result = inspect(data, declared="raw", allow_encrypted=True)
    assert result == InspectionResult("luks", len(data))


def test_mismatch_is_a_subclass_of_unsafe_image(inspect: Inspect) -> None:
    with pytest.raises(UnsafeImage) as info:
        inspect(b.qcow2(), declared="raw")
    assert isinstance(info.value, FormatMismatch)
    assert info.value.reason == "format_mismatch"
    assert "raw" in info.value.message and "qcow2" in info.value.message
