"""What the services need from the database, as protocols and small query objects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from glimpse.db.quotas import QuotaClaim
from glimpse.domain.image import Image, Location, Member, Task

SORT_KEYS = (
    "name", "status", "container_format", "disk_format", "size", "id", "created_at",
    "updated_at", "visibility", "owner", "min_disk", "min_ram", "virtual_size",
)


@dataclass(frozen=True)
class Comparison:
    """``created_at=gt:2016-04-18T21:38:54Z`` parsed: operator and value."""

    op: str  # gt gte lt lte eq neq
    value: datetime


@dataclass(frozen=True)
class ImageQuery:
    """One page of images as one caller may see it."""

    project_id: str | None
    is_admin: bool
    visibility: str | None = None  # None: the default union; "all": no visibility filter
    member_status: str = "accepted"
    exact: dict[str, object] = field(default_factory=dict)  # core column == value
    any_of: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column IN (...)
    properties: dict[str, str] = field(default_factory=dict)  # extra property == value
    tags: tuple[str, ...] = ()
    size_min: int | None = None
    size_max: int | None = None
    times: dict[str, tuple[Comparison, ...]] = field(default_factory=dict)
    os_hidden: bool | None = False
    sort: tuple[tuple[str, str], ...] = (("created_at", "desc"), ("id", "desc"))
    marker: str | None = None
    limit: int = 25


@dataclass(frozen=True)
class ImageChanges:
    """A write to apply to one image under a compare-and-set guard."""

    core: dict[str, object] = field(default_factory=dict)
    set_properties: dict[str, str] = field(default_factory=dict)
    remove_properties: tuple[str, ...] = ()
    tags: list[str] | None = None  # replaces all tags when not None
    add_locations: tuple[Location, ...] = ()
    remove_locations: tuple[str, ...] = ()  # urls


class ImageRepository(Protocol):
    async def create(self, image: Image, *, claim: QuotaClaim | None = None) -> Image:
        """Insert the image; with a claim, checked under the owner's quota lock after the
        insert (QuotaExceeded: nothing is created). Duplicate if the id exists."""
        ...

    async def get(self, image_id: str) -> Image | None: ...

    async def find(self, query: ImageQuery) -> list[Image]: ...

    async def update(
        self,
        image_id: str,
        changes: ImageChanges,
        *,
        expected_version: int | None = None,
        expected_status: Sequence[str] | None = None,
        absent_property: str | None = None,
        claim: QuotaClaim | None = None,
    ) -> Image | None:
        """Apply ``changes`` if the image still has that version and status (and,
        with ``absent_property``, does not have that property: a lock). A claim is
        checked after the write, in its transaction (QuotaExceeded undoes the write).

        Returns the updated image, or None when the guard failed (someone else won)
        or the image is gone.
        """
        ...

    async def modify(
        self, image_id: str, mutate: Callable[[Image], ImageChanges | None], *,
        claim: QuotaClaim | None = None,
    ) -> Image | None:
        """Read the image, let ``mutate`` decide the changes, and write them, all in one
        transaction that holds the image (and checks the claim, as ``update``); None
        when the image does not exist."""
        ...

    async def delete(self, image_id: str, *, expected_status: Sequence[str] | None = None) -> bool:
        ...

    async def add_tag(self, image_id: str, tag: str, quota: int) -> bool:
        """Add a tag; False when the quota would be exceeded."""
        ...

    async def remove_tag(self, image_id: str, tag: str) -> bool: ...

    async def add_location(self, image_id: str, location: Location) -> None: ...

    async def remove_location(self, image_id: str, url: str) -> None: ...

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        ...

    async def active_location_urls(self) -> set[str]:
        """Urls of every active location of every image that is not deleted."""
        ...

    async def images_in_status(self, status: str, node_id: str | None = None) -> list[Image]: ...

    # -- deletion -------------------------------------------------------------------
    # One DELETE or one scrubber at a time removes an image's data: it claims the image
    # first (a compare-and-set with an expiry, so a holder that dies loses it), and only
    # the claimant may then mark the image pending_delete or deleted.

    async def claim(self, image_id: str, claimant: str, lease_seconds: int) -> Image | None:
        """Claim a live (not deleted) image nobody else holds; the image with its active
        locations, or None (gone, or claimed by someone else)."""
        ...

    async def claim_pending_delete(
        self, image_id: str, claimant: str, lease_seconds: int, deleted_before: datetime
    ) -> Image | None:
        """Claim a pending_delete image deleted before the cutoff that nobody holds; the
        image with its pending_delete locations, or None."""
        ...

    async def renew_claim(self, image_id: str, claimant: str, lease_seconds: int) -> bool: ...

    async def release_claim(self, image_id: str, claimant: str) -> None: ...

    async def mark_pending_delete(self, image_id: str, claimant: str) -> bool:
        """Hide the claimed image as pending_delete (its active locations too), keeping
        its properties, tags and members; releases the claim."""
        ...

    async def mark_deleted(
        self, image_id: str, claimant: str, *, expected_version: int | None = None
    ) -> bool:
        """The claimant's last step: the image (live or pending_delete) becomes deleted
        and loses its properties, tags, members and locations; the row stays."""
        ...

    async def pending_delete_ids(self, deleted_before: datetime) -> list[str]:
        """pending_delete images deleted before the cutoff and not claimed, oldest first."""
        ...

    async def restore(self, image_id: str) -> Image:
        """pending_delete -> active with its locations; ImageNotFound or Conflict."""
        ...

    async def purge_deleted(self, deleted_before: datetime, max_rows: int) -> dict[str, int]:
        """Hard-delete rows of images deleted before the cutoff (never the images rows)
        and of tasks expired before it; rows removed per table."""
        ...

    async def purge_images_table(self, deleted_before: datetime, max_rows: int) -> int:
        """Hard-delete the images rows deleted before the cutoff (their ids become free)."""
        ...


class TaskRepository(Protocol):
    async def create(self, task: Task, *, lease_node: str, lease_seconds: int) -> Task: ...

    async def get(self, task_id: str) -> Task | None: ...

    async def for_image(self, image_id: str) -> list[Task]: ...

    async def find(
        self, owner: str | None, *, status: str | None, limit: int, marker: str | None,
        sort_dir: str,
    ) -> list[Task]: ...

    async def finish(
        self, task_id: str, status: str, message: str, result: dict[str, object] | None,
        expires_at: datetime,
    ) -> None: ...

    async def set_status(self, task_id: str, status: str) -> None: ...

    async def renew_lease(self, task_id: str, node: str, lease_seconds: int) -> bool: ...

    async def claim_abandoned(
        self, node: str, lease_seconds: int, *, include_own: bool,
        task_types: tuple[str, ...],
    ) -> list[Task]:
        """Take over running tasks of these types whose node's lease ran out (or that
        this node ran before it restarted); returns the tasks now leased to ``node``."""
        ...


class MemberRepository(Protocol):
    async def add(self, member: Member, quota: int) -> Member:
        """Raise Duplicate if present, LimitExceeded over quota."""
        ...

    async def get(self, image_id: str, member_id: str) -> Member | None: ...

    async def for_image(self, image_id: str) -> list[Member]: ...

    async def set_status(self, image_id: str, member_id: str, status: str) -> Member | None: ...

    async def delete(self, image_id: str, member_id: str) -> bool: ...
