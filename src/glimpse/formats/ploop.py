"""ploop (Virtuozzo; qemu: parallels). oslo has no inspector for it: this is ours,
written on oslo's ``FileInspector`` so it runs with the others.

Header (little-endian, 64 bytes; qemu docs/interop/parallels.txt)::

    0 magic 'WithoutFreeSpace' (v1) or 'WithouFreSpacExt' (v2)   16 version (2)
   20 heads  24 cylinders  28 tracks (cluster size in sectors)  32 bat_entries
   36 nb_sectors (u64; v1 uses the low 32 bits)  44 inuse  48 data_off (sectors)
   52 flags  56 ext_off (sectors)

Nothing in the format names another file; we refuse headers whose cluster size,
block table or data and extension offsets are out of range or outside the file.
"""

import struct
from dataclasses import dataclass

from oslo_utils.imageutils import format_inspector as fi

from glimpse.formats.limits import SECTOR, bad_header, check_fits_int64, outside_file

MAGIC_V1 = b"WithoutFreeSpace"
MAGIC_V2 = b"WithouFreSpacExt"
VERSION = 2
_HEADER = struct.Struct("<16sIIIIIQIIIQ")  # 64 bytes
MAX_TRACKS = 0x7FFFFFFF // 513  # qemu's bound on the cluster size in sectors
MAX_BAT_ENTRIES = 0x7FFFFFFF // 4


@dataclass(frozen=True)
class PloopHeader:
    magic: bytes
    version: int
    tracks: int
    bat_entries: int
    nb_sectors: int
    data_off: int
    ext_off: int

    @classmethod
    def parse(cls, data: bytes) -> "PloopHeader":
        (magic, version, _heads, _cyls, tracks, bat, sectors, _inuse, data_off, _flags, ext_off) = (
            _HEADER.unpack_from(data, 0)
        )
        if magic == MAGIC_V1:
            sectors &= 0xFFFFFFFF
        return cls(magic, version, tracks, bat, sectors, data_off, ext_off)


class PloopInspector(fi.FileInspector):
    NAME = "ploop"

    def _initialize(self) -> None:
        self.new_region("header", fi.CaptureRegion(0, _HEADER.size))
        # Our checks run through check_header/check_file; oslo requires one here.
        self.add_safety_check(fi.SafetyCheck.null())

    @property
    def format_match(self) -> bool:
        region = self.region("header")
        return bool(region.complete) and bytes(region.data[:16]) in (MAGIC_V1, MAGIC_V2)

    @property
    def header(self) -> PloopHeader:
        return PloopHeader.parse(bytes(self.region("header").data))

    @property
    def virtual_size(self) -> int:
        if not self.format_match:
            return 0
        return self.header.nb_sectors * SECTOR

    def check_header(self) -> None:
        h = self.header
        if h.version != VERSION:
            raise bad_header("ploop", f"version {h.version} is not supported")
        if not 0 < h.tracks <= MAX_TRACKS:
            raise bad_header("ploop", f"cluster size of {h.tracks} sectors is out of range")
        if h.bat_entries > MAX_BAT_ENTRIES:
            raise bad_header("ploop", "the block table is too large")
        check_fits_int64(h.nb_sectors * SECTOR, "virtual size")
        if h.bat_entries * h.tracks < h.nb_sectors:
            raise bad_header("ploop", "the virtual size is larger than the block table covers")

    def check_file(self, total_size: int) -> None:
        h = self.header
        bat_end = _HEADER.size + h.bat_entries * 4
        if bat_end > total_size:
            raise outside_file("ploop", "block table", bat_end, total_size)
        if h.data_off * SECTOR > total_size:
            raise outside_file("ploop", "data area", h.data_off * SECTOR, total_size)
        if h.ext_off and h.ext_off * SECTOR >= total_size:
            raise outside_file("ploop", "format extension", h.ext_off * SECTOR + 1, total_size)
