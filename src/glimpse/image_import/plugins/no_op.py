"""``no_op``: a plugin that does nothing (Glance's, for testing the plugin chain)."""

from __future__ import annotations

from glimpse.image_import.job import ImportJob


class NoOpPlugin:
    name = "no_op"

    async def run(self, job: ImportJob) -> None:
        return None
