"""The interface the upload and import code calls: inspect a disk image as it streams.

    inspector = StreamInspector(image.disk_format, image.container_format, policy)
    for chunk in body:                 # ~1 MiB chunks
        inspector.feed(chunk)          # cheap; may raise UnsafeImage early
        ...hash and store chunk...
    result = inspector.finish(total)   # raises UnsafeImage / FormatMismatch

What is refused, in the order it is checked (each with its ``reason``):

1. ``banned_format``: the declared disk_format is not enabled, or the data is a
   format nobody may use (qed).
2. ``bad_header``: the data carries a format's signature but its header is
   truncated or damaged, or claims sizes and offsets outside the file;
   ``unsupported_version`` for versions of a format we do not read.
3. ``multiple_formats``: the data is valid as two formats at once (a polyglot),
   except an ISO or a fixed VHD whose content also carries a partition table.
4. ``backing_file``, ``data_file``, ``unknown_features``, ``vmdk_extent``,
   ``mbr``: the detected format refers to other files or uses features we cannot
   vouch for (see the per-format modules).
5. ``encrypted`` (qcow2 encryption, LUKS) unless allowed; ``vmdk_type`` for a
   createType outside ``vmdk_allowed_types``.
6. ``format_mismatch`` (:class:`FormatMismatch`): the data is not the declared
   disk_format, when ``require_image_format_match`` is on.
7. ``size_too_large``: a size that does not fit a signed 64-bit integer.

The data is inspected whatever the container_format: a qcow2 with a backing
file inside an ``ovf`` or ``ova`` container is still refused. For containers
that wrap the disk in an archive (ova, docker, compressed) data that is no
recognised format is accepted without a virtual size.

Early refusals from ``feed``: a declared format whose signature is absent from
the first bytes, and any header check of a format as soon as its header has
arrived (a qcow2 with a backing file is refused after its first chunk).
"""

from dataclasses import dataclass

from oslo_utils.imageutils import format_inspector as fi

from glimpse.domain.errors import FormatMismatch, UnsafeImage
from glimpse.formats.detect import INSPECTORS, Detector, StrictChecks, signature_present
from glimpse.formats.limits import SECTOR, KiB, bad_header, check_fits_int64
from glimpse.formats.qcow2 import Qcow2Inspector
from glimpse.formats.vhd import VhdInspector
from glimpse.formats.vmdk import VmdkInspector

# Declared formats whose data is a plain disk. aki/ari/ami are AMI-style
# kernel, ramdisk and machine images: raw bytes.
RAW_LIKE = frozenset({"raw", "aki", "ari", "ami"})
# Detected formats that are raw bytes to a hypervisor.
RAW_CONTENT = frozenset({"raw", "gpt"})
# Containers whose data is an archive around the disk, not the disk itself.
ARCHIVE_CONTAINERS = frozenset({"ova", "docker", "compressed"})
# Formats we can recognise in data.
RECOGNISED = frozenset(INSPECTORS) | {"raw"}
# Declared formats whose absence of signature can be told from the first bytes.
EARLY_SIGNATURES = frozenset({"qcow2", "vhdx", "vdi", "ploop", "luks", "iso"})

# feed() hands data to the detector in pieces of at least this size.
BATCH = 64 * KiB

# oslo safety check names -> our reasons (the rest: bad_header).
_OSLO_REASONS = {
    "backing_file": "backing_file",
    "data_file": "data_file",
    "unknown_features": "unknown_features",
    "banned": "banned_format",
    "mbr": "mbr",
    "version": "unsupported_version",
}

_FRIENDLY = {
    "raw": "raw",
    "gpt": "partitioned raw (MBR/GPT)",
    "qcow2": "qcow2",
    "vmdk": "VMDK",
    "vhd": "VHD",
    "vhdx": "VHDX",
    "vdi": "VDI",
    "ploop": "ploop",
    "iso": "ISO",
    "luks": "LUKS",
    "qed": "QED",
}


@dataclass(frozen=True)
class FormatPolicy:
    disk_formats: tuple[str, ...]  # allowed, from [image_format] disk_formats
    require_image_format_match: bool = True  # Glance option of the same name
    vmdk_allowed_types: tuple[str, ...] = ("streamOptimized", "monolithicSparse")
    gpt_safety_checks_nonfatal: tuple[str, ...] = ()
    allow_encrypted: bool = False


