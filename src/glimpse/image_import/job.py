"""What an import works on: the staged file and the changes it will make to the image."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ImportJob:
    """One import of one image, passed through the fetch step and every plugin.

    Plugins change the staged file in place (``path``) and record what the image
    record must say afterwards in ``disk_format``, ``virtual_size`` and
    ``properties``; the runner writes those when the data lands in a store.
    """

    image_id: str
    task_id: str
    method: str
    path: Path  # the staged data, on local disk
    disk_format: str | None
    container_format: str | None
    owner: str
    roles: tuple[str, ...] = ()
    properties: dict[str, str] = field(default_factory=dict)  # to set on the image
    virtual_size: int | None = None
    messages: list[str] = field(default_factory=list)
