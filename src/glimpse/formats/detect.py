"""Run every format inspector over one stream, in step, and say what matched.

Each inspector is an oslo ``FileInspector`` (oslo's own or one of ours built on
it). They capture the bytes they need as chunks pass; none keeps more than its
fixed-size regions. Once an inspector has captured every region it asked for
(apart from regions at the end of the stream), it is not fed again: after the
first few megabytes a chunk costs a length, a head copy while the head is short,
and a copy of its last ``TAIL_SIZE`` bytes.

Regions at the end of the stream (VMDK footer, VHD footer) are filled at
``finish`` from that tail, so no inspector has to see every byte.

Signatures: a format whose magic bytes are present but whose inspector failed,
did not match or did not complete is reported as ``broken``: the data claims a
format and then does not hold to it (truncated or damaged header).
"""

import logging
from dataclasses import dataclass, field
from typing import Protocol, cast, runtime_checkable

from oslo_utils.imageutils import format_inspector as fi

from glimpse.formats.iso import IsoInspector
from glimpse.formats.limits import KiB
from glimpse.formats.ploop import MAGIC_V1, MAGIC_V2, PloopInspector
from glimpse.formats.qcow2 import Qcow2Inspector
from glimpse.formats.vdi import VdiInspector
from glimpse.formats.vhd import VhdInspector
from glimpse.formats.vhdx import VhdxInspector
from glimpse.formats.vmdk import VmdkInspector

LOG = logging.getLogger(__name__)


@runtime_checkable
class StrictChecks(Protocol):
    """Glimpse's checks on top of oslo's, implemented by our inspector classes.

    Both raise ``UnsafeImage``. ``check_header`` needs only the captured
    headers and may run mid-stream; ``check_file`` runs at end of stream.
    """

    def check_header(self) -> None: ...

    def check_file(self, total_size: int) -> None: ...


# Every format recognised in data, by its Glance disk_format name. Raw is what
# is left when none matches.
INSPECTORS: dict[str, type[fi.FileInspector]] = {
    "qcow2": Qcow2Inspector,
    "vmdk": VmdkInspector,
    "vhd": VhdInspector,
    "vhdx": VhdxInspector,
    "vdi": VdiInspector,
    "ploop": PloopInspector,
    "iso": IsoInspector,
    "gpt": fi.GPTInspector,
    "luks": fi.LUKSInspector,
    "qed": fi.QEDInspector,
}

# Magic bytes (offset, value) that make data claim a format.
SIGNATURES: dict[str, tuple[tuple[int, bytes], ...]] = {
    "qcow2": ((0, b"QFI\xfb"),),
    "vmdk": ((0, b"KDMV"),),
    "vhd": ((0, b"conectix"),),
    "vhdx": ((0, b"vhdxfile"),),
    "vdi": ((0x40, b"\x7f\x10\xda\xbe"),),
    "ploop": ((0, MAGIC_V1), (0, MAGIC_V2)),
    "luks": ((0, b"LUKS\xba\xbe"),),
    "qed": ((0, b"QED\x00"),),
    "iso": ((0x8001, b"CD001"), (0x8001, b"NSR02"), (0x8001, b"NSR03")),
}

HEAD_SIZE = 0x8001 + 8  # enough for every signature above
TAIL_SIZE = 4 * KiB  # at least the largest end-of-stream region (VMDK footer: 1536)
# oslo's inspectors find at most one level of new regions per chunk they eat
# (VHDX: region table -> metadata table -> items); a large chunk holding two
# levels would hide the deeper one. Inspectors still reading headers eat the
# chunk in slices of this size (views, not copies).
SLICE = 64 * KiB


def signature_present(name: str, head: bytes) -> bool | None:
    """True/False if ``head`` is long enough to tell, None if it is not yet."""
    verdict: bool | None = False
    for offset, magic in SIGNATURES.get(name, ()):
        if len(head) < offset + len(magic):
            verdict = None
        elif head[offset : offset + len(magic)] == magic:
            return True
    return verdict


def _settled(inspector: fi.FileInspector) -> bool:
    """Every region except end-of-stream ones has what it asked for."""
    for name in inspector.context_info:
        region = inspector.region(name)
        if not isinstance(region, fi.EndCaptureRegion) and not region.complete:
            return False
    return True


@dataclass(frozen=True)
class Detection:
    matches: dict[str, fi.FileInspector]
    broken: tuple[str, ...] = field(default=())


class Detector:
    def __init__(self) -> None:
        self._inspectors: dict[str, fi.FileInspector] = {
            name: cls() for name, cls in INSPECTORS.items()
        }
        self._active = dict(self._inspectors)
        self._failed: set[str] = set()
        self._head = bytearray()
        self._tail = b""
        self.size = 0

    @property
    def head(self) -> bytes:
        return bytes(self._head)

    def inspector(self, name: str) -> fi.FileInspector:
        return self._inspectors[name]

    def feed(self, chunk: bytes) -> list[str]:
        """Present the next chunk; return the formats that just matched with
        their headers fully captured (ready for header checks)."""
        size = len(chunk)
        if not size:
            return []
        self.size += size
        if len(self._head) < HEAD_SIZE:
            self._head += chunk[: HEAD_SIZE - len(self._head)]
        if size >= TAIL_SIZE:
            self._tail = bytes(chunk[-TAIL_SIZE:])
        else:
            self._tail = (self._tail + bytes(chunk))[-TAIL_SIZE:]
        if not self._active:
            return []
        ready = []
        view = memoryview(chunk)
        for name, inspector in list(self._active.items()):
            try:
                for start in range(0, size, SLICE):
                    # oslo's regions accept any bytes-like object
                    inspector.eat_chunk(cast(bytes, view[start : start + SLICE]))
                settled = _settled(inspector)
                matched = settled and bool(inspector.format_match)
            except Exception as exc:  # any parse error in a third-party inspector
                LOG.debug("format inspector %s gave up: %s", name, exc)
                self._failed.add(name)
                del self._active[name]
                continue
            if settled:
                del self._active[name]
                if matched:
                    ready.append(name)
        return ready

    def finish(self, total_size: int) -> Detection:
        """End of stream: fill end regions from the tail and collect matches."""
        matches: dict[str, fi.FileInspector] = {}
        for name, inspector in self._inspectors.items():
            if name in self._failed:
                continue
            try:
                for region_name in list(inspector.context_info):
                    region = inspector.region(region_name)
                    if isinstance(region, fi.EndCaptureRegion):
                        region.data = b""
                        region.capture(self._tail, total_size)
                inspector.finish()
                if inspector.format_match and inspector.complete:
                    matches[name] = inspector
            except Exception as exc:
                LOG.debug("format inspector %s gave up at end of stream: %s", name, exc)
                self._failed.add(name)
        head = self.head
        broken = tuple(
            name for name in SIGNATURES if name not in matches and signature_present(name, head)
        )
        return Detection(matches=matches, broken=broken)
