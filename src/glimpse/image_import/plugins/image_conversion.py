"""``image_conversion`` (guide 1.4, 3.4): imported data becomes ``[image_conversion]
output_format`` (raw by default) with qemu-img. Import only; never on plain upload.

Steps, each refusing with a clear error and leaving the staged file as it was:

1. Inspect the staged file with :class:`StreamInspector` against the declared
   disk_format and the format policy; unsafe data (backing files, data files, VMDK
   extents elsewhere, polyglots, a format mismatch...) is refused with the
   inspector's own error before qemu-img ever sees it.
2. Nothing to convert: an ISO (attached as a CD-ROM, never converted), LUKS (needs
   its key), data inside an archive container (ova, docker, compressed), or data
   already in the output format (a partitioned raw disk counts as raw). Only
   ``virtual_size`` is recorded.
3. ``qemu-img info -f <detected>`` must agree there is no backing file or external
   data file (Glance's second opinion); then ``qemu-img convert -f <detected> -O
   <output>`` into a temporary file beside the staged one. The format is always
   given, never probed.
   A raw output larger than the image size cap is refused before qemu-img runs
   (a small qcow2 can describe a huge disk), any output after it.
4. The output is inspected too and must be the output format; it then replaces the
   staged file atomically, and the job records disk_format = output format,
   container_format = bare (as Glance) and the new virtual size.

qemu-img runs with resource limits set by a tiny exec wrapper (``setrlimit`` then
``execvp``; safer than ``preexec_fn`` in a threaded process): CPU seconds
(``[glimpse] qemu_img_cpu_seconds``) and address space (``qemu_img_memory_mib``). A
run that fails or hits a limit is refused with :class:`InvalidImageData` carrying
qemu-img's trimmed stderr. The temporary file is always removed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from glimpse.domain.errors import InvalidImageData, RequestTooLarge
from glimpse.formats.stream import (
    ARCHIVE_CONTAINERS,
    RAW_LIKE,
    FormatPolicy,
    InspectionResult,
    StreamInspector,
)
from glimpse.image_import.job import ImportJob
from glimpse.image_import.plugins.offload import check_stop, run_blocking

CHUNK_SIZE = 1024 * 1024
OUTPUT_FORMATS = ("raw", "qcow2", "vmdk")
# Detected format -> qemu-img's driver name.
QEMU_FORMATS = {
    "raw": "raw",
    "gpt": "raw",
    "qcow2": "qcow2",
    "vmdk": "vmdk",
    "vhd": "vpc",
    "vhdx": "vhdx",
    "vdi": "vdi",
    "ploop": "parallels",
}
NOT_CONVERTED = {"iso": "ISO images are not converted", "luks": "LUKS needs its key"}
STDERR_LIMIT = 2000
ALREADY = "already in the output format"

# argv: cpu_seconds address_space_bytes program args...
_LIMITED_EXEC = """\
import os, resource, sys
cpu, mem = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
os.execvp(sys.argv[3], sys.argv[3:])
"""


class ImageConversionPlugin:
    name = "image_conversion"

    def __init__(
        self,
        output_format: str,
        policy: FormatPolicy,
        *,
        cpu_seconds: int,
        memory_mib: int,
        size_cap: int | None = None,
        qemu_img: str = "qemu-img",
    ) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"[image_conversion] output_format {output_format!r} is not one of "
                + ", ".join(OUTPUT_FORMATS)
            )
        self.output_format = output_format
        self.policy = policy
        self.cpu_seconds = cpu_seconds
        self.memory_mib = memory_mib
        self.size_cap = size_cap
        self.qemu_img = qemu_img

    async def run(self, job: ImportJob) -> None:
        source = await _inspect(job.path, job.disk_format, job.container_format, self.policy)
        reason = self._why_not_convert(source.format, job.container_format)
        if reason:
            job.virtual_size = source.virtual_size
            job.messages.append(f"image_conversion: not converted ({reason})")
            if reason == ALREADY and not _names_content(job.disk_format, self.output_format):
                # only with require_image_format_match off: say what the data is
                output = self.output_format
                relabelled = await _inspect(job.path, output, job.container_format, self.policy)
                job.disk_format = output
                job.virtual_size = relabelled.virtual_size
            return
        output = self.output_format
        cap = self.size_cap
        if output == "raw" and cap is not None and (source.virtual_size or 0) > cap:
            raise RequestTooLarge(
                f"Converted to raw, the image would be {source.virtual_size} bytes, more than "
                f"the image size cap of {cap} bytes."
            )
        qemu_format = QEMU_FORMATS[source.format]
        await self._check_info(job.path, qemu_format)
        tmp = await asyncio.to_thread(_temporary_beside, job.path, output)
        try:
            await self._qemu_img(
                "convert", "-f", qemu_format, "-O", output, str(job.path), str(tmp)
            )
            converted_size = (await asyncio.to_thread(tmp.stat)).st_size
            if cap is not None and converted_size > cap:
                raise RequestTooLarge(
                    f"The image converted to {output} is {converted_size} bytes, more than "
                    f"the image size cap of {cap} bytes."
                )
            result = await _inspect(tmp, output, "bare", self.policy)
            expected = {"raw", "gpt"} if output == "raw" else {output}
            if result.format not in expected:
                raise InvalidImageData(
                    f"The image converted to {output} was detected as {result.format}; refusing it."
                )
            await asyncio.to_thread(_replace, tmp, job.path)
        finally:
            await asyncio.shield(asyncio.to_thread(tmp.unlink, True))
        job.messages.append(f"image_conversion: converted from {source.format} to {output}")
        job.disk_format = output
        job.container_format = "bare"
        job.virtual_size = result.virtual_size

    def _why_not_convert(self, detected: str, container: str | None) -> str | None:
        if detected in NOT_CONVERTED:
            return NOT_CONVERTED[detected]
        if container in ARCHIVE_CONTAINERS:
            return f"the data is a {container} archive, not a disk"
        if QEMU_FORMATS.get(detected) == self.output_format:
            return ALREADY
        if detected not in QEMU_FORMATS:
            return f"no converter for {detected}"
        return None

    async def _check_info(self, path: Path, qemu_format: str) -> None:
        out = await self._qemu_img("info", "-f", qemu_format, "--output=json", str(path))
        try:
            info = json.loads(out)
        except ValueError as exc:
            raise InvalidImageData("qemu-img info gave output that is not JSON.") from exc
        if info.get("backing-filename") or info.get("full-backing-filename"):
            raise InvalidImageData(
                "qemu-img reports a backing file; images with backing files are not accepted."
            )
        data = (info.get("format-specific") or {}).get("data") or {}
        if data.get("data-file"):
            raise InvalidImageData(
                "qemu-img reports an external data file; such images are not accepted."
            )

    async def _qemu_img(self, *args: str) -> str:
        """Run qemu-img under the limits; return its stdout or raise InvalidImageData."""
        argv = [
            sys.executable, "-I", "-S", "-c", _LIMITED_EXEC,
            str(self.cpu_seconds), str(self.memory_mib * 1024 * 1024),
            self.qemu_img, *args,
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            stdout, stderr = await proc.communicate()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await asyncio.shield(proc.wait())
            raise
        if proc.returncode != 0:
            raise InvalidImageData(self._failure(args[0], proc.returncode, stderr))
        return stdout.decode("utf-8", "replace")

    def _failure(self, command: str, returncode: int | None, stderr: bytes) -> str:
        text = stderr.decode("utf-8", "replace").strip()
        if len(text) > STDERR_LIMIT:
            text = "..." + text[-STDERR_LIMIT:]
        if returncode is not None and returncode < 0:
            try:
                sig = signal.Signals(-returncode).name
            except ValueError:
                sig = f"signal {-returncode}"
            how = (
                f"was killed by {sig} (limits: {self.cpu_seconds} CPU seconds, "
                f"{self.memory_mib} MiB of address space)"
            )
        else:
            how = f"failed with exit status {returncode}"
        message = f"Image conversion failed: qemu-img {command} {how}"
        return f"{message}: {text}" if text else f"{message}."


async def _inspect(
    path: Path, declared: str | None, container: str | None, policy: FormatPolicy
) -> InspectionResult:
    """Feed the file at ``path`` through a StreamInspector, off the event loop."""

    def work(stop: threading.Event) -> InspectionResult:
        inspector = StreamInspector(declared, container, policy)
        total = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                check_stop(stop)
                inspector.feed(chunk)
                total += len(chunk)
        return inspector.finish(total)

    return await run_blocking(work)


def _temporary_beside(path: Path, output: str) -> Path:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".{output}")
    os.close(fd)
    return Path(name)


def _names_content(disk_format: str | None, output: str) -> bool:
    """Whether ``disk_format`` is a right name for data in the ``output`` format."""
    return disk_format in RAW_LIKE if output == "raw" else disk_format == output


def _replace(tmp: Path, path: Path) -> None:
    os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)
