"""The Swift store: one object per image in one container, segmented when large.

In the account the credentials reference logs in to::

    <container>/<image_id>                  the image: a plain object; for a large image an
                                            empty manifest, X-Object-Manifest:
                                            <container>/<image_id>-<upload>- (a Dynamic
                                            Large Object, as Glance writes them)
    <container>/<image_id>-<upload>-00001   the segments of a large image, each at most
    ...                                     ``swift_store_large_object_chunk_size`` bytes;
                                            <upload> is 8 hex digits new for every upload

Location: ``swift+config://<reference>/<container>/<image_id>``: the credentials stay in
``swift_store_config_file`` (section ``default_swift_reference``: ``auth_address``,
``user``, ``key``, optional ``auth_version``, domain and project options), never in a
location, a log line or an API answer.

The image size is not known while streaming. Up to ``min(large_object_size, 32 MiB)``
bytes are held back: a stream that ends within that becomes a plain object (one PUT, so
it appears only when complete); anything longer is written as segments streamed to Swift
one at a time, then the manifest, as Glance does for uploads of unknown size. A failed or
cancelled upload deletes every segment it started; a partial object never becomes
visible. When Swift is away at that moment, the segments are removed in the background
once it answers again (:class:`~glimpse.stores.threads.Janitor`): their per-upload prefix
is what makes that safe, as no later upload of the same image writes under it (and no
stray segment of an earlier attempt can slip into a manifest's listing, as it could
under Glance's ``<image_id>-`` prefix). Deleting removes the manifest first, so a
half-finished delete leaves unseen segments, never a readable image with parts missing;
the segments go next, and a repeated delete sweeps any that remain.

Every request has a timeout (``swift_store_timeout``): a Swift that stops answering fails
an upload or a download in flight within it, rather than holding it for ever. A download
cut off mid-way is resumed from where it stopped ``swift_store_retry_get_count`` times
(Glance's option), then fails; one that ends short of its length is an error, never a
silently truncated image.
"""

from __future__ import annotations

import asyncio
import configparser
import functools
import io
import logging
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import swiftclient
from keystoneauth1 import exceptions as ksa_exceptions
from keystoneauth1 import session as ksa_session
from keystoneauth1.identity import v2 as ksa_v2
from keystoneauth1.identity import v3 as ksa_v3
from swiftclient.exceptions import ClientException

from glimpse.domain.errors import StoreFull, StoreUnavailable
from glimpse.stores.base import StoreHealth, WrittenData
from glimpse.stores.threads import ChunkPipe, Janitor, PipeAborted, SerialWorker

log = logging.getLogger(__name__)

LOOKAHEAD = 32 * 1024**2
READ_CHUNK = 1024 * 1024
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class SwiftCredentials:
    """One reference of the ``swift_store_config_file``; repr hides the key."""

    auth_address: str
    user: str
    key: str = field(repr=False)
    auth_version: str = "3"
    project_name: str | None = None
    project_id: str | None = None
    user_domain_id: str | None = None
    user_domain_name: str | None = None
    project_domain_id: str | None = None
    project_domain_name: str | None = None


