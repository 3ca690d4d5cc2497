"""VHD (qemu: vpc): oslo's ``VHDInspector`` plus the footer at the end of the file.

oslo only looks at the footer copy at the start of the file, which exists for
dynamic and differencing disks. A *fixed* VHD is raw data followed by a 512-byte
footer and nothing at the start, so oslo (and qemu's probe) see it as raw. We
keep the last 512 bytes of the stream and recognise it there too.

Refused: differencing disks (they name a parent file), unknown disk types, bad
footer checksums, a start copy that differs from the end footer (two readers
would see two different disks), dynamic headers or block tables outside the file,
and sizes the block table cannot hold.

Footer (big-endian, 512 bytes)::

    0 cookie 'conectix'  8 features  12 version  16 data_offset  24 timestamp
   28 creator_app  32 creator_version  36 creator_os  40 original_size
   48 current_size  56 cylinders (u16) 58 heads (u8) 59 sectors (u8)
   60 disk_type  64 checksum  68 uuid  84 saved_state

Dynamic disk header at data_offset (big-endian, 1024 bytes)::

    0 cookie 'cxsparse'  8 data_offset  16 table_offset  24 version
   28 max_table_entries  32 block_size  36 checksum  40 parent_uuid ...
"""

import struct
from dataclasses import dataclass

from oslo_utils.imageutils import format_inspector as fi

from glimpse.domain.errors import UnsafeImage
from glimpse.formats.limits import (
    SECTOR,
    MiB,
    bad_header,
    check_fits_int64,
    is_power_of_two,
    outside_file,
)

_FOOTER = struct.Struct(">8sIIQI4sIIQQHBBII")
_DYNAMIC = struct.Struct(">8sQQIIII")
COOKIE = b"conectix"
DYNAMIC_COOKIE = b"cxsparse"
FOOTER_SIZE = 512
DYNAMIC_HEADER_SIZE = 1024
MAX_DYNAMIC_HEADER_OFFSET = 64 * MiB  # qemu writes it at 512; anything far later is refused

DISK_FIXED = 2
DISK_DYNAMIC = 3
DISK_DIFFERENCING = 4

# qemu (block/vpc.c) sizes these creators' disks by current_size, others by CHS.
_CURRENT_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\x00")
_MAX_CHS_SECTORS = 65535 * 16 * 255


@dataclass(frozen=True)
class VhdFooter:
    data_offset: int
    creator_app: bytes
    current_size: int
    cylinders: int
    heads: int
    sectors: int
    disk_type: int
    checksum: int
    raw: bytes

    @classmethod
    def parse(cls, data: bytes) -> "VhdFooter":
        (
            _c,
            _f,
            _v,
            data_offset,
            _t,
            creator,
            _cv,
            _os,
            _orig,
            current,
            cyls,
            heads,
            secs,
            disk_type,
            checksum,
        ) = _FOOTER.unpack_from(data, 0)
        return cls(
            data_offset,
            creator,
            current,
            cyls,
            heads,
            secs,
            disk_type,
            checksum,
            bytes(data[:FOOTER_SIZE]),
        )

    def checksum_ok(self) -> bool:
        body = self.raw[:64] + b"\x00\x00\x00\x00" + self.raw[68:]
        return (~sum(body)) & 0xFFFFFFFF == self.checksum

    @property
    def virtual_size(self) -> int:
        """The size qemu gives the disk (block/vpc.c ``vpc_open``)."""
        chs = self.cylinders * self.heads * self.sectors
        if self.creator_app in _CURRENT_SIZE_CREATORS or chs == _MAX_CHS_SECTORS:
            return self.current_size // SECTOR * SECTOR
        return chs * SECTOR


