"""The Ceph RBD store: one RBD image per Glance image, in one pool of one Ceph cluster.

In the pool (``rbd_store_pool``, default ``images``)::

    <image_id>                        committed data, with the protected snapshot ``snap``
    <image_id>@snap                   what the location names and Nova/Cinder clone
    glimpse-tmp-<image_id>-<rand>     data being written: renamed to <image_id> once its
                                      snapshot is taken, removed on any failure

Location: ``rbd://<fsid>/<pool>/<image_id>/snap`` (fsid and pool URL-quoted), as Glance
writes it, so locations move between Glance and Glimpse unchanged and Nova and Cinder
clone the snapshot copy-on-write.

Uploads are written as Glance writes them: the image is created empty and grown while
writing at offsets (doubling steps up to 8 GiB, trimmed at the end), since the size is
not known in advance; with ``rbd_thin_provisioning`` all-zero chunks are not written, so
they take no space. The bindings (``rados``, ``rbd``) come from Debian's python3-rados and
python3-rbd (``scripts/ceph link-bindings``), imported only when an rbd store is built.
Every librados/librbd call runs on the operation's own thread (``threads.SerialWorker``)
with its own cluster connection (about 15 ms to open), so a cluster that hangs or comes
back needs nothing reset.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, unquote, urlparse

from glimpse.domain.errors import Conflict, StoreFull, StoreUnavailable
from glimpse.stores.base import StoreHealth, WrittenData
from glimpse.stores.registry import rechunk
from glimpse.stores.threads import SerialWorker

log = logging.getLogger(__name__)

SNAPSHOT = "snap"
TMP_PREFIX = "glimpse-tmp-"
MAX_RESIZE_STEP = 8 * 1024**3
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def load_bindings() -> tuple[ModuleType, ModuleType]:
    """The ``rados`` and ``rbd`` modules, or a start-up error saying how to get them."""
    try:
        import rados
        import rbd
    except ImportError as exc:
        raise ValueError(
            "an rbd store is configured but the Ceph Python bindings cannot be imported "
            f"({exc}): install Debian's python3-rados and python3-rbd and link them into "
            "this Python 3.11 environment (scripts/ceph link-bindings VENV)"
        ) from exc
    return rados, rbd


class RbdStoreDriver:
    type = "rbd"

    def __init__(
        self,
        *,
        pool: str = "images",
        user: str | None = None,
        conffile: str = "",
        chunk_size: int = 8 * 1024**2,
        thin_provisioning: bool = False,
        connect_timeout: int = -1,
    ) -> None:
        if chunk_size <= 0 or chunk_size & (chunk_size - 1):
            raise ValueError("rbd_store_chunk_size must be a power of two (in MiB)")
        self.rados, self.rbd = load_bindings()
        self.pool = pool
        self.user = user
        self.conffile = conffile
        self.chunk_size = chunk_size
        self.order = chunk_size.bit_length() - 1
        self.thin_provisioning = thin_provisioning
        self.connect_timeout = connect_timeout
        self.fsid: str | None = None
        self._discover_fsid()

    def _discover_fsid(self) -> None:
        """Learn the cluster's fsid at start-up (about 15 ms), as Glance does, so that
        ``owns`` can tell two clusters' locations apart. A cluster that cannot be reached
        within 5 s does not stop start-up: the fsid is then learnt on first use."""
        saved = self.connect_timeout
        if not 0 <= self.connect_timeout <= 5:
            self.connect_timeout = 5
        try:
            with self._cluster():
                pass
        except StoreUnavailable as exc:
            log.warning("Ceph cluster of rbd store (pool %s) not reachable at start-up: %s",
                        self.pool, exc)
        finally:
            self.connect_timeout = saved

    # -- connections --------------------------------------------------------------

    @contextmanager
    def _cluster(self) -> Iterator[Any]:
        """A connected cluster handle for one operation; blocking, on a worker thread."""
        client = self.rados.Rados(conffile=self.conffile or None, rados_id=self.user)
        if self.connect_timeout >= 0:
            timeout = str(self.connect_timeout)
            for option in ("rados_osd_op_timeout", "rados_mon_op_timeout",
                           "client_mount_timeout"):
                client.conf_set(option, timeout)
        try:
            client.connect()
        except self.rados.Error as exc:
            client.shutdown()
            raise StoreUnavailable(f"Cannot connect to the Ceph cluster: {exc}") from exc
        try:
            self.fsid = client.get_fsid()
            yield client
        finally:
            client.shutdown()

    @contextmanager
    def _pool(self, pool: str | None = None) -> Iterator[tuple[Any, Any]]:
        """(cluster, ioctx) of a pool for one operation."""
        with self._cluster() as client:
            try:
                ioctx = client.open_ioctx(pool or self.pool)
            except self.rados.ObjectNotFound as exc:
                raise StoreUnavailable(
                    f"Ceph pool {pool or self.pool!r} does not exist"
                ) from exc
            try:
                yield client, ioctx
            finally:
                ioctx.close()

    def _translate(self, exc: Exception, doing: str) -> Exception:
        if isinstance(exc, (StoreUnavailable, StoreFull, Conflict)):
            return exc
        if isinstance(exc, self.rbd.NoSpace):
            return StoreFull(f"There is not enough space in Ceph pool {self.pool}")
        if isinstance(exc, (self.rados.Error, self.rbd.Error)):
            return StoreUnavailable(f"RBD store failed {doing}: {exc}")
        return exc

    # -- writing ------------------------------------------------------------------

    async def write(self, image_id: str, chunks: AsyncIterator[bytes]) -> WrittenData:
        worker = SerialWorker("rbd-write")
        upload = _Upload(self, image_id)
        try:
            try:
                await worker.run(upload.open)
                async for chunk in rechunk(chunks, self.chunk_size):
                    await worker.run(upload.write, chunk)
                location = await worker.run(upload.commit)
            except BaseException:
                await worker.cleanup(upload.discard)
                raise
            finally:
                await worker.cleanup(upload.close)
        except Exception as exc:
            raise self._translate(exc, f"writing image {image_id}") from exc
        finally:
            worker.close()
        return WrittenData(location=location, size=upload.size)

    # -- reading ------------------------------------------------------------------

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        pool, name, snapshot = self._parse(location)
        worker = SerialWorker("rbd-read")
        reader = _Reader(self, pool, name, snapshot)
        try:
            try:
                size = await worker.run(reader.open)
                end = size if length is None else min(size, offset + length)
                position = offset
                while position < end:
                    want = min(self.chunk_size, end - position)
                    data = await worker.run(reader.read, position, want)
                    if not data:
                        break
                    position += len(data)
                    yield data
            finally:
                await worker.cleanup(reader.close)
        except Exception as exc:
            raise self._translate(exc, f"reading {location}") from exc
        finally:
            worker.close()

    # -- deleting -----------------------------------------------------------------

    async def delete(self, location: str) -> None:
        pool, name, snapshot = self._parse(location)
        worker = SerialWorker("rbd-delete")
        try:
            await worker.run(self._delete, pool, name, snapshot)
        except Exception as exc:
            raise self._translate(exc, f"deleting {location}") from exc
        finally:
            worker.close()

    def _delete(self, pool: str, name: str, snapshot: str | None) -> None:
        """Unprotect and remove the snapshot, then the image; refuse while clones exist.

        Nothing is changed when the image cannot go: clones are checked before the
        snapshot is touched, and if removing the image itself fails afterwards (someone
        has it open) the snapshot is re-created and protected. An image with snapshots of
        its own making is moved to the RBD trash, as Glance does.
        """
        rbd = self.rbd
        with self._pool(pool) as (_, ioctx):
            try:
                image = rbd.Image(ioctx, name)
            except rbd.ImageNotFound:
                return
            with image:
                if snapshot and any(s["name"] == snapshot for s in image.list_snaps()):
                    image.set_snap(snapshot)
                    children = list(image.list_children2())
                    image.set_snap(None)
                    if children:
                        raise Conflict(
                            f"Image data {pool}/{name} is in use: its snapshot has "
                            f"{len(children)} clone(s) (volumes or instances); it was not "
                            "deleted"
                        )
                    if image.is_protected_snap(snapshot):
                        try:
                            image.unprotect_snap(snapshot)
                        except rbd.ImageBusy as exc:  # a clone appeared meanwhile
                            raise Conflict(
                                f"Image data {pool}/{name} is in use by a clone"
                            ) from exc
                    image.remove_snap(snapshot)
            try:
                rbd.RBD().remove(ioctx, name)
            except rbd.ImageNotFound:
                return
            except rbd.ImageHasSnapshots:
                rbd.RBD().trash_move(ioctx, name, 0)
            except rbd.ImageBusy as exc:
                if snapshot:
                    with rbd.Image(ioctx, name) as image:
                        image.create_snap(snapshot)
                        image.protect_snap(snapshot)
                raise Conflict(f"Image data {pool}/{name} is in use (open elsewhere)") from exc

    # -- the rest of the protocol -------------------------------------------------

    def local_path(self, location: str) -> Path | None:
        return None

    async def health(self) -> StoreHealth:
        worker = SerialWorker("rbd-health")
        try:
            await worker.run(self._probe)
        except Exception as exc:
            return StoreHealth(ok=False, writable=False, detail=str(self._translate(exc, "")))
        finally:
            worker.close()
        return StoreHealth(ok=True, writable=True)

    def _probe(self) -> None:
        with self._pool() as (_, ioctx):
            ioctx.get_last_version()
            self.rbd.RBD().list(ioctx)

    def properties(self) -> dict[str, object]:
        return {
            "chunk_size": self.chunk_size,
            "pool": self.pool,
            "thin_provisioning": self.thin_provisioning,
            "fsid": self.fsid,
        }

    async def list_locations(self) -> list[str]:
        """Committed images: UUID-named images in the pool (temporary names excluded)."""
        worker = SerialWorker("rbd-list")
        try:
            fsid, names = await worker.run(self._list)
        except Exception as exc:
            raise self._translate(exc, "listing images") from exc
        finally:
            worker.close()
        return [self.location_for(fsid, name) for name in names if _UUID.match(name)]

    def _list(self) -> tuple[str, list[str]]:
        with self._pool() as (client, ioctx):
            return client.get_fsid(), sorted(self.rbd.RBD().list(ioctx))

    def owns(self, location: str) -> bool:
        """An ``rbd://`` location in this store's cluster (by fsid, once known) and pool."""
        try:
            fsid, pool, _, _ = _split(location)
        except ValueError:
            return False
        if self.fsid is not None and fsid and fsid != self.fsid:
            return False
        return pool in ("", self.pool)

    def location_for(self, fsid: str, name: str) -> str:
        return f"rbd://{quote(fsid, '')}/{quote(self.pool, '')}/{quote(name, '')}/{SNAPSHOT}"

    def _parse(self, location: str) -> tuple[str, str, str | None]:
        if not self.owns(location):
            raise StoreUnavailable(f"Location {location} is not in RBD store {self.pool}")
        _, pool, name, snapshot = _split(location)
        return pool or self.pool, name, snapshot


