"""Network store drivers against their real servers, beside the raw client on the same
server in the same run: Ceph RBD (librbd), Swift (python-swiftclient), S3 (boto3 on
radosgw). The servers are the test ones (scripts/ceph start-rgw, scripts/swift start).

    .venv/bin/python bench/stores.py [--size-mib 128] [--only rbd,swift,s3]

For each store: MB/s of an upload and a download through the driver alone
(``driver.write``/``driver.read``), through the managed store (adds md5 + sha512
hashing, as every upload does) and with the raw client library. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.backends import S3_ACCESS_KEY, S3_SECRET_KEY, SWIFT_KEY, SWIFT_USER  # noqa: E402

from glimpse.stores.registry import ManagedStore  # noqa: E402

MIB = 1024 * 1024
CHUNK = MIB


def script(*args: str) -> str:
    env = dict(os.environ, GLIMPSE_S3_ACCESS_KEY=S3_ACCESS_KEY,
               GLIMPSE_S3_SECRET_KEY=S3_SECRET_KEY, GLIMPSE_SWIFT_KEY=SWIFT_KEY)
    out = subprocess.run([str(REPO / "scripts" / args[0]), *args[1:]], check=True,
                         capture_output=True, text=True, env=env).stdout
    return out.strip().splitlines()[-1] if out.strip() else ""


async def source(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


def rate(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:8.0f}"


async def timed(func: Callable[[], Any]) -> float:
    started = time.perf_counter()
    result = func()
    if asyncio.iscoroutine(result):
        await result
    return time.perf_counter() - started


async def through_driver(driver: Any, data: bytes) -> tuple[float, float, float, float]:
    image_id = str(uuid.uuid4())
    started = time.perf_counter()
    written = await driver.write(image_id, source(data))
    up = time.perf_counter() - started
    started = time.perf_counter()
    size = 0
    async for chunk in driver.read(written.location):
        size += len(chunk)
    down = time.perf_counter() - started
    assert size == len(data)
    await driver.delete(written.location)
    store = ManagedStore("bench", driver)
    image_id = str(uuid.uuid4())
    started = time.perf_counter()
    stored = await store.add(image_id, source(data))
    managed_up = time.perf_counter() - started
    started = time.perf_counter()
    async for _ in store.read(stored.location):
        pass
    managed_down = time.perf_counter() - started
    await store.delete(stored.location)
    return up, down, managed_up, managed_down


def raw_rbd(conf: str, data: bytes) -> tuple[float, float]:
    import rados
    import rbd

    name = f"bench-{uuid.uuid4()}"
    client = rados.Rados(conffile=conf, rados_id="admin")
    client.connect()
    try:
        with client.open_ioctx("images") as ioctx:
            started = time.perf_counter()
            rbd.RBD().create(ioctx, name, len(data), order=23, old_format=False, features=1)
            with rbd.Image(ioctx, name) as image:
                for start in range(0, len(data), 8 * MIB):
                    image.write(data[start : start + 8 * MIB], start)
                image.flush()
            up = time.perf_counter() - started
            started = time.perf_counter()
            with rbd.Image(ioctx, name, read_only=True) as image:
                for start in range(0, len(data), 8 * MIB):
                    image.read(start, 8 * MIB)
            down = time.perf_counter() - started
            rbd.RBD().remove(ioctx, name)
    finally:
        client.shutdown()
    return up, down


def raw_swift(auth_url: str, data: bytes, segment: int) -> tuple[float, float]:
    import swiftclient

    conn = swiftclient.Connection(authurl=auth_url, user=SWIFT_USER, key=SWIFT_KEY,
                                  auth_version="1")
    conn.put_container("bench")
    name = f"bench-{uuid.uuid4()}"
    started = time.perf_counter()
    for number, start in enumerate(range(0, len(data), segment), 1):
        conn.put_object("bench", f"{name}-{number:05d}", io.BytesIO(data[start : start + segment]),
                        content_length=min(segment, len(data) - start))
    conn.put_object("bench", name, b"", headers={"X-Object-Manifest": f"bench/{name}-"})
    up = time.perf_counter() - started
    started = time.perf_counter()
    _, body = conn.get_object("bench", name, resp_chunk_size=CHUNK)
    for _ in body:
        pass
    down = time.perf_counter() - started
    for number in range(1, len(data) // segment + 2):
        try:
            conn.delete_object("bench", f"{name}-{number:05d}")
        except swiftclient.ClientException:
            pass
    conn.delete_object("bench", name)
    return up, down


def raw_s3(url: str, data: bytes, part: int, threads: int) -> tuple[float, float]:
    import boto3
    from boto3.s3.transfer import TransferConfig

    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=S3_ACCESS_KEY,
                      aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1")
    try:
        s3.create_bucket(Bucket="bench")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    key = f"bench-{uuid.uuid4()}"
    config = TransferConfig(multipart_threshold=part, multipart_chunksize=part,
                            max_concurrency=threads)
    started = time.perf_counter()
    s3.upload_fileobj(io.BytesIO(data), "bench", key, Config=config)
    up = time.perf_counter() - started
    started = time.perf_counter()
    body = s3.get_object(Bucket="bench", Key=key)["Body"]
    while body.read(CHUNK):
        pass
    down = time.perf_counter() - started
    s3.delete_object(Bucket="bench", Key=key)
    return up, down


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--only", default="rbd,swift,s3")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    data = os.urandom(args.size_mib * MIB)
    size = len(data)
    rows: list[tuple[str, float, float, float, float, float, float]] = []

    if "rbd" in wanted:
        conf = script("ceph", "start", "central")
        script("ceph", "link-bindings", sys.prefix)
        from glimpse.stores.rbd import RbdStoreDriver

        driver = RbdStoreDriver(conffile=conf, chunk_size=8 * MIB)
        rows.append(("rbd", *await through_driver(driver, data), *raw_rbd(conf, data)))
    if "swift" in wanted:
        auth_url = script("swift", "start")
        from glimpse.stores.swift import SwiftCredentials, SwiftStoreDriver

        credentials = SwiftCredentials(auth_url, SWIFT_USER, SWIFT_KEY, "1")
        swift = SwiftStoreDriver(credentials, container="bench", create_container_on_put=True,
                                 large_object_size=5120 * MIB, large_object_chunk_size=200 * MIB)
        rows.append(("swift", *await through_driver(swift, data),
                     *raw_swift(auth_url, data, 200 * MIB)))
    if "s3" in wanted:
        url = script("ceph", "start-rgw", "central")
        from glimpse.stores.s3 import S3StoreDriver

        s3 = S3StoreDriver(host=url, access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY,
                           bucket="bench", create_bucket_on_put=True, bucket_url_format="path")
        rows.append(("s3", *await through_driver(s3, data),
                     *raw_s3(url, data, 10 * MIB, 10)))

    print(f"{args.size_mib} MiB per transfer, MB/s (MiB/s); managed = driver + md5 + sha512")
    print(f"{'store':6} {'driver up':>10} {'down':>8} {'managed up':>11} {'down':>8} "
          f"{'raw up':>8} {'down':>8}")
    for name, up, down, m_up, m_down, r_up, r_down in rows:
        print(f"{name:6} {rate(size, up):>10} {rate(size, down):>8} {rate(size, m_up):>11} "
              f"{rate(size, m_down):>8} {rate(size, r_up):>8} {rate(size, r_down):>8}")


if __name__ == "__main__":
    asyncio.run(main())
