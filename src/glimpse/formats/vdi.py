"""VDI (VirtualBox): oslo's ``VDIInspector`` plus the header checks qemu makes.

oslo reads the signature and the disk size. We also refuse what qemu
(block/vdi.c) would refuse or follow: a parent or link UUID (a differencing
image refers to another file), versions other than 1.1, image types other than
dynamic and static, sector and block sizes other than 512 B and 1 MiB, a disk
size larger than its blocks, and a block map or data area outside the file.

Header (little-endian, after a 64-byte text banner)::

    0x40 signature 0xbeda107f  0x44 version  0x48 header_size  0x4c image_type
    0x154 offset_bmap  0x158 offset_data  0x168 sector_size  0x170 disk_size (u64)
    0x178 block_size  0x17c block_extra  0x180 blocks_in_image  0x184 blocks_allocated
    0x188 uuid_image  0x198 uuid_last_snap  0x1a8 uuid_link  0x1b8 uuid_parent
"""

import struct
from dataclasses import dataclass

from oslo_utils.imageutils import format_inspector as fi

from glimpse.domain.errors import UnsafeImage
from glimpse.formats.limits import SECTOR, MiB, bad_header, check_fits_int64, outside_file

VERSION_1_1 = 0x00010001
TYPE_DYNAMIC = 1
TYPE_STATIC = 2
BLOCK_SIZE = 1 * MiB
MAX_BLOCKS = 0x3FFFFFFF


@dataclass(frozen=True)
class VdiHeader:
    version: int
    image_type: int
    offset_bmap: int
    offset_data: int
    sector_size: int
    disk_size: int
    block_size: int
    block_extra: int
    blocks_in_image: int
    blocks_allocated: int
    uuid_link: bytes
    uuid_parent: bytes

    @classmethod
    def parse(cls, data: bytes) -> "VdiHeader":
        (version,) = struct.unpack_from("<I", data, 0x44)
        (image_type,) = struct.unpack_from("<I", data, 0x4C)
        offset_bmap, offset_data = struct.unpack_from("<II", data, 0x154)
        (sector_size,) = struct.unpack_from("<I", data, 0x168)
        disk_size, block_size, block_extra, blocks, allocated = struct.unpack_from(
            "<QIIII", data, 0x170
        )
        return cls(
            version=version,
            image_type=image_type,
            offset_bmap=offset_bmap,
            offset_data=offset_data,
            sector_size=sector_size,
            disk_size=disk_size,
            block_size=block_size,
            block_extra=block_extra,
            blocks_in_image=blocks,
            blocks_allocated=allocated,
            uuid_link=bytes(data[0x1A8:0x1B8]),
            uuid_parent=bytes(data[0x1B8:0x1C8]),
        )


class VdiInspector(fi.VDIInspector):
    NAME = "vdi"

    @property
    def header(self) -> VdiHeader:
        return VdiHeader.parse(bytes(self.region("header").data))

    @property
    def virtual_size(self) -> int:
        if not self.format_match:
            return 0
        # qemu counts whole sectors
        return self.header.disk_size // SECTOR * SECTOR

    def check_header(self) -> None:
        h = self.header
        if h.uuid_parent != bytes(16) or h.uuid_link != bytes(16):
            raise UnsafeImage(
                "backing_file",
                "The VDI is a differencing image that refers to a parent image; "
                "images that depend on another file are not accepted.",
            )
        if h.version != VERSION_1_1:
            raise UnsafeImage(
                "unsupported_version",
                f"VDI version {h.version >> 16}.{h.version & 0xFFFF} is not accepted (only 1.1).",
            )
        if h.image_type not in (TYPE_DYNAMIC, TYPE_STATIC):
            raise bad_header("VDI", f"image type {h.image_type} is not supported")
        if h.sector_size != SECTOR:
            raise bad_header("VDI", f"sector size {h.sector_size} is not 512")
        if h.block_size != BLOCK_SIZE or h.block_extra != 0:
            raise bad_header("VDI", f"block size {h.block_size} is not 1 MiB")
        if h.offset_bmap % SECTOR or h.offset_data % SECTOR:
            raise bad_header("VDI", "the block map or data offset is not sector aligned")
        if h.blocks_in_image > MAX_BLOCKS or h.blocks_allocated > h.blocks_in_image:
            raise bad_header("VDI", "the block counts are out of range")
        check_fits_int64(h.disk_size, "virtual size")
        if h.disk_size > h.blocks_in_image * h.block_size:
            raise bad_header("VDI", "the disk size is larger than its blocks")
        if h.offset_bmap < SECTOR or h.offset_data < h.offset_bmap + h.blocks_in_image * 4:
            raise bad_header("VDI", "the block map overlaps the header or the data")

    def check_file(self, total_size: int) -> None:
        h = self.header
        bmap_end = h.offset_bmap + h.blocks_in_image * 4
        if bmap_end > total_size:
            raise outside_file("VDI", "block map", bmap_end, total_size)
        data_end = h.offset_data + h.blocks_allocated * h.block_size
        if data_end > total_size:
            raise outside_file("VDI", "data area", data_end, total_size)
