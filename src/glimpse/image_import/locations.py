"""Adding a location runs in the background, as Glance's ``location_import`` task.

``POST /v2/images/{id}/locations`` answers 202 once the request passed its checks and
the image's import lock (``os_glance_import_task``) is taken for a task; this job then
attaches the location and, with ``do_secure_hash`` (on by default, as in Glance), reads
the data once for its size, checksum and os_hash_value:

- with validation_data the image is ``importing`` while the data is read; a matching
  hash makes it active, any other outcome puts it back to ``queued`` with no hashes and
  without the new location (an http location stays, as Glance leaves it) and fails the
  task;
- without validation_data the image is active at once and gets its hashes when the read
  ends; a read that still fails after ``http_retries`` attempts leaves it active
  without them;
- with ``do_secure_hash = false`` nothing is read: validation_data is taken as given.

Deleting the image stops the read. The job watches the image record rather than
waiting to be told, so this works whichever node received the DELETE (Glance records
``os_glance_hash_op_host`` and replays the DELETE on that node instead).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from glimpse.db.base import ImageChanges, ImageRepository, TaskRepository
from glimpse.domain.errors import Conflict, GlimpseError
from glimpse.domain.image import Image, Location, Task
from glimpse.image_import.background import BackgroundJobs
from glimpse.image_import.runner import LOCK, expiry
from glimpse.stores.registry import CHUNK, ManagedStore, StoreRegistry, rechunk

log = logging.getLogger(__name__)

TASK_TYPE = "location_import"
_T = TypeVar("_T")
_GONE = ("deleted", "pending_delete")


@dataclass(frozen=True)
class LocationImportConfig:
    node_id: str
    lease_seconds: int
    do_secure_hash: bool = True
    http_retries: int = 3
    hashing_algorithm: str = "sha512"
    # How often a running read checks that its image still exists.
    watch_seconds: float = 1.0


@dataclass(frozen=True)
class LocationRequest:
    """What the API accepted, as the task's input records it (Glance's keys)."""

    url: str
    hash_algo: str | None = None
    hash_value: str | None = None

    @classmethod
    def from_task(cls, task: Task) -> LocationRequest:
        validation = task.input.get("validation_data")
        algo = value = None
        if isinstance(validation, dict):
            algo = validation.get("os_hash_algo")
            value = validation.get("os_hash_value")
        return cls(
            url=str(task.input.get("loc_url", "")),
            hash_algo=str(algo) if algo else None,
            hash_value=str(value) if value else None,
        )

    def task_input(self, image_id: str) -> dict[str, object]:
        validation = (
            {"os_hash_algo": self.hash_algo, "os_hash_value": self.hash_value}
            if self.hash_value else {}
        )
        return {"image_id": image_id, "loc_url": self.url, "validation_data": validation}


@dataclass(frozen=True)
class Digest:
    size: int
    checksum: str
    hash_value: str


class LocationImportFailed(GlimpseError):
    """The location cannot be added; the message ends up in the task."""


class LocationImportCanceled(LocationImportFailed):
    """The image was deleted (or its lock taken) while the job worked on it."""


class LocationImporter:
    def __init__(
        self,
        images: ImageRepository,
        tasks: TaskRepository,
        stores: StoreRegistry,
        config: LocationImportConfig,
    ) -> None:
        self.images = images
        self.tasks = tasks
        self.stores = stores
        self.config = config
        self.jobs = BackgroundJobs()

    def start(self, task: Task) -> None:
        """Run the job in the background of this process."""
        self.jobs.spawn(self.run(task), f"location-import-{task.id}")

    async def wait_idle(self) -> None:
        """Wait for every running job (tests, shutdown)."""
        await self.jobs.wait_idle()

    async def cancel_all(self) -> None:
        await self.jobs.cancel_all()

    async def run(self, task: Task) -> None:
        request = LocationRequest.from_task(task)
        image_id = str(task.image_id)
        heartbeat = asyncio.create_task(self._heartbeat(task.id))
        try:
            await self.tasks.set_status(task.id, "processing")
            await self._add(task, image_id, request)
        except asyncio.CancelledError:
            # Shutdown: the lease lapses and recover() on some node fails the task.
            raise
        except Exception as exc:
            message = (exc.message if isinstance(exc, GlimpseError)
                       else f"{type(exc).__name__}: {exc}")
            log.warning("adding location to image %s failed: %s", image_id, message)
            await self.fail(task, message)
        else:
            await self._release(task)
            await self.tasks.finish(task.id, "success", "", {"image_id": image_id}, expiry())
        finally:
            heartbeat.cancel()

    async def recover(self, *, include_own: bool) -> int:
        """Fail cleanly the jobs whose node died (or this node's, after a restart)."""
        claimed = await self.tasks.claim_abandoned(
            self.config.node_id, self.config.lease_seconds, include_own=include_own,
            task_types=(TASK_TYPE,),
        )
        for task in claimed:
            await self.fail(task, "The location import was interrupted: the node running "
                                  "it stopped.")
        return len(claimed)

    async def _heartbeat(self, task_id: str) -> None:
        interval = max(1.0, self.config.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            await self.tasks.renew_lease(task_id, self.config.node_id, self.config.lease_seconds)

    # -- the job -----------------------------------------------------------------------

    async def _add(self, task: Task, image_id: str, request: LocationRequest) -> None:
        store = self.stores.for_location(None, request.url)
        if store is None:
            raise LocationImportFailed(
                f"Invalid location: {request.url} is in none of this site's stores."
            )
        location = Location(url=request.url, store=store.id, metadata={"store": store.id})
        if not self.config.do_secure_hash:
            core: dict[str, object] = {"status": "active", "size": await store.size(request.url)}
            if request.hash_value:
                core.update(os_hash_algo=request.hash_algo, os_hash_value=request.hash_value)
            await self._write(task, image_id, ImageChanges(core=core, add_locations=(location,)),
                              ["queued"])
            return
        algo = request.hash_algo or self.config.hashing_algorithm
        if request.hash_value:
            await self._write(
                task, image_id,
                ImageChanges(core={"status": "importing", "os_hash_algo": algo},
                             add_locations=(location,)),
                ["queued"],
            )
            digest = await self._digest(task, image_id, store, request.url, algo)
            if digest.hash_value != request.hash_value.lower():
                raise LocationImportFailed(
                    f"os_hash_value: ({request.hash_value}) not matched with actual "
                    f"os_hash_value: ({digest.hash_value})"
                )
            await self._write(task, image_id, ImageChanges(core={
                "status": "active", "size": digest.size, "checksum": digest.checksum,
                "os_hash_value": digest.hash_value,
            }), ["importing"])
            return
        # Active at once; the hashes follow when the data has been read.
        size = await store.size(request.url)
        await self._write(task, image_id, ImageChanges(
            core={"status": "active", "size": size, "os_hash_algo": algo},
            add_locations=(location,),
        ), ["queued"])
        try:
            digest = await self._digest(task, image_id, store, request.url, algo)
        except LocationImportCanceled:
            raise
        except Exception as exc:
            log.warning("image %s stays active without hashes: its data at %s could not be "
                        "read: %s", image_id, request.url, exc)
            await self._write(task, image_id, ImageChanges(core={"os_hash_algo": None}), None)
            return
        await self._write(task, image_id, ImageChanges(core={
            "size": digest.size, "checksum": digest.checksum, "os_hash_value": digest.hash_value,
        }), None)

    async def _write(
        self, task: Task, image_id: str, changes: ImageChanges, status: Sequence[str] | None
    ) -> Image:
        """Apply changes while this task holds the image's lock (and it has ``status``)."""

        def guarded(current: Image) -> ImageChanges:
            if current.properties.get(LOCK) != task.id or current.status in _GONE:
                raise LocationImportCanceled(
                    "The image was deleted or taken over while its location was being added."
                )
            if status is not None and current.status not in status:
                raise LocationImportFailed(
                    f"Image status {current.status} does not allow adding a location."
                )
            return changes

        updated = await self.images.modify(image_id, guarded)
        if updated is None:
            raise LocationImportCanceled(
                "The image was deleted while its location was being added."
            )
        return updated

    async def _digest(
        self, task: Task, image_id: str, store: ManagedStore, url: str, algo: str
    ) -> Digest:
        """Read the data (``http_retries`` attempts), stopping if the image goes away."""
        attempts = max(1, self.config.http_retries)
        for attempt in range(1, attempts + 1):
            try:
                return await self._watched(task, image_id, _read_digest(store, url, algo))
            except LocationImportCanceled:
                raise
            except Exception as exc:
                log.info("[%d/%d] reading %s for image %s failed: %s",
                         attempt, attempts, url, image_id, exc)
                if attempt == attempts:
                    raise LocationImportFailed(
                        f"Hash calculation failed for image {image_id} data: {exc}"
                    ) from exc
        raise AssertionError("unreachable")

    async def _watched(self, task: Task, image_id: str, work: Awaitable[_T]) -> _T:
        job = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({job}, timeout=self.config.watch_seconds)
                if done:
                    return job.result()
                current = await self.images.get(image_id)
                if (current is None or current.status in _GONE
                        or current.properties.get(LOCK) != task.id):
                    raise LocationImportCanceled(
                        f"Hash calculation for image {image_id} has been canceled: the image "
                        "was deleted."
                    )
        finally:
            if not job.done():
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)

    # -- endings -----------------------------------------------------------------------

    async def fail(self, task: Task, message: str) -> None:
        """Leave the image as Glance's reverts do and fail the task: an image this job
        made ``importing`` goes back to ``queued`` without hashes and without the new
        location (an http one stays); an image already active keeps its location but
        shows no hash algorithm without a hash. Only this task's lock is released."""
        request = LocationRequest.from_task(task)
        image_id = str(task.image_id)

        def revert(current: Image) -> ImageChanges | None:
            if current.properties.get(LOCK) != task.id:
                return None  # not ours (any more): leave the image alone
            core: dict[str, object] = {}
            remove: tuple[str, ...] = ()
            if current.status == "importing":
                core = {"status": "queued", "size": None, "checksum": None,
                        "os_hash_algo": None, "os_hash_value": None}
                store = self.stores.for_location(None, request.url)
                # Only the record goes: the data was there before the location was.
                if store is None or store.type != "http":
                    remove = (request.url,)
            elif current.status == "active" and current.os_hash_value is None:
                core = {"os_hash_algo": None}
            return ImageChanges(core=core, remove_properties=(LOCK,), remove_locations=remove)

        try:
            await self.images.modify(image_id, revert)
        except Exception:
            log.exception("could not revert image %s after a failed location import", image_id)
        await self.tasks.finish(task.id, "failure", message, None, expiry())

    async def _release(self, task: Task) -> None:
        def unlock(current: Image) -> ImageChanges | None:
            if current.properties.get(LOCK) != task.id:
                return None
            return ImageChanges(remove_properties=(LOCK,))

        await self.images.modify(str(task.image_id), unlock)


async def release_stale_lock(
    images: ImageRepository, tasks: TaskRepository, image: Image
) -> None:
    """Drop an import lock whose task has finished or vanished; 409 while it runs."""
    holder = image.properties.get(LOCK)
    if not holder:
        return
    task = await tasks.get(holder)
    if task is not None and task.status in ("pending", "processing"):
        raise Conflict(
            f"New operation on image '{image.id}' is not permitted as prior operation "
            "is still in progress"
        )
    await images.update(
        image.id, ImageChanges(remove_properties=(LOCK,)), expected_version=image.version
    )


async def _read_digest(store: ManagedStore, url: str, algo: str) -> Digest:
    md5 = hashlib.md5(usedforsecurity=False)
    multihash = hashlib.new(algo)

    def update(chunk: bytes) -> None:
        md5.update(chunk)
        multihash.update(chunk)

    size = 0
    async for chunk in rechunk(store.read(url), CHUNK):
        size += len(chunk)
        await asyncio.to_thread(update, chunk)
    return Digest(size=size, checksum=md5.hexdigest(), hash_value=multihash.hexdigest())
