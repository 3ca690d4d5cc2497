"""VHDX: oslo's ``VHDXInspector`` plus header, region and metadata consistency.

oslo finds the virtual size through the region table and the metadata table and
checks nothing else. We also read both headers, the whole region table and the
metadata table, and refuse:

- a parent: a ``Parent Locator`` metadata item or the ``HasParent`` file
  parameter (a differencing disk names another file);
- an unreplayed log in either header (opening the image read-write would replay
  attacker-chosen writes);
- a missing BAT or metadata region, unknown *required* regions or metadata items
  (qemu refuses them too), regions or the log outside the file, a block size out
  of range.

Checksums (CRC-32C) are not verified; instead every header with a valid
signature must pass, so a reader that prefers the other header sees nothing
worse.

Layout (little-endian): file identifier 'vhdxfile' at 0; headers at 64 KiB and
128 KiB (4 KiB each); region tables at 192 KiB and 256 KiB (64 KiB each)::

    header:  0 'head'  4 checksum  8 sequence  16 file_write_guid  32 data_write_guid
             48 log_guid  64 log_version (u16)  66 version (u16)  68 log_length  72 log_offset
    region table: 0 'regi'  4 checksum  8 entry_count; entries from 16, 32 bytes each:
             guid(16) file_offset(u64) length(u32) required(u32)
    metadata table: 0 'metadata'  10 entry_count (u16); entries from 32, 32 bytes each:
             guid(16) item_offset(u32) length(u32) flags(u32: bit 2 required)
"""

import struct
import uuid
from dataclasses import dataclass

from oslo_utils.imageutils import format_inspector as fi

from glimpse.domain.errors import UnsafeImage
from glimpse.formats.limits import (
    KiB,
    MiB,
    bad_header,
    check_fits_int64,
    is_power_of_two,
    outside_file,
)

_HEADER = struct.Struct("<4sIQ16s16s16sHHIQ")
_REGION_ENTRY = struct.Struct("<16sQII")
_META_ENTRY = struct.Struct("<16sIII")
_PARAMS = struct.Struct("<II")


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


BAT_REGION = _guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION = _guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")

FILE_PARAMETERS = _guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE = _guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PAGE83_DATA = _guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
LOGICAL_SECTOR_SIZE = _guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE = _guid("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR = _guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
KNOWN_ITEMS = {
    FILE_PARAMETERS,
    VIRTUAL_DISK_SIZE,
    PAGE83_DATA,
    LOGICAL_SECTOR_SIZE,
    PHYSICAL_SECTOR_SIZE,
    PARENT_LOCATOR,
}

HEADER_SIZE = 4 * KiB
HAS_PARENT = 1 << 1
ITEM_REQUIRED = 1 << 2


@dataclass(frozen=True)
class VhdxHeader:
    log_guid: bytes
    log_version: int
    version: int
    log_length: int
    log_offset: int


@dataclass(frozen=True)
class RegionEntry:
    guid: bytes
    offset: int
    length: int
    required: bool


@dataclass(frozen=True)
class MetaEntry:
    guid: bytes
    offset: int
    length: int
    required: bool


def region_entries(table: bytes) -> list[RegionEntry]:
    (count,) = struct.unpack_from("<I", table, 8)
    count = min(count, 2047)
    entries = []
    for i in range(count):
        pos = 16 + i * _REGION_ENTRY.size
        if pos + _REGION_ENTRY.size > len(table):
            break
        guid, offset, length, required = _REGION_ENTRY.unpack_from(table, pos)
        entries.append(RegionEntry(guid, offset, length, bool(required & 1)))
    return entries


def metadata_entries(table: bytes) -> list[MetaEntry]:
    if len(table) < 32:
        return []
    (count,) = struct.unpack_from("<H", table, 10)
    entries = []
    for i in range(min(count, 2047)):
        pos = 32 + i * 32
        if pos + _META_ENTRY.size > len(table):
            break
        guid, offset, length, flags = _META_ENTRY.unpack_from(table, pos)
        entries.append(MetaEntry(guid, offset, length, bool(flags & ITEM_REQUIRED)))
    return entries


class VhdxInspector(fi.VHDXInspector):
    NAME = "vhdx"

    def _initialize(self) -> None:
        super()._initialize()
        self.new_region("header1", fi.CaptureRegion(64 * KiB, HEADER_SIZE))
        self.new_region("header2", fi.CaptureRegion(128 * KiB, HEADER_SIZE))

    def post_process(self) -> None:
        super().post_process()
        # oslo adds 'vds' once the whole metadata table is captured; the file
        # parameters item is found the same way, in the same chunk.
        if self.has_region("vds") and not self.has_region("params"):
            meta = self.region("metadata")
            for entry in metadata_entries(bytes(meta.data)):
                if entry.guid == FILE_PARAMETERS:
                    self.new_region("params", fi.CaptureRegion(meta.offset + entry.offset, 8))
                    break

    def _headers(self) -> list[VhdxHeader]:
        """The headers (of the two) that carry a valid signature."""
        found = []
        for name in ("header1", "header2"):
            data = bytes(self.region(name).data)
            if len(data) >= _HEADER.size:
                sig, _ck, _seq, _fw, _dw, log_guid, log_ver, ver, log_len, log_off = (
                    _HEADER.unpack_from(data, 0)
                )
                if sig == b"head":
                    found.append(VhdxHeader(log_guid, log_ver, ver, log_len, log_off))
        return found

    def check_header(self) -> None:
        headers = self._headers()
        if not headers:
            raise bad_header("VHDX", "no valid header found")
        for h in headers:
            if h.version != 1 or h.log_version != 0:
                raise bad_header("VHDX", f"header version {h.version} is not supported")
            if h.log_guid != bytes(16):
                raise bad_header("VHDX", "the image has an unreplayed log")
        regions = region_entries(bytes(self.region("header").data))
        guids = {r.guid for r in regions}
        if BAT_REGION not in guids or METADATA_REGION not in guids:
            raise bad_header("VHDX", "the BAT or metadata region is missing")
        for r in regions:
            if r.required and r.guid not in (BAT_REGION, METADATA_REGION):
                raise bad_header("VHDX", "an unknown required region is present")
        items = metadata_entries(bytes(self.region("metadata").data))
        for item in items:
            if item.guid == PARENT_LOCATOR:
                raise UnsafeImage(
                    "backing_file",
                    "The VHDX is a differencing disk that refers to a parent file; "
                    "images that depend on another file are not accepted.",
                )
            if item.required and item.guid not in KNOWN_ITEMS:
                raise bad_header("VHDX", "an unknown required metadata item is present")
        if not self.has_region("params") or not self.region("params").complete:
            raise bad_header("VHDX", "the file parameters are missing")
        block_size, flags = _PARAMS.unpack_from(bytes(self.region("params").data), 0)
        if flags & HAS_PARENT:
            raise UnsafeImage(
                "backing_file",
                "The VHDX is a differencing disk that refers to a parent file; "
                "images that depend on another file are not accepted.",
            )
        if not is_power_of_two(block_size) or not MiB <= block_size <= 256 * MiB:
            raise bad_header("VHDX", f"block size {block_size} is out of range")
        check_fits_int64(self.virtual_size, "virtual size")

    def check_file(self, total_size: int) -> None:
        for h in self._headers():
            if h.log_length and h.log_offset + h.log_length > total_size:
                raise outside_file("VHDX", "log", h.log_offset + h.log_length, total_size)
        for r in region_entries(bytes(self.region("header").data)):
            if r.offset + r.length > total_size:
                raise outside_file("VHDX", "region", r.offset + r.length, total_size)
