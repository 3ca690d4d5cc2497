"""The image record and its members, as the service sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Core fields a user may write on create or PATCH; everything else in a request body
# that is not read-only is an additional (string) property.
WRITABLE_CORE_FIELDS = frozenset(
    {
        "name", "visibility", "protected", "os_hidden", "owner", "min_disk", "min_ram",
        "disk_format", "container_format", "tags",
    }
)
READ_ONLY_FIELDS = frozenset(
    {
        "created_at", "updated_at", "status", "checksum", "size", "virtual_size",
        "direct_url", "self", "file", "schema", "id", "os_hash_algo", "os_hash_value",
        "stores",
    }
)
# Glance refuses these outright in request bodies (403 on create, as Glance).
RESERVED_FIELDS = frozenset({"location", "deleted", "deleted_at"})
RESERVED_PREFIX = "os_glance"

VISIBILITIES = ("public", "community", "shared", "private")
MEMBER_STATUSES = ("pending", "accepted", "rejected")


@dataclass
class Image:
    id: str
    owner: str
    status: str = "queued"
    name: str | None = None
    visibility: str = "shared"
    protected: bool = False
    os_hidden: bool = False
    disk_format: str | None = None
    container_format: str | None = None
    min_disk: int = 0
    min_ram: int = 0
    size: int | None = None
    virtual_size: int | None = None
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    properties: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    locations: list[Location] = field(default_factory=list)
    # Bumped by every write; compare-and-set guards use it.
    version: int = 0
    # The node writing this image's data while it is saving (crash recovery).
    data_node: str | None = None


@dataclass
class Location:
    url: str
    store: str
    metadata: dict[str, object] = field(default_factory=dict)
    status: str = "active"


@dataclass
class Member:
    image_id: str
    member_id: str
    status: str = "pending"
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class Task:
    """An asynchronous operation (an import) and how it ended."""

    id: str
    type: str
    status: str  # pending, processing, success, failure
    owner: str
    image_id: str | None = None
    user_id: str | None = None
    request_id: str | None = None
    input: dict[str, object] = field(default_factory=dict)
    result: dict[str, object] | None = None
    message: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
