"""The S3 store: one object per image in one bucket (AWS S3, Ceph radosgw, ...).

In the bucket (``s3_store_bucket``)::

    <image_id>      the image; large images arrive by multipart upload, which S3 shows
                    only once completed, so a half-written image is never visible

Location: ``s3://<host>/<bucket>/<image_id>`` (``s3+https://`` for an https endpoint),
without the access and secret keys that older Glance releases put there: the store uses
its configured keys, so credentials never reach the database, logs or API answers.

The size is not known while streaming. Up to ``min(s3_store_large_object_size, 32 MiB)``
bytes are held back: a stream ending within that is sent with one PUT; a longer one goes
as a multipart upload of ``s3_store_large_object_chunk_size`` parts, up to
``s3_store_thread_pools`` of them sent in parallel, and is aborted on any failure so no
parts are left behind; when S3 is away at that moment, the abort is retried in the
background until it answers again (:class:`~glimpse.stores.threads.Janitor`; an upload id
belongs to one upload only, so a later abort cannot touch anything else). The part size
doubles every 1,000 parts to stay within S3's 10,000-part limit.

Every request has a timeout (``s3_store_timeout``): an S3 server that stops answering
fails an upload or a download in flight within it (times botocore's three attempts for
requests it can repeat), rather than holding it for ever.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import boto3
import botocore.config
import botocore.exceptions

from glimpse.domain.errors import StoreFull, StoreUnavailable
from glimpse.stores.base import StoreHealth, WrittenData
from glimpse.stores.threads import Janitor, SerialWorker

log = logging.getLogger(__name__)

LOOKAHEAD = 32 * 1024**2
READ_CHUNK = 1024 * 1024
PARTS_PER_SIZE = 1000
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class S3StoreDriver:
    type = "s3"

    def __init__(
        self,
        *,
        host: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        region_name: str | None = None,
        create_bucket_on_put: bool = False,
        bucket_url_format: str = "auto",
        large_object_size: int = 100 * 1024**2,
        large_object_chunk_size: int = 10 * 1024**2,
        thread_pools: int = 10,
        cacert: str | None = None,
        data_integrity_protection: bool = False,
        request_checksum_calculation: str = "when_required",
        response_checksum_validation: str = "when_required",
        timeout: float = 60.0,
    ) -> None:
        if not (host and access_key and secret_key and bucket):
            raise ValueError(
                "an s3 store needs s3_store_host, s3_store_access_key, s3_store_secret_key "
                "and s3_store_bucket"
            )
        if large_object_chunk_size < 5 * 1024**2:
            raise ValueError("s3_store_large_object_chunk_size must be at least 5 MB")
        if thread_pools <= 0:
            raise ValueError("s3_store_thread_pools must be a positive integer")
        if bucket_url_format not in ("auto", "virtual", "path"):
            raise ValueError("s3_store_bucket_url_format must be auto, virtual or path")
        if timeout <= 0:
            raise ValueError("s3_store_timeout must be positive")
        self.endpoint = host if host.startswith(("http://", "https://")) else f"http://{host}"
        parsed = urlparse(self.endpoint)
        self.scheme = "s3+https" if parsed.scheme == "https" else "s3"
        self.host = parsed.netloc
        self.bucket = bucket
        self.create_bucket_on_put = create_bucket_on_put
        self.large_object_size = large_object_size
        self.large_object_chunk_size = large_object_chunk_size
        self.thread_pools = thread_pools
        self.region_name = region_name or None
        self.timeout = timeout
        if not data_integrity_protection:
            request_checksum_calculation = response_checksum_validation = "when_required"
        config = botocore.config.Config(
            s3={"addressing_style": bucket_url_format},
            request_checksum_calculation=request_checksum_calculation,
            response_checksum_validation=response_checksum_validation,
            # total_max_attempts counts the first try (botocore's max_attempts does not).
            retries={"total_max_attempts": 3, "mode": "standard"},
            connect_timeout=min(10.0, timeout),
            read_timeout=timeout,
            max_pool_connections=thread_pools + 4,
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key
        )
        # A botocore client is thread-safe: one per store, shared by every operation.
        self.client: Any = session.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region_name,
            use_ssl=parsed.scheme == "https", verify=cacert or None, config=config,
        )
        # Clean-up after a failure tries once: the upload has already waited out the
        # timeouts, and what S3 cannot take now the janitor retries later.
        self.cleanup_client: Any = session.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region_name,
            use_ssl=parsed.scheme == "https", verify=cacert or None,
            config=config.merge(botocore.config.Config(
                retries={"total_max_attempts": 1, "mode": "standard"})),
        )
        self.janitor = Janitor(f"s3 store {self.host}")

    def _translate(self, exc: BaseException, doing: str) -> BaseException:
        if isinstance(exc, (StoreUnavailable, StoreFull)):
            return exc
        if isinstance(exc, botocore.exceptions.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("EntityTooLarge", "QuotaExceeded"):
                return StoreFull(f"S3 refused the data {doing}: {code}")
            return StoreUnavailable(f"S3 store failed {doing}: {code or exc}")
        # Only the client's own errors: the source's (a client going away) pass through.
        if isinstance(exc, (botocore.exceptions.ReadTimeoutError,
                            botocore.exceptions.ConnectTimeoutError)):
            return StoreUnavailable(f"S3 did not answer within {self.timeout:g} s {doing}")
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return StoreUnavailable(f"S3 store failed {doing}: {exc}")
        return exc

    # -- writing ------------------------------------------------------------------

    async def write(self, image_id: str, chunks: AsyncIterator[bytes]) -> WrittenData:
        worker = SerialWorker("s3-write")
        try:
            await worker.run(self._ensure_bucket)
            source = aiter(chunks)
            held = bytearray()
            threshold = min(self.large_object_size, LOOKAHEAD)
            while len(held) < threshold:
                try:
                    held += await anext(source)
                except StopAsyncIteration:
                    await self._put_whole(worker, image_id, bytes(held))
                    return WrittenData(self.location_for(self.bucket, image_id), len(held))
            size = await _Multipart(self, image_id, worker).run(held, source)
            return WrittenData(self.location_for(self.bucket, image_id), size)
        except Exception as exc:
            raise self._translate(exc, f"writing image {image_id}") from exc
        finally:
            worker.close()

    async def _put_whole(self, worker: SerialWorker, key: str, data: bytes) -> None:
        try:
            await worker.run(self.client.put_object, Bucket=self.bucket, Key=key, Body=data)
        except BaseException:
            # Cancelled while the PUT ran on: remove the object once the PUT has ended.
            await worker.cleanup(self._discard, key)
            raise

    def _discard(self, key: str) -> None:
        """Remove a PUT's object after the PUT failed, once. Not retried later: by then a
        new upload of the image may have written the key. If S3 completes the PUT that
        was cut off, the object stays unreferenced until the next upload overwrites it
        (``glimpse stores orphans`` lists it once the image is deleted)."""
        try:
            self._delete(self.bucket, key, client=self.cleanup_client)
        except Exception as exc:
            log.warning("could not remove %s/%s after a failed upload (%s); if S3 completes "
                        "its PUT later, the object stays unreferenced", self.bucket, key,
                        self._translate(exc, "cleaning up"))

    def _ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if _status(exc) != 404:
                raise
            if not self.create_bucket_on_put:
                raise StoreUnavailable(
                    f"The bucket {self.bucket} does not exist in S3. Please set the "
                    "s3_store_create_bucket_on_put option to add bucket to S3 automatically."
                ) from exc
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self.region_name and self.region_name != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region_name}
            try:
                self.client.create_bucket(**kwargs)
            except botocore.exceptions.ClientError as race:
                code = race.response.get("Error", {}).get("Code")
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    # -- reading ------------------------------------------------------------------

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        bucket, key = self._parse(location)
        if length == 0:
            return
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{last}"
        worker = SerialWorker("s3-read")
        body: Any = None
        try:
            try:
                response = await worker.run(self.client.get_object, **kwargs)
            except botocore.exceptions.ClientError as exc:
                if _status(exc) == 416:  # the range starts at or after the end
                    return
                if _status(exc) == 404:
                    raise StoreUnavailable(
                        f"Image data is missing from S3: {bucket}/{key}"
                    ) from exc
                raise
            body = response["Body"]
            while True:
                data = await worker.run(body.read, READ_CHUNK)
                if not data:
                    break
                yield data
        except Exception as exc:
            raise self._translate(exc, f"reading {location}") from exc
        finally:
            if body is not None:
                await worker.cleanup(body.close)
            worker.close()

    # -- deleting -----------------------------------------------------------------

    async def delete(self, location: str) -> None:
        bucket, key = self._parse(location)
        worker = SerialWorker("s3-delete")
        try:
            await worker.run(self._delete, bucket, key)
        except Exception as exc:
            raise self._translate(exc, f"deleting {location}") from exc
        finally:
            worker.close()

    def _delete(self, bucket: str, key: str, client: Any = None) -> None:
        try:
            (client or self.client).delete_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _status(exc) != 404:  # no such bucket: nothing to delete
                raise

    # -- the rest of the protocol -------------------------------------------------

    def local_path(self, location: str) -> Path | None:
        return None

    async def health(self) -> StoreHealth:
        worker = SerialWorker("s3-health")
        try:
            await worker.run(self.client.head_bucket, Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if _status(exc) == 404:
                if self.create_bucket_on_put:
                    return StoreHealth(ok=True, writable=True)
                return StoreHealth(ok=False, writable=False,
                                   detail=f"bucket {self.bucket} does not exist")
            return StoreHealth(ok=False, writable=False,
                               detail=str(self._translate(exc, "checking health")))
        except Exception as exc:
            return StoreHealth(ok=False, writable=False,
                               detail=str(self._translate(exc, "checking health")))
        finally:
            worker.close()
        return StoreHealth(ok=True, writable=True)

    def properties(self) -> dict[str, object]:
        return {
            "s3_store_large_object_size": self.large_object_size,
            "s3_store_large_object_chunk_size": self.large_object_chunk_size,
            "s3_store_thread_pools": self.thread_pools,
        }

    async def list_locations(self) -> list[str]:
        worker = SerialWorker("s3-list")
        try:
            keys = await worker.run(self._list_keys)
        except Exception as exc:
            raise self._translate(exc, "listing objects") from exc
        finally:
            worker.close()
        return [self.location_for(self.bucket, k) for k in keys if _UUID.match(k)]

    def _list_keys(self) -> list[str]:
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket
            ):
                keys.extend(o["Key"] for o in page.get("Contents", []))
        except botocore.exceptions.ClientError as exc:
            if _status(exc) == 404:
                return []
            raise
        return keys

    def owns(self, location: str) -> bool:
        """An s3 location on this store's host (keys in old Glance locations are ignored)."""
        parsed = urlparse(location)
        if parsed.scheme not in ("s3", "s3+http", "s3+https"):
            return False
        host = parsed.netloc.rpartition("@")[2]
        return host == self.host and parsed.path.count("/") >= 2

    def location_for(self, bucket: str, key: str) -> str:
        return f"{self.scheme}://{self.host}/{quote(bucket, '')}/{quote(key, '')}"

    def _parse(self, location: str) -> tuple[str, str]:
        if not self.owns(location):
            raise StoreUnavailable(f"Location {location} is not in S3 store {self.host}")
        _, bucket, key = urlparse(location).path.split("/", 2)
        return unquote(bucket), unquote(key)