def load_credentials(path: str | Path, reference: str) -> SwiftCredentials:
    """Read reference ``reference`` of a Glance ``glance-swift.conf``; errors stop start-up."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as exc:
        raise ValueError(f"swift_store_config_file {path} cannot be read: {exc}") from exc
    if not parser.has_section(reference):
        raise ValueError(
            f"swift_store_config_file {path} has no [{reference}] section "
            "(default_swift_reference)"
        )
    section = parser[reference]

    def get(name: str) -> str | None:
        value = section.get(name)
        if value is None:
            return None
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        return value or None

    address, user, key = get("auth_address"), get("user"), get("key")
    if not (address and user and key):
        raise ValueError(
            f"[{reference}] in {path} needs auth_address, user and key"
        )
    version = get("auth_version")
    if version is None:
        # tempauth and other v1 services are recognised by their URL.
        version = "1" if re.search(r"/v1(\.0)?/?$", address) else "3"
    version = version.lstrip("vV").split(".")[0]
    if version not in ("1", "2", "3"):
        raise ValueError(f"[{reference}] in {path}: auth_version must be 1, 2 or 3")
    return SwiftCredentials(
        auth_address=address, user=user, key=key, auth_version=version,
        project_name=get("project_name"), project_id=get("project_id"),
        user_domain_id=get("user_domain_id"), user_domain_name=get("user_domain_name"),
        project_domain_id=get("project_domain_id"),
        project_domain_name=get("project_domain_name"),
    )


class SwiftStoreDriver:
    type = "swift"

    def __init__(
        self,
        credentials: SwiftCredentials,
        *,
        reference: str = "ref1",
        container: str = "glance",
        large_object_size: int = 5120 * 1024**2,
        large_object_chunk_size: int = 200 * 1024**2,
        create_container_on_put: bool = False,
        insecure: bool = False,
        cacert: str | None = None,
        region: str | None = None,
        endpoint_type: str = "publicURL",
        service_type: str = "object-store",
        retries: int = 2,
        timeout: float = 60.0,
        retry_get_count: int = 0,
    ) -> None:
        if large_object_chunk_size <= 0 or large_object_size <= 0:
            raise ValueError("swift large object sizes must be positive")
        self.credentials = credentials
        self.reference = reference
        self.container = container
        self.large_object_size = large_object_size
        self.large_object_chunk_size = large_object_chunk_size
        self.create_container_on_put = create_container_on_put
        self.insecure = insecure
        self.cacert = cacert
        self.region = region
        self.endpoint_type = endpoint_type
        self.service_type = service_type
        self.retries = retries
        self.timeout = timeout
        self.retry_get_count = retry_get_count
        self._auth: tuple[str, str] | None = None  # storage URL and token, shared
        self._session: ksa_session.Session | None = None
        self.janitor = Janitor(f"swift store {reference}")

    # -- connections --------------------------------------------------------------

    def _connection(self, retries: int | None = None) -> swiftclient.Connection:
        """A connection for one operation (one HTTP connection, one thread); it reuses the
        last token and logs in again by itself when Swift refuses it (401)."""
        c = self.credentials
        url, token = self._auth or (None, None)
        common: dict[str, Any] = {
            "preauthurl": url, "preauthtoken": token, "insecure": self.insecure,
            "cacert": self.cacert, "retries": self.retries if retries is None else retries,
            "starting_backoff": 0.5, "max_backoff": 2, "timeout": self.timeout,
        }
        if c.auth_version == "1":
            return swiftclient.Connection(authurl=c.auth_address, user=c.user, key=c.key,
                                          auth_version="1", **common)
        # Keystone: the storage URL is the catalog's object-store endpoint.
        os_options: dict[str, Any] = {
            "endpoint_type": self.endpoint_type, "service_type": self.service_type,
        }
        if self.region:
            os_options["region_name"] = self.region
        return swiftclient.Connection(session=self._keystone_session(), os_options=os_options,
                                      **common)

    def _keystone_session(self) -> ksa_session.Session:
        """One keystoneauth session per store, shared by its threads (the plugin locks
        its token), for Keystone v3 or v2.0 password logins."""
        if self._session is None:
            c = self.credentials
            user, project = c.user, c.project_name
            if ":" in user and not (c.project_name or c.project_id):
                project, user = user.split(":", 1)  # Glance's project:user form
            auth: Any
            if c.auth_version == "3":
                auth = ksa_v3.Password(
                    auth_url=c.auth_address, username=user, password=c.key,
                    project_name=project, project_id=c.project_id,
                    user_domain_id=c.user_domain_id or (
                        None if c.user_domain_name else "default"),
                    user_domain_name=c.user_domain_name,
                    project_domain_id=c.project_domain_id or (
                        None if c.project_domain_name else "default"),
                    project_domain_name=c.project_domain_name,
                )
            else:
                auth = ksa_v2.Password(auth_url=c.auth_address, username=user,
                                       password=c.key, tenant_name=project,
                                       tenant_id=c.project_id)
            verify: bool | str = False if self.insecure else (self.cacert or True)
            self._session = ksa_session.Session(auth=auth, verify=verify, timeout=self.timeout)
        return self._session

    def _remember(self, conn: swiftclient.Connection) -> None:
        if conn.url and conn.token:
            self._auth = (conn.url, conn.token)

    def _translate(self, exc: BaseException, doing: str) -> BaseException:
        if isinstance(exc, (StoreUnavailable, StoreFull)):
            return exc
        if isinstance(exc, ClientException):
            if exc.http_status == 413:
                return StoreFull(f"Swift refused the data as too large {doing}")
            if exc.http_status == 507:
                return StoreFull(f"Swift is out of space {doing}")
            status = f"HTTP {exc.http_status}" if exc.http_status else str(exc.msg)
            return StoreUnavailable(f"Swift store failed {doing}: {status} {exc.http_reason or ''}"
                                    .rstrip())
        if isinstance(exc, ksa_exceptions.ClientException):  # logging in to Keystone
            if isinstance(exc, (ksa_exceptions.ConnectTimeout, ksa_exceptions.RequestTimeout)):
                return StoreUnavailable(
                    f"Keystone did not answer within {self.timeout:g} s {doing} for Swift"
                )
            return StoreUnavailable(f"Swift's Keystone login failed {doing}: {exc}")
        # Only the client's own errors: the source's (a client going away) pass through.
        if isinstance(exc, PipeAborted) or _is_requests_error(exc):
            if _is_timeout(exc):
                return StoreUnavailable(f"Swift did not answer within {self.timeout:g} s {doing}")
            return StoreUnavailable(f"Swift store failed {doing}: {type(exc).__name__}: {exc}")
        return exc

    # -- writing ------------------------------------------------------------------

    async def write(self, image_id: str, chunks: AsyncIterator[bytes]) -> WrittenData:
        worker = SerialWorker("swift-write")
        conn = self._connection()
        upload = _Upload(self, conn, image_id)
        try:
            try:
                await worker.run(upload.ensure_container)
                size = await upload.stream(worker, chunks)
            except BaseException:
                await upload.abort(worker)
                raise
        except Exception as exc:
            raise self._translate(exc, f"writing image {image_id}") from exc
        finally:
            self._remember(conn)
            await worker.cleanup(conn.close)
            await worker.cleanup(upload.close)
            worker.close()
        return WrittenData(location=self.location_for(self.container, image_id), size=size)

    def sweep_segments(self, container: str, prefix: str) -> None:
        """Delete every object named ``prefix``*: one aborted upload's segments."""
        conn = self._connection(retries=0)
        try:
            try:
                _, objects = conn.get_container(container, prefix=prefix, full_listing=True)
            except ClientException as exc:
                if exc.http_status == 404:
                    return
                raise
            for item in objects:
                try:
                    conn.delete_object(container, item["name"])
                except ClientException as exc:
                    if exc.http_status != 404:
                        raise
        finally:
            conn.close()

    # -- reading ------------------------------------------------------------------

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        container, name = self._parse(location)
        if length == 0:
            return
        worker = SerialWorker("swift-read")
        conn = self._connection()
        position = offset
        retries_left = self.retry_get_count
        body: Any = None
        try:
            while True:
                # Always a Range, so swiftclient leaves resuming to us (and to our count).
                last = "" if length is None else str(offset + length - 1)
                try:
                    headers, body = await worker.run(
                        conn.get_object, container, name, resp_chunk_size=READ_CHUNK,
                        headers={"Range": f"bytes={position}-{last}"},
                    )
                except ClientException as exc:
                    if exc.http_status == 416:  # the range starts at or after the end
                        return
                    if exc.http_status == 404:
                        raise StoreUnavailable(
                            f"Image data is missing from Swift: {container}/{name}"
                        ) from exc
                    raise
                skip = position if "content-range" not in headers else 0
                expected = _int_or_none(headers.get("content-length"))
                received = 0
                try:
                    iterator = iter(body)
                    while data := await worker.run(next, iterator, b""):
                        received += len(data)
                        if skip:  # Swift ignored the Range: drop what comes before it
                            cut = min(skip, len(data))
                            data, skip = data[cut:], skip - cut
                            if not data:
                                continue
                        position += len(data)
                        yield data
                    if expected is not None and received < expected:
                        raise _ShortRead(f"Swift ended the data of {container}/{name} after "
                                         f"{received} of {expected} bytes")
                    return
                except Exception as exc:
                    if retries_left <= 0 or not (isinstance(exc, _ShortRead)
                                                 or _is_requests_error(exc)):
                        raise
                    retries_left -= 1
                    log.info("download of %s/%s cut off at byte %d (%s); resuming", container,
                             name, position, exc)
                    await worker.cleanup(body.close)
                    body = None
        except _ShortRead as exc:
            raise StoreUnavailable(str(exc)) from exc
        except Exception as exc:
            raise self._translate(exc, f"reading {location}") from exc
        finally:
            self._remember(conn)
            if body is not None:
                await worker.cleanup(body.close)
            await worker.cleanup(conn.close)
            worker.close()

    # -- deleting -----------------------------------------------------------------

    async def delete(self, location: str) -> None:
        container, name = self._parse(location)
        worker = SerialWorker("swift-delete")
        conn = self._connection()
        try:
            await worker.run(_delete_object, conn, container, name)
        except Exception as exc:
            raise self._translate(exc, f"deleting {location}") from exc
        finally:
            self._remember(conn)
            await worker.cleanup(conn.close)
            worker.close()

    # -- the rest of the protocol -------------------------------------------------

    def local_path(self, location: str) -> Path | None:
        return None

    async def health(self) -> StoreHealth:
        worker = SerialWorker("swift-health")
        conn = self._connection()
        try:
            await worker.run(conn.head_container, self.container)
        except ClientException as exc:
            if exc.http_status == 404:
                if self.create_container_on_put:
                    return StoreHealth(ok=True, writable=True)
                return StoreHealth(ok=False, writable=False,
                                   detail=f"container {self.container} does not exist")
            return StoreHealth(ok=False, writable=False,
                               detail=str(self._translate(exc, "checking health")))
        except Exception as exc:
            return StoreHealth(ok=False, writable=False,
                               detail=str(self._translate(exc, "checking health")))
        finally:
            self._remember(conn)
            await worker.cleanup(conn.close)
            worker.close()
        return StoreHealth(ok=True, writable=True)

    def properties(self) -> dict[str, object]:
        return {
            "container": self.container,
            "large_object_size": self.large_object_size,
            "large_object_chunk_size": self.large_object_chunk_size,
        }

    async def list_locations(self) -> list[str]:
        """Objects named like image ids (segments and strangers excluded)."""
        worker = SerialWorker("swift-list")
        conn = self._connection()
        try:
            _, objects = await worker.run(conn.get_container, self.container, full_listing=True)
        except ClientException as exc:
            if exc.http_status == 404:
                return []
            raise self._translate(exc, "listing objects") from exc
        except Exception as exc:
            raise self._translate(exc, "listing objects") from exc
        finally:
            self._remember(conn)
            await worker.cleanup(conn.close)
            worker.close()
        return [self.location_for(self.container, o["name"]) for o in objects
                if _UUID.match(o["name"])]

    def owns(self, location: str) -> bool:
        parsed = urlparse(location)
        return (parsed.scheme == "swift+config" and parsed.netloc == self.reference
                and parsed.path.count("/") == 2)

    def location_for(self, container: str, name: str) -> str:
        return f"swift+config://{self.reference}/{quote(container, '')}/{quote(name, '')}"

    def _parse(self, location: str) -> tuple[str, str]:
        if not self.owns(location):
            raise StoreUnavailable(f"Location {location} is not in Swift store {self.reference}")
        _, container, name = urlparse(location).path.split("/")
        return unquote(container), unquote(name)


