"""The store contract against a real S3 server (Ceph radosgw, scripts/ceph start-rgw), plus
what only the S3 store does: multipart uploads above the large-object size (parts sent in
parallel), aborted on failure so no parts remain, credential-free locations."""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest
from tests.backends import S3Endpoint
from tests.contract.store_contract import (
    MIB,
    StoreContract,
    chunks,
    failing,
    new_id,
    pieces,
    read_all,
)

from glimpse.domain.errors import StoreUnavailable
from glimpse.stores.registry import ManagedStore
from glimpse.stores.s3 import S3StoreDriver

BUCKET = "glimpse-contract"


def client(s3: S3Endpoint) -> Any:
    return boto3.client("s3", endpoint_url=s3.url, aws_access_key_id=s3.access_key,
                        aws_secret_access_key=s3.secret_key, region_name="us-east-1")


def s3_driver(s3: S3Endpoint, **options: Any) -> S3StoreDriver:
    options.setdefault("bucket", BUCKET)
    options.setdefault("create_bucket_on_put", True)
    options.setdefault("large_object_size", 5 * MIB)
    options.setdefault("large_object_chunk_size", 5 * MIB)
    options.setdefault("thread_pools", 2)
    return S3StoreDriver(host=s3.url, access_key=s3.access_key, secret_key=s3.secret_key,
                         bucket_url_format="path", **options)


class S3Harness:
    scheme = "s3://127.0.0.1:"
    foreign = f"s3://s3.example.com/{BUCKET}/{new_id()}"

    def __init__(self, s3: S3Endpoint) -> None:
        self.s3 = s3

    def driver(self) -> S3StoreDriver:
        return s3_driver(self.s3)

    def leftovers(self, image_id: str) -> list[str]:
        s3 = client(self.s3)
        try:
            objects = s3.list_objects_v2(Bucket=BUCKET, Prefix=image_id).get("Contents", [])
            uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=image_id)
        except s3.exceptions.NoSuchBucket:
            return []
        return ([o["Key"] for o in objects]
                + [f"upload:{u['Key']}" for u in uploads.get("Uploads", [])])

    def unreachable(self) -> S3StoreDriver:
        return S3StoreDriver(host="http://127.0.0.1:9", access_key="a", secret_key="b",
                             bucket=BUCKET)


@pytest.fixture
def harness(radosgw: S3Endpoint) -> S3Harness:
    return S3Harness(radosgw)


class TestS3Contract(StoreContract):
    pass


# -- what only the S3 store does -------------------------------------------------------


async def test_small_images_take_one_put(radosgw: S3Endpoint) -> None:
    store = ManagedStore("s3", s3_driver(radosgw))
    image_id = new_id()
    data = os.urandom(MIB)
    stored = await store.add(image_id, pieces(data))
    host = radosgw.url.removeprefix("http://")
    assert stored.location == f"s3://{host}/{BUCKET}/{image_id}"
    head = client(radosgw).head_object(Bucket=BUCKET, Key=image_id)
    assert head["ETag"].strip('"') == stored.checksum  # not a multipart ETag
    await store.delete(stored.location)


async def test_large_images_are_multipart_uploads(radosgw: S3Endpoint) -> None:
    store = ManagedStore("s3", s3_driver(radosgw))
    image_id = new_id()
    data = os.urandom(12 * MIB + 5)
    stored = await store.add(image_id, pieces(data, MIB))
    assert stored.size == len(data)
    head = client(radosgw).head_object(Bucket=BUCKET, Key=image_id)
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 2 MiB
    assert head["ContentLength"] == len(data)
    assert await read_all(store, stored.location) == data
    assert await read_all(store, stored.location, 5 * MIB - 3, 6) == data[5 * MIB - 3 : 5 * MIB + 3]
    await store.delete(stored.location)
    assert S3Harness(radosgw).leftovers(image_id) == []


async def test_a_failed_multipart_upload_is_aborted(radosgw: S3Endpoint) -> None:
    store = ManagedStore("s3", s3_driver(radosgw))
    image_id = new_id()
    with pytest.raises(ConnectionError):
        await store.add(image_id, failing(after=200))  # 12.5 MiB: parts already sent
    assert S3Harness(radosgw).leftovers(image_id) == []


async def test_missing_bucket(radosgw: S3Endpoint) -> None:
    bucket = f"glimpse-{new_id()}"
    refusing = ManagedStore("s3", s3_driver(radosgw, bucket=bucket,
                                            create_bucket_on_put=False))
    with pytest.raises(StoreUnavailable, match="s3_store_create_bucket_on_put"):
        await refusing.add(new_id(), chunks(b"x"))
    assert not (await refusing.health()).ok
    creating = ManagedStore("s3", s3_driver(radosgw, bucket=bucket))
    stored = await creating.add(new_id(), chunks(b"x"))
    assert await read_all(refusing, stored.location) == b"x"
    await creating.delete(stored.location)
    client(radosgw).delete_bucket(Bucket=bucket)


async def test_wrong_secret_is_a_clear_error(radosgw: S3Endpoint) -> None:
    driver = S3StoreDriver(host=radosgw.url, access_key=radosgw.access_key,
                           secret_key="wrong", bucket=BUCKET)
    with pytest.raises(StoreUnavailable, match="SignatureDoesNotMatch|AccessDenied|403"):
        await ManagedStore("s3", driver).add(new_id(), chunks(b"x"))


async def test_properties_and_locations_hold_no_credentials(radosgw: S3Endpoint) -> None:
    driver = s3_driver(radosgw)
    assert driver.properties() == {
        "s3_store_large_object_size": 5 * MIB,
        "s3_store_large_object_chunk_size": 5 * MIB,
        "s3_store_thread_pools": 2,
    }
    stored = await ManagedStore("s3", driver).add(new_id(), chunks(b"x"))
    assert radosgw.access_key not in stored.location
    assert radosgw.secret_key not in stored.location
    # Glance's older locations carry the keys: still ours, read with our own keys.
    with_keys = stored.location.replace("s3://", "s3://someone:secret@")
    assert driver.owns(with_keys)
    assert await read_all(ManagedStore("s3", driver), with_keys) == b"x"
    await driver.delete(stored.location)


def test_bad_options_stop_start_up() -> None:
    with pytest.raises(ValueError, match="at least 5 MB"):
        S3StoreDriver(host="h", access_key="a", secret_key="b", bucket="c",
                      large_object_chunk_size=MIB)
    with pytest.raises(ValueError, match="s3_store_bucket"):
        S3StoreDriver(host="h", access_key="a", secret_key="b", bucket="")