class VhdInspector(fi.VHDInspector):
    NAME = "vhd"

    def _initialize(self) -> None:
        super()._initialize()
        self.new_region("end_footer", fi.EndCaptureRegion(FOOTER_SIZE))

    @property
    def has_start_copy(self) -> bool:
        return bool(self.region("header").data.startswith(COOKIE))

    @property
    def fixed_footer_only(self) -> bool:
        """True for a fixed VHD: no start copy, a footer at the end of the stream."""
        if self.has_start_copy or not self._finished:
            return False
        end = self.region("end_footer").data
        return len(end) == FOOTER_SIZE and bool(end.startswith(COOKIE))

    @property
    def format_match(self) -> bool:
        return self.has_start_copy or self.fixed_footer_only

    @property
    def footer(self) -> VhdFooter:
        source = "header" if self.has_start_copy else "end_footer"
        return VhdFooter.parse(bytes(self.region(source).data))

    @property
    def virtual_size(self) -> int:
        if not self.format_match or len(self.region("header").data) < FOOTER_SIZE:
            return 0
        return self.footer.virtual_size

    def post_process(self) -> None:
        super().post_process()
        header = self.region("header")
        if not header.complete or not self.has_start_copy or self.has_region("dynamic"):
            return
        offset = VhdFooter.parse(bytes(header.data)).data_offset
        if FOOTER_SIZE <= offset <= MAX_DYNAMIC_HEADER_OFFSET:
            self.new_region("dynamic", fi.CaptureRegion(offset, DYNAMIC_HEADER_SIZE))

    def _check_footer(self, footer: VhdFooter) -> None:
        if not footer.checksum_ok():
            raise bad_header("VHD", "the footer checksum is wrong")
        if footer.disk_type == DISK_DIFFERENCING:
            raise UnsafeImage(
                "backing_file",
                "The VHD is a differencing disk that refers to a parent file; "
                "images that depend on another file are not accepted.",
            )
        check_fits_int64(footer.current_size, "virtual size")

    def check_header(self) -> None:
        """Checks on the start copy and the dynamic header (dynamic disks only)."""
        if not self.has_start_copy:
            return
        footer = self.footer
        self._check_footer(footer)
        if footer.disk_type != DISK_DYNAMIC:
            raise bad_header("VHD", f"disk type {footer.disk_type} with a footer copy at the start")
        if not self.has_region("dynamic") or not self.region("dynamic").complete:
            raise bad_header("VHD", "the dynamic disk header is missing")
        dyn = bytes(self.region("dynamic").data)
        cookie, _d, _table, _ver, entries, block_size, _ck = _DYNAMIC.unpack_from(dyn, 0)
        if cookie != DYNAMIC_COOKIE:
            raise bad_header("VHD", "the dynamic disk header signature is wrong")
        if not is_power_of_two(block_size) or block_size < SECTOR or block_size > 256 * MiB:
            raise bad_header("VHD", f"block size {block_size} is out of range")
        if entries * block_size < footer.virtual_size:
            raise bad_header("VHD", "the virtual size is larger than the block table covers")

    def check_file(self, total_size: int) -> None:
        end = self.region("end_footer").data
        if len(end) != FOOTER_SIZE or not end.startswith(COOKIE):
            raise bad_header("VHD", "the footer at the end of the file is missing")
        if not self.has_start_copy:
            footer = VhdFooter.parse(bytes(end))
            self._check_footer(footer)
            if footer.disk_type != DISK_FIXED:
                raise bad_header("VHD", f"disk type {footer.disk_type} without a start copy")
            data_end = footer.virtual_size + FOOTER_SIZE
            if data_end > total_size:
                raise outside_file("VHD", "disk data", data_end, total_size)
            return
        if bytes(end) != bytes(self.region("header").data[:FOOTER_SIZE]):
            raise bad_header("VHD", "the footer at the end differs from the copy at the start")
        footer = self.footer
        dyn_end = footer.data_offset + DYNAMIC_HEADER_SIZE
        if dyn_end > total_size:
            raise outside_file("VHD", "dynamic disk header", dyn_end, total_size)
        _c, _d, table, _v, entries, _bs, _ck = _DYNAMIC.unpack_from(
            bytes(self.region("dynamic").data), 0
        )
        table_end = table + entries * 4
        if table_end > total_size:
            raise outside_file("VHD", "block allocation table", table_end, total_size)
