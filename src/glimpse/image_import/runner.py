"""Runs one import in the background: get the data into staging, run the plugins,
inspect, write to each target store, and leave the image and task as Glance would.

Progress is visible on the image while it runs (guide 5.4):
``os_glance_importing_to_stores`` shrinks as each store finishes and
``os_glance_failed_import`` lists the stores that failed. Whatever happens, the
staged file is removed, the import lock (``os_glance_import_task``) is released and
the task ends in ``success`` or ``failure`` with a message.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from glimpse.db.base import ImageChanges, ImageRepository, TaskRepository
from glimpse.domain.errors import GlimpseError
from glimpse.domain.image import Image, Location, Task
from glimpse.formats.stream import FormatPolicy, StreamInspector
from glimpse.image_import.background import BackgroundJobs
from glimpse.image_import.glance_download import (
    RemoteCaller,
    RemoteImage,
    download_image,
    fetch_image,
    find_endpoint,
)
from glimpse.image_import.job import ImportJob
from glimpse.image_import.plugins.base import ImportPlugin
from glimpse.image_import.uri_filter import UriFilter
from glimpse.image_import.web_download import download_to
from glimpse.stores.registry import ManagedStore, SizeLimit, StoreRegistry

log = logging.getLogger(__name__)

LOCK = "os_glance_import_task"
IMPORTING = "os_glance_importing_to_stores"
FAILED = "os_glance_failed_import"
TASK_TTL = timedelta(hours=48)


@dataclass(frozen=True)
class ImportSpec:
    """What the API asked for, as stored in the task's input."""

    method: str
    stores: tuple[str, ...]
    all_stores_must_succeed: bool
    uri: str | None = None
    # glance-download: the remote image and where its image service is.
    glance_region: str | None = None
    glance_image_id: str | None = None
    glance_service_interface: str = "public"

    @classmethod
    def from_task(cls, task: Task) -> ImportSpec:
        data = task.input
        method = data.get("method")
        stores = data.get("stores")
        uri = data.get("uri")
        return cls(
            method=str(method),
            stores=tuple(str(s) for s in stores) if isinstance(stores, list) else (),
            all_stores_must_succeed=bool(data.get("all_stores_must_succeed", True)),
            uri=str(uri) if uri else None,
            glance_region=_opt_str(data.get("glance_region")),
            glance_image_id=_opt_str(data.get("glance_image_id")),
            glance_service_interface=str(data.get("glance_service_interface") or "public"),
        )


@dataclass(frozen=True)
class RunnerConfig:
    node_id: str
    lease_seconds: int
    size_cap: int
    uri_filter: UriFilter
    web_download_timeout: float
    web_download_max_redirects: int
    format_policy: FormatPolicy
    # [glance_download_properties] extra_properties: name prefixes copied from the remote.
    glance_download_properties: tuple[str, ...] = ()


