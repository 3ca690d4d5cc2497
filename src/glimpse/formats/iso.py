"""ISO 9660 / UDF: oslo's ``ISOInspector`` plus a bound on the volume size.

oslo reads the primary volume descriptor at 32 KiB. We refuse a descriptor whose
logical block size is not a power of two in 512..32768 or whose volume is larger
than the uploaded file. An ISO is attached as a raw CD-ROM, so its virtual size
is the size of the file, as qemu reports it.
"""

import struct

from oslo_utils.imageutils import format_inspector as fi

from glimpse.formats.limits import bad_header, is_power_of_two, outside_file

PVD_OFFSET = 32 * 1024
PRIMARY_VOLUME_DESCRIPTOR = 1


class IsoInspector(fi.ISOInspector):
    NAME = "iso"

    def check_header(self) -> None:
        pass

    def check_file(self, total_size: int) -> None:
        data = bytes(self.region("header").data)
        if data[0] != PRIMARY_VOLUME_DESCRIPTOR:
            return  # UDF or another descriptor first: no volume size to check
        (blocks,) = struct.unpack_from("<I", data, 80)
        (block_size,) = struct.unpack_from("<H", data, 128)
        if not is_power_of_two(block_size) or not 512 <= block_size <= 32768:
            raise bad_header("ISO", f"logical block size {block_size} is out of range")
        end = blocks * block_size
        if end > total_size:
            raise outside_file("ISO", "volume", end, total_size)
