"""The plugin interface of ``[image_import_opts] image_import_plugins``."""

from __future__ import annotations

from typing import Protocol

from glimpse.image_import.job import ImportJob


class ImportPlugin(Protocol):
    name: str

    async def run(self, job: ImportJob) -> None:
        """Transform ``job.path`` in place and/or record changes on ``job``.

        Raise a ``glimpse.domain.errors.GlimpseError`` (e.g. ``InvalidImageData``)
        with a clear message to fail the import; never leave extra files behind.
        """
        ...
