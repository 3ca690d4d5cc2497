"""Hand-built disk images for the unit tests: small, valid by default, and
every field a test may want to lie about is a keyword argument.

Each builder returns the whole file as bytes. Layouts follow the format
specifications (and what qemu writes), kept as small as each format allows.
"""

from __future__ import annotations

import struct
import uuid

KiB = 1024
MiB = 1024 * KiB
SECTOR = 512


def feed_all(inspector: object, data: bytes, chunk: int = MiB) -> None:
    feed = inspector.feed  # type: ignore[attr-defined]
    for i in range(0, len(data), chunk):
        feed(data[i : i + chunk])


# -- qcow2 --------------------------------------------------------------------


def qcow2(
    *,
    size: int = 1 << 30,
    version: int = 3,
    cluster_bits: int = 16,
    backing_file: bytes | None = None,
    backing_file_size: int | None = None,
    crypt_method: int = 0,
    l1_size: int | None = None,
    l1_table_offset: int | None = None,
    refcount_table_offset: int | None = None,
    refcount_table_clusters: int = 1,
    nb_snapshots: int = 0,
    snapshots_offset: int = 0,
    incompatible: int = 0,
    refcount_order: int = 4,
    header_length: int = 104,
    extensions: list[tuple[int, bytes]] | None = None,
    terminate_extensions: bool = True,
    at_510: bytes | None = None,
) -> bytes:
    """Header cluster, refcount table, refcount block, L1 table."""
    cs = 1 << cluster_bits
    if l1_size is None:
        per_entry = cs * (cs // 8)
        l1_size = max(1, -(-size // per_entry))
    if l1_table_offset is None:
        l1_table_offset = 3 * cs
    if refcount_table_offset is None:
        refcount_table_offset = cs
    head = bytearray(cs)
    ext_pos = header_length if version >= 3 else 72
    ext = bytearray()
    for ext_type, payload in extensions or []:
        ext += struct.pack(">II", ext_type, len(payload)) + payload
        ext += bytes(-len(payload) % 8)
    if terminate_extensions:
        ext += struct.pack(">II", 0, 0)
    head[ext_pos : ext_pos + len(ext)] = ext
    bf_offset = 0
    bf_size = 0
    if backing_file is not None:
        bf_offset = ext_pos + len(ext)
        bf_size = len(backing_file)
        head[bf_offset : bf_offset + bf_size] = backing_file
    if backing_file_size is not None:
        bf_size = backing_file_size
    struct.pack_into(
        ">4sIQIIQIIQQIIQ",
        head,
        0,
        b"QFI\xfb",
        version,
        bf_offset,
        bf_size,
        cluster_bits,
        size,
        crypt_method,
        l1_size,
        l1_table_offset,
        refcount_table_offset,
        refcount_table_clusters,
        nb_snapshots,
        snapshots_offset,
    )
    if version >= 3:
        struct.pack_into(">QQQII", head, 72, incompatible, 0, 0, refcount_order, header_length)
    if at_510 is not None:
        head[510:512] = at_510
    reftable = bytearray(cs)
    struct.pack_into(">Q", reftable, 0, 2 * cs)
    refblock = bytearray(cs)
    for i in range(4):
        struct.pack_into(">H", refblock, i * 2, 1)
    l1 = bytes(l1_size * 8)
    return bytes(head) + bytes(reftable) + bytes(refblock) + l1


# -- vmdk ---------------------------------------------------------------------


def vmdk_descriptor(
    *,
    capacity: int = 2048,
    create_type: str = "monolithicSparse",
    extents: list[str] | None = None,
    parent_hint: str | None = None,
) -> str:
    lines = [
        "# Disk DescriptorFile",
        "version=1",
        "CID=12345678",
        "parentCID=ffffffff",
        f'createType="{create_type}"',
    ]
    if parent_hint is not None:
        lines.append(f'parentFileNameHint="{parent_hint}"')
    lines += ["", "# Extent description"]
    lines += extents if extents is not None else [f'RW {capacity} SPARSE "disk.vmdk"']
    lines += ["", "# The Disk Data Base", "#DDB", 'ddb.virtualHWVersion = "4"', ""]
    return "\n".join(lines)


def vmdk(
    *,
    capacity: int = 2048,
    descriptor: str | None = None,
    version: int = 1,
    grain: int = 128,
    desc_offset: int = 1,
    desc_size: int = 20,
    gd_offset: int = 21,
    stream_optimized: bool = False,
    footer_capacity: int | None = None,
    sectors: int = 64,
) -> bytes:
    """A sparse extent: header, embedded descriptor, a few sectors of tables.

    ``stream_optimized`` puts the grain directory in a footer, as qemu does:
    ... footer marker, footer header, end-of-stream marker.
    """
    if descriptor is None:
        descriptor = vmdk_descriptor(
            capacity=capacity,
            create_type="streamOptimized" if stream_optimized else "monolithicSparse",
        )
    gd = 0xFFFFFFFFFFFFFFFF if stream_optimized else gd_offset

    def header(gd_value: int, cap: int) -> bytes:
        h = bytearray(SECTOR)
        struct.pack_into(
            "<4sIIQQQQIQQ",
            h,
            0,
            b"KDMV",
            version,
            3,
            cap,
            grain,
            desc_offset,
            desc_size,
            512,
            0 if stream_optimized else gd_value - 10 if gd_value > 10 else 0,
            gd_value,
        )
        return bytes(h)

    body = bytearray(sectors * SECTOR)
    body[0:SECTOR] = header(gd, capacity)
    desc = descriptor.encode()
    start = desc_offset * SECTOR
    body[start : start + len(desc)] = desc
    if stream_optimized:
        marker = struct.pack("<QII", 1, 0, 3) + bytes(496)
        footer = header(sectors - 10, capacity if footer_capacity is None else footer_capacity)
        eos = bytes(SECTOR)
        body += marker + footer + eos
    return bytes(body)


# -- vhd ----------------------------------------------------------------------


def vhd_footer(
    *,
    size: int,
    disk_type: int = 2,
    data_offset: int = 0xFFFFFFFFFFFFFFFF,
    creator: bytes = b"qem2",
    chs: tuple[int, int, int] = (65535, 16, 255),
    bad_checksum: bool = False,
) -> bytes:
    f = bytearray(SECTOR)
    struct.pack_into(
        ">8sIIQI4sIIQQHBBII16s",
        f,
        0,
        b"conectix",
        2,
        0x00010000,
        data_offset,
        0,
        creator,
        0x00050003,
        0x5769326B,
        size,
        size,
        chs[0],
        chs[1],
        chs[2],
        disk_type,
        0,
        uuid.UUID(int=1).bytes,
    )
    checksum = (~sum(f)) & 0xFFFFFFFF
    if bad_checksum:
        checksum ^= 1
    struct.pack_into(">I", f, 64, checksum)
    return bytes(f)


def vhd_fixed(*, size: int = MiB, content: bytes = b"", **footer: object) -> bytes:
    data = bytearray(size)
    data[: len(content)] = content
    return bytes(data) + vhd_footer(size=size, **footer)  # type: ignore[arg-type]


def vhd_dynamic(
    *,
    size: int = 8 * MiB,
    block_size: int = 2 * MiB,
    max_entries: int | None = None,
    disk_type: int = 3,
    end_footer: bytes | None = None,
    table_offset: int = 1536,
) -> bytes:
    if max_entries is None:
        max_entries = -(-size // block_size)
    footer = vhd_footer(size=size, disk_type=disk_type, data_offset=512)
    dyn = bytearray(1024)
    struct.pack_into(
        ">8sQQIIII",
        dyn,
        0,
        b"cxsparse",
        0xFFFFFFFFFFFFFFFF,
        table_offset,
        0x00010000,
        max_entries,
        block_size,
        0,
    )
    table = b"\xff" * (-(-max_entries * 4 // SECTOR) * SECTOR)
    return footer + bytes(dyn) + table + (footer if end_footer is None else end_footer)


# -- vhdx ---------------------------------------------------------------------


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


VHDX_BAT = _guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
VHDX_METADATA = _guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
VHDX_FILE_PARAMETERS = _guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VHDX_VIRTUAL_DISK_SIZE = _guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
VHDX_LOGICAL_SECTOR = _guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
VHDX_PARENT_LOCATOR = _guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")


def vhdx(
    *,
    size: int = 64 * MiB,
    block_size: int = 32 * MiB,
    has_parent: bool = False,
    parent_locator: bool = False,
    log_guid: bytes = bytes(16),
    extra_regions: list[tuple[bytes, int, int, int]] | None = None,
    extra_items: list[tuple[bytes, int, int, int]] | None = None,
    total: int = 4 * MiB,
) -> bytes:
    """Identifier, two headers, two region tables, log at 1 MiB, metadata at
    2 MiB (items at +64 KiB), BAT at 3 MiB."""
    data = bytearray(total)
    data[0:8] = b"vhdxfile"
    for seq, pos in ((1, 64 * KiB), (2, 128 * KiB)):
        struct.pack_into(
            "<4sIQ16s16s16sHHIQ",
            data,
            pos,
            b"head",
            0,
            seq,
            uuid.UUID(int=2).bytes,
            uuid.UUID(int=3).bytes,
            log_guid,
            0,
            1,
            MiB,
            MiB,
        )
    regions = [(VHDX_BAT, 3 * MiB, MiB, 1), (VHDX_METADATA, 2 * MiB, MiB, 1)]
    regions += extra_regions or []
    for pos in (192 * KiB, 256 * KiB):
        struct.pack_into("<4sIII", data, pos, b"regi", 0, len(regions), 0)
        for i, (guid, off, length, req) in enumerate(regions):
            struct.pack_into("<16sQII", data, pos + 16 + i * 32, guid, off, length, req)
    meta = 2 * MiB
    items = [
        (VHDX_FILE_PARAMETERS, 64 * KiB, 8, 4),
        (VHDX_VIRTUAL_DISK_SIZE, 64 * KiB + 8, 8, 6),
        (VHDX_LOGICAL_SECTOR, 64 * KiB + 16, 4, 6),
    ]
    if parent_locator:
        items.append((VHDX_PARENT_LOCATOR, 64 * KiB + 32, 16, 4))
    items += extra_items or []
    struct.pack_into("<8sHH", data, meta, b"metadata", 0, len(items))
    for i, (guid, off, length, flags) in enumerate(items):
        struct.pack_into("<16sIII", data, meta + 32 + i * 32, guid, off, length, flags)
    struct.pack_into("<II", data, meta + 64 * KiB, block_size, 2 if has_parent else 0)
    struct.pack_into("<Q", data, meta + 64 * KiB + 8, size)
    struct.pack_into("<I", data, meta + 64 * KiB + 16, 512)
    return bytes(data)


# -- vdi ----------------------------------------------------------------------


def vdi(
    *,
    disk_size: int = 4 * MiB,
    image_type: int = 1,
    version: int = 0x00010001,
    blocks: int | None = None,
    allocated: int = 0,
    block_size: int = MiB,
    sector_size: int = 512,
    offset_bmap: int = 512,
    offset_data: int | None = None,
    parent: bytes = bytes(16),
    link: bytes = bytes(16),
    truncate_to: int | None = None,
) -> bytes:
    if blocks is None:
        blocks = -(-disk_size // MiB)
    if offset_data is None:
        offset_data = offset_bmap + -(-blocks * 4 // SECTOR) * SECTOR
    head = bytearray(SECTOR)
    head[0:40] = b"<<< Oracle VM VirtualBox Disk Image >>>\n"
    struct.pack_into("<IIII", head, 0x40, 0xBEDA107F, version, 0x190, image_type)
    struct.pack_into("<II", head, 0x154, offset_bmap, offset_data)
    struct.pack_into("<I", head, 0x168, sector_size)
    struct.pack_into("<QIIII", head, 0x170, disk_size, block_size, 0, blocks, allocated)
    head[0x188:0x198] = uuid.UUID(int=5).bytes
    head[0x1A8:0x1B8] = link
    head[0x1B8:0x1C8] = parent
    body = bytearray(offset_data - SECTOR + allocated * MiB)
    out = bytes(head) + bytes(body)
    return out if truncate_to is None else out[:truncate_to]


# -- ploop --------------------------------------------------------------------


def ploop(
    *,
    size: int = 64 * MiB,
    version: int = 2,
    tracks: int = 2048,
    bat_entries: int | None = None,
    magic: bytes = b"WithouFreSpacExt",
    ext_off: int = 0,
) -> bytes:
    sectors = size // SECTOR
    if bat_entries is None:
        bat_entries = -(-sectors // tracks)
    data_off = -(-(64 + bat_entries * 4) // SECTOR)
    head = struct.pack(
        "<16sIIIIIQIIIQ",
        magic,
        version,
        16,
        0,
        tracks,
        bat_entries,
        sectors,
        0,
        data_off,
        0,
        ext_off,
    )
    return head + bytes(data_off * SECTOR - 64)


# -- iso, mbr, luks, qed --------------------------------------------------------


def iso(*, blocks: int = 32, block_size: int = 2048, file_blocks: int | None = None) -> bytes:
    data = bytearray((blocks if file_blocks is None else file_blocks) * 2048)
    pvd = bytearray(2048)
    pvd[0] = 1
    pvd[1:6] = b"CD001"
    pvd[6] = 1
    struct.pack_into("<I", pvd, 80, blocks)
    struct.pack_into(">I", pvd, 84, blocks)
    struct.pack_into("<H", pvd, 128, block_size)
    struct.pack_into(">H", pvd, 130, block_size)
    data[32 * KiB : 34 * KiB] = pvd
    data[34 * KiB : 34 * KiB + 7] = b"\xffCD001\x01"
    return bytes(data)


def mbr(*, boot_flag: int = 0x80, ostype: int = 0x83, size: int = MiB) -> bytes:
    sector = bytearray(SECTOR)
    struct.pack_into("<B3BB3BII", sector, 446, boot_flag, 0, 2, 0, ostype, 0, 0, 0, 2048, 2048)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector) + bytes(size - SECTOR)


def luks(*, version: int = 1, payload_offset: int = 4096, data: int = MiB) -> bytes:
    head = bytearray(592)
    struct.pack_into(
        ">6sH32s32s32sII",
        head,
        0,
        b"LUKS\xba\xbe",
        version,
        b"aes",
        b"xts-plain64",
        b"sha256",
        payload_offset,
        64,
    )
    return bytes(head) + bytes(payload_offset * SECTOR - 592 + data)


def qed(*, size: int = 64 * KiB) -> bytes:
    return b"QED\x00" + bytes(size - 4)
