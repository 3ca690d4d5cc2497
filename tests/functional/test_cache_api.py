"""``/v2/cache`` (Images API 2.14, 2.16, 2.18): shapes, status codes, bad input, policy.

As Glance: the API exists only when ``image_cache_dir`` is set (404 otherwise, and the
versions document leaves 2.14, 2.16 and 2.18 out), each call goes through its
``cache_*`` policy rule (admin only by default), ``PUT /v2/cache/{id}`` answers 202
and starts caching at once.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import TOKENS, client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings

DATA = os.urandom(1024 * 1024 + 7)
UNKNOWN = "3f1e2d3c-0000-4000-8000-00000000dead"


@pytest.fixture
async def node(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> Node:
    result: Node = await make_node(
        make_settings(image_cache_dir=tmp_path / "cache", cache_prefetcher_interval=3600)
    )
    return result


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(node) as c:
        yield c


async def new_image(client: httpx.AsyncClient, data: bytes = DATA) -> str:
    image = await create_image(client)
    assert (await upload(client, image["id"], data)).status_code == 204
    return str(image["id"])


async def cache_state(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v2/cache")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def wait_cached(client: httpx.AsyncClient, image_id: str) -> dict[str, Any]:
    for _ in range(200):
        state = await cache_state(client)
        if image_id in [e["image_id"] for e in state["cached_images"]]:
            return state
        await asyncio.sleep(0.025)
    raise AssertionError(f"image {image_id} was not cached: {state}")


def message(response: httpx.Response) -> str:
    return html.unescape(response.text)


# -- discovery -----------------------------------------------------------------------------


async def test_the_versions_document_offers_the_cache_api(client: httpx.AsyncClient) -> None:
    versions = (await client.get("/versions")).json()["versions"]
    ids = [v["id"] for v in versions]
    assert {"v2.14", "v2.16", "v2.18"} <= set(ids)
    assert [v["id"] for v in versions if v["status"] == "CURRENT"] == ["v2.18"]


async def test_without_a_cache_directory_there_is_no_cache_api(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    node = await make_node(make_settings())
    async with client_for(node) as client:
        versions = (await client.get("/versions")).json()["versions"]
        assert not {"v2.14", "v2.16", "v2.18"} & {v["id"] for v in versions}
        assert [v["id"] for v in versions if v["status"] == "CURRENT"] == ["v2.17"]
        image_id = await new_image(client)
        calls = [
            client.get("/v2/cache"), client.put(f"/v2/cache/{image_id}"),
            client.delete(f"/v2/cache/{image_id}"), client.delete("/v2/cache"),
            client.post("/v2/cache/clean"), client.post("/v2/cache/prune"),
        ]
        for response in await asyncio.gather(*calls):
            assert response.status_code == 404, response.request.url
            assert "Caching via API is not supported at this site." in response.text
        # Downloads work as ever.
        assert (await client.get(f"/v2/images/{image_id}/file")).content == DATA


# -- list, queue, delete, clear --------------------------------------------------------


async def test_the_cache_list_has_glances_shape(client: httpx.AsyncClient) -> None:
    assert await cache_state(client) == {"cached_images": [], "queued_images": []}
    image_id = await new_image(client)
    await client.get(f"/v2/images/{image_id}/file")
    state = await cache_state(client)
    assert state["queued_images"] == []
    [entry] = state["cached_images"]
    assert set(entry) == {"image_id", "hits", "last_accessed", "last_modified", "size"}
    assert entry["image_id"] == image_id and entry["size"] == len(DATA) and entry["hits"] == 0
    assert isinstance(entry["last_accessed"], float)
    assert isinstance(entry["last_modified"], float)


async def test_queueing_answers_202_and_caches_the_image_at_once(
    client: httpx.AsyncClient,
) -> None:
    image_id = await new_image(client)
    response = await client.put(f"/v2/cache/{image_id}")
    assert response.status_code == 202 and response.content == b""
    state = await wait_cached(client, image_id)
    assert state["queued_images"] == []
    # Queueing a cached image again changes nothing.
    assert (await client.put(f"/v2/cache/{image_id}")).status_code == 202
    assert (await cache_state(client))["queued_images"] == []


async def test_queueing_an_unknown_deleted_or_inactive_image_is_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await client.put(f"/v2/cache/{UNKNOWN}")
    assert response.status_code == 404
    assert f"No image found with ID {UNKNOWN}" in message(response)

    deleted = await new_image(client)
    assert (await client.delete(f"/v2/images/{deleted}")).status_code == 204
    response = await client.put(f"/v2/cache/{deleted}")
    assert response.status_code == 404

    no_data = (await create_image(client))["id"]
    response = await client.put(f"/v2/cache/{no_data}")
    assert response.status_code == 400
    assert "Only images with status active can be targeted for queueing" in message(response)
    assert "is queued" in message(response)

    deactivated = await new_image(client)
    await client.post(f"/v2/images/{deactivated}/actions/deactivate")
    response = await client.put(f"/v2/cache/{deactivated}")
    assert response.status_code == 400
    assert "is deactivated" in message(response)
    assert await cache_state(client) == {"cached_images": [], "queued_images": []}


async def test_deleting_one_entry(client: httpx.AsyncClient, node: Node) -> None:
    cached = await new_image(client)
    await client.get(f"/v2/images/{cached}/file")
    queued = await new_image(client)
    assert node.cache is not None
    await node.cache.queue(queued)
    plain = await new_image(client)

    assert (await client.delete(f"/v2/cache/{cached}")).status_code == 204
    assert (await client.delete(f"/v2/cache/{queued}")).status_code == 204
    assert await cache_state(client) == {"cached_images": [], "queued_images": []}
    assert not (node.cache.directory / cached).exists()
    # An image that exists but is not cached: nothing to do.
    assert (await client.delete(f"/v2/cache/{plain}")).status_code == 204
    # Neither an image nor in the cache: 404.
    response = await client.delete(f"/v2/cache/{UNKNOWN}")
    assert response.status_code == 404
    # An entry whose image is gone can still be removed.
    await node.cache.queue(UNKNOWN)
    assert (await client.delete(f"/v2/cache/{UNKNOWN}")).status_code == 204
    assert (await cache_state(client))["queued_images"] == []


@pytest.mark.parametrize(
    ("target", "cached_left", "queued_left"),
    [(None, 0, 0), ("both", 0, 0), ("cache", 0, 1), ("queue", 1, 0), ("CACHE", 0, 1)],
)
async def test_clearing_with_the_target_header(
    client: httpx.AsyncClient, node: Node, target: str | None, cached_left: int,
    queued_left: int,
) -> None:
    cached = await new_image(client)
    await client.get(f"/v2/images/{cached}/file")
    queued = await new_image(client)
    assert node.cache is not None
    await node.cache.queue(queued)
    headers = {} if target is None else {"x-image-cache-clear-target": target}
    response = await client.delete("/v2/cache", headers=headers)
    assert response.status_code == 204
    state = await cache_state(client)
    assert (len(state["cached_images"]), len(state["queued_images"])) == (
        cached_left, queued_left
    )


async def test_clearing_with_a_bad_target_is_400(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v2/cache", headers={"x-image-cache-clear-target": "all"})
    assert response.status_code == 400
    assert "'x-image-cache-clear-target' must be 'cache', 'queue'" in message(response)


async def test_clean_and_prune(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/cache/clean")
    assert response.status_code == 200
    response = await client.post("/v2/cache/prune")
    assert response.status_code == 200
    assert response.json() == {"total_files_pruned": 0, "total_bytes_pruned": 0}


# -- policy ------------------------------------------------------------------------------


async def tenants(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    tmp_path: Path, config: str | None = None,
) -> Node:
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"tokens": TOKENS}))
    node: Node = await make_node(make_settings(
        config, auth_strategy="tokens", token_file=token_file,
        image_cache_dir=tmp_path / "cache", cache_prefetcher_interval=3600,
    ))
    return node


async def test_only_admins_manage_the_cache_by_default(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    node = await tenants(make_node, make_settings, tmp_path)
    async with client_for(node, "alice-token") as alice, \
            client_for(node, "admin-token") as admin:
        image_id = await new_image(alice)  # alice's own image
        calls = [
            ("cache_list", alice.get("/v2/cache")),
            ("cache_image", alice.put(f"/v2/cache/{image_id}")),
            ("cache_delete", alice.delete(f"/v2/cache/{image_id}")),
            ("cache_delete", alice.delete("/v2/cache")),
            ("cache_clean", alice.post("/v2/cache/clean")),
            ("cache_prune", alice.post("/v2/cache/prune")),
        ]
        for rule, call in calls:
            response = await call
            assert response.status_code == 403, rule
            assert f"{rule} action" in response.text
        assert (await admin.put(f"/v2/cache/{image_id}")).status_code == 202
        await wait_cached(admin, image_id)
        # Downloads by anyone allowed to download are served from the cache.
        assert (await alice.get(f"/v2/images/{image_id}/file")).content == DATA
        assert (await cache_state(admin))["cached_images"][0]["hits"] == 1


async def test_an_operator_policy_can_open_the_cache_api(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    (tmp_path / "policy.yaml").write_text(
        '"cache_list": "role:member"\n"cache_image": "role:member and project_id:%(project_id)s"\n'
    )
    node = await tenants(make_node, make_settings, tmp_path,
                         "[oslo_policy]\npolicy_file = policy.yaml\n")
    async with client_for(node, "alice-token") as alice, client_for(node, "bob-token") as bob:
        image_id = await new_image(alice)
        assert (await alice.put(f"/v2/cache/{image_id}")).status_code == 202
        await wait_cached(alice, image_id)
        assert (await bob.get("/v2/cache")).status_code == 200
        # bob cannot see alice's image (404); alice may not delete (not overridden).
        assert (await bob.put(f"/v2/cache/{image_id}")).status_code == 404
        assert (await alice.delete(f"/v2/cache/{image_id}")).status_code == 403
        public = await create_image(alice, visibility="community")
        assert (await upload(alice, public["id"], DATA)).status_code == 204
        # bob sees it, but it is not his project's: cache_image refuses.
        assert (await bob.put(f"/v2/cache/{public['id']}")).status_code == 403
