"""Interoperable image import: stage data, start an import, follow it through tasks.

``import_image`` checks everything a caller can get wrong before answering 202: the
method, the image status, the stores, and the per-image import lock, which it takes
with a guarded write so two imports (or two copy-image calls) cannot both start.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from glimpse.db.base import ImageChanges, ImageRepository, TaskRepository
from glimpse.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LimitExceeded,
    NotFound,
    StoreNotFound,
)
from glimpse.domain.image import Image, Task
from glimpse.formats.stream import FormatPolicy, StreamInspector
from glimpse.image_import.glance_download import RemoteCaller
from glimpse.image_import.runner import (
    FAILED,
    IMPORTING,
    LOCK,
    ImportRunner,
    ImportSpec,
    fail_import,
)
from glimpse.image_import.uri_filter import check_uri
from glimpse.policy.context import RequestContext
from glimpse.services.images import ImageService
from glimpse.services.writers import abandoned, writer_id
from glimpse.stores.registry import ManagedStore, SizeLimit, StoreRegistry

log = logging.getLogger(__name__)

METHODS = ("glance-direct", "web-download", "copy-image", "glance-download")
# The URL of the node holding an image's staged data (Glance's name; never shown).
STAGE_HOST = "os_glance_stage_host"
_REQUIRED_STATUS = {
    "glance-direct": "uploading", "web-download": "queued", "copy-image": "active",
    "glance-download": "queued",
}


@dataclass(frozen=True)
class ImportRequest:
    method: str
    uri: str | None
    stores: tuple[str, ...] | None
    all_stores: bool
    all_stores_must_succeed: bool
    glance_region: str | None = None
    glance_image_id: str | None = None
    glance_service_interface: str = "public"


class ImportService:
    def __init__(
        self,
        images: ImageService,
        repo: ImageRepository,
        tasks: TaskRepository,
        stores: StoreRegistry,
        staging: ManagedStore,
        runner: ImportRunner,
        enabled_methods: tuple[str, ...],
        size_cap: int,
        format_policy: FormatPolicy,
        node_id: str,
        lease_seconds: int,
        self_url: str | None = None,
    ) -> None:
        self.images = images
        self.repo = repo
        self.tasks = tasks
        self.stores = stores
        self.staging = staging
        self.runner = runner
        self.enabled_methods = enabled_methods
        self.size_cap = size_cap
        self.format_policy = format_policy
        self.node_id = node_id
        self.lease_seconds = lease_seconds
        # How other nodes reach this one; None: staging is shared, nothing is replayed.
        self.self_url = self_url.rstrip("/") if self_url else None

    # -- staging -----------------------------------------------------------------------

    async def stage(
        self, ctx: RequestContext, image_id: str, chunks: AsyncIterator[bytes],
        declared_size: int | None = None,
    ) -> None:
        if "glance-direct" not in self.enabled_methods:
            raise NotFound("The glance-direct import method is not enabled.")
        image = await self.images.get_image(ctx, image_id)
        self.images.policy.authorize(ctx, "modify_image", await self.images.target(ctx, image))
        if image.status != "queued":
            raise Conflict(
                f"Image status transition from {image.status} to uploading is not allowed"
            )
        cap = SizeLimit(
            self.size_cap,
            f"Image exceeds the storage limit: image_size_cap is {self.size_cap} bytes.",
        )
        if declared_size is not None and declared_size > self.size_cap:
            raise LimitExceeded(cap.message)
        quotas = self.images.quotas
        claim = await quotas.for_stage(image, declared_size) if quotas else None
        claimed = await self.repo.update(
            image_id,
            ImageChanges(core={"status": "uploading", "data_node": writer_id(self.node_id)}),
            expected_status=["queued"], claim=claim,
        )
        if claimed is None:
            raise Conflict("Image status transition from queued to uploading is not allowed: "
                           "another upload or stage is in progress.")
        inspector = StreamInspector(image.disk_format, image.container_format, self.format_policy)
        location = None
        try:
            if quotas is not None:
                chunks = quotas.metered(claim, chunks)
            stored = await self.staging.add(image_id, chunks, limits=(cap,),
                                            observe=inspector.feed)
            location = stored.location
            if declared_size is not None and stored.size != declared_size:
                raise InvalidInput(
                    f"Staged size {stored.size} does not match x-openstack-image-size "
                    f"{declared_size}."
                )
            if image.disk_format:
                await asyncio.to_thread(inspector.finish, stored.size)
        except BaseException:
            await asyncio.shield(self._unstage(image_id, location))
            raise
        updated = await self.repo.update(
            image_id,
            ImageChanges(
                core={"size": stored.size, "data_node": None},
                set_properties={STAGE_HOST: self.self_url} if self.self_url else {},
            ),
            expected_status=["uploading"],
        )
        if updated is None:
            await self._unstage(image_id, location, revert=False)
            raise Conflict(f"Image {image_id} was deleted or changed while staging.")

    async def _unstage(self, image_id: str, location: str | None, revert: bool = True) -> None:
        if location is not None:
            try:
                await self.staging.delete(location)
            except Exception:
                log.exception("could not remove staged data of %s", image_id)
        if revert:
            await self.repo.update(
                image_id,
                ImageChanges(
                    core={"status": "queued", "size": None, "data_node": None},
                    remove_properties=(STAGE_HOST,),
                ),
                expected_status=["uploading"],
            )

    async def discard_staged(self, image_id: str) -> None:
        """A deleted image's staged data goes with it (as in Glance), not at the next
        periodic reclaim."""
        try:
            await self.staging.delete(self.runner.staged_path(image_id).as_uri())
        except Exception:
            log.exception("could not remove staged data of %s", image_id)

    # -- import ------------------------------------------------------------------------

    def import_methods(self) -> tuple[str, ...]:
        return self.enabled_methods

    async def stage_host(self, ctx: RequestContext, image_id: str) -> str | None:
        """The node holding this image's staged data, when that is another node."""
        image = await self.images.get_image(ctx, image_id)
        host = image.properties.get(STAGE_HOST)
        if not host or host.rstrip("/") == self.self_url:
            return None
        return host

    async def import_image(self, ctx: RequestContext, image_id: str, req: ImportRequest) -> Task:
        if req.method not in METHODS or req.method not in self.enabled_methods:
            raise InvalidInput(f"Import method {req.method} is not valid; enabled methods: "
                               + ", ".join(self.enabled_methods))
        image = await self.images.get_image(ctx, image_id)
        target = await self.images.target(ctx, image)
        if req.method == "copy-image" and ctx.project_id != image.owner:
            self.images.policy.authorize(ctx, "copy_image", target)
        else:
            self.images.policy.authorize(ctx, "modify_image", target)
        if req.method == "web-download" and not req.uri:
            raise InvalidInput("web-download import needs method.uri.")
        if req.method == "glance-download":
            _check_glance_download(req)
        required = _REQUIRED_STATUS[req.method]
        if image.status != required:
            raise Conflict(
                f"Image {image_id} is {image.status}; {req.method} needs it {required}."
            )
        # Glance answers 409 for these (the image is not ready), not 400.
        if not image.container_format:
            raise Conflict("'container_format' needs to be set before import")
        if not image.disk_format:
            raise Conflict("'disk_format' needs to be set before import")
        targets = self._targets(image, req)
        await self._release_stale_lock(image)
        task = Task(
            id=str(uuid.uuid4()),
            type="api_image_import",
            status="pending",
            owner=image.owner,
            image_id=image_id,
            user_id=ctx.user_id,
            request_id=ctx.request_id,
            input={
                "method": req.method, "uri": req.uri, "stores": list(targets),
                "all_stores_must_succeed": req.all_stores_must_succeed,
                "image_id": image_id, "backend": list(targets),
                **_remote_fields(req),
                # Glance's shape of the request, which clients (Tempest) read back.
                "import_req": {
                    "method": {
                        "name": req.method, **({"uri": req.uri} if req.uri else {}),
                        **_remote_fields(req),
                    },
                    "stores": list(targets),
                    "all_stores_must_succeed": req.all_stores_must_succeed,
                },
            },
        )
        new_status = "active" if req.method == "copy-image" else "importing"
        busy = Conflict(
            f"Image {image_id} has an import running already (or changed meanwhile); "
            "try again when it has finished."
        )

        def take_lock(current: Image) -> ImageChanges:
            # Decided inside the transaction that holds the image row, so of two racing
            # imports exactly one sees no lock (a guarded UPDATE alone is not enough on
            # PostgreSQL: its re-check does not see the other's new property row).
            if current.status != required or LOCK in current.properties:
                raise busy
            return ImageChanges(
                core={"status": new_status},
                set_properties={LOCK: task.id, IMPORTING: ",".join(targets), FAILED: ""},
                # The data is claimed by this import: nothing more to replay elsewhere.
                remove_properties=(STAGE_HOST,) if STAGE_HOST in current.properties else (),
            )

        quotas = self.images.quotas
        claim = await quotas.for_import(image, req.method, targets, task.id) if quotas else None
        if await self.repo.modify(image_id, take_lock, claim=claim) is None:
            raise busy
        await self.tasks.create(task, lease_node=self.node_id, lease_seconds=self.lease_seconds)
        remote = None
        if req.method == "glance-download" and ctx.auth_token:
            remote = RemoteCaller(ctx.auth_token, ctx.service_catalog or "")
        self.runner.start(task, ctx.roles, remote)
        return task

    def _targets(self, image: Image, req: ImportRequest) -> tuple[str, ...]:
        present = {loc.store for loc in image.locations}
        if req.all_stores:
            if req.stores:
                raise InvalidInput("Specify either stores or all_stores, not both.")
            chosen = [s.id for s in self.stores.all() if not s.read_only]
            if req.method == "copy-image":
                chosen = [s for s in chosen if s not in present]
                if not chosen:
                    raise Conflict("The image is already present in every store.")
            return tuple(chosen)
        if req.stores:
            for store_id in req.stores:
                try:
                    store = self.stores.get(store_id)
                except StoreNotFound:
                    raise InvalidInput(f"Store {store_id} is not available.") from None
                if store.read_only:
                    raise InvalidInput(f"Store {store_id} is read-only.")
            if req.method == "copy-image":
                already = [s for s in req.stores if s in present]
                if already:
                    raise Conflict(
                        "Image is already present at store(s) " + ", ".join(already)
                    )
            return tuple(dict.fromkeys(req.stores))
        if req.method == "copy-image":
            raise InvalidInput("copy-image needs stores or all_stores.")
        return (self.stores.default_id,)

    async def _release_stale_lock(self, image: Image) -> None:
        holder = image.properties.get(LOCK)
        if not holder:
            return
        task = await self.tasks.get(holder)
        if task is not None and task.status in ("pending", "processing"):
            raise Conflict(
                f"Image {image.id} is being imported by task {holder}; only one import "
                "may run at a time."
            )
        # The holder finished or vanished without releasing the lock: drop it.
        await self.repo.update(
            image.id, ImageChanges(remove_properties=(LOCK,)), expected_version=image.version
        )

    # -- tasks -------------------------------------------------------------------------

    async def image_tasks(self, ctx: RequestContext, image_id: str) -> list[Task]:
        await self.images.get_image(ctx, image_id)
        return await self.tasks.for_image(image_id)

    async def get_task(self, ctx: RequestContext, task_id: str) -> Task:
        self.images.policy.authorize(ctx, "tasks_api_access", {"project_id": ctx.project_id})
        self.images.policy.authorize(ctx, "get_task", {"project_id": ctx.project_id})
        task = await self.tasks.get(task_id)
        if task is None or (not ctx.is_admin and task.owner != ctx.project_id):
            raise NotFound(f"Task with the given identifier {task_id} could not be found.")
        return task

    async def list_tasks(
        self, ctx: RequestContext, *, status: str | None, limit: int, marker: str | None,
        sort_dir: str,
    ) -> list[Task]:
        self.images.policy.authorize(ctx, "tasks_api_access", {"project_id": ctx.project_id})
        self.images.policy.authorize(ctx, "get_tasks", {"project_id": ctx.project_id})
        owner = None if ctx.is_admin else ctx.project_id
        return await self.tasks.find(owner, status=status, limit=limit, marker=marker,
                                     sort_dir=sort_dir)

    async def create_task(self, ctx: RequestContext, body: object) -> None:
        """Legacy import tasks are not run; like current Glance, an ``import`` task whose
        ``import_from`` fails the URI filter is refused (400) before anything else."""
        self.images.policy.authorize(ctx, "tasks_api_access", {"project_id": ctx.project_id})
        self.images.policy.authorize(ctx, "add_task", {"project_id": ctx.project_id})
        task_input = body.get("input") if isinstance(body, dict) else None
        if isinstance(body, dict) and body.get("type") == "import":
            source = task_input.get("import_from") if isinstance(task_input, dict) else None
            if not isinstance(source, str) or not source:
                raise InvalidInput("Legacy import task input needs an import_from URI.")
            check_uri(source, self.runner.config.uri_filter)
        raise Forbidden(
            "Legacy import tasks are not supported; use POST /v2/images/{id}/import."
        )

    # -- recovery ----------------------------------------------------------------------

    async def recover(self, *, include_own: bool) -> int:
        """Fail cleanly the imports whose node died (or this node before a restart)."""
        claimed = await self.tasks.claim_abandoned(
            self.node_id, self.lease_seconds, include_own=include_own,
            task_types=("api_image_import",),
        )
        for task in claimed:
            spec = ImportSpec.from_task(task)
            image_id = str(task.image_id)
            await fail_import(
                self.repo, self.tasks, self.stores, image_id, task, spec,
                "The import was interrupted: the node running it stopped.",
            )
            try:
                await self.staging.delete(self.runner.staged_path(image_id).as_uri())
            except Exception:
                log.exception("could not remove staged data of %s", image_id)
        await self.recover_stages()
        await self._remove_unclaimed_staging()
        return len(claimed)

    async def recover_stages(self) -> None:
        """Stages a dead process of this node was taking leave images in `uploading`
        with partial data: back to `queued`."""
        for image in await self.repo.images_in_status("uploading", node_id=self.node_id):
            if abandoned(image.data_node, self.node_id):
                await self._unstage(image.id, self.runner.staged_path(image.id).as_uri())

    async def _remove_unclaimed_staging(self) -> None:
        """Staged files whose image was deleted or moved on are reclaimed."""
        for url in await self.staging.driver.list_locations():
            image_id = url.rsplit("/", 1)[-1]
            image = await self.repo.get(image_id)
            if image is None or image.status not in ("uploading", "importing"):
                try:
                    await self.staging.delete(url)
                except Exception:
                    log.exception("could not reclaim staged file %s", url)


def _check_glance_download(req: ImportRequest) -> None:
    if not req.glance_region:
        raise InvalidInput("'glance_region' needs to be set for glance-download import method")
    if not req.glance_image_id:
        raise InvalidInput(
            "'glance_image_id' needs to be set for glance-download import method"
        )
    try:
        uuid.UUID(req.glance_image_id)
    except ValueError:
        raise InvalidInput(
            f"Remote image id does not look like a UUID: {req.glance_image_id}"
        ) from None
    # An interface the catalog does not have fails the task, as in Glance (Tempest's
    # bad-endpoint test expects 202, then a failed task).


def _remote_fields(req: ImportRequest) -> dict[str, str]:
    if req.method != "glance-download":
        return {}
    return {
        "glance_region": str(req.glance_region),
        "glance_image_id": str(req.glance_image_id),
        "glance_service_interface": req.glance_service_interface,
    }
