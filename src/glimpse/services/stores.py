"""Stores as users see them: discovery, one copy removed, locations added by services."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from glimpse.db.base import ImageChanges, ImageRepository, TaskRepository
from glimpse.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LimitExceeded,
    NotFound,
    StoreNotFound,
)
from glimpse.domain.image import Image, Location, Task
from glimpse.image_import.locations import (
    TASK_TYPE,
    LocationImporter,
    LocationRequest,
    release_stale_lock,
)
from glimpse.image_import.runner import LOCK
from glimpse.image_import.uri_filter import UriFilter, check_uri
from glimpse.policy.context import RequestContext
from glimpse.services.images import ImageService
from glimpse.stores.registry import ManagedStore, StoreRegistry

log = logging.getLogger(__name__)

_HASH_ALGOS = ("sha1", "sha256", "sha512", "md5")


@dataclass(frozen=True)
class StoreInfo:
    id: str
    type: str
    description: str | None
    default: bool
    read_only: bool
    weight: int
    properties: dict[str, object]


class StoreService:
    def __init__(
        self,
        images: ImageService,
        repo: ImageRepository,
        stores: StoreRegistry,
        location_quota: int,
        *,
        tasks: TaskRepository,
        importer: LocationImporter,
        uri_filter: UriFilter,
    ) -> None:
        self.images = images
        self.repo = repo
        self.stores = stores
        self.location_quota = location_quota
        self.tasks = tasks
        # Runs each location_import task (hashing the data) in the background.
        self.importer = importer
        # [import_filtering_opts]: http(s) locations pass the web-download rules too.
        self.uri_filter = uri_filter

    def list_stores(self) -> list[StoreInfo]:
        if not self.stores.multistore:
            raise NotFound("Multi backend is not supported at this site.")
        return [self._info(s) for s in self.stores.all()]

    def store_ids(self) -> list[str]:
        return [s.id for s in self.stores.all() if not s.read_only]

    def stores_detail(self, ctx: RequestContext) -> list[StoreInfo]:
        stores = self.list_stores()
        self.images.policy.authorize(ctx, "stores_info_detail", {"project_id": ctx.project_id})
        return stores

    def _info(self, store: ManagedStore) -> StoreInfo:
        return StoreInfo(
            id=store.id,
            type=store.type,
            description=store.description,
            default=store.id == self.stores.default_id,
            read_only=store.read_only,
            weight=store.weight,
            properties=store.driver.properties(),
        )

    async def delete_from_store(self, ctx: RequestContext, store_id: str, image_id: str) -> None:
        """Remove one copy; the image keeps its other copies and stays active."""
        if not self.stores.multistore:
            raise NotFound("Multi backend is not supported at this site.")
        try:
            store = self.stores.get(store_id)
        except StoreNotFound:
            raise Conflict(
                f"The selected store {store_id} is not available on this node."
            ) from None
        for _ in range(10):
            image = await self.images.get_image(ctx, image_id)
            target = await self.images.target(ctx, image)
            self.images.policy.authorize(ctx, "get_image_location", target)
            self.images.policy.authorize(ctx, "delete_image_location", target)
            if image.status != "active":
                raise Conflict(
                    "It's not allowed to remove image data from store if image status is "
                    "not 'active'"
                )
            copy = next((loc for loc in image.locations if loc.store == store_id), None)
            if copy is None:
                raise NotFound(f"Image {image_id} is not stored in store {store_id}.")
            if len(image.locations) == 1:
                raise Forbidden(
                    "Cannot delete image data from the only store containing it. Consider "
                    "deleting the image instead."
                )
            # Guarded on the version: two racing removals cannot take the last copy.
            updated = await self.repo.update(
                image_id, ImageChanges(remove_locations=(copy.url,)),
                expected_version=image.version,
            )
            if updated is not None:
                try:
                    await store.delete(copy.url)
                except Exception:
                    log.exception("copy of %s in %s left behind as an orphan", image_id, store_id)
                return
        raise Conflict(f"Image {image_id} kept changing; try again.")

    async def list_locations(self, ctx: RequestContext, image_id: str) -> list[Location]:
        image = await self.images.get_image(ctx, image_id)
        self.images.policy.authorize(
            ctx, "fetch_image_location", await self.images.target(ctx, image)
        )
        return image.locations

    async def add_location(
        self, ctx: RequestContext, image_id: str, url: str,
        validation_data: dict[str, str] | None,
    ) -> Task:
        """Attach data that already sits in a store (for normal users: on a web server)
        to a queued image, as Glance's location_import task: the checks a caller can
        fail come first (4xx), then the image's import lock is taken and the location
        is added (and its data hashed) in the background; the task tells how it ended."""
        image = await self.images.get_image(ctx, image_id)
        if image.status != "queued":
            raise Conflict(
                f"It's not allowed to add locations if image status is {image.status}."
            )
        target = await self.images.target(ctx, image)
        self.images.policy.authorize(ctx, "add_image_location", target)
        store = self.stores.for_location(None, url)
        if "service" not in ctx.roles and "service" not in ctx.service_roles and (
            store is None or store.type != "http"
        ):
            # As Glance: other callers may add only locations of a configured http store.
            raise Forbidden("http store must be enabled to use location API by normal user.")
        request = LocationRequest(url, *_validation(validation_data))
        if urlsplit(url).scheme in ("http", "https"):
            try:
                check_uri(url, self.uri_filter)
            except InvalidInput as exc:
                raise InvalidInput(
                    f"URI for add location does not pass filtering: {exc.message}"
                ) from None
        if 0 <= self.location_quota <= len(image.locations):
            raise LimitExceeded(
                f"Maximum number of locations exceeded: {self.location_quota}"
            )
        if store is None:
            raise InvalidInput(f"Invalid location: {url} is in none of this site's stores.")
        await release_stale_lock(self.repo, self.tasks, image)
        task = Task(
            id=str(uuid.uuid4()), type=TASK_TYPE, status="pending", owner=image.owner,
            image_id=image_id, user_id=ctx.user_id, request_id=ctx.request_id,
            input=request.task_input(image_id),
        )
        busy = Conflict(
            f"New operation on image '{image_id}' is not permitted as prior operation is "
            "still in progress"
        )

        def take_lock(current: Image) -> ImageChanges:
            if current.status != "queued" or LOCK in current.properties:
                raise busy
            return ImageChanges(set_properties={LOCK: task.id})

        if await self.repo.modify(image_id, take_lock) is None:
            raise busy
        config = self.importer.config
        await self.tasks.create(task, lease_node=config.node_id,
                                lease_seconds=config.lease_seconds)
        self.importer.start(task)
        return task

    async def orphans(self) -> list[tuple[str, str]]:
        """(store id, url) of stored data that no image record points at."""
        known = await self.repo.active_location_urls()
        found: list[tuple[str, str]] = []
        for store in self.stores.all():
            for url in await store.driver.list_locations():
                if url not in known:
                    found.append((store.id, url))
        return found


def _validation(data: dict[str, str] | None) -> tuple[str | None, str | None]:
    """Glance's checks of validation_data: both members or none, a known algorithm, a
    hexadecimal value of that algorithm's digest size (400 otherwise)."""
    if not data:
        return None, None
    unknown = set(data) - {"os_hash_algo", "os_hash_value"}
    if unknown:
        raise InvalidInput(
            f"Additional properties are not allowed in validation_data: "
            f"{', '.join(sorted(unknown))}"
        )
    algo, value = data.get("os_hash_algo"), data.get("os_hash_value")
    if not algo or not value:
        raise InvalidInput("validation_data needs both os_hash_algo and os_hash_value.")
    if algo not in _HASH_ALGOS:
        raise InvalidInput(f"os_hash_algo must be one of {', '.join(_HASH_ALGOS)}")
    if len(value) > 128:
        raise InvalidInput("os_hash_value is longer than 128 characters.")
    try:
        digest = bytes.fromhex(value)
    except ValueError:
        raise InvalidInput(f"os_hash_value ({value}) is not a valid hexadecimal value") from None
    want = hashlib.new(algo).digest_size
    if len(digest) != want:
        raise InvalidInput(
            f"os_hash_value: ({value}) is not the correct size for ({algo}) "
            f"(should be ({want}) bytes)"
        )
    return algo, value.lower()
