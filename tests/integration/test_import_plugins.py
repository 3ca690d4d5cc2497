"""Import plugins on real files: qemu-img conversion, decompression, metadata injection.

The conversion tests run the real qemu-img (``scripts/install-qemu``). They are
skipped when it is missing, except under CI, where a missing qemu-img fails them.
Some tests put a small shell script in front of qemu-img to log its calls, or to
misbehave on ``convert`` (spin, sleep, fail) while ``info`` stays real.
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import io
import lzma
import os
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from glimpse.config import DEFAULT_DISK_FORMATS, ImportSettings, load_settings
from glimpse.domain.errors import FormatMismatch, InvalidImageData, RequestTooLarge, UnsafeImage
from glimpse.formats.stream import FormatPolicy
from glimpse.image_import.job import ImportJob
from glimpse.image_import.plugins import build_plugins
from glimpse.image_import.plugins.image_conversion import ImageConversionPlugin
from glimpse.image_import.plugins.image_decompression import ImageDecompressionPlugin
from glimpse.image_import.plugins.inject_image_metadata import InjectImageMetadataPlugin
from glimpse.image_import.plugins.no_op import NoOpPlugin

MiB = 1024 * 1024
POLICY = FormatPolicy(disk_formats=tuple(DEFAULT_DISK_FORMATS))
SETTINGS = ImportSettings()


def make_job(
    path: Path, disk_format: str | None, container: str = "bare", **kw: object
) -> ImportJob:
    return ImportJob(
        image_id="11111111-2222-3333-4444-555555555555",
        task_id="66666666-7777-8888-9999-000000000000",
        method="glance-direct",
        path=path,
        disk_format=disk_format,
        container_format=container,
        owner="project-a",
        **kw,  # type: ignore[arg-type]
    )


def disk_content(size: int = 8 * MiB) -> bytes:
    """A disk with data in a few places and holes between (so sparseness matters)."""
    data = bytearray(size)
    for offset in (0, size // 2 + 4096, size - 65536):
        data[offset : offset + 65536] = os.urandom(65536)
    return bytes(data)


def leftovers(directory: Path, *expected: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p not in expected)


# -- qemu-img ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-img is missing; CI must install it (scripts/install-qemu)")
        pytest.skip("qemu-img is not installed (scripts/install-qemu installs it)")
    return path


def qemu(qemu_img: str, *args: str | Path) -> str:
    return subprocess.run(
        [qemu_img, *map(str, args)], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Where test inputs are made; the staging directory is separate."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    path = tmp_path / "staging"
    path.mkdir()
    return path


def stage(staging: Path, source: Path | bytes) -> Path:
    staged = staging / "11111111-2222-3333-4444-555555555555"
    if isinstance(source, bytes):
        staged.write_bytes(source)
    else:
        shutil.copyfile(source, staged)
    return staged


def converter(qemu_img: str, output: str = "raw", **limits: int) -> ImageConversionPlugin:
    values = {"cpu_seconds": 60, "memory_mib": 2048} | limits
    return ImageConversionPlugin(output, POLICY, qemu_img=qemu_img, **values)


@pytest.fixture
def wrapped_qemu(tmp_path: Path, qemu_img: str) -> Callable[[str], tuple[str, Path]]:
    """A qemu-img that logs each call and runs ``convert_body`` instead of convert."""

    def make(convert_body: str = "") -> tuple[str, Path]:
        log = tmp_path / "qemu-calls.log"
        script = tmp_path / "qemu-img"
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> "{log}"\n'
            f'if [ "$1" = convert ]; then\n{convert_body or ":"}\nfi\n'
            f'exec "{qemu_img}" "$@"\n'
        )
        script.chmod(0o755)
        log.touch()
        return str(script), log

    return make


def make_image(qemu_img: str, work: Path, fmt: str, content: bytes) -> Path:
    """``content`` as a ``fmt`` image: qemu-img create, then convert the data into it."""
    data = work / "content.raw"
    data.write_bytes(content)
    image = work / f"image.{fmt}"
    qemu(qemu_img, "create", "-f", fmt, image, str(len(content)))
    qemu(qemu_img, "convert", "-n", "-f", "raw", "-O", fmt, data, image)
    return image


@pytest.mark.parametrize(
    ("qemu_format", "disk_format"),
    [("qcow2", "qcow2"), ("vpc", "vhd"), ("vmdk", "vmdk"), ("vdi", "vdi"), ("vhdx", "vhdx")],
)
async def test_converts_to_raw_matching_qemu_img_convert(
    qemu_img: str, work: Path, staging: Path, qemu_format: str, disk_format: str
) -> None:
    content = disk_content()
    image = make_image(qemu_img, work, qemu_format, content)
    expected = work / "expected.raw"
    qemu(qemu_img, "convert", "-f", qemu_format, "-O", "raw", image, expected)
    staged = stage(staging, image)
    job = make_job(staged, disk_format)

    await converter(qemu_img).run(job)

    assert staged.read_bytes() == expected.read_bytes()
    assert job.disk_format == "raw"
    assert job.container_format == "bare"
    assert job.virtual_size == expected.stat().st_size
    assert leftovers(staging, staged) == []
    if qemu_format in ("qcow2", "vdi"):  # formats whose virtual size is exactly ours
        assert staged.read_bytes() == content
        assert job.virtual_size == len(content)


async def test_guide_flow_qcow2_import_becomes_raw(
    qemu_img: str, work: Path, staging: Path
) -> None:
    """Guide 3.4.1/3.4.3: a qcow2 imported with conversion on is stored as raw, the same
    bytes ``qemu-img convert -f qcow2 -O raw`` makes, and the qcow2 is not kept."""
    image = work / "cirros.qcow2"
    qemu(qemu_img, "create", "-f", "qcow2", image, "16M")
    payload = work / "payload.raw"
    payload.write_bytes(disk_content(16 * MiB))
    qemu(qemu_img, "convert", "-n", "-f", "raw", "-O", "qcow2", payload, image)
    expected = work / "expected.raw"
    qemu(qemu_img, "convert", "-p", "-f", "qcow2", "-O", "raw", image, expected)
    staged = stage(staging, image)
    job = make_job(staged, "qcow2")

    [plugin] = build_plugins(["image_conversion"], SETTINGS, POLICY, 1 << 40)
    await plugin.run(job)

    assert staged.read_bytes() == expected.read_bytes() == payload.read_bytes()
    assert (job.disk_format, job.virtual_size) == ("raw", 16 * MiB)
    assert leftovers(staging, staged) == []
    info = qemu(qemu_img, "info", "-f", "raw", "--output=json", staged)
    assert '"virtual-size": 16777216' in info


async def test_converts_raw_to_qcow2_when_that_is_the_output(
    qemu_img: str, work: Path, staging: Path
) -> None:
    content = disk_content()
    staged = stage(staging, content)
    job = make_job(staged, "raw")

    await converter(qemu_img, "qcow2").run(job)

    assert staged.read_bytes()[:4] == b"QFI\xfb"
    assert job.disk_format == "qcow2"
    assert job.virtual_size == len(content)
    back = work / "back.raw"
    qemu(qemu_img, "convert", "-f", "qcow2", "-O", "raw", staged, back)
    assert back.read_bytes() == content
    assert leftovers(staging, staged) == []


async def test_data_already_in_the_output_format_is_left_alone(
    qemu_img: str, staging: Path, wrapped_qemu: Callable[[str], tuple[str, Path]]
) -> None:
    program, log = wrapped_qemu("")
    content = disk_content(2 * MiB)
    staged = stage(staging, content)
    before = staged.stat()
    job = make_job(staged, "raw")

    await converter(program).run(job)

    assert staged.read_bytes() == content
    assert staged.stat().st_ino == before.st_ino
    assert job.disk_format == "raw"
    assert job.virtual_size == len(content)
    assert log.read_text() == ""  # qemu-img never ran


@pytest.mark.parametrize("declared", ["ami", "aki", "ari"])
async def test_raw_like_formats_are_already_raw(
    qemu_img: str, staging: Path, declared: str
) -> None:
    staged = stage(staging, disk_content(MiB))
    job = make_job(staged, declared)
    await converter(qemu_img).run(job)
    assert job.disk_format == declared


async def test_mismatch_allowed_raw_data_declared_qcow2_is_recorded_as_raw(
    qemu_img: str, staging: Path
) -> None:
    content = disk_content(MiB)
    staged = stage(staging, content)
    job = make_job(staged, "qcow2")
    lenient = replace(POLICY, require_image_format_match=False)
    await ImageConversionPlugin("raw", lenient, cpu_seconds=60, memory_mib=1024).run(job)
    assert staged.read_bytes() == content
    assert (job.disk_format, job.virtual_size) == ("raw", MiB)


async def test_mismatch_allowed_qcow2_data_declared_raw_is_converted_from_what_it_is(
    qemu_img: str, work: Path, staging: Path
) -> None:
    content = disk_content()
    staged = stage(staging, make_image(qemu_img, work, "qcow2", content))
    job = make_job(staged, "raw")
    lenient = replace(POLICY, require_image_format_match=False)
    await ImageConversionPlugin("raw", lenient, cpu_seconds=60, memory_mib=1024).run(job)
    assert staged.read_bytes() == content
    assert job.disk_format == "raw"


async def test_iso_is_not_converted(
    qemu_img: str, staging: Path, wrapped_qemu: Callable[[str], tuple[str, Path]]
) -> None:
    program, log = wrapped_qemu("")
    data = iso_image()
    staged = stage(staging, data)
    job = make_job(staged, "iso")

    await converter(program).run(job)

    assert staged.read_bytes() == data
    assert job.disk_format == "iso"
    assert job.virtual_size == len(data)
    assert log.read_text() == ""


async def test_qcow2_with_a_backing_file_is_refused_before_conversion(
    qemu_img: str, work: Path, staging: Path, wrapped_qemu: Callable[[str], tuple[str, Path]]
) -> None:
    base = work / "base.qcow2"
    qemu(qemu_img, "create", "-f", "qcow2", base, "8M")
    overlay = work / "overlay.qcow2"
    qemu(qemu_img, "create", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
    staged = stage(staging, overlay)
    original = staged.read_bytes()
    program, log = wrapped_qemu("")
    job = make_job(staged, "qcow2")

    with pytest.raises(UnsafeImage) as info:
        await converter(program).run(job)

    assert info.value.reason == "backing_file"
    assert log.read_text() == ""  # refused by inspection; qemu-img never saw it
    assert staged.read_bytes() == original
    assert job.disk_format == "qcow2"
    assert leftovers(staging, staged) == []


async def test_declared_format_must_match_the_data(qemu_img: str, staging: Path) -> None:
    staged = stage(staging, disk_content(MiB))
    with pytest.raises(FormatMismatch):
        await converter(qemu_img).run(make_job(staged, "qcow2"))
    assert leftovers(staging, staged) == []


async def test_small_qcow2_of_a_huge_disk_is_refused_before_conversion(
    qemu_img: str, work: Path, staging: Path, wrapped_qemu: Callable[[str], tuple[str, Path]]
) -> None:
    image = work / "huge.qcow2"
    qemu(qemu_img, "create", "-f", "qcow2", image, "1T")
    staged = stage(staging, image)
    program, log = wrapped_qemu("")
    plugin = ImageConversionPlugin(
        "raw", POLICY, cpu_seconds=60, memory_mib=1024, size_cap=64 * MiB, qemu_img=program
    )
    with pytest.raises(RequestTooLarge, match="would be 1099511627776 bytes, more than"):
        await plugin.run(make_job(staged, "qcow2"))
    assert log.read_text() == ""
    assert leftovers(staging, staged) == []


async def test_converted_output_over_the_cap_is_refused(
    qemu_img: str, work: Path, staging: Path
) -> None:
    content = os.urandom(4 * MiB)  # incompressible: the qcow2 is about as large
    staged = stage(staging, content)
    original = staged.read_bytes()
    plugin = ImageConversionPlugin(
        "qcow2", POLICY, cpu_seconds=60, memory_mib=1024, size_cap=4 * MiB, qemu_img=qemu_img
    )
    with pytest.raises(RequestTooLarge, match="converted to qcow2 is .* bytes, more than"):
        await plugin.run(make_job(staged, "raw"))
    assert staged.read_bytes() == original
    assert leftovers(staging, staged) == []


async def test_qemu_img_over_its_memory_limit_fails_cleanly(
    qemu_img: str, work: Path, staging: Path
) -> None:
    image = make_image(qemu_img, work, "qcow2", disk_content())
    staged = stage(staging, image)
    original = staged.read_bytes()
    job = make_job(staged, "qcow2")

    with pytest.raises(InvalidImageData, match="Image conversion failed: qemu-img") as info:
        await converter(qemu_img, memory_mib=16).run(job)

    assert "16 MiB" in info.value.message or "exit status" in info.value.message
    assert staged.read_bytes() == original
    assert job.disk_format == "qcow2"
    assert job.virtual_size is None
    assert leftovers(staging, staged) == []


async def test_qemu_img_over_its_cpu_limit_is_killed_and_fails_cleanly(
    qemu_img: str,
    work: Path,
    staging: Path,
    wrapped_qemu: Callable[[str], tuple[str, Path]],
) -> None:
    program, log = wrapped_qemu("while :; do :; done")  # convert spins forever
    staged = stage(staging, make_image(qemu_img, work, "qcow2", disk_content()))
    original = staged.read_bytes()
    job = make_job(staged, "qcow2")

    with pytest.raises(InvalidImageData, match="killed by SIGXCPU") as info:
        await asyncio.wait_for(converter(program, cpu_seconds=1).run(job), 30)

    assert "1 CPU seconds" in info.value.message
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["info", "convert"]
    assert staged.read_bytes() == original
    assert leftovers(staging, staged) == []


async def test_qemu_img_failure_carries_its_trimmed_stderr(
    qemu_img: str, work: Path, staging: Path, wrapped_qemu: Callable[[str], tuple[str, Path]]
) -> None:
    program, _ = wrapped_qemu(
        "i=0; while [ $i -lt 500 ]; do echo 'noise noise noise' >&2; i=$((i+1)); done\n"
        "echo 'qemu-img: Could not open: boom' >&2; exit 1"
    )
    staged = stage(staging, make_image(qemu_img, work, "qcow2", disk_content()))
    job = make_job(staged, "qcow2")

    with pytest.raises(InvalidImageData) as info:
        await converter(program).run(job)

    message = info.value.message
    assert message.startswith("Image conversion failed: qemu-img convert failed with exit status 1")
    assert message.endswith("qemu-img: Could not open: boom")
    assert len(message) < 2200
    assert leftovers(staging, staged) == []


async def test_cancelled_conversion_kills_qemu_img_and_cleans_up(
    qemu_img: str, work: Path, staging: Path, wrapped_qemu: Callable[[str], tuple[str, Path]]
) -> None:
    pidfile = work / "convert.pid"
    program, log = wrapped_qemu(f'echo $$ > "{pidfile}"; exec sleep 60')
    staged = stage(staging, make_image(qemu_img, work, "qcow2", disk_content()))
    original = staged.read_bytes()
    task = asyncio.create_task(converter(program).run(make_job(staged, "qcow2")))
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.05)
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone (and reaped)
    assert staged.read_bytes() == original
    assert leftovers(staging, staged) == []


def iso_image(blocks: int = 64) -> bytes:
    """An ISO 9660 primary volume descriptor at 32 KiB and a terminator after it."""
    data = bytearray(blocks * 2048)
    pvd = bytearray(2048)
    pvd[0:7] = b"\x01CD001\x01"
    struct.pack_into("<I", pvd, 80, blocks)
    struct.pack_into(">I", pvd, 84, blocks)
    struct.pack_into("<H", pvd, 128, 2048)
    struct.pack_into(">H", pvd, 130, 2048)
    data[32 * 1024 : 34 * 1024] = pvd
    data[34 * 1024 : 34 * 1024 + 7] = b"\xffCD001\x01"
    return bytes(data)


# -- decompression ---------------------------------------------------------------------


def zipped(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "zip": lambda data: zipped(("disk.img", data)),
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
async def test_decompression_round_trip(staging: Path, kind: str) -> None:
    content = disk_content(4 * MiB)
    staged = stage(staging, COMPRESSORS[kind](content))
    staged.chmod(0o640)
    job = make_job(staged, "raw")

    await ImageDecompressionPlugin(size_cap=64 * MiB).run(job)

    assert staged.read_bytes() == content
    assert staged.stat().st_mode & 0o777 == 0o640
    assert leftovers(staging, staged) == []
    assert job.messages == [f"image_decompression: {kind} data decompressed"]


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
async def test_decompression_bomb_over_the_cap_is_refused(staging: Path, kind: str) -> None:
    bomb = COMPRESSORS[kind](bytes(64 * MiB))
    assert len(bomb) < MiB
    staged = stage(staging, bomb)

    with pytest.raises(RequestTooLarge, match="more than the image size cap of 8388608"):
        await ImageDecompressionPlugin(size_cap=8 * MiB).run(make_job(staged, "raw"))

    assert staged.read_bytes() == bomb
    assert leftovers(staging, staged) == []


async def test_decompressed_size_exactly_at_the_cap_is_accepted(staging: Path) -> None:
    staged = stage(staging, gzip.compress(bytes(MiB)))
    await ImageDecompressionPlugin(size_cap=MiB).run(make_job(staged, "raw"))
    assert staged.stat().st_size == MiB


async def test_concatenated_gzip_members_all_decompress(staging: Path) -> None:
    staged = stage(staging, gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 1000))
    await ImageDecompressionPlugin(size_cap=MiB).run(make_job(staged, "raw"))
    assert staged.read_bytes() == b"a" * 1000 + b"b" * 1000


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (gzip.compress(bytes(MiB))[:-100], "gzip-compressed but cannot be decompressed"),
        (b"\x1f\x8b\x08" + bytes(100), "gzip-compressed but cannot be decompressed"),
        (lzma.compress(b"x" * 100000)[:50], "xz-compressed but cannot be decompressed"),
        (zipped(("a", b"1"), ("b", b"2")), "holds 2 entries"),
        (zipped(("dir/", b"")), "holds a directory"),
        (b"PK\x03\x04" + bytes(200), "zip-compressed but cannot be decompressed"),
    ],
)
async def test_damaged_or_unsupported_archives_are_refused(
    staging: Path, data: bytes, why: str
) -> None:
    staged = stage(staging, data)
    with pytest.raises(InvalidImageData, match=why):
        await ImageDecompressionPlugin(size_cap=64 * MiB).run(make_job(staged, "raw"))
    assert staged.read_bytes() == data
    assert leftovers(staging, staged) == []


async def test_zip_with_a_corrupted_member_is_refused(staging: Path) -> None:
    data = bytearray(zipped(("disk.img", os.urandom(100000))))
    data[200] ^= 0xFF  # inside the compressed member
    staged = stage(staging, bytes(data))
    with pytest.raises(InvalidImageData, match="cannot be decompressed"):
        await ImageDecompressionPlugin(size_cap=64 * MiB).run(make_job(staged, "raw"))
    assert leftovers(staging, staged) == []


async def test_uncompressed_data_is_untouched(staging: Path) -> None:
    for data in (disk_content(MiB), b"", b"\x1f\x8b", b"BZh9 not bzip2"):
        staged = stage(staging, data)
        inode = staged.stat().st_ino
        job = make_job(staged, "raw")
        await ImageDecompressionPlugin(size_cap=64 * MiB).run(job)
        assert staged.read_bytes() == data
        assert staged.stat().st_ino == inode
        assert job.messages == []


async def test_compressed_container_format_is_left_compressed(staging: Path) -> None:
    data = gzip.compress(bytes(MiB))
    staged = stage(staging, data)
    await ImageDecompressionPlugin(size_cap=64 * MiB).run(
        make_job(staged, "raw", container="compressed")
    )
    assert staged.read_bytes() == data


async def test_decompression_then_conversion(qemu_img: str, work: Path, staging: Path) -> None:
    """A gzipped qcow2 goes through both plugins, in the configured order."""
    content = disk_content()
    image = make_image(qemu_img, work, "qcow2", content)
    staged = stage(staging, gzip.compress(image.read_bytes()))
    job = make_job(staged, "qcow2")
    plugins = build_plugins(["image_decompression", "image_conversion"], SETTINGS, POLICY, 1 << 30)
    for plugin in plugins:
        await plugin.run(job)
    assert staged.read_bytes() == content
    assert job.disk_format == "raw"


# -- inject_image_metadata (guide 4.3) ----------------------------------------------------


def guide_settings(tmp_path: Path) -> ImportSettings:
    conf = tmp_path / "glance-image-import.conf"
    conf.write_text(
        "[DEFAULT]\n"
        "[image_conversion]\n"
        "[image_import_opts]\n"
        "image_import_plugins = [inject_image_metadata]\n"
        "[import_filtering_opts]\n"
        "[inject_metadata_properties]\n"
        "ignore_user_roles = admin\n"
        "inject = PROPERTY1:value,PROPERTY2:value;another value\n"
    )
    return load_settings([str(conf)], {}).imports


async def test_guide_injection_for_a_non_admin_caller(tmp_path: Path) -> None:
    settings = guide_settings(tmp_path)
    plugins = build_plugins(settings.plugins, settings, POLICY, MiB)
    assert [p.name for p in plugins] == ["inject_image_metadata"]
    job = make_job(tmp_path / "x", "raw", roles=("member", "reader"))
    job.properties["existing"] = "kept"
    await plugins[0].run(job)
    assert job.properties == {
        "existing": "kept",
        "PROPERTY1": "value",
        "PROPERTY2": "value;another value",
    }


@pytest.mark.parametrize("roles", [("admin",), ("member", "admin"), ("Admin",)])
async def test_guide_injection_skips_callers_with_an_ignored_role(
    tmp_path: Path, roles: tuple[str, ...]
) -> None:
    settings = guide_settings(tmp_path)
    [plugin] = build_plugins(settings.plugins, settings, POLICY, MiB)
    job = make_job(tmp_path / "x", "raw", roles=roles)
    await plugin.run(job)
    assert job.properties == {}


async def test_injection_overrides_the_image_and_drops_reserved_keys(tmp_path: Path) -> None:
    plugin = InjectImageMetadataPlugin(
        {"hw_machine_type": "q35", "os_glance_importing_to_stores": "x"}, ignore_user_roles=()
    )
    job = make_job(tmp_path / "x", "raw", roles=("admin",))
    job.properties["hw_machine_type"] = "pc"
    await plugin.run(job)
    assert job.properties == {"hw_machine_type": "q35"}
    assert "os_glance_importing_to_stores" in job.messages[0]


async def test_nothing_to_inject_is_a_no_op(tmp_path: Path) -> None:
    job = make_job(tmp_path / "x", "raw", roles=("member",))
    await InjectImageMetadataPlugin({}, ("admin",)).run(job)
    await NoOpPlugin().run(job)
    assert job.properties == {} and job.messages == []


# -- build_plugins ------------------------------------------------------------------------


def test_build_plugins_keeps_the_configured_order() -> None:
    names = ["no_op", "inject_image_metadata", "image_decompression", "no_op"]
    plugins = build_plugins(names, SETTINGS, POLICY, MiB)
    assert [p.name for p in plugins] == names
    assert build_plugins([], SETTINGS, POLICY, MiB) == []


def test_build_plugins_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown plugins: 'image_convertion'.*known plugins"):
        build_plugins(["no_op", "image_convertion"], SETTINGS, POLICY, MiB)


def test_build_plugins_refuses_an_output_format_that_is_not_enabled(qemu_img: str) -> None:
    policy = FormatPolicy(disk_formats=("qcow2", "iso"))
    with pytest.raises(ValueError, match="output_format 'raw' is not among the enabled"):
        build_plugins(["image_conversion"], SETTINGS, policy, MiB)
    settings = replace(SETTINGS, conversion_output_format="qcow2")
    [plugin] = build_plugins(["image_conversion"], settings, policy, MiB)
    assert isinstance(plugin, ImageConversionPlugin) and plugin.output_format == "qcow2"


def test_build_plugins_passes_the_limits_and_the_cap(qemu_img: str) -> None:
    settings = replace(SETTINGS, qemu_img_cpu_seconds=7, qemu_img_memory_mib=333)
    conversion, decompression = build_plugins(
        ["image_conversion", "image_decompression"], settings, POLICY, 12345
    )
    assert isinstance(conversion, ImageConversionPlugin)
    assert (conversion.cpu_seconds, conversion.memory_mib) == (7, 333)
    assert conversion.size_cap == 12345
    assert isinstance(decompression, ImageDecompressionPlugin)
    assert decompression.size_cap == 12345
