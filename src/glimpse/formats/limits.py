"""Numeric limits shared by the inspectors, and the one refusal for sizes.

A size or offset read from a header is attacker-controlled. Every such value is
either checked against the file it came from (``total_size``) or against the
largest size the database can hold: a signed 64-bit integer, the type of
``images.size`` and ``images.virtual_size``.
"""

from glimpse.domain.errors import UnsafeImage

INT64_MAX = 2**63 - 1

SECTOR = 512
KiB = 1024
MiB = 1024 * KiB


def check_fits_int64(value: int, what: str) -> None:
    """Refuse a size the database could not store (``size_too_large``)."""
    if value < 0 or value > INT64_MAX:
        raise UnsafeImage(
            "size_too_large",
            f"The image {what} ({value} bytes) is larger than the largest size "
            "this service can record.",
        )


def bad_header(fmt: str, problem: str) -> UnsafeImage:
    """The error for a header that is damaged, truncated or lying."""
    return UnsafeImage("bad_header", f"The {fmt} header is invalid: {problem}.")


def outside_file(fmt: str, what: str, end: int, total_size: int) -> UnsafeImage:
    """The error for a header that points past the end of the uploaded data."""
    return UnsafeImage(
        "bad_header",
        f"The {fmt} header is invalid: its {what} ends at byte {end}, "
        f"beyond the end of the data ({total_size} bytes).",
    )


def is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0