@dataclass(frozen=True)
class InspectionResult:
    format: str  # detected: raw, qcow2, vmdk, vhd, vhdx, vdi, iso, ploop, gpt, luks
    virtual_size: int | None


def _name(fmt: str) -> str:
    return _FRIENDLY.get(fmt, fmt)


class StreamInspector:
    """Inspect one image's data as it streams; see the module docstring."""

    def __init__(
        self,
        declared_disk_format: str | None,
        container_format: str | None,
        policy: FormatPolicy,
    ) -> None:
        if declared_disk_format is not None and declared_disk_format not in policy.disk_formats:
            raise UnsafeImage(
                "banned_format",
                f"Disk format {declared_disk_format!r} is not enabled on this service; "
                f"allowed formats are: {', '.join(policy.disk_formats) or 'none'}.",
            )
        self._declared = declared_disk_format
        self._container = container_format
        self._policy = policy
        self._detector = Detector()
        self._pending = bytearray()
        self._checked: set[str] = set()
        self._signature_pending = (
            policy.require_image_format_match
            and container_format not in ARCHIVE_CONTAINERS
            and declared_disk_format in EARLY_SIGNATURES
        )

    # -- streaming ---------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        # Small chunks (a client trickling bytes) are gathered so the detector
        # runs at most once per BATCH bytes: its cost is per call, not per byte.
        if not self._pending and len(chunk) >= BATCH:
            self._inspect(chunk)
            return
        self._pending += chunk
        if len(self._pending) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._inspect(data)

    def _inspect(self, chunk: bytes) -> None:
        for name in self._detector.feed(chunk):
            self._header_checks(name, self._detector.inspector(name))
        if self._signature_pending:
            self._check_declared_signature()

    def finish(self, total_size: int) -> InspectionResult:
        """Decide, after the last chunk. ``total_size`` must be the number of
        bytes fed (ValueError otherwise: a caller bug, not bad data)."""
        self._flush()
        if total_size != self._detector.size:
            raise ValueError(
                f"finish() was told {total_size} bytes but {self._detector.size} were fed"
            )
        check_fits_int64(total_size, "size")
        detection = self._detector.finish(total_size)
        if detection.broken:
            fmt = detection.broken[0]
            raise bad_header(
                _name(fmt),
                f"the data starts like a {_name(fmt)} image but its header is truncated or damaged",
            )
        fmt, inspector = self._pick(detection.matches)
        if inspector is not None:
            if fmt not in self._checked:
                self._header_checks(fmt, inspector)
            if isinstance(inspector, StrictChecks):
                inspector.check_file(total_size)
            self._oslo_safety(fmt, inspector)
        self._check_match(fmt)
        size = self._virtual_size(fmt, inspector, total_size)
        if size is not None:
            check_fits_int64(size, "virtual size")
        return InspectionResult(format=fmt, virtual_size=size or None)

    # -- steps ---------------------------------------------------------------

    def _check_declared_signature(self) -> None:
        declared = self._declared
        assert declared is not None
        present = signature_present(declared, self._detector.head)
        if present is None:
            return
        self._signature_pending = False
        if not present:
            raise FormatMismatch(
                "format_mismatch",
                f"The image was declared as {_name(declared)} but the data does not start "
                f"like a {_name(declared)} image.",
            )

    def _header_checks(self, fmt: str, inspector: fi.FileInspector) -> None:
        """Checks that need only the headers, then the policy on what they say."""
        self._checked.add(fmt)
        if isinstance(inspector, StrictChecks):
            inspector.check_header()
        policy = self._policy
        if not policy.allow_encrypted:
            if fmt == "luks" or (isinstance(inspector, Qcow2Inspector) and inspector.encrypted):
                raise UnsafeImage(
                    "encrypted",
                    f"The {_name(fmt)} image is encrypted; encrypted images are not "
                    "accepted by this service.",
                )
        if isinstance(inspector, VmdkInspector):
            allowed = {t.lower() for t in policy.vmdk_allowed_types}
            create_type = inspector.create_type
            if create_type is None or create_type not in allowed:
                raise UnsafeImage(
                    "vmdk_type",
                    f"VMDK images of type {create_type or 'unknown'!s} are not accepted; "
                    f"allowed types are: {', '.join(policy.vmdk_allowed_types) or 'none'}.",
                )

    def _pick(self, matches: dict[str, fi.FileInspector]) -> tuple[str, fi.FileInspector | None]:
        names = set(matches)
        vhd = matches.get("vhd")
        if (
            isinstance(vhd, VhdInspector)
            and vhd.fixed_footer_only
            and names - {"vhd"}
            <= {
                "gpt",
                "iso",
            }
        ):
            # A fixed VHD is raw content plus a footer: a partition table or an
            # ISO inside it is the disk's content, not a second format.
            names = {"vhd"}
        if names == {"iso", "gpt"}:
            names = {"iso"}  # hybrid ISOs carry an MBR for USB boot
        if names == {"gpt"} and self._container in ARCHIVE_CONTAINERS:
            names = set()  # an MBR signature at byte 510 of an archive means nothing
        if len(names) > 1:
            listed = ", ".join(_name(n) for n in sorted(names))
            raise UnsafeImage(
                "multiple_formats",
                f"The data is valid as more than one disk format at once ({listed}); "
                "such images are refused because different readers would see "
                "different disks.",
            )
        if not names:
            return "raw", None
        (fmt,) = names
        return fmt, matches[fmt]

    def _oslo_safety(self, fmt: str, inspector: fi.FileInspector) -> None:
        """oslo's own safety checks, after ours (which give the more precise reason)."""
        try:
            inspector.safety_check()
        except fi.SafetyCheckFailed as exc:
            failures: dict[str, Exception] = dict(exc.failures)
            if fmt == "gpt":
                for name in self._policy.gpt_safety_checks_nonfatal:
                    failures.pop(name, None)
            if not failures:
                return
            name, failure = next(iter(failures.items()))
            reason = _OSLO_REASONS.get(name, "bad_header")
            if name == "descriptor":
                text = str(failure).lower()
                reason = "vmdk_type" if "subformat" in text else "vmdk_extent"
            message = f"The {_name(fmt)} image failed the safety check {name!r}: {failure}."
            if name == "banned":
                message = f"{_name(fmt)} images are not accepted by this service."
            raise UnsafeImage(reason, message) from exc
        except fi.ImageFormatError as exc:
            raise bad_header(_name(fmt), str(exc)) from exc

    def _matches_declared(self, fmt: str) -> bool:
        declared = self._declared
        assert declared is not None
        if self._container in ARCHIVE_CONTAINERS and fmt == "raw":
            return True
        if declared in RAW_LIKE:
            return fmt in RAW_CONTENT or (fmt == "luks" and self._policy.allow_encrypted)
        if declared in RECOGNISED:
            return fmt == declared
        # A format we cannot recognise in data (added by the operator): accept
        # data in which we recognise nothing.
        return fmt == "raw"

    def _check_match(self, fmt: str) -> None:
        if self._declared is None or not self._policy.require_image_format_match:
            return
        if not self._matches_declared(fmt):
            raise FormatMismatch(
                "format_mismatch",
                f"The image was declared as {_name(self._declared)} but the data is {_name(fmt)}.",
            )

    def _virtual_size(
        self, fmt: str, inspector: fi.FileInspector | None, total_size: int
    ) -> int | None:
        declared = self._declared
        if declared is not None and not self._matches_declared(fmt):
            # Only reached when mismatches are allowed: like Glance, a disk
            # declared raw is as large as its bytes; others have no known size.
            return total_size if declared in RAW_LIKE else None
        if fmt == "raw" and self._container in ARCHIVE_CONTAINERS:
            return None
        if fmt in RAW_CONTENT or fmt == "iso":
            return total_size
        assert inspector is not None
        if isinstance(inspector, fi.LUKSInspector):
            payload = int(inspector.header_items["payload_offset"]) * SECTOR
            if payload > total_size:
                raise bad_header("LUKS", "the payload starts beyond the end of the data")
            if declared in RAW_LIKE:
                return total_size
            return total_size - payload
        return int(inspector.virtual_size)
