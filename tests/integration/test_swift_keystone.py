"""Glimpse and its Swift store both on Keystone, as in an OpenStack cloud: a real
``glimpse serve`` with ``auth_strategy = keystone`` and the stores ``local`` (file),
``swift`` and ``badswift`` (both Swift through the all-in-one's Keystone proxy,
scripts/swift start-keystone), whose credentials come from a ``glance-swift.conf`` with
``auth_version = 3`` references, the second with a wrong password.

A project member uploads to Swift and downloads through the API with their own Keystone
token; the data lands in the account of the store's project (found through the
catalog); the store that cannot log in answers 503 naming itself and leaves the image
queued. No password shows in locations, API answers or the server's log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import swiftclient
from tests.backends import SwiftKeystoneEndpoint, keystone_state
from tests.identity import authtoken_options, issue_token
from tests.live_server import LiveServer, database_for

MIB = 1024 * 1024
CONTAINER = "glimpse-keystone-api"
WRONG = "not-the-swift-password"


@pytest.fixture
def keystone(swift_keystone: SwiftKeystoneEndpoint) -> dict[str, Any]:
    return keystone_state()


@pytest.fixture
def server(
    swift_keystone: SwiftKeystoneEndpoint, keystone: dict[str, Any], backend: str,
    tmp_path: Path,
) -> Iterator[LiveServer]:
    swift_keystone.config_file(tmp_path, "ks")
    swift_keystone.config_file(tmp_path, "wrong", key=WRONG)
    swift = {
        "swift_store_config_file": str(tmp_path / "glance-swift.conf"),
        "swift_store_container": CONTAINER,
        "swift_store_create_container_on_put": "true",
        "swift_store_large_object_size": "1",
        "swift_store_large_object_chunk_size": "1",
        "swift_store_timeout": "30",
    }
    live = LiveServer(
        tmp_path,
        database_url=database_for(backend, "swift_keystone"),
        auth_strategy="keystone",
        options={
            "DEFAULT": {"enabled_backends": "local:file, swift:swift, badswift:swift",
                        "show_image_direct_url": "true",
                        "show_multiple_locations": "true"},
            "glance_store": {"default_backend": "local"},
            "swift": {**swift, "default_swift_reference": "ks"},
            "badswift": {**swift, "default_swift_reference": "wrong"},
            "keystone_authtoken": authtoken_options(keystone),
        },
    )
    live.start()
    try:
        yield live
    finally:
        live.stop()


def swift_names(ks: SwiftKeystoneEndpoint, prefix: str) -> list[str]:
    try:
        _, objects = ks.connection().get_container(CONTAINER, prefix=prefix)
    except swiftclient.ClientException as exc:
        if exc.http_status == 404:
            return []
        raise
    return [o["name"] for o in objects]


def test_a_member_uploads_to_swift_on_keystone_and_downloads(
    server: LiveServer, keystone: dict[str, Any], swift_keystone: SwiftKeystoneEndpoint
) -> None:
    octets = {"content-type": "application/octet-stream"}
    member = httpx.Client(base_url=server.url, timeout=120,
                          headers={"x-auth-token": issue_token(keystone, "glimpse-a-member")})
    admin = httpx.Client(base_url=server.url, timeout=120,
                         headers={"x-auth-token": issue_token(keystone, "glimpse-a-admin")})
    data = os.urandom(3 * MIB + 77)  # segments and a manifest
    with member, admin:
        created = member.post("/v2/images", json={
            "name": "on-swift", "disk_format": "raw", "container_format": "bare"})
        assert created.status_code == 201, created.text
        image_id = created.json()["id"]
        put = member.put(f"/v2/images/{image_id}/file", content=data,
                         headers={**octets, "x-image-meta-store": "swift"})
        assert put.status_code == 204, put.text

        shown = admin.get(f"/v2/images/{image_id}")
        assert shown.status_code == 200, shown.text
        image = shown.json()
        assert (image["status"], image["stores"], image["size"]) == ("active", "swift",
                                                                     len(data))
        assert image["direct_url"] == f"swift+config://ks/{CONTAINER}/{image_id}"
        assert [loc["url"] for loc in image["locations"]] == [image["direct_url"]]
        # In the account of the store's project, found through the catalog.
        names = swift_names(swift_keystone, image_id)
        assert image_id in names and len(names) == 5  # the manifest and 4 segments

        got = member.get(f"/v2/images/{image_id}/file")
        assert got.status_code == 200 and got.content == data
        ranged = member.get(f"/v2/images/{image_id}/file",
                            headers={"Range": f"bytes={MIB - 5}-{MIB + 4}"})
        assert ranged.status_code == 206 and ranged.content == data[MIB - 5 : MIB + 5]

        details = admin.get("/v2/info/stores/detail")
        assert details.status_code == 200, details.text
        stores = {s["id"]: s for s in details.json()["stores"]}
        assert stores["swift"]["type"] == "swift"
        assert stores["swift"]["properties"]["container"] == CONTAINER

        # The store whose reference has a wrong password: 503 naming it, image queued.
        other = member.post("/v2/images", json={
            "name": "refused", "disk_format": "raw", "container_format": "bare"})
        other_id = other.json()["id"]
        refused = member.put(f"/v2/images/{other_id}/file", content=b"x" * 1000,
                             headers={**octets, "x-image-meta-store": "badswift"})
        assert refused.status_code == 503, refused.text
        assert "Store badswift" in refused.text and "401" in refused.text
        assert member.get(f"/v2/images/{other_id}").json()["status"] == "queued"

        answers = " ".join([shown.text, details.text, refused.text])
        assert member.delete(f"/v2/images/{image_id}").status_code == 204
        assert member.delete(f"/v2/images/{other_id}").status_code == 204
        assert swift_names(swift_keystone, image_id) == []

    log = server.log()
    for secret in (swift_keystone.password, WRONG, keystone["service"]["password"]):
        assert secret not in answers
        assert secret not in log
    assert swift_keystone.user not in answers
