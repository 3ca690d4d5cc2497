"""A network store whose back end stops answering mid-transfer and comes back, on a running
``glimpse serve`` with two stores: ``local`` (file) and ``remote`` (Swift, or S3 on
radosgw).

The back end is a server of its own (the Swift instance ``outage``, the radosgw of the
Ceph cluster ``outage``), frozen with SIGSTOP by its PID while Glimpse is writing one
image to it and streaming another from it, then let run again (SIGCONT). The store's
timeout is 2 s, so the outage lasts seconds. What must hold:

- the upload in flight answers 503 with a message naming the store, and the image is
  back to ``queued`` (no partial image);
- the download in flight ends short (the connection is cut before Content-Length), within
  seconds, instead of hanging; a download starting during the outage answers 503 before
  sending any of the body;
- the file store keeps serving and taking uploads meanwhile;
- once the back end answers again, nothing of the failed upload is left in it (Swift
  segments, S3 multipart uploads: the store's janitor removes them), and the same server,
  not restarted, takes the upload again and serves both images;
- no credential shows in the server's log.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import swiftclient
from tests.backends import (
    S3Outage,
    SwiftOutage,
    ceph_outage_lock,
    frozen,
    frozen_one_at_a_time,
    start_s3_outage,
)
from tests.live_server import LiveServer, database_for

MIB = 1024 * 1024
# More than every buffer between the back end and the test client holds (socket buffers,
# the driver's chunk, the test client's small receive buffer): the download in flight
# is still reading from the back end when it stops.
BIG = 32 * MIB
TIMEOUT = "2"
CONTAINER = BUCKET = "glimpse-outage"
PIECE = 256 * 1024


@dataclass
class Outage:
    """What the scenario needs to know of one back end."""

    before: int  # bytes of the second upload sent before the freeze
    after: int  # and after it
    secrets: tuple[str, ...]
    pid: Callable[[], int]
    started: Callable[[str], bool]  # the upload of this image has written to the store
    leftovers: Callable[[str], list[str]]  # whatever carries this image id in the store


def live_server(tmp_path: Path, backend: str, store_type: str, remote: dict[str, str]
                ) -> LiveServer:
    server = LiveServer(
        tmp_path,
        database_url=database_for(backend, f"outage_{store_type}"),
        options={
            "DEFAULT": {"enabled_backends": f"local:file, remote:{store_type}"},
            "glance_store": {"default_backend": "local"},
            "remote": remote,
        },
    )
    return server.start()


def client_of(server: LiveServer, *, slow: bool = False) -> httpx.AsyncClient:
    """``slow``: a small receive buffer, so the server cannot run far ahead of what the
    test reads (and downloads crawl: only for the download cut short)."""
    options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)] if slow else []
    transport = httpx.AsyncHTTPTransport(socket_options=options)
    return httpx.AsyncClient(base_url=server.url, transport=transport, timeout=60)


async def create(client: httpx.AsyncClient) -> str:
    response = await client.post("/v2/images", json={
        "disk_format": "raw", "container_format": "bare"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def put(client: httpx.AsyncClient, image_id: str, content: Any,
              store: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/octet-stream"}
    if store:
        headers["x-image-meta-store"] = store
    return await client.put(f"/v2/images/{image_id}/file", content=content, headers=headers)


async def status(client: httpx.AsyncClient, image_id: str) -> str:
    return str((await client.get(f"/v2/images/{image_id}")).json()["status"])


async def until(check: Callable[[], bool], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


async def scenario(server: LiveServer, outage: Outage) -> None:
    big = os.urandom(BIG)
    second = os.urandom(outage.before + outage.after)
    small = b"local bytes " * 1000
    async with client_of(server) as client, client_of(server, slow=True) as slow:
        streamed = await create(client)
        assert (await put(client, streamed, big, "remote")).status_code == 204
        local = await create(client)
        assert (await put(client, local, small)).status_code == 204
        cut = await create(client)
        go_on = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            for start in range(0, len(second), PIECE):
                if start == outage.before:
                    await go_on.wait()
                yield second[start : start + PIECE]

        async with slow.stream("GET", f"/v2/images/{streamed}/file") as download:
            assert download.status_code == 200
            assert int(download.headers["content-length"]) == BIG
            chunks = download.aiter_raw()
            received = len(await anext(chunks))
            upload = asyncio.create_task(put(client, cut, body(), "remote"))
            await until(lambda: outage.started(cut), "the upload writes to the store")

            with frozen(outage.pid()):
                go_on.set()
                frozen_at = time.monotonic()

                async def drain() -> float:
                    nonlocal received
                    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                        async for chunk in chunks:
                            received += len(chunk)
                    return time.monotonic() - frozen_at

                async def local_store_serves() -> None:
                    got = await client.get(f"/v2/images/{local}/file")
                    assert got.status_code == 200 and got.content == small
                    another = await create(client)
                    assert (await put(client, another, small)).status_code == 204
                    assert await status(client, another) == "active"

                cut_short, refused, late, _ = await asyncio.gather(
                    drain(), upload, client.get(f"/v2/images/{streamed}/file"),
                    local_store_serves(),
                )
                # The download in flight ended short, within seconds.
                assert received < BIG
                assert cut_short < 20, cut_short
                # The upload in flight: 503 naming the store; the image back to queued.
                assert refused.status_code == 503, refused.text
                assert "Store remote" in refused.text, refused.text
                assert await status(client, cut) == "queued"
                # A download starting during the outage: 503, not a cut-off 200.
                assert late.status_code == 503, late.status_code
                assert "Store remote" in late.text, late.text

        # Back: the failed upload's pieces go, and the same server serves again.
        await until(lambda: outage.leftovers(cut) == [],
                    "the failed upload's data is removed from the store")
        assert (await put(client, cut, second, "remote")).status_code == 204
        assert await status(client, cut) == "active"
        assert (await client.get(f"/v2/images/{cut}/file")).content == second
        assert (await client.get(f"/v2/images/{streamed}/file")).content == big
        for image_id in (streamed, local, cut):
            assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
    log = server.log()
    for secret in outage.secrets:
        assert secret not in log


# -- Swift -----------------------------------------------------------------------------


def swift_connection(swift: SwiftOutage) -> swiftclient.Connection:
    e = swift.endpoint
    return swiftclient.Connection(authurl=e.auth_url, user=e.user, key=e.key,
                                  auth_version="1", retries=0, timeout=5)


def swift_names(swift: SwiftOutage, image_id: str) -> list[str]:
    try:
        _, objects = swift_connection(swift).get_container(CONTAINER, prefix=image_id)
    except swiftclient.ClientException as exc:
        if exc.http_status == 404:
            return []
        raise
    return [o["name"] for o in objects]


async def test_swift_goes_away_mid_transfer_and_comes_back(
    swift_outage: SwiftOutage, backend: str, tmp_path: Path
) -> None:
    async with frozen_one_at_a_time(swift_outage.lock_file):
        swift_outage.thaw()
        config = swift_outage.endpoint.config_file(tmp_path)
        server = live_server(tmp_path, backend, "swift", {
            "swift_store_config_file": str(config),
            "swift_store_container": CONTAINER,
            "swift_store_create_container_on_put": "true",
            # 4 MB segments: 8 for the big image (past 10 a DLO is read at one segment
            # a second, Swift's dlo rate_limit_after_segment).
            "swift_store_large_object_size": "1",
            "swift_store_large_object_chunk_size": "4",
            "swift_store_timeout": TIMEOUT,
        })
        try:
            await scenario(server, Outage(
                before=6 * MIB, after=4 * MIB,
                secrets=(swift_outage.endpoint.key,),
                pid=swift_outage.proxy_pid,
                started=lambda image_id: any(
                    n.startswith(f"{image_id}-") for n in swift_names(swift_outage, image_id)),
                leftovers=lambda image_id: swift_names(swift_outage, image_id),
            ))
        finally:
            server.stop()


# -- S3 (radosgw) ----------------------------------------------------------------------


def s3_client(s3: S3Outage) -> Any:
    e = s3.endpoint
    return boto3.client("s3", endpoint_url=e.url, aws_access_key_id=e.access_key,
                        aws_secret_access_key=e.secret_key, region_name="us-east-1")


def s3_parts_written(s3: S3Outage, image_id: str) -> bool:
    client = s3_client(s3)
    try:
        uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=image_id)
    except client.exceptions.NoSuchBucket:
        return False
    for upload in uploads.get("Uploads", []):
        parts = client.list_parts(Bucket=BUCKET, Key=image_id, UploadId=upload["UploadId"])
        if parts.get("Parts"):
            return True
    return False


def s3_leftovers(s3: S3Outage, image_id: str) -> list[str]:
    client = s3_client(s3)
    objects = client.list_objects_v2(Bucket=BUCKET, Prefix=image_id).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=image_id)
    return [o["Key"] for o in objects] + [
        f"multipart upload {u['UploadId']}" for u in uploads.get("Uploads", [])
    ]


async def test_s3_goes_away_mid_transfer_and_comes_back(backend: str, tmp_path: Path) -> None:
    lock = ceph_outage_lock()
    lock.parent.mkdir(parents=True, exist_ok=True)
    # The same lock as the RBD outage test, which freezes this cluster's OSD.
    async with frozen_one_at_a_time(lock):
        s3 = await asyncio.to_thread(start_s3_outage)
        server = live_server(tmp_path, backend, "s3", {
            "s3_store_host": s3.endpoint.url,
            "s3_store_access_key": s3.endpoint.access_key,
            "s3_store_secret_key": s3.endpoint.secret_key,
            "s3_store_bucket": BUCKET,
            "s3_store_create_bucket_on_put": "true",
            "s3_store_bucket_url_format": "path",
            "s3_store_large_object_size": "5",
            "s3_store_large_object_chunk_size": "5",
            "s3_store_thread_pools": "2",
            "s3_store_timeout": TIMEOUT,
        })
        try:
            await scenario(server, Outage(
                before=12 * MIB, after=8 * MIB,
                secrets=(s3.endpoint.access_key, s3.endpoint.secret_key),
                pid=s3.radosgw_pid,
                started=lambda image_id: s3_parts_written(s3, image_id),
                leftovers=lambda image_id: s3_leftovers(s3, image_id),
            ))
        finally:
            server.stop()