class _Multipart:
    """One multipart upload: parts sent in parallel, completed in order, or aborted."""

    def __init__(self, driver: S3StoreDriver, key: str, worker: SerialWorker) -> None:
        self.driver = driver
        self.client = driver.client
        self.bucket = driver.bucket
        self.key = key
        self.worker = worker
        self.upload_id: str | None = None
        self.in_flight: set[asyncio.Future[dict[str, Any]]] = set()
        self.parts: list[dict[str, Any]] = []

    async def run(self, held: bytearray, source: AsyncIterator[bytes]) -> int:
        pool = ThreadPoolExecutor(self.driver.thread_pools, thread_name_prefix="s3-part")
        try:
            await self.worker.run(self._create)
            part_size = self.driver.large_object_chunk_size
            buffer = held
            total = 0
            ended = False
            while not ended or buffer:
                while len(buffer) < part_size and not ended:
                    try:
                        buffer += await anext(source)
                    except StopAsyncIteration:
                        ended = True
                if not buffer:
                    break
                part = bytes(buffer[:part_size])
                del buffer[:part_size]
                total += len(part)
                await self._send(pool, len(self.parts) + len(self.in_flight) + 1, part)
                if (len(self.parts) + len(self.in_flight)) % PARTS_PER_SIZE == 0:
                    part_size *= 2
            await self._drain(all_parts=True)
            self.parts.sort(key=lambda p: p["PartNumber"])
            await self.worker.run(
                self.client.complete_multipart_upload, Bucket=self.bucket, Key=self.key,
                UploadId=self.upload_id, MultipartUpload={"Parts": self.parts},
            )
            return total
        except BaseException:
            await self._abort()
            raise
        finally:
            pool.shutdown(wait=False)

    def _create(self) -> None:
        response = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
        self.upload_id = response["UploadId"]

    async def _send(self, pool: ThreadPoolExecutor, number: int, data: bytes) -> None:
        while len(self.in_flight) >= self.driver.thread_pools:
            await self._drain(all_parts=False)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(pool, partial(self._upload_part, number, data))
        self.in_flight.add(future)

    def _upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
            PartNumber=number, Body=data,
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    async def _drain(self, *, all_parts: bool) -> None:
        if not self.in_flight:
            return
        when = asyncio.ALL_COMPLETED if all_parts else asyncio.FIRST_COMPLETED
        done, self.in_flight = await asyncio.wait(self.in_flight, return_when=when)
        for future in done:
            self.parts.append(future.result())

    async def _abort(self) -> None:
        """Wait for the parts in flight (they cannot be stopped), then abort the upload."""
        if self.in_flight:
            waiting = asyncio.gather(*self.in_flight, return_exceptions=True)
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError:
                await asyncio.shield(waiting)
        await self.worker.cleanup(self._abort_upload)  # after a create still running

    def _abort_upload(self) -> None:
        if self.upload_id is None:
            return
        try:
            abort_multipart_upload(self.driver, self.bucket, self.key, self.upload_id)
        except Exception as exc:
            self.driver.janitor.defer(
                f"aborting multipart upload {self.upload_id} of {self.bucket}/{self.key}",
                partial(abort_multipart_upload, self.driver, self.bucket, self.key,
                        self.upload_id),
                self.driver._translate(exc, "cleaning up"),
            )


def abort_multipart_upload(driver: S3StoreDriver, bucket: str, key: str, upload_id: str) -> None:
    """Abort one multipart upload, once; one that is already gone is done."""
    try:
        driver.cleanup_client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except botocore.exceptions.ClientError as exc:
        if _status(exc) != 404:  # NoSuchUpload
            raise


def _status(exc: botocore.exceptions.ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status is None:
        code = exc.response.get("Error", {}).get("Code", "")
        return 404 if code in ("404", "NoSuchKey", "NoSuchBucket") else 0
    return int(status)