class ImportRunner:
    def __init__(
        self,
        images: ImageRepository,
        tasks: TaskRepository,
        stores: StoreRegistry,
        staging: ManagedStore,
        staging_dir: Path,
        plugins: list[ImportPlugin],
        config: RunnerConfig,
    ) -> None:
        self.images = images
        self.tasks = tasks
        self.stores = stores
        self.staging = staging
        self.staging_dir = staging_dir
        self.plugins = plugins
        self.config = config
        self.jobs = BackgroundJobs()

    def start(
        self, task: Task, roles: tuple[str, ...], remote: RemoteCaller | None = None
    ) -> None:
        """Run the import in the background of this process (``remote``: the caller's
        token and catalog, for glance-download)."""
        self.jobs.spawn(self.run(task, roles, remote), f"import-{task.id}")

    async def wait_idle(self) -> None:
        """Wait for every running import (tests, shutdown)."""
        await self.jobs.wait_idle()

    async def cancel_all(self) -> None:
        await self.jobs.cancel_all()

    def staged_path(self, image_id: str) -> Path:
        return self.staging_dir / image_id

    async def run(
        self, task: Task, roles: tuple[str, ...], remote: RemoteCaller | None = None
    ) -> None:
        spec = ImportSpec.from_task(task)
        image_id = str(task.image_id)
        heartbeat = asyncio.create_task(self._heartbeat(task.id))
        succeeded: list[str] = []
        try:
            await self.tasks.set_status(task.id, "processing")
            image = await self.images.get(image_id)
            if image is None:
                raise ImportFailed(f"Image {image_id} was deleted before its import ran.")
            job = await self._prepare(image, task, spec, roles, remote)
            succeeded = await self._write_to_stores(image, job, spec)
        except asyncio.CancelledError:
            # Shutdown: the lease will lapse and another node (or this one after a
            # restart) fails the task cleanly.
            raise
        except Exception as exc:
            message = _describe(exc)
            log.warning("import %s of image %s failed: %s", task.id, image_id, message)
            await fail_import(self.images, self.tasks, self.stores, image_id, task, spec, message)
        else:
            if succeeded:
                await self._succeed(task, image_id, succeeded)
        finally:
            heartbeat.cancel()
            await self._remove_staged(image_id)

    async def _heartbeat(self, task_id: str) -> None:
        interval = max(1.0, self.config.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            await self.tasks.renew_lease(task_id, self.config.node_id, self.config.lease_seconds)

    # -- getting the data ----------------------------------------------------------

    async def _prepare(
        self, image: Image, task: Task, spec: ImportSpec, roles: tuple[str, ...],
        remote: RemoteCaller | None,
    ) -> ImportJob:
        path = self.staged_path(image.id)
        formats = (image.disk_format, image.container_format)
        copied: dict[str, str] = {}
        if spec.method == "glance-direct":
            if not await asyncio.to_thread(path.exists):
                raise ImportFailed("The staged data of this image is missing; stage it again.")
        elif spec.method == "web-download":
            if spec.uri is None:
                raise ImportFailed("web-download needs a uri.")
            self.staging_dir.mkdir(parents=True, exist_ok=True)
            await self.staging.driver.delete(path.as_uri())  # a stale earlier attempt
            await download_to(
                spec.uri,
                path,
                uri_filter=self.config.uri_filter,
                size_cap=self.config.size_cap,
                timeout=self.config.web_download_timeout,
                max_redirects=self.config.web_download_max_redirects,
            )
        elif spec.method == "copy-image":
            await self._copy_existing(image, path)
        elif spec.method == "glance-download":
            source = await self._glance_download(spec, path, remote)
            formats = (source.disk_format or image.disk_format,
                       source.container_format or image.container_format)
            copied = source.properties
        else:
            raise ImportFailed(f"Import method {spec.method} is not supported.")
        job = ImportJob(
            image_id=image.id,
            task_id=task.id,
            method=spec.method,
            path=path,
            disk_format=formats[0],
            container_format=formats[1],
            owner=image.owner,
            roles=roles,
            properties=dict(copied),
        )
        if spec.method != "copy-image":
            # Copies are of data already accepted; plugins and checks ran then.
            for plugin in self.plugins:
                await plugin.run(job)
            job.virtual_size = await self._inspect(job)
        return job

    async def _glance_download(
        self, spec: ImportSpec, path: Path, remote: RemoteCaller | None
    ) -> RemoteImage:
        if remote is None or not spec.glance_region or not spec.glance_image_id:
            raise ImportFailed("glance-download needs the caller's token, a region and an "
                               "image id.")
        endpoint = find_endpoint(remote.catalog, spec.glance_region,
                                 spec.glance_service_interface)
        stall = self.config.web_download_timeout
        source = await fetch_image(endpoint, spec.glance_image_id, remote,
                                   self.config.glance_download_properties, stall)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        await self.staging.driver.delete(path.as_uri())  # a stale earlier attempt
        await download_image(endpoint, spec.glance_image_id, remote, path,
                             expected=source.size, size_cap=self.config.size_cap,
                             stall_seconds=stall)
        return source

    async def _copy_existing(self, image: Image, path: Path) -> None:
        for location in image.locations:
            store = self.stores.for_location(location.store, location.url)
            if store is None:
                continue
            await self.staging.driver.delete(path.as_uri())
            await self.staging.add(image.id, store.read(location.url))
            return
        raise ImportFailed("The image has no data in any store this node can read.")

    async def _inspect(self, job: ImportJob) -> int | None:
        inspector = StreamInspector(
            job.disk_format, job.container_format, self.config.format_policy
        )
        size = 0
        async for chunk in self.staging.read(job.path.as_uri()):
            size += len(chunk)
            await asyncio.to_thread(inspector.feed, chunk)
        result = await asyncio.to_thread(inspector.finish, size)
        return result.virtual_size if job.virtual_size is None else job.virtual_size

    # -- writing to stores -----------------------------------------------------------

    async def _write_to_stores(self, image: Image, job: ImportJob, spec: ImportSpec) -> list[str]:
        succeeded: list[str] = []
        failed: list[str] = []
        remaining = list(spec.stores)
        is_copy = spec.method == "copy-image"
        limit = SizeLimit(
            self.config.size_cap,
            f"Image exceeds the storage limit: image_size_cap is {self.config.size_cap} bytes.",
        )
        for store_id in spec.stores:
            store = self.stores.get(store_id)
            try:
                stored = await store.add(
                    image.id, self.staging.read(job.path.as_uri()), limits=(limit,)
                )
            except Exception as exc:
                log.warning(
                    "import of %s into store %s failed: %s", image.id, store_id, _describe(exc)
                )
                failed.append(store_id)
                remaining.remove(store_id)
                await self._record_progress(image.id, remaining, failed)
                if spec.all_stores_must_succeed:
                    raise ImportFailed(
                        f"Import to store {store_id} failed: {_describe(exc)}"
                    ) from exc
                continue
            remaining.remove(store_id)
            location = Location(url=stored.location, store=store_id, metadata=stored.metadata)
            core: dict[str, object] = {}
            activate = not is_copy and (not spec.all_stores_must_succeed or not remaining)
            if not is_copy and not succeeded:
                core.update(
                    size=stored.size,
                    checksum=stored.checksum,
                    os_hash_algo=stored.hash_algo,
                    os_hash_value=stored.hash_value,
                    virtual_size=job.virtual_size,
                    disk_format=job.disk_format,
                    container_format=job.container_format,
                )
            if activate:
                core["status"] = "active"
            updated = await self.images.update(
                image.id,
                ImageChanges(
                    core=core,
                    set_properties={
                        IMPORTING: ",".join(remaining),
                        FAILED: ",".join(failed),
                        **(job.properties if not succeeded else {}),
                    },
                    add_locations=(location,),
                ),
                expected_status=["active"] if is_copy else ["importing", "active"],
            )
            if updated is None:
                await store.delete(stored.location)
                raise ImportFailed("The image was deleted while it was being imported.")
            succeeded.append(store_id)
        if not succeeded and spec.stores:
            raise ImportFailed("The image could not be written to any store.")
        return succeeded

    async def _record_progress(
        self, image_id: str, remaining: list[str], failed: list[str]
    ) -> None:
        await self.images.update(
            image_id,
            ImageChanges(set_properties={IMPORTING: ",".join(remaining), FAILED: ",".join(failed)}),
        )

    # -- endings ---------------------------------------------------------------------

    async def _succeed(self, task: Task, image_id: str, stores: list[str]) -> None:
        image = await self.images.get(image_id)
        await self.images.update(image_id, ImageChanges(remove_properties=(LOCK,)))
        await self.tasks.finish(
            task.id,
            "success",
            "",
            {
                "image_id": image_id,
                "stores": stores,
                "failed_stores": (image.properties.get(FAILED, "") if image else ""),
            },
            expiry(),
        )

    async def _remove_staged(self, image_id: str) -> None:
        try:
            await self.staging.driver.delete(self.staged_path(image_id).as_uri())
        except Exception:
            log.exception("could not remove staged data of %s", image_id)


async def fail_import(
    images: ImageRepository,
    tasks: TaskRepository,
    stores: StoreRegistry,
    image_id: str,
    task: Task,
    spec: ImportSpec,
    message: str,
) -> None:
    """Leave image and task as Glance does after a failed import, whatever stage it
    reached: when every store had to succeed, the copies this import wrote are
    removed; an image left without data goes back to ``queued``; the lock is
    released and every store that did not finish is listed as failed."""
    image = await images.get(image_id)
    if image is not None:
        targets = set(spec.stores)
        mine = [
            loc for loc in image.locations if spec.all_stores_must_succeed and loc.store in targets
        ]
        kept = [loc for loc in image.locations if loc not in mine]
        failed = [s for s in image.properties.get(FAILED, "").split(",") if s]
        pending = [s for s in image.properties.get(IMPORTING, "").split(",") if s]
        if spec.all_stores_must_succeed:
            pending += [loc.store for loc in mine]
        core: dict[str, object] = {}
        if spec.method != "copy-image":
            if kept:
                core = {"status": "active"}
            else:
                core = {
                    "status": "queued",
                    "size": None,
                    "checksum": None,
                    "os_hash_algo": None,
                    "os_hash_value": None,
                    "virtual_size": None,
                }
        await images.update(
            image_id,
            ImageChanges(
                core=core,
                set_properties={
                    IMPORTING: "",
                    FAILED: ",".join(dict.fromkeys([*failed, *pending])),
                },
                remove_properties=(LOCK,),
                remove_locations=tuple(loc.url for loc in mine),
            ),
        )
        for loc in mine:
            store = stores.for_location(loc.store, loc.url)
            if store is not None:
                try:
                    await store.delete(loc.url)
                except Exception:
                    log.exception("could not remove %s after a failed import", loc.url)
    await tasks.finish(task.id, "failure", message, None, expiry())


class ImportFailed(GlimpseError):
    """The import cannot go on; the message ends up in the task."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GlimpseError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _opt_str(value: object) -> str | None:
    return str(value) if value else None


def expiry() -> datetime:
    """When a finished task stops being listed (Glance's task_time_to_live)."""
    return (datetime.now(UTC) + TASK_TTL).replace(tzinfo=None)
