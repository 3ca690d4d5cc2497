"""The store contract against a real Swift (scripts/swift, tempauth), plus what only the
Swift store does: Glance's credentials file and credential-free locations, segments and a
DLO manifest above the large-object size, no segments left by failed uploads."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import swiftclient
import urllib3
from tests.backends import SwiftEndpoint
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
from glimpse.stores.swift import SwiftCredentials, SwiftStoreDriver, load_credentials

CONTAINER = "glimpse-contract"


def connection(swift: SwiftEndpoint) -> swiftclient.Connection:
    return swiftclient.Connection(authurl=swift.auth_url, user=swift.user, key=swift.key,
                                  auth_version="1")


def swift_driver(swift: SwiftEndpoint, tmp_path: Path, **options: Any) -> SwiftStoreDriver:
    credentials = load_credentials(swift.config_file(tmp_path), "ref1")
    options.setdefault("container", CONTAINER)
    options.setdefault("create_container_on_put", True)
    options.setdefault("large_object_size", 2 * MIB)
    options.setdefault("large_object_chunk_size", MIB)
    return SwiftStoreDriver(credentials, reference="ref1", **options)


class SwiftHarness:
    scheme = "swift+config://ref1/"
    foreign = f"swift+config://elsewhere/{CONTAINER}/{new_id()}"

    def __init__(self, swift: SwiftEndpoint, tmp_path: Path) -> None:
        self.swift = swift
        self.tmp_path = tmp_path

    def driver(self) -> SwiftStoreDriver:
        return swift_driver(self.swift, self.tmp_path)

    def leftovers(self, image_id: str) -> list[str]:
        try:
            _, objects = connection(self.swift).get_container(
                CONTAINER, prefix=image_id, full_listing=True
            )
        except swiftclient.ClientException as exc:
            if exc.http_status == 404:
                return []
            raise
        return [o["name"] for o in objects]

    def unreachable(self) -> SwiftStoreDriver:
        credentials = SwiftCredentials("http://127.0.0.1:9/auth/v1.0", "a:b", "c", "1")
        return SwiftStoreDriver(credentials, container=CONTAINER, retries=0, timeout=2)


@pytest.fixture
def harness(swift_aio: SwiftEndpoint, tmp_path: Path) -> SwiftHarness:
    return SwiftHarness(swift_aio, tmp_path)


class TestSwiftContract(StoreContract):
    pass


# -- what only the Swift store does ----------------------------------------------------


async def test_small_images_are_plain_objects(swift_aio: SwiftEndpoint, tmp_path: Path) -> None:
    store = ManagedStore("swift", swift_driver(swift_aio, tmp_path))
    image_id = new_id()
    data = os.urandom(MIB)
    stored = await store.add(image_id, pieces(data))
    assert stored.location == f"swift+config://ref1/{CONTAINER}/{image_id}"
    headers = connection(swift_aio).head_object(CONTAINER, image_id)
    assert "x-object-manifest" not in headers
    assert headers["etag"] == stored.checksum
    await store.delete(stored.location)


async def test_large_images_are_segments_and_a_manifest(
    swift_aio: SwiftEndpoint, tmp_path: Path
) -> None:
    store = ManagedStore("swift", swift_driver(swift_aio, tmp_path))
    image_id = new_id()
    data = os.urandom(3 * MIB + 100)
    stored = await store.add(image_id, pieces(data, 100_000))
    assert stored.size == len(data)
    conn = connection(swift_aio)
    headers = conn.head_object(CONTAINER, image_id)
    # Segments carry a prefix of their own upload: <image_id>-<8 hex>-
    prefix = headers["x-object-manifest"].removeprefix(f"{CONTAINER}/")
    assert re.fullmatch(rf"{image_id}-[0-9a-f]{{8}}-", prefix), prefix
    _, objects = conn.get_container(CONTAINER, prefix=f"{image_id}-")
    assert [(o["name"], o["bytes"]) for o in objects] == [
        (f"{prefix}00001", MIB), (f"{prefix}00002", MIB), (f"{prefix}00003", MIB),
        (f"{prefix}00004", 100),
    ]
    assert await read_all(store, stored.location) == data
    # a range across a segment boundary
    assert await read_all(store, stored.location, MIB - 10, 20) == data[MIB - 10 : MIB + 10]
    await store.delete(stored.location)
    assert SwiftHarness(swift_aio, tmp_path).leftovers(image_id) == []


async def test_an_exact_number_of_segments_has_no_empty_one(
    swift_aio: SwiftEndpoint, tmp_path: Path
) -> None:
    store = ManagedStore("swift", swift_driver(swift_aio, tmp_path))
    image_id = new_id()
    stored = await store.add(image_id, pieces(os.urandom(3 * MIB)))
    harness = SwiftHarness(swift_aio, tmp_path)
    names = sorted(harness.leftovers(image_id))
    assert names[0] == image_id
    assert [name[-6:] for name in names[1:]] == ["-00001", "-00002", "-00003"]
    await store.delete(stored.location)


async def test_a_failed_segmented_upload_leaves_no_segments(
    swift_aio: SwiftEndpoint, tmp_path: Path
) -> None:
    store = ManagedStore("swift", swift_driver(swift_aio, tmp_path))
    image_id = new_id()
    with pytest.raises(ConnectionError):
        await store.add(image_id, failing(after=60))  # 3.75 MiB: three segments started
    assert SwiftHarness(swift_aio, tmp_path).leftovers(image_id) == []


async def test_delete_after_a_partial_delete_sweeps_segments(
    swift_aio: SwiftEndpoint, tmp_path: Path
) -> None:
    store = ManagedStore("swift", swift_driver(swift_aio, tmp_path))
    image_id = new_id()
    stored = await store.add(image_id, pieces(os.urandom(3 * MIB)))
    connection(swift_aio).delete_object(CONTAINER, image_id)  # the manifest only
    await store.delete(stored.location)
    assert SwiftHarness(swift_aio, tmp_path).leftovers(image_id) == []


async def test_missing_container(swift_aio: SwiftEndpoint, tmp_path: Path) -> None:
    container = f"glimpse-{new_id()}"
    refusing = ManagedStore("swift", swift_driver(
        swift_aio, tmp_path, container=container, create_container_on_put=False))
    with pytest.raises(StoreUnavailable, match="swift_store_create_container_on_put"):
        await refusing.add(new_id(), chunks(b"x"))
    assert not (await refusing.health()).writable
    creating = ManagedStore("swift", swift_driver(swift_aio, tmp_path, container=container))
    stored = await creating.add(new_id(), chunks(b"x"))
    assert await read_all(refusing, stored.location) == b"x"
    await creating.delete(stored.location)
    connection(swift_aio).delete_container(container)


async def test_wrong_key_is_a_clear_error(swift_aio: SwiftEndpoint, tmp_path: Path) -> None:
    wrong = SwiftEndpoint(swift_aio.auth_url, swift_aio.user, "wrong-key")
    driver = SwiftStoreDriver(load_credentials(wrong.config_file(tmp_path), "ref1"),
                              container=CONTAINER)
    with pytest.raises(StoreUnavailable, match="401"):
        await ManagedStore("swift", driver).add(new_id(), chunks(b"x"))


async def test_properties_and_locations_hold_no_credentials(
    swift_aio: SwiftEndpoint, tmp_path: Path
) -> None:
    driver = swift_driver(swift_aio, tmp_path)
    assert driver.properties() == {
        "container": CONTAINER, "large_object_size": 2 * MIB, "large_object_chunk_size": MIB,
    }
    stored = await ManagedStore("swift", driver).add(new_id(), chunks(b"x"))
    assert swift_aio.key not in stored.location and "glimpse:" not in stored.location
    assert swift_aio.key not in repr(driver.credentials)
    await driver.delete(stored.location)


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "glance-swift.conf"
    path.write_text(
        "[ref1]\nauth_address = http://swift.example/auth/v1.0\nuser = acct:me\n"
        "key = 'secret'\n\n"
        "[ks]\nauth_address = https://keystone.example/v3\nuser = project:me\nkey = pw\n"
        "user_domain_name = Users\n"
    )
    v1 = load_credentials(path, "ref1")
    assert (v1.auth_version, v1.user, v1.key) == ("1", "acct:me", "secret")
    v3 = load_credentials(path, "ks")
    assert (v3.auth_version, v3.user_domain_name) == ("3", "Users")
    with pytest.raises(ValueError, match=r"no \[ref2\] section"):
        load_credentials(path, "ref2")
    with pytest.raises(ValueError, match="cannot be read"):
        load_credentials(tmp_path / "missing.conf", "ref1")


class _CutBody:
    """A Swift response body that breaks after ``after`` chunks, as a dropped connection."""

    def __init__(self, body: Any, after: int) -> None:
        self.body, self.after = body, after

    def __iter__(self) -> Any:
        for n, chunk in enumerate(self.body):
            if n == self.after:
                raise urllib3.exceptions.ProtocolError("Connection broken: reset by peer")
            yield chunk

    def close(self) -> None:
        self.body.close()


def cut_first_download(monkeypatch: pytest.MonkeyPatch, after: int) -> list[str]:
    """Break the first GET's body after ``after`` chunks; the Range of every GET."""
    real = swiftclient.Connection.get_object
    ranges: list[str] = []

    def get_object(self: Any, *args: Any, **kwargs: Any) -> Any:
        headers, body = real(self, *args, **kwargs)
        ranges.append(kwargs["headers"]["Range"])
        return headers, (_CutBody(body, after) if len(ranges) == 1 else body)

    monkeypatch.setattr(swiftclient.Connection, "get_object", get_object)
    return ranges


