"""qcow2 (versions 2 and 3): oslo's ``QcowInspector`` plus stricter header checks.

oslo reads the first 512 bytes and checks the backing file offset, the external
data file bit and unknown incompatible features. On top of that we check what
qemu itself would refuse or act on when it opens the image: the version, the
cluster size, encryption (``crypt_method`` and the full-disk-encryption header
extension), an external data file named by a header extension even without the
feature bit, table offsets that are misaligned or outside the file, and a virtual
size larger than the L1 table can address.

Header layout (big-endian; docs/interop/qcow2.txt in qemu)::

    0 magic 'QFI\\xfb'   4 version        8 backing_file_offset  16 backing_file_size
   20 cluster_bits      24 size          32 crypt_method         36 l1_size
   40 l1_table_offset   48 refcount_table_offset                56 refcount_table_clusters
   60 nb_snapshots      64 snapshots_offset
   v3 only: 72 incompatible_features  80 compatible_features  88 autoclear_features
            96 refcount_order        100 header_length
   then header extensions (type u32, length u32, data padded to 8) up to the end
   of the first cluster, closed by type 0.
"""

import struct
from dataclasses import dataclass

from oslo_utils.imageutils import format_inspector as fi

from glimpse.domain.errors import UnsafeImage
from glimpse.formats.limits import KiB, MiB, bad_header, check_fits_int64, outside_file

_V2 = struct.Struct(">4sIQIIQIIQQIIQ")  # 72 bytes
_V3 = struct.Struct(">QQQII")  # bytes 72..104
_EXT = struct.Struct(">II")

# Header extension types (qcow2.txt)
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FULL_DISK_ENCRYPTION = 0x0537BE77
EXT_DATA_FILE = 0x44415441

INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
KNOWN_INCOMPAT = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION

# qemu's own limits (block/qcow2.h)
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21
MAX_L1_BYTES = 32 * MiB
MAX_REFTABLE_BYTES = 8 * MiB
MAX_SNAPSHOTS = 65536

# We keep at most this much of the first cluster to walk the header extensions.
# qemu writes them in the first few hundred bytes; a list that runs past this is
# refused rather than followed further.
EXTENSIONS_CAPTURE = 64 * KiB


@dataclass(frozen=True)
class Qcow2Header:
    version: int
    backing_file_offset: int
    backing_file_size: int
    cluster_bits: int
    size: int
    crypt_method: int
    l1_size: int
    l1_table_offset: int
    refcount_table_offset: int
    refcount_table_clusters: int
    nb_snapshots: int
    snapshots_offset: int
    incompatible_features: int
    refcount_order: int
    header_length: int

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @classmethod
    def parse(cls, data: bytes) -> "Qcow2Header":
        (
            _magic,
            version,
            bf_offset,
            bf_size,
            cluster_bits,
            size,
            crypt,
            l1_size,
            l1_offset,
            rt_offset,
            rt_clusters,
            nb_snapshots,
            snap_offset,
        ) = _V2.unpack_from(data, 0)
        incompat, refcount_order, header_length = 0, 4, _V2.size
        if version >= 3:
            incompat, _compat, _autoclear, refcount_order, header_length = _V3.unpack_from(
                data, _V2.size
            )
        return cls(
            version=version,
            backing_file_offset=bf_offset,
            backing_file_size=bf_size,
            cluster_bits=cluster_bits,
            size=size,
            crypt_method=crypt,
            l1_size=l1_size,
            l1_table_offset=l1_offset,
            refcount_table_offset=rt_offset,
            refcount_table_clusters=rt_clusters,
            nb_snapshots=nb_snapshots,
            snapshots_offset=snap_offset,
            incompatible_features=incompat,
            refcount_order=refcount_order,
            header_length=header_length,
        )


