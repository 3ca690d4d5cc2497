"""Project quotas (issue #8): the four unified-limits resources and the legacy
user_storage_quota, counted atomically, on SQLite and PostgreSQL.

The limits come from a fixed source put in place of Keystone (tests/integration/
test_keystone_limits.py runs the same rules against a real Keystone); everything below
it, the claims, holds and the per-project quota lock, is the real thing. The source
speaks in bytes, as Glimpse does inside (Keystone's MiB are converted when read).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import TOKENS, client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings
from glimpse.quota.base import StaticLimits

MakeSettings = Callable[..., Settings]
MakeNode = Callable[[Settings], Any]
MIB = 1024 * 1024
UNLIMITED = {
    "image_size_total": -1, "image_stage_total": -1, "image_count_total": -1,
    "image_count_uploading": -1,
}
STORES = """
[DEFAULT]
enabled_backends = central:file, edge:file
[glance_store]
default_backend = central
[central]
filesystem_store_datadir = {root}/central
[edge]
filesystem_store_datadir = {root}/edge
"""


@pytest.fixture
async def node(make_settings: MakeSettings, make_node: MakeNode, tmp_path: Path) -> Node:
    return await tenant_node(make_settings, make_node, tmp_path)


async def tenant_node(
    make_settings: MakeSettings, make_node: MakeNode, tmp_path: Path, config: str | None = None
) -> Node:
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"tokens": TOKENS}))
    result: Node = await make_node(
        make_settings(config, auth_strategy="tokens", token_file=token_file)
    )
    return result


def set_limits(node: Node, **limits: int) -> None:
    """Unified limits for every project (what Keystone would answer), in bytes."""
    node.services.quotas.source = StaticLimits({**UNLIMITED, **limits}, unified=True)


async def chunks(data: bytes, size: int = 100, pause: float = 0) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(pause)


async def put(
    client: httpx.AsyncClient, image_id: str, data: bytes, what: str = "file",
    pause: float = 0, size: int | None = None,
) -> httpx.Response:
    """Upload (or stage) without Content-Length, so limits act on the stream."""
    headers = {"content-type": "application/octet-stream"}
    if size is not None:
        headers["x-openstack-image-size"] = str(size)
    return await client.put(
        f"/v2/images/{image_id}/{what}", content=chunks(data, pause=pause), headers=headers
    )


async def shown(client: httpx.AsyncClient, image_id: str) -> dict[str, Any]:
    result: dict[str, Any] = (await client.get(f"/v2/images/{image_id}")).json()
    return result


def stored(node: Node) -> list[int]:
    """Sizes of the image files in every store (partial writes included)."""
    return sorted(
        p.stat().st_size for driver in node.file_drivers for d in driver.datadirs
        if d.is_dir() for p in d.rglob("*") if p.is_file() and p.name != ".glimpse-store"
    )


async def usage(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v2/info/usage")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["usage"]
    return result


# -- image_count_total ----------------------------------------------------------------


async def test_create_over_image_count_total_is_413_per_project(node: Node) -> None:
    set_limits(node, image_count_total=2)
    async with client_for(node, "alice-token") as alice, client_for(node, "bob-token") as bob:
        first = await create_image(alice)
        await create_image(alice)
        response = await alice.post("/v2/images", json={"name": "third"})
        assert response.status_code == 413, response.text
        assert ("Resource image_count_total is over limit of 2 due to current usage 2 and "
                "delta 1") in response.text
        assert len((await alice.get("/v2/images")).json()["images"]) == 2
        await create_image(bob)  # bob's project has a count of its own
        assert (await alice.delete(f"/v2/images/{first['id']}")).status_code == 204
        await create_image(alice)


async def test_concurrent_creates_stop_exactly_at_the_limit(node: Node) -> None:
    set_limits(node, image_count_total=4)
    async with client_for(node, "carol-token") as carol:
        responses = await asyncio.gather(*[
            carol.post("/v2/images", json={"name": f"race-{i}"}) for i in range(10)
        ])
        assert sorted(r.status_code for r in responses) == [201] * 4 + [413] * 6
        assert len((await carol.get("/v2/images")).json()["images"]) == 4


# -- image_size_total -------------------------------------------------------------------


async def test_an_upload_started_within_image_size_total_finishes_then_none_starts(
    node: Node,
) -> None:
    """Glance's (and Tempest's unified-limits scenario's) rule: an upload of unknown
    size may start while the project is not over its limit and finishes over it; the
    next one is refused before any byte."""
    set_limits(node, image_size_total=5000)
    async with client_for(node, "alice-token") as alice:
        first, second, third = [await create_image(alice) for _ in range(3)]
        assert (await put(alice, first["id"], b"x" * 5000)).status_code == 204
        # At the limit, not over it: this one starts, alone, and may pass it.
        assert (await put(alice, second["id"], b"y" * 5000)).status_code == 204
        response = await put(alice, third["id"], b"z")
        assert response.status_code == 413, response.text
        assert "Resource image_size_total is over limit" in response.text
        assert (await shown(alice, third["id"]))["status"] == "queued"
        assert stored(node) == [5000, 5000]
        assert (await alice.delete(f"/v2/images/{second['id']}")).status_code == 204
        assert (await put(alice, third["id"], b"z" * 10)).status_code == 204


async def test_a_stream_is_stopped_at_the_limit_while_another_one_runs(node: Node) -> None:
    """Two uploads under way share the room left: the one that needs more than remains
    while the other still runs is stopped with 413 and leaves nothing behind."""
    set_limits(node, image_size_total=5000)
    async with client_for(node, "alice-token") as alice:
        slow, fast = await create_image(alice), await create_image(alice)
        release = asyncio.Event()

        async def held_open() -> AsyncIterator[bytes]:
            yield b"s" * 1000
            await release.wait()
            yield b"s" * 1000

        running = asyncio.create_task(alice.put(
            f"/v2/images/{slow['id']}/file", content=held_open(),
            headers={"content-type": "application/octet-stream"}))
        for _ in range(200):
            if (await shown(alice, slow["id"]))["status"] == "saving":
                break
            await asyncio.sleep(0.01)
        response = await put(alice, fast["id"], b"f" * 6000)
        assert response.status_code == 413, response.text
        assert (await shown(alice, fast["id"]))["status"] == "queued"
        release.set()
        assert (await running).status_code == 204
        assert stored(node) == [2000]


async def test_declared_size_over_the_limit_is_refused_before_any_byte(node: Node) -> None:
    set_limits(node, image_size_total=5000)
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        response = await put(alice, image["id"], b"x" * 6000, size=6000)
        assert response.status_code == 413
        assert "delta 1 (MiB; in bytes: limit 5000, usage 0, delta 6000)" in response.text
        assert (await shown(alice, image["id"]))["status"] == "queued"
        assert stored(node) == []


async def test_concurrent_uploads_never_pass_image_size_total(node: Node) -> None:
    """Glance checks the usage before each upload, so uploads that start together all
    pass and end far over the limit; here their bytes are counted as they arrive and
    at most one of them (the last one running) may finish past the limit."""
    set_limits(node, image_size_total=10_000)
    async with client_for(node, "alice-token") as alice:
        images = [await create_image(alice) for _ in range(6)]
        responses = await asyncio.gather(*[
            put(alice, image["id"], bytes([65 + i]) * 3000, pause=0.001)
            for i, image in enumerate(images)
        ])
        codes = [r.status_code for r in responses]
        assert set(codes) <= {204, 413} and 413 in codes, codes
        assert 1 <= codes.count(204) <= 4
        assert sum(stored(node)) == 3000 * codes.count(204) <= 10_000 + 3000
        for image, code in zip(images, codes, strict=True):
            state = await shown(alice, image["id"])
            assert state["status"] == ("active" if code == 204 else "queued")
        assert (await usage(alice))["image_size_total"]["usage"] == 0  # in MiB
        # What was refused fits once the space it needed is free.
        refused = next(i for i, c in zip(images, codes, strict=True) if c == 413)
        for image, code in zip(images, codes, strict=True):
            if code == 204:
                assert (await alice.delete(f"/v2/images/{image['id']}")).status_code == 204
        assert (await put(alice, refused["id"], b"z" * 3000)).status_code == 204


async def test_legacy_user_storage_quota_holds_under_concurrency(
    make_settings: MakeSettings, make_node: MakeNode, tmp_path: Path
) -> None:
    """[DEFAULT] user_storage_quota: two uploads that each fit alone, started together,
    could both finish before (each checked the quota left when it started)."""
    node = await tenant_node(make_settings, make_node, tmp_path,
                             "[DEFAULT]\nuser_storage_quota = 1KB\n")
    async with client_for(node, "alice-token") as alice:
        images = [await create_image(alice) for _ in range(2)]
        responses = await asyncio.gather(*[
            put(alice, image["id"], b"q" * 600, pause=0.001) for image in images
        ])
        codes = sorted(r.status_code for r in responses)
        assert codes in ([204, 413], [413, 413]), codes
        assert sum(stored(node)) == 600 * codes.count(204)
        refused = [r for r in responses if r.status_code == 413]
        assert "Denying attempt to upload image because it exceeds the quota" in refused[0].text
        # No unified limits configured: nothing to report, as Glance.
        assert await usage(alice) == {}


# -- image_count_uploading ----------------------------------------------------------------


async def test_one_upload_at_a_time_with_image_count_uploading_1(node: Node) -> None:
    set_limits(node, image_count_uploading=1)
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * 100
        await release.wait()
        yield b"b" * 100

    async with client_for(node, "alice-token") as alice:
        first, second, third = [await create_image(alice) for _ in range(3)]
        running = asyncio.create_task(alice.put(
            f"/v2/images/{first['id']}/file", content=slow(),
            headers={"content-type": "application/octet-stream"},
        ))
        for _ in range(200):
            if (await shown(alice, first["id"]))["status"] == "saving":
                break
            await asyncio.sleep(0.01)
        response = await upload(alice, second["id"], b"c" * 10)
        assert response.status_code == 413, response.text
        assert "Resource image_count_uploading is over limit of 1" in response.text
        assert (await shown(alice, second["id"]))["status"] == "queued"
        response = await put(alice, third["id"], b"d" * 10, what="stage")
        assert response.status_code == 413
        assert (await usage(alice))["image_count_uploading"] == {"limit": 1, "usage": 1}
        release.set()
        assert (await running).status_code == 204
        assert (await upload(alice, second["id"], b"c" * 10)).status_code == 204


# -- image_stage_total --------------------------------------------------------------------


async def test_stage_over_image_stage_total(node: Node, tmp_path: Path) -> None:
    set_limits(node, image_stage_total=4000)
    staging = node.settings.staging_dir or node.settings.data_dir / "staging"
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        # Started within the limit, alone: it may finish over it (as Glance).
        assert (await put(alice, image["id"], b"s" * 4001, what="stage")).status_code == 204
        other = await create_image(alice)
        # The staged 4001 bytes count until they are imported: nothing more stages.
        response = await put(alice, other["id"], b"t" * 10, what="stage")
        assert response.status_code == 413, response.text
        assert "Resource image_stage_total is over limit" in response.text
        assert (await shown(alice, other["id"]))["status"] == "queued"
        assert sorted(p.name for p in staging.iterdir() if p.name != ".glimpse-store") == [
            image["id"]]
        # Staging does not count against image_size_total, nor uploads against staging.
        uploaded = await create_image(alice)
        assert (await put(alice, uploaded["id"], b"u" * 5000)).status_code == 204
        response = await alice.post(f"/v2/images/{image['id']}/import",
                                    json={"method": {"name": "glance-direct"}})
        assert response.status_code == 202, response.text
        await node.runner.wait_idle()
        assert (await shown(alice, image["id"]))["status"] == "active"
        assert (await put(alice, other["id"], b"t" * 4000, what="stage")).status_code == 204


async def test_import_needs_room_for_its_data_when_it_starts(node: Node) -> None:
    """glance-direct knows its size: the import is refused at once (Glance accepts it,
    then fails the task), and the image stays staged, ready to import later."""
    set_limits(node, image_size_total=5000)
    async with client_for(node, "alice-token") as alice:
        existing = await create_image(alice)
        assert (await put(alice, existing["id"], b"e" * 3000)).status_code == 204
        image = await create_image(alice)
        assert (await put(alice, image["id"], b"i" * 3000, what="stage")).status_code == 204
        body = {"method": {"name": "glance-direct"}}
        response = await alice.post(f"/v2/images/{image['id']}/import", json=body)
        assert response.status_code == 413, response.text
        state = await shown(alice, image["id"])
        assert state["status"] == "uploading"
        assert "os_glance_import_task" not in state
        assert (await alice.get(f"/v2/images/{image['id']}/tasks")).json()["tasks"] == []
        assert (await alice.delete(f"/v2/images/{existing['id']}")).status_code == 204
        response = await alice.post(f"/v2/images/{image['id']}/import", json=body)
        assert response.status_code == 202, response.text
        await node.runner.wait_idle()
        assert (await shown(alice, image["id"]))["status"] == "active"
        assert stored(node) == [3000]


async def test_copy_image_holds_the_copies_it_will_write(
    make_settings: MakeSettings, make_node: MakeNode, tmp_path: Path
) -> None:
    node = await tenant_node(make_settings, make_node, tmp_path,
                             STORES.format(root=tmp_path / "stores"))
    set_limits(node, image_size_total=5000)
    async with client_for(node, "alice-token") as alice:
        image = await create_image(alice)
        assert (await put(alice, image["id"], b"c" * 3000)).status_code == 204
        body = {"method": {"name": "copy-image"}, "stores": ["edge"]}
        response = await alice.post(f"/v2/images/{image['id']}/import", json=body)
        assert response.status_code == 413, response.text
        assert "Resource image_size_total is over limit" in response.text
        set_limits(node, image_size_total=6000, image_stage_total=2999)
        response = await alice.post(f"/v2/images/{image['id']}/import", json=body)
        assert response.status_code == 413
        assert "Resource image_stage_total is over limit" in response.text
        set_limits(node, image_size_total=6000)
        response = await alice.post(f"/v2/images/{image['id']}/import", json=body)
        assert response.status_code == 202, response.text
        await node.runner.wait_idle()
        assert sorted((await shown(alice, image["id"]))["stores"].split(",")) == [
            "central", "edge",
        ]
        assert stored(node) == [3000, 3000]


# -- GET /v2/info/usage ---------------------------------------------------------------


async def test_usage_reports_the_projects_limits_and_usage_in_mib(node: Node) -> None:
    set_limits(node, image_size_total=5 * MIB, image_stage_total=4 * MIB,
               image_count_total=10, image_count_uploading=-1)
    async with client_for(node, "alice-token") as alice, client_for(node, "bob-token") as bob:
        assert await usage(alice) == {
            "image_size_total": {"limit": 5, "usage": 0},
            "image_stage_total": {"limit": 4, "usage": 0},
            "image_count_total": {"limit": 10, "usage": 0},
            "image_count_uploading": {"limit": -1, "usage": 0},
        }
        uploaded = await create_image(alice)
        assert (await put(alice, uploaded["id"], b"u" * (MIB + 5))).status_code == 204
        staged = await create_image(alice)
        assert (await put(alice, staged["id"], b"s" * 2 * MIB, what="stage")).status_code == 204
        await create_image(alice)
        assert await usage(alice) == {
            "image_size_total": {"limit": 5, "usage": 1},
            "image_stage_total": {"limit": 4, "usage": 2},
            "image_count_total": {"limit": 10, "usage": 3},
            "image_count_uploading": {"limit": -1, "usage": 1},
        }
        assert (await usage(bob))["image_count_total"] == {"limit": 10, "usage": 0}


async def test_usage_is_empty_without_unified_limits(node: Node) -> None:
    async with client_for(node, "alice-token") as alice:
        response = await alice.get("/v2/info/usage")
        assert response.status_code == 200
        assert response.json() == {"usage": {}}