class _Upload:
    """One image being written: look-ahead, then one PUT or segments plus a manifest."""

    def __init__(self, driver: SwiftStoreDriver, conn: swiftclient.Connection, image_id: str):
        self.driver = driver
        self.conn = conn
        self.container = driver.container
        self.name = image_id
        self.prefix = f"{image_id}-{secrets.token_hex(4)}-"  # this upload's segments
        self.started: list[str] = []  # every object a PUT was started for
        self.put: Any = None  # the segment PUT in flight
        self.pipe: ChunkPipe | None = None
        # Segment bodies are streams swiftclient cannot replay: a failed PUT must end the
        # upload with its own error, not with a retry's "no ability to reset contents".
        self.segment_conn: swiftclient.Connection | None = None

    def ensure_container(self) -> None:
        try:
            self.conn.head_container(self.container)
        except ClientException as exc:
            if exc.http_status != 404:
                raise
            if not self.driver.create_container_on_put:
                raise StoreUnavailable(
                    f"The container {self.container} does not exist in Swift. Please set "
                    "the swift_store_create_container_on_put option to add the container "
                    "to Swift automatically."
                ) from exc
            self.conn.put_container(self.container)
        finally:
            self.driver._remember(self.conn)  # the segment connection logs in with it

    async def stream(self, worker: SerialWorker, chunks: AsyncIterator[bytes]) -> int:
        driver = self.driver
        source = aiter(chunks)
        threshold = min(driver.large_object_size, LOOKAHEAD)
        held: list[bytes] = []
        size = 0
        ended = False
        while size < threshold:
            try:
                chunk = await anext(source)
            except StopAsyncIteration:
                ended = True
                break
            held.append(chunk)
            size += len(chunk)
        if ended:
            self.started.append(self.name)
            await worker.run(self.conn.put_object, self.container, self.name,
                             io.BytesIO(b"".join(held)), content_length=size)
            return size
        return await self._segments(worker, held, source)

    async def _segments(
        self, worker: SerialWorker, held: list[bytes], source: AsyncIterator[bytes]
    ) -> int:
        limit = self.driver.large_object_chunk_size
        pending = bytearray(b"".join(held))
        total = 0
        number = 0
        ended = False
        while True:
            if not pending and not ended:  # a segment starts only with data in hand
                try:
                    pending += await anext(source)
                except StopAsyncIteration:
                    ended = True
            if not pending:
                break
            number += 1
            segment = f"{self.prefix}{number:05d}"
            self.pipe = ChunkPipe()
            self.started.append(segment)
            if self.segment_conn is None:
                self.segment_conn = self.driver._connection(retries=0)
            self.put = asyncio.ensure_future(worker.run(
                self.segment_conn.put_object, self.container, segment, iter(self.pipe),
                content_length=None,
            ))
            filled = 0
            while filled < limit:
                if not pending:
                    if ended:
                        break
                    try:
                        pending += await anext(source)
                    except StopAsyncIteration:
                        ended = True
                        break
                piece = bytes(pending[: min(limit - filled, READ_CHUNK)])
                del pending[: len(piece)]
                await self.pipe.put(piece, self.put)
                filled += len(piece)
            self.pipe.close()
            await self.put
            self.put = self.pipe = None
            total += filled
        manifest = f"{quote(self.container)}/{quote(self.prefix)}"
        self.started.append(self.name)
        await worker.run(self.conn.put_object, self.container, self.name, b"",
                         content_length=0, headers={"X-Object-Manifest": manifest})
        return total

    async def abort(self, worker: SerialWorker) -> None:
        """Stop the PUT in flight, then delete every object this upload started."""
        if self.pipe is not None:
            self.pipe.abort()
        if self.put is not None:
            await worker.cleanup(_ignore)  # queued after the aborted PUT: it has ended
            if self.put.done() and not self.put.cancelled():
                self.put.exception()  # retrieved: the upload's own error is what counts
        await worker.cleanup(self._delete_started)

    def close(self) -> None:
        if self.segment_conn is not None:
            self.segment_conn.close()

    def _delete_started(self) -> None:
        """Delete what this upload started; what Swift cannot take now goes to the janitor.

        One try each, without retries: when Swift is away the upload has already waited
        out a timeout, and the caller is owed its error. The segments, named for this
        upload alone, are swept later; the object under the image's own name is not (by
        then a new upload of the image may have written it), so if Swift completes a PUT
        of it that was cut off, it stays as unreferenced data that the next upload
        overwrites (``glimpse stores orphans`` lists it once the image is deleted).
        """
        conn = self.driver._connection(retries=0)
        remaining = list(reversed(self.started))  # the manifest (if any) first
        try:
            while remaining:
                try:
                    conn.delete_object(self.container, remaining[0])
                except ClientException as exc:
                    if exc.http_status != 404:
                        raise
                remaining.pop(0)
        except Exception as exc:
            why = self.driver._translate(exc, "cleaning up")
            if self.name in remaining:
                log.warning("could not remove %s/%s after a failed upload (%s); if Swift "
                            "completes its PUT later, the object stays unreferenced",
                            self.container, self.name, why)
            if any(name != self.name for name in remaining):
                self.driver.janitor.defer(
                    f"removing segments {self.container}/{self.prefix}* of an aborted upload",
                    functools.partial(self.driver.sweep_segments, self.container, self.prefix),
                    why,
                )
        finally:
            conn.close()