async def test_a_download_cut_off_is_resumed_where_it_stopped(
    swift_aio: SwiftEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """swift_store_retry_get_count: the rest is asked for with a Range, once per retry."""
    store = ManagedStore("swift", swift_driver(swift_aio, tmp_path, retry_get_count=1))
    data = os.urandom(3 * MIB + 11)
    stored = await store.add(new_id(), pieces(data))
    ranges = cut_first_download(monkeypatch, after=2)  # 1 MiB chunks
    assert await read_all(store, stored.location, 5) == data[5:]
    assert ranges == ["bytes=5-", f"bytes={5 + 2 * MIB}-"]
    monkeypatch.undo()
    await store.delete(stored.location)


async def test_a_download_cut_off_without_retries_is_an_error(
    swift_aio: SwiftEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Glance's default (no retry): the reader gets an error, never a short image."""
    store = ManagedStore("swift", swift_driver(swift_aio, tmp_path))
    stored = await store.add(new_id(), pieces(os.urandom(3 * MIB)))
    cut_first_download(monkeypatch, after=1)
    received = bytearray()
    with pytest.raises(StoreUnavailable, match="Store swift: Swift store failed reading"):
        async for chunk in store.read(stored.location):
            received += chunk
    assert len(received) == MIB
    monkeypatch.undo()
    await store.delete(stored.location)
