from __future__ import annotations

from collections.abc import Callable

import pytest

from glimpse.formats.stream import FormatPolicy, InspectionResult, StreamInspector

from .builders import MiB

ALL_FORMATS = (
    "ami",
    "ari",
    "aki",
    "vhd",
    "vhdx",
    "vmdk",
    "raw",
    "qcow2",
    "vdi",
    "iso",
    "ploop",
    "gpt",
    "luks",
)

Inspect = Callable[..., InspectionResult]


@pytest.fixture
def inspect() -> Inspect:
    """Stream ``data`` through a StreamInspector and return its result."""

    def run(
        data: bytes,
        declared: str | None = None,
        container: str | None = "bare",
        chunk: int = MiB,
        **policy: object,
    ) -> InspectionResult:
        policy.setdefault("disk_formats", ALL_FORMATS)
        inspector = StreamInspector(declared, container, FormatPolicy(**policy))  # type: ignore[arg-type]
        for i in range(0, len(data), chunk):
            inspector.feed(data[i : i + chunk])
        return inspector.finish(len(data))

    return run