def _split(location: str) -> tuple[str, str, str, str | None]:
    """(fsid, pool, image, snapshot) of ``rbd://fsid/pool/image/snap`` or ``rbd://image``."""
    parsed = urlparse(location)
    if parsed.scheme != "rbd":
        raise ValueError("not an rbd location")
    pieces = [unquote(p) for p in (parsed.netloc + parsed.path).split("/")]
    if len(pieces) == 4 and all(pieces):
        return pieces[0], pieces[1], pieces[2], pieces[3]
    if len(pieces) == 1 and pieces[0]:
        return "", "", pieces[0], None
    raise ValueError(f"malformed rbd location {location}")


class _Upload:
    """One image being written; every method blocks and runs on the upload's worker."""

    def __init__(self, driver: RbdStoreDriver, image_id: str) -> None:
        self.driver = driver
        self.image_id = image_id
        self.tmp_name = f"{TMP_PREFIX}{image_id}-{secrets.token_hex(4)}"
        self.size = 0
        self.allocated = 0  # the image's current size (grown ahead of the data)
        self.step = driver.chunk_size
        self._resources = ExitStack()  # the cluster connection and the pool's ioctx
        self.ioctx: Any = None
        self.image: Any = None
        self.fsid = ""
        self.created = False
        self.committed = False

    def open(self) -> None:
        driver, rbd = self.driver, self.driver.rbd
        client, self.ioctx = self._resources.enter_context(driver._pool())
        self.fsid = client.get_fsid()
        # Glance's choice of features: the cluster's rbd_default_features, else layering.
        features = int(client.conf_get("rbd_default_features") or 0)
        rbd.RBD().create(self.ioctx, self.tmp_name, 0, order=driver.order, old_format=False,
                         features=features or int(rbd.RBD_FEATURE_LAYERING))
        self.created = True
        self.image = rbd.Image(self.ioctx, self.tmp_name)

    def write(self, chunk: bytes) -> None:
        end = self.size + len(chunk)
        if end > self.allocated:  # grow ahead, in doubling steps up to 8 GiB
            while self.allocated < end:
                self.step = min(self.step * 2, MAX_RESIZE_STEP)
                self.allocated += self.step
            self.image.resize(self.allocated)
        if not (self.driver.thin_provisioning and chunk.count(0) == len(chunk)):
            self.image.write(chunk, self.size)
        self.size = end

    def commit(self) -> str:
        image = self.image
        if self.allocated != self.size:
            image.resize(self.size)
        image.flush()
        image.create_snap(SNAPSHOT)
        image.protect_snap(SNAPSHOT)
        image.close()
        self.image = None
        try:
            self.driver.rbd.RBD().rename(self.ioctx, self.tmp_name, self.image_id)
        except self.driver.rbd.ImageExists as exc:
            raise Conflict(
                f"RBD image {self.image_id} already exists in pool {self.driver.pool}"
            ) from exc
        self.committed = True
        return self.driver.location_for(self.fsid, self.image_id)

    def discard(self) -> None:
        """Remove the temporary image (snapshot included) after any failure."""
        if self.committed or not self.created or self.ioctx is None:
            return
        rbd = self.driver.rbd
        if self.image is not None:
            self.image.close()
            self.image = None
        try:
            with rbd.Image(self.ioctx, self.tmp_name) as image:
                for snap in list(image.list_snaps()):
                    if image.is_protected_snap(snap["name"]):
                        image.unprotect_snap(snap["name"])
                    image.remove_snap(snap["name"])
            rbd.RBD().remove(self.ioctx, self.tmp_name)
        except rbd.ImageNotFound:
            pass

    def close(self) -> None:
        if self.image is not None:
            self.image.close()
            self.image = None
        self._resources.close()


class _Reader:
    """An open snapshot being read; every method blocks and runs on the read's worker."""

    def __init__(self, driver: RbdStoreDriver, pool: str, name: str, snapshot: str | None):
        self.driver = driver
        self.pool_name = pool
        self.name = name
        self.snapshot = snapshot
        self._resources = ExitStack()
        self.image: Any = None

    def open(self) -> int:
        rbd = self.driver.rbd
        _, ioctx = self._resources.enter_context(self.driver._pool(self.pool_name))
        try:
            self.image = rbd.Image(ioctx, self.name, snapshot=self.snapshot, read_only=True)
        except rbd.ImageNotFound as exc:
            raise StoreUnavailable(
                f"Image data is missing from RBD store: {self.pool_name}/{self.name}"
            ) from exc
        return int(self.image.size())

    def read(self, offset: int, length: int) -> bytes:
        data: bytes = self.image.read(offset, length)
        return data

    def close(self) -> None:
        if self.image is not None:
            self.image.close()
            self.image = None
        self._resources.close()
