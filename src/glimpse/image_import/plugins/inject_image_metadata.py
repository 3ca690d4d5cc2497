"""``inject_image_metadata`` (guide 4.3): set operator-chosen properties on imports.

``[inject_metadata_properties] inject`` is the properties, ``ignore_user_roles`` the
roles whose imports are left alone: a caller with any of them (compared without
regard to case) gets nothing injected. Like Glance, keys in the reserved
``os_glance`` namespace are dropped, and injected values win over the image's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from glimpse.image_import.job import ImportJob

RESERVED_PREFIX = "os_glance"


class InjectImageMetadataPlugin:
    name = "inject_image_metadata"

    def __init__(self, inject: Mapping[str, str], ignore_user_roles: Iterable[str]) -> None:
        self.inject = dict(inject)
        self.ignore_user_roles = frozenset(r.strip().lower() for r in ignore_user_roles)

    async def run(self, job: ImportJob) -> None:
        if not self.inject:
            return
        if any(role.lower() in self.ignore_user_roles for role in job.roles):
            return
        for key, value in self.inject.items():
            if key.startswith(RESERVED_PREFIX):
                job.messages.append(f"inject_image_metadata: reserved property {key} not set")
                continue
            job.properties[key] = value