class Qcow2Inspector(fi.QcowInspector):
    NAME = "qcow2"

    def _initialize(self) -> None:
        super()._initialize()
        self.new_region("extensions", fi.CaptureRegion(0, EXTENSIONS_CAPTURE))
        self._header: Qcow2Header | None = None
        self._extension_types: list[int] = []

    @property
    def complete(self) -> bool:
        # A qcow2 with 512-byte clusters can be smaller than the extensions
        # capture; at end of stream whatever was captured is all there is.
        return bool(self.region("header").complete) and (
            bool(self.region("extensions").complete) or self._finished
        )

    @property
    def header(self) -> Qcow2Header:
        if self._header is None:
            self._header = Qcow2Header.parse(bytes(self.region("header").data))
        return self._header

    @property
    def encrypted(self) -> bool:
        return self.header.crypt_method != 0 or EXT_FULL_DISK_ENCRYPTION in self._extension_types

    @property
    def virtual_size(self) -> int:
        if not self.format_match:
            return 0
        return self.header.size

    def check_header(self) -> None:
        """Checks that need only the first cluster; may run before end of stream."""
        h = self.header
        if h.version not in (2, 3):
            raise UnsafeImage(
                "unsupported_version",
                f"qcow2 version {h.version} images are not accepted (only versions 2 and 3).",
            )
        if h.backing_file_offset != 0 or h.backing_file_size != 0:
            raise UnsafeImage(
                "backing_file",
                "The qcow2 image refers to a backing file; images that depend on "
                "another file are not accepted.",
            )
        if h.incompatible_features & INCOMPAT_DATA_FILE:
            raise UnsafeImage(
                "data_file",
                "The qcow2 image keeps its data in an external data file; "
                "such images are not accepted.",
            )
        unknown = h.incompatible_features & ~KNOWN_INCOMPAT
        if unknown:
            raise UnsafeImage(
                "unknown_features",
                f"The qcow2 image uses incompatible features this service does not "
                f"know (bits {unknown:#x}).",
            )
        if h.incompatible_features & INCOMPAT_CORRUPT:
            raise bad_header("qcow2", "the image is marked corrupt")
        if not MIN_CLUSTER_BITS <= h.cluster_bits <= MAX_CLUSTER_BITS:
            raise bad_header("qcow2", f"cluster_bits {h.cluster_bits} is out of range")
        check_fits_int64(h.size, "virtual size")
        if h.crypt_method not in (0, 1, 2):
            raise bad_header("qcow2", f"unknown encryption method {h.crypt_method}")
        if h.version == 3:
            if h.header_length < 104 or h.header_length > h.cluster_size:
                raise bad_header("qcow2", f"header length {h.header_length} is out of range")
            if h.refcount_order > 6:
                raise bad_header("qcow2", f"refcount order {h.refcount_order} is out of range")
        cs = h.cluster_size
        for name, offset in (
            ("L1 table", h.l1_table_offset),
            ("refcount table", h.refcount_table_offset),
        ):
            if offset % cs:
                raise bad_header("qcow2", f"the {name} offset is not cluster aligned")
        if h.nb_snapshots and h.snapshots_offset % cs:
            raise bad_header("qcow2", "the snapshot table offset is not cluster aligned")
        if h.nb_snapshots > MAX_SNAPSHOTS:
            raise bad_header("qcow2", f"{h.nb_snapshots} snapshots is too many")
        if h.l1_size * 8 > MAX_L1_BYTES:
            raise bad_header("qcow2", "the L1 table is too large")
        if h.refcount_table_clusters * cs > MAX_REFTABLE_BYTES or h.refcount_table_clusters == 0:
            raise bad_header("qcow2", "the refcount table size is out of range")
        # Each L1 entry maps one L2 table of cluster_size / 8 entries of one cluster.
        per_l1_entry = cs * (cs // 8)
        needed = -(-h.size // per_l1_entry)
        if h.l1_size < needed:
            raise bad_header(
                "qcow2",
                f"the virtual size {h.size} is larger than its L1 table can address",
            )
        self._walk_extensions(h)

    def _walk_extensions(self, h: Qcow2Header) -> None:
        data = bytes(self.region("extensions").data)
        limit = min(h.cluster_size, EXTENSIONS_CAPTURE)
        pos = h.header_length if h.version >= 3 else _V2.size
        types: list[int] = []
        while True:
            if pos + _EXT.size > limit:
                raise bad_header("qcow2", "the header extension list is not terminated")
            if pos + _EXT.size > len(data):
                raise bad_header("qcow2", "the header extensions are truncated")
            ext_type, length = _EXT.unpack_from(data, pos)
            if ext_type == EXT_END:
                break
            types.append(ext_type)
            pos += _EXT.size + ((length + 7) & ~7)
        self._extension_types = types
        if EXT_DATA_FILE in types:
            raise UnsafeImage(
                "data_file",
                "The qcow2 image names an external data file; such images are not accepted.",
            )
        if EXT_FULL_DISK_ENCRYPTION in types and h.crypt_method != 2:
            raise bad_header("qcow2", "an encryption header is present but encryption is off")

    def check_file(self, total_size: int) -> None:
        """Checks against the size of the whole upload; run at end of stream."""
        h = self.header
        if h.l1_size:
            end = h.l1_table_offset + h.l1_size * 8
            if end > total_size:
                raise outside_file("qcow2", "L1 table", end, total_size)
        if h.refcount_table_offset >= total_size:
            raise outside_file("qcow2", "refcount table", h.refcount_table_offset + 1, total_size)
        if h.nb_snapshots and h.snapshots_offset >= total_size:
            raise outside_file("qcow2", "snapshot table", h.snapshots_offset + 1, total_size)
