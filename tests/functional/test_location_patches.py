"""Locations changed through image PATCH with show_multiple_locations, as Glance: add at
a position, replace the list (metadata and order only), remove one (admin), the
queued -> active step with validation_data, and the refusals."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import PATCH_TYPE, TOKENS, client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings

CONFIG = """
[DEFAULT]
enabled_backends = central:file, web:http
show_multiple_locations = {show}
image_location_quota = 3

[glance_store]
default_backend = central

[central]
filesystem_store_datadir = {root}/central
weight = 100

[import_filtering_opts]
allowed_hosts = 127.0.0.1
allowed_ports =
"""
DATA = b"location data " * 1000
MD5 = hashlib.md5(DATA).hexdigest()
SHA512 = hashlib.sha512(DATA).hexdigest()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "image.raw").write_bytes(DATA)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/image.raw"
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_web_node(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> Callable[..., Any]:
    async def make(show: bool = True) -> Node:
        token_file = tmp_path / "tokens.json"
        token_file.write_text(json.dumps({"tokens": TOKENS}))
        config = CONFIG.format(root=tmp_path / "stores", show=str(show).lower())
        node: Node = await make_node(
            make_settings(config, auth_strategy="tokens", token_file=token_file)
        )
        return node

    return make


@pytest.fixture
async def node(make_web_node: Callable[..., Any]) -> Node:
    result: Node = await make_web_node()
    return result


async def _patch(client: httpx.AsyncClient, image_id: str, *ops: dict[str, Any]) -> httpx.Response:
    return await client.patch(
        f"/v2/images/{image_id}", json=list(ops), headers={"content-type": PATCH_TYPE}
    )


def _add(url: str, position: str = "-", **extra: Any) -> dict[str, Any]:
    return {"op": "add", "path": f"/locations/{position}",
            "value": {"url": url, "metadata": extra.pop("metadata", {}), **extra}}


async def test_first_location_makes_a_queued_image_active_without_hashing(
    node: Node, web: str
) -> None:
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        assert image["locations"] == []
        response = await _patch(alice, image["id"], _add(web, metadata={"foo": "bar"}))
        assert response.status_code == 200, response.text
        shown = response.json()
        assert shown["status"] == "active"
        assert shown["size"] == len(DATA)
        assert (shown["checksum"], shown["os_hash_algo"], shown["os_hash_value"]) == (
            None, None, None
        )
        assert shown["locations"] == [
            {"url": web, "metadata": {"foo": "bar", "store": "web"}}
        ]
        assert shown["stores"] == "web"
        assert (await alice.get(f"/v2/images/{image['id']}/file")).content == DATA


async def test_locations_go_where_the_position_says(node: Node, web: str) -> None:
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        for patch in (_add(web), _add(f"{web}#second"), _add(f"{web}#first", "0")):
            response = await _patch(alice, image["id"], patch)
            assert response.status_code == 200, response.text
        urls = [loc["url"] for loc in response.json()["locations"]]
        assert urls == [f"{web}#first", web, f"{web}#second"]
        # The image_location_quota of 3 is reached (413, as Glance).
        response = await _patch(alice, image["id"], _add(f"{web}#fourth"))
        assert response.status_code == 413
        # The same URL twice is refused.
        image2 = await create_image(alice)
        assert (await _patch(alice, image2["id"], _add(web))).status_code == 200
        assert (await _patch(alice, image2["id"], _add(web))).status_code == 400
        assert (await _patch(alice, image2["id"], _add(f"{web}#x", "x"))).status_code == 400


async def test_validation_data_fills_a_queued_image_and_must_match_later(
    node: Node, web: str
) -> None:
    hashes = {"checksum": MD5, "os_hash_algo": "sha512", "os_hash_value": SHA512}
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        response = await _patch(alice, image["id"], _add(web, validation_data=hashes))
        assert response.status_code == 200, response.text
        shown = response.json()
        assert (shown["status"], shown["checksum"], shown["os_hash_value"]) == (
            "active", MD5, SHA512
        )
        assert "validation_data" not in shown["locations"][0]
        # The same values on a second location: fine.
        response = await _patch(alice, image["id"], _add(f"{web}#2", validation_data=hashes))
        assert response.status_code == 200, response.text
        # Any other value: 409, and nothing changes.
        for key, value in (("checksum", "2" * 32), ("os_hash_value", "beefdead" * 16),
                           ("os_hash_algo", "sha256")):
            other = {**hashes, key: value}
            response = await _patch(alice, image["id"], _add(f"{web}#3", validation_data=other))
            assert response.status_code == 409, (key, response.text)
        shown = (await alice.get(f"/v2/images/{image['id']}")).json()
        assert len(shown["locations"]) == 2
        assert (shown["checksum"], shown["os_hash_value"]) == (MD5, SHA512)


@pytest.mark.parametrize(
    "validation",
    [
        {"os_hash_algo": "sha256", "os_hash_value": hashlib.sha256(DATA).hexdigest()},
        {"os_hash_algo": "sha512", "os_hash_value": "ab" * 10},
        {"os_hash_algo": "sha512", "os_hash_value": SHA512, "checksum": "z" * 32},
    ],
)
async def test_bad_validation_data_on_a_queued_image_is_a_conflict(
    node: Node, web: str, validation: dict[str, str]
) -> None:
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        response = await _patch(alice, image["id"], _add(web, validation_data=validation))
        assert response.status_code == 409, response.text
        shown = (await alice.get(f"/v2/images/{image['id']}")).json()
        assert (shown["status"], shown["locations"]) == ("queued", [])


@pytest.mark.parametrize(
    "url",
    ["gopher://info.cern.ch", "file:///etc/passwd", "http://10.1.2.3/image.raw",
     "missing"],
)
async def test_a_location_that_is_not_usable_is_refused(
    node: Node, web: str, url: str
) -> None:
    if url == "missing":
        url = web.replace("image.raw", "missing.raw")
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        response = await _patch(alice, image["id"], _add(url))
        assert response.status_code == 400, response.text
        shown = (await alice.get(f"/v2/images/{image['id']}")).json()
        assert (shown["status"], shown["locations"]) == ("queued", [])


async def test_replace_changes_metadata_and_order_but_not_the_urls(
    node: Node, web: str
) -> None:
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        await _patch(alice, image["id"], _add(web), _add(f"{web}#2", metadata={"a": "b"}))
        locations = (await alice.get(f"/v2/images/{image['id']}")).json()["locations"]

        async def replace(value: Any) -> httpx.Response:
            return await _patch(alice, image["id"],
                                {"op": "replace", "path": "/locations", "value": value})

        assert (await replace(locations)).status_code == 200
        locations[0]["metadata"]["date"] = "2015-10-15"
        response = await replace(locations)
        assert response.status_code == 200, response.text
        assert response.json()["locations"] == locations
        swapped = [locations[1], locations[0]]
        assert (await replace(swapped)).json()["locations"] == swapped
        assert (await replace([locations[0]])).status_code == 400
        other = {"url": f"{web}#3", "metadata": {}}
        assert (await replace([locations[0], other])).status_code == 400
        assert (await replace([])).status_code == 403
        assert (await replace([{"url": web}])).status_code == 400  # metadata missing
        assert (await alice.get(f"/v2/images/{image['id']}")).json()["locations"] == swapped


async def test_replace_gives_a_queued_image_its_locations(node: Node, web: str) -> None:
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        response = await _patch(alice, image["id"], {
            "op": "replace", "path": "/locations",
            "value": [{"url": web, "metadata": {}}, {"url": f"{web}#2", "metadata": {}}],
        })
        assert response.status_code == 200, response.text
        shown = response.json()
        assert (shown["status"], shown["size"]) == ("active", len(DATA))
        assert [loc["url"] for loc in shown["locations"]] == [web, f"{web}#2"]


async def test_remove_is_for_admins_and_never_the_last_location(
    node: Node, web: str, tmp_path: Path
) -> None:
    async with client_for(node, "alice-token") as alice, \
            client_for(node, "admin-token") as admin:
        image = await create_image(alice)
        assert (await upload(alice, image["id"], DATA)).status_code == 204
        stored = tmp_path / "stores" / "central" / image["id"]
        assert stored.exists()
        response = await _patch(alice, image["id"], _add(web))
        assert response.status_code == 200, response.text
        remove_first = {"op": "remove", "path": "/locations/0"}
        assert (await _patch(alice, image["id"], remove_first)).status_code == 403
        assert (await _patch(admin, image["id"], {"op": "remove", "path": "/locations/5"}
                             )).status_code == 400
        response = await _patch(admin, image["id"], remove_first)
        assert response.status_code == 200, response.text
        shown = response.json()
        assert [loc["url"] for loc in shown["locations"]] == [web]
        assert shown["status"] == "active"
        # The removed location's data is gone from its store.
        assert not stored.exists()
        assert (await _patch(admin, image["id"], remove_first)).status_code == 403
        assert (await alice.get(f"/v2/images/{image['id']}/file")).content == DATA


async def test_status_rules(node: Node, web: str) -> None:
    async with client_for(node, "alice-token") as alice, \
            client_for(node, "admin-token") as admin:
        queued = await create_image(alice)
        response = await _patch(admin, queued["id"], {"op": "remove", "path": "/locations/0"})
        assert response.status_code == 409
        image = await create_image(alice)
        await _patch(alice, image["id"], _add(web))
        assert (await admin.post(f"/v2/images/{image['id']}/actions/deactivate")
                ).status_code == 204
        assert (await _patch(alice, image["id"], _add(f"{web}#2"))).status_code == 409


async def test_location_changes_need_show_multiple_locations(
    make_web_node: Callable[..., Any], web: str
) -> None:
    node: Node = await make_web_node(show=False)
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        response = await _patch(alice, image["id"], _add(web))
        assert response.status_code == 403
        assert "locations" not in (await alice.get(f"/v2/images/{image['id']}")).json()


async def test_other_projects_cannot_change_locations(node: Node, web: str) -> None:
    async with client_for(node, "alice-token") as alice, \
            client_for(node, "reader-a-token") as reader:
        image = await create_image(alice, visibility="community")
        await _patch(alice, image["id"], _add(web))
        async with client_for(node, "bob-token") as bob:
            assert (await _patch(bob, image["id"], _add(f"{web}#2"))).status_code == 403
        assert (await _patch(reader, image["id"], _add(f"{web}#2"))).status_code == 403
