"""glimpse.formats against real images built by qemu-img.

Every format qemu-img can write is built here, streamed through
StreamInspector in 1 MiB chunks, and its detected format and virtual size
compared with ``qemu-img info --output=json``. Hostile images (backing files,
external data files, VMDK extents pointing at /etc/passwd, polyglots,
truncated and lying headers) are built the same way and must be refused with
their reason.

Needs qemu-img (``scripts/install-qemu``). Without it the module is skipped,
except under CI, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from glimpse.domain.errors import FormatMismatch, UnsafeImage
from glimpse.formats.stream import FormatPolicy, InspectionResult, StreamInspector

MiB = 1024 * 1024
ALL_FORMATS = (
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop", "gpt",
    "luks",
)  # fmt: skip
# Glance disk_format -> qemu driver name
QEMU_DRIVER = {"vhd": "vpc", "ploop": "parallels", "gpt": "raw", "iso": "raw"}


@pytest.fixture(scope="module", autouse=True)
def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-img is required under CI: run scripts/install-qemu")
        pytest.skip("qemu-img not installed (run scripts/install-qemu)")
    return path


def qemu(*args: str) -> str:
    # LUKS key derivation is timed (iter-time); on a loaded machine a run can fail, so
    # a failure is retried before it counts, and printed with qemu-img's own words.
    for _ in range(3):
        done = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout
    print(f"qemu-img {' '.join(args)} failed: {done.stderr.strip()}")  # shown on failure
    done.check_returncode()
    return done.stdout


def qemu_info(path: Path, driver: str | None = None) -> dict[str, object]:
    args = ["info", "--output=json"]
    if driver:
        args += ["-f", driver]
    info: dict[str, object] = json.loads(qemu(*args, str(path)))
    return info


def inspect(
    path: Path,
    declared: str | None = None,
    container: str | None = "bare",
    **policy: object,
) -> InspectionResult:
    policy.setdefault("disk_formats", ALL_FORMATS)
    inspector = StreamInspector(declared, container, FormatPolicy(**policy))  # type: ignore[arg-type]
    total = 0
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            inspector.feed(chunk)
            total += len(chunk)
    return inspector.finish(total)


def refused(path: Path, reason: str, **kwargs: object) -> UnsafeImage:
    with pytest.raises(UnsafeImage) as info:
        inspect(path, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason == reason, info.value.message
    return info.value


def patch(path: Path, offset: int, value: bytes) -> Path:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(value)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24 MiB raw disk: 2 MiB of varied data at the start, one in the middle."""
    path = tmp_path_factory.mktemp("src") / "source.raw"
    pattern = bytes(range(256)) * (MiB // 256)
    with path.open("wb") as f:
        f.write(os.urandom(MiB) + pattern)
        f.seek(12 * MiB)
        f.write(pattern)
        f.truncate(24 * MiB)
    return path


# (qemu-img convert options, Glance disk_format)
CONVERTED = {
    "qcow2": (["-O", "qcow2"], "qcow2"),
    "qcow2 v2 (compat 0.10)": (["-O", "qcow2", "-o", "compat=0.10"], "qcow2"),
    "qcow2 512-byte clusters": (["-O", "qcow2", "-o", "cluster_size=512"], "qcow2"),
    "qcow2 2 MiB clusters": (["-O", "qcow2", "-o", "cluster_size=2M"], "qcow2"),
    "qcow2 zstd compressed": (["-O", "qcow2", "-c", "-o", "compression_type=zstd"], "qcow2"),
    "qcow2 preallocated metadata": (["-O", "qcow2", "-o", "preallocation=metadata"], "qcow2"),
    "qcow2 lazy refcounts": (["-O", "qcow2", "-o", "lazy_refcounts=on"], "qcow2"),
    "vmdk monolithicSparse": (["-O", "vmdk"], "vmdk"),
    "vmdk streamOptimized": (["-O", "vmdk", "-o", "subformat=streamOptimized"], "vmdk"),
    "vhd dynamic": (["-O", "vpc"], "vhd"),
    "vhd fixed": (["-O", "vpc", "-o", "subformat=fixed"], "vhd"),
    "vhd force_size": (["-O", "vpc", "-o", "force_size=on"], "vhd"),
    "vhdx dynamic": (["-O", "vhdx"], "vhdx"),
    "vhdx fixed": (["-O", "vhdx", "-o", "subformat=fixed"], "vhdx"),
    "vhdx 1 MiB blocks": (["-O", "vhdx", "-o", "block_size=1M"], "vhdx"),
    "vdi dynamic": (["-O", "vdi"], "vdi"),
    "vdi static": (["-O", "vdi", "-o", "static=on"], "vdi"),
    "ploop (parallels)": (["-O", "parallels"], "ploop"),
    "raw": (["-O", "raw"], "raw"),
}


@pytest.mark.parametrize("case", sorted(CONVERTED))
def test_converted_images_match_qemu(case: str, source: Path, tmp_path: Path) -> None:
    options, fmt = CONVERTED[case]
    image = tmp_path / "image"
    qemu("convert", "-f", "raw", *options, str(source), str(image))
    expected = qemu_info(image, QEMU_DRIVER.get(fmt, fmt))
    result = inspect(image, declared=fmt)
    assert result == InspectionResult(fmt, expected["virtual-size"])


@pytest.mark.parametrize("size", ["1", "1000", "1M", "3G", "100G", "2T"])
@pytest.mark.parametrize(
    ("driver", "fmt", "options"),
    [
        ("qcow2", "qcow2", []),
        ("vmdk", "vmdk", []),
        ("vmdk", "vmdk", ["-o", "subformat=streamOptimized"]),
        ("vpc", "vhd", []),
        ("vhdx", "vhdx", []),
        ("vdi", "vdi", []),
        ("parallels", "ploop", []),
    ],
)
def test_empty_images_of_many_sizes_match_qemu(
    driver: str, fmt: str, options: list[str], size: str, tmp_path: Path
) -> None:
    image = tmp_path / "image"
    if driver == "vpc" and size == "2T":
        size = "2040G"  # the largest VHD qemu writes
    qemu("create", "-q", "-f", driver, *options, str(image), size)
    expected = qemu_info(image, driver)["virtual-size"]
    result = inspect(image, declared=fmt)
    assert result.format == fmt
    assert result.virtual_size == (expected or None)


def test_qemu_probe_agrees_where_it_can(source: Path, tmp_path: Path) -> None:
    """qemu's own probe names the same format (fixed VHD excepted: qemu sees raw)."""
    for options, fmt in CONVERTED.values():
        if options[-1] == "subformat=fixed" and options[1] == "vpc":
            continue
        image = tmp_path / "probe"
        qemu("convert", "-f", "raw", *options, str(source), str(image))
        probed = qemu_info(image)["format"]
        assert QEMU_DRIVER.get(fmt, fmt) == probed
        image.unlink()


def _iso(path: Path, blocks: int) -> Path:
    data = bytearray(blocks * 2048)
    pvd = 16 * 2048
    data[pvd : pvd + 7] = b"\x01CD001\x01"
    struct.pack_into("<I", data, pvd + 80, blocks)
    struct.pack_into(">I", data, pvd + 84, blocks)
    struct.pack_into("<H", data, pvd + 128, 2048)
    struct.pack_into(">H", data, pvd + 130, 2048)
    data[pvd + 2048 : pvd + 2048 + 7] = b"\xffCD001\x01"
    path.write_bytes(bytes(data))
    return path


def _protective_mbr(path: Path, size: int) -> Path:
    mbr = bytearray(512)
    struct.pack_into("<B3BB3BII", mbr, 446, 0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1, size // 512 - 1)
    mbr[510:512] = b"\x55\xaa"
    path.write_bytes(bytes(mbr) + bytes(size - 512))
    return path


def test_iso_size_is_the_file_size_as_qemu_reports(tmp_path: Path) -> None:
    image = _iso(tmp_path / "disc.iso", 300)
    assert qemu_info(image)["format"] == "raw"
    assert inspect(image, declared="iso") == InspectionResult(
        "iso", qemu_info(image)["virtual-size"]
    )


def test_gpt_disk_is_raw_to_qemu(tmp_path: Path) -> None:
    image = _protective_mbr(tmp_path / "disk.img", 8 * MiB)
    expected = qemu_info(image)
    assert expected["format"] == "raw"
    assert inspect(image, declared="raw") == InspectionResult("gpt", expected["virtual-size"])
    assert inspect(image, declared="gpt").format == "gpt"


def test_luks_matches_qemu_when_encryption_is_allowed(tmp_path: Path) -> None:
    image = tmp_path / "disk.luks"
    secret = "--object", "secret,id=s0,data=swordfish"
    qemu(
        "create", "-q", "-f", "luks", *secret, "-o", "key-secret=s0,iter-time=100",
        str(image), "16M",
    )
    info = json.loads(
        qemu(
            "info", "--output=json", *secret, "--image-opts",
            f"driver=luks,key-secret=s0,file.filename={image}",
        )
    )  # fmt: skip
    result = inspect(image, declared="luks", allow_encrypted=True)
    assert result == InspectionResult("luks", info["virtual-size"])
    refused(image, "encrypted", declared="luks")


# -- hostile images ----------------------------------------------------------------


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., Path]:
    def create(name: str, driver: str, *options: str, size: str = "16M") -> Path:
        path = tmp_path / name
        qemu("create", "-q", "-f", driver, *options, str(path), size)
        return path

    return create


@pytest.mark.parametrize("container", ["bare", "ovf", "ova", "docker", "compressed"])
def test_qcow2_backing_file_pointing_at_etc_passwd(
    make: Callable[..., Path], container: str
) -> None:
    image = make("child.qcow2", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw")
    assert qemu_info(image)["backing-filename"] == "/etc/passwd"
    refused(image, "backing_file", declared="qcow2", container=container)
    refused(image, "backing_file", declared="raw", container=container)


def test_qcow2_backing_file_with_format_match_off(make: Callable[..., Path]) -> None:
    base = make("base.qcow2", "qcow2")
    image = make("child.qcow2", "qcow2", "-b", str(base), "-F", "qcow2")
    refused(image, "backing_file", declared="raw", require_image_format_match=False)


@pytest.mark.parametrize("raw", ["off", "on"])
def test_qcow2_external_data_file(make: Callable[..., Path], tmp_path: Path, raw: str) -> None:
    data_file = tmp_path / "data"
    image = make("ext.qcow2", "qcow2", "-o", f"data_file={data_file},data_file_raw={raw}")
    refused(image, "data_file", declared="qcow2")


def test_qcow2_extended_l2_is_an_unknown_feature_as_in_glance(make: Callable[..., Path]) -> None:
    refused(
        make("xl2.qcow2", "qcow2", "-o", "extended_l2=on"), "unknown_features", declared="qcow2"
    )


def test_qcow2_encrypted(make: Callable[..., Path]) -> None:
    image = make(
        "enc.qcow2", "qcow2", "--object", "secret,id=s0,data=x",
        "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=100",
    )  # fmt: skip
    refused(image, "encrypted", declared="qcow2")
    assert inspect(image, declared="qcow2", allow_encrypted=True).format == "qcow2"


def test_vmdk_with_a_parent(make: Callable[..., Path]) -> None:
    base = make("base.vmdk", "vmdk")
    image = make("child.vmdk", "vmdk", "-b", str(base), "-F", "vmdk")
    assert qemu_info(image)["backing-filename"] == str(base)
    refused(image, "backing_file", declared="vmdk")


def test_vmdk_flat_extent_pointing_at_etc_passwd(make: Callable[..., Path]) -> None:
    image = make("flat.vmdk", "vmdk", "-o", "subformat=monolithicFlat", size="1M")
    text = image.read_text()
    flat_name = image.name.replace(".vmdk", "-flat.vmdk")
    image.write_text(text.replace(f'"{flat_name}"', '"/etc/passwd"'))
    # qemu would read the host file as the disk:
    extents = qemu_info(image, "vmdk")["format-specific"]["data"]["extents"]  # type: ignore[index]
    assert extents[0]["filename"] == "/etc/passwd"
    refused(image, "vmdk_extent", declared="vmdk")
    refused(image, "vmdk_extent", declared="raw")
    refused(image, "vmdk_extent", declared="vmdk", vmdk_allowed_types=("monolithicFlat",))


def test_vmdk_split_sparse(make: Callable[..., Path], tmp_path: Path) -> None:
    descriptor = make("split.vmdk", "vmdk", "-o", "subformat=twoGbMaxExtentSparse")
    refused(descriptor, "vmdk_extent", declared="vmdk")
    extent = tmp_path / "split-s001.vmdk"
    refused(extent, "bad_header", declared="vmdk")


def test_vmdk_type_not_allowed(make: Callable[..., Path]) -> None:
    image = make("sparse.vmdk", "vmdk")
    refused(image, "vmdk_type", declared="vmdk", vmdk_allowed_types=("streamOptimized",))
    refused(image, "vmdk_type", declared="vmdk", vmdk_allowed_types=())


def test_qed_is_banned(make: Callable[..., Path]) -> None:
    refused(make("disk.qed", "qed"), "banned_format", declared="raw")


def test_polyglot_qcow2_and_iso(make: Callable[..., Path], tmp_path: Path) -> None:
    image = make("poly.qcow2", "qcow2", size="64M")
    iso = _iso(tmp_path / "x.iso", 20).read_bytes()
    patch(image, 32 * 1024, iso[32 * 1024 : 36 * 1024])
    assert qemu_info(image)["format"] == "qcow2"  # qemu does not notice
    refused(image, "multiple_formats", declared="qcow2")
    refused(image, "multiple_formats", declared="iso")


def test_polyglot_qcow2_with_a_fixed_vhd_footer(make: Callable[..., Path]) -> None:
    image = make("poly.qcow2", "qcow2")
    vhd = make("fixed.vhd", "vpc", "-o", "subformat=fixed", size="1M")
    with image.open("ab") as f:
        f.write(vhd.read_bytes()[-512:])
    refused(image, "multiple_formats", declared="qcow2")
    refused(image, "multiple_formats", declared="vhd")


def test_raw_declared_but_qcow2(make: Callable[..., Path]) -> None:
    with pytest.raises(FormatMismatch):
        inspect(make("disk.qcow2", "qcow2"), declared="raw")


def test_qcow2_declared_but_vmdk(make: Callable[..., Path]) -> None:
    with pytest.raises(FormatMismatch):
        inspect(make("disk.vmdk", "vmdk"), declared="qcow2")


@pytest.mark.parametrize(
    ("driver", "options", "fmt", "keep"),
    [
        ("qcow2", [], "qcow2", 300),
        ("qcow2", [], "qcow2", 40 * 1024),
        ("vmdk", [], "vmdk", 700),
        ("vpc", [], "vhd", -512),
        ("vhdx", [], "vhdx", MiB),
        ("vdi", [], "vdi", 300),
        ("parallels", [], "ploop", 40),
    ],
)
def test_truncated_images(
    make: Callable[..., Path], driver: str, options: list[str], fmt: str, keep: int
) -> None:
    image = make("cut", driver, *options, size="64M")
    data = image.read_bytes()
    image.write_bytes(data[:keep])
    refused(image, "bad_header", declared=fmt)


def test_stream_optimized_vmdk_claiming_a_missing_footer(source: Path, tmp_path: Path) -> None:
    image = tmp_path / "so.vmdk"
    qemu("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
         str(source), str(image))  # fmt: skip
    assert inspect(image, declared="vmdk").format == "vmdk"
    # Claim the grain directory is in a footer: the stream has none.
    patch(image, 56, struct.pack("<Q", 2**64 - 1))
    refused(image, "bad_header", declared="vmdk")


def _u64_be(value: int) -> bytes:
    return struct.pack(">Q", value)


def test_qcow2_size_beyond_int64(make: Callable[..., Path]) -> None:
    image = patch(make("big.qcow2", "qcow2"), 24, _u64_be(2**63 + 2**20))
    refused(image, "size_too_large", declared="qcow2")


def test_qcow2_size_beyond_its_tables(make: Callable[..., Path]) -> None:
    image = patch(make("lie.qcow2", "qcow2", size="1M"), 24, _u64_be(1 << 50))
    with pytest.raises(subprocess.CalledProcessError):
        qemu_info(image)  # qemu refuses it too
    refused(image, "bad_header", declared="qcow2")


def test_qcow2_l1_table_outside_the_file(make: Callable[..., Path]) -> None:
    image = patch(make("l1.qcow2", "qcow2"), 40, _u64_be(1 << 40))
    refused(image, "bad_header", declared="qcow2")


def test_vdi_disk_larger_than_its_blocks(make: Callable[..., Path]) -> None:
    image = patch(make("lie.vdi", "vdi"), 0x170, struct.pack("<Q", 1 << 40))
    refused(image, "bad_header", declared="vdi")


def test_vmdk_capacity_larger_than_its_descriptor(make: Callable[..., Path]) -> None:
    image = patch(make("lie.vmdk", "vmdk"), 12, struct.pack("<Q", 1 << 40))
    refused(image, "bad_header", declared="vmdk")


def test_vhd_footer_copy_differs(make: Callable[..., Path]) -> None:
    image = make("lie.vhd", "vpc")
    data = bytearray(image.read_bytes())
    data[-512 + 48 : -512 + 56] = _u64_be(1 << 40)  # end footer's current_size
    image.write_bytes(bytes(data))
    refused(image, "bad_header", declared="vhd")


def test_vhdx_log_to_replay(make: Callable[..., Path]) -> None:
    image = make("log.vhdx", "vhdx")
    for header in (64 * 1024, 128 * 1024):
        patch(image, header + 48, b"\x01" * 16)  # log_guid
    refused(image, "bad_header", declared="vhdx")