def _ignore() -> None:
    return None


def _delete_object(conn: swiftclient.Connection, container: str, name: str) -> None:
    """Manifest (or object) first, then its segments; a missing object is not an error."""
    try:
        headers = conn.head_object(container, name)
    except ClientException as exc:
        if exc.http_status != 404:
            raise
        headers = None
    if headers is not None and headers.get("x-static-large-object", "").lower() == "true":
        conn.delete_object(container, name, query_string="multipart-manifest=delete")
        return
    manifest = headers.get("x-object-manifest") if headers is not None else None
    if headers is not None:
        try:
            conn.delete_object(container, name)
        except ClientException as exc:
            if exc.http_status != 404:
                raise
    if manifest:
        seg_container, prefix = unquote(manifest).split("/", 1)
    else:  # plain object, or a delete repeated after a partial one: sweep our segments
        seg_container, prefix = container, f"{name}-"
    try:
        _, segments = conn.get_container(seg_container, prefix=prefix, full_listing=True)
    except ClientException as exc:
        if exc.http_status == 404:
            return
        raise
    for segment in segments:
        try:
            conn.delete_object(seg_container, segment["name"])
        except ClientException as exc:
            if exc.http_status != 404:
                raise


class _ShortRead(Exception):
    """Swift closed a download before its Content-Length."""


def _is_requests_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("requests", "urllib3", "http.client"))


def _is_timeout(exc: BaseException) -> bool:
    """A request Swift did not answer in time (requests and urllib3 name theirs so)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError) or "Timeout" in type(current).__name__:
            return True
        current = current.__cause__ or current.__context__
    return False


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None
