"""VMDK: oslo's ``VMDKInspector`` plus stricter descriptor and header checks.

oslo accepts the two single-file kinds (monolithicSparse, streamOptimized) and
refuses extent lines containing '/'. It misses three things we refuse:

- a text-only descriptor (no sparse header) claiming monolithicSparse whose
  extent names a sibling file without a slash: qemu opens that sibling;
- ``parentFileNameHint``: qemu opens the named file as a backing file;
- more than one extent, or an extent that is not SPARSE (FLAT, VMFS...), in the
  descriptor embedded in a sparse file.

So a VMDK is accepted only as one file with a sparse header (``KDMV``) and an
embedded descriptor naming exactly one SPARSE extent, itself. The createType is
checked against ``vmdk_allowed_types`` by ``stream.py``.

Sparse extent header (little-endian, first 64 bytes used)::

    0 magic 'KDMV'  4 version  8 flags  12 capacity (sectors)  20 grainSize (sectors)
   28 descriptorOffset (sectors)  36 descriptorSize (sectors)  44 numGTEsPerGT
   48 rgdOffset (sectors)  56 gdOffset (sectors; all ones: in the footer)
"""

import re
import struct
from dataclasses import dataclass

from oslo_utils.imageutils import format_inspector as fi

from glimpse.domain.errors import UnsafeImage
from glimpse.formats.limits import (
    SECTOR,
    bad_header,
    check_fits_int64,
    is_power_of_two,
    outside_file,
)

_SPARSE = struct.Struct("<4sIIQQQQIQQ")  # 64 bytes
GD_AT_END = 0xFFFFFFFFFFFFFFFF
MAX_GRAIN_SECTORS = 0x200000  # qemu's limit on the grain (cluster) size: 1 GiB

_EXTENT = re.compile(r'^(rw|rdonly|noaccess)\s+(\d+)\s+([a-z]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?$')


@dataclass(frozen=True)
class SparseHeader:
    version: int
    capacity: int
    grain_size: int
    desc_offset: int
    desc_size: int
    rgd_offset: int
    gd_offset: int

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> "SparseHeader":
        (_m, ver, _flags, cap, grain, desc_off, desc_sz, _gtes, rgd, gd) = _SPARSE.unpack_from(
            data, offset
        )
        return cls(ver, cap, grain, desc_off, desc_sz, rgd, gd)


@dataclass(frozen=True)
class Extent:
    access: str
    sectors: int
    kind: str
    filename: str | None


def parse_descriptor(text: str) -> tuple[dict[str, str], list[Extent]]:
    """Split a (lower-cased) descriptor into its header fields and extents.

    Lines that are neither are ignored here: oslo's own descriptor check,
    which runs as well, refuses them.
    """
    fields: dict[str, str] = {}
    extents: list[Extent] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("ddb"):
            continue
        match = _EXTENT.match(line)
        if match:
            access, sectors, kind, name, _offset = match.groups()
            extents.append(Extent(access, int(sectors), kind, name))
        elif "=" in line:
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip().strip('"')
        elif line.split(" ")[0] in ("rw", "rdonly", "noaccess"):
            # An extent line we could not parse: count it, so it is refused.
            extents.append(Extent("?", 0, "unparsed", None))
    return fields, extents


class VmdkInspector(fi.VMDKInspector):
    NAME = "vmdk"

    @property
    def is_sparse(self) -> bool:
        return bool(self.has_region("header"))

    @property
    def create_type(self) -> str | None:
        """The descriptor's createType, lower-cased (oslo lower-cases the text)."""
        value = getattr(self, "vmdktype", None)
        return value if isinstance(value, str) else None

    def _sparse_header(self) -> SparseHeader:
        return SparseHeader.parse(bytes(self.region("header").data))

    def check_header(self) -> None:
        if not self.is_sparse:
            raise UnsafeImage(
                "vmdk_extent",
                "The VMDK is a descriptor file whose data lives in other files; "
                "only single-file VMDK images (monolithicSparse or streamOptimized) "
                "are accepted.",
            )
        h = self._sparse_header()
        check_fits_int64(h.capacity * SECTOR, "virtual size")
        if not is_power_of_two(h.grain_size) or h.grain_size > MAX_GRAIN_SECTORS:
            raise bad_header("VMDK", f"grain size {h.grain_size} is out of range")
        text = self.desc_text
        if not text:
            raise bad_header("VMDK", "the embedded descriptor is missing")
        fields, extents = parse_descriptor(text)
        if fields.get("parentfilenamehint"):
            raise UnsafeImage(
                "backing_file",
                "The VMDK image refers to a parent (backing) file; images that "
                "depend on another file are not accepted.",
            )
        if len(extents) != 1:
            raise UnsafeImage(
                "vmdk_extent",
                f"The VMDK descriptor lists {len(extents)} extents; exactly one, "
                "inside the image itself, is accepted.",
            )
        extent = extents[0]
        if extent.kind != "sparse":
            raise UnsafeImage(
                "vmdk_extent",
                f"The VMDK extent is of type {extent.kind.upper()}; only a SPARSE "
                "extent inside the image itself is accepted.",
            )
        name = extent.filename or ""
        if not name or "/" in name or "\\" in name:
            raise UnsafeImage(
                "vmdk_extent",
                "The VMDK extent names a file path; only an extent inside the "
                "image itself is accepted.",
            )
        if extent.sectors != h.capacity:
            raise bad_header("VMDK", "the descriptor and the header disagree on the disk size")

    def check_file(self, total_size: int) -> None:
        h = self._sparse_header()
        desc_end = (h.desc_offset + h.desc_size) * SECTOR
        if desc_end > total_size:
            raise outside_file("VMDK", "descriptor", desc_end, total_size)
        for what, sector in (
            ("grain directory", h.gd_offset),
            ("redundant grain directory", h.rgd_offset),
        ):
            if sector not in (0, GD_AT_END) and sector * SECTOR >= total_size:
                raise outside_file("VMDK", what, sector * SECTOR + 1, total_size)
        if h.gd_offset == GD_AT_END:
            if not self.has_region("footer") or len(self.region("footer").data) < 1024:
                raise bad_header("VMDK", "the footer is missing")
            footer = SparseHeader.parse(bytes(self.region("footer").data), SECTOR)
            if footer.capacity != h.capacity:
                raise bad_header("VMDK", "the footer and the header disagree on the disk size")
            if footer.gd_offset * SECTOR >= total_size:
                raise outside_file(
                    "VMDK", "grain directory", footer.gd_offset * SECTOR + 1, total_size
                )
