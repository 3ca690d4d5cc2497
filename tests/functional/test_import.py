"""Interoperable image import (guide 3.2, 5.3-5.5): glance-direct, copy-image, tasks,
progress properties, the import lock and failure handling."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings

STORES = """
[DEFAULT]
enabled_backends = central:file, dcn0:file, dcn1:file

[glance_store]
default_backend = central

[central]
filesystem_store_datadir = {root}/central

[dcn0]
filesystem_store_datadir = {root}/dcn0

[dcn1]
filesystem_store_datadir = {root}/dcn1
"""

DATA = b"\x00glimpse-import" * 70_000


@pytest.fixture
async def multi(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> Node:
    node: Node = await make_node(make_settings(STORES.format(root=tmp_path / "stores")))
    return node


async def stage(client: httpx.AsyncClient, image_id: str, data: bytes) -> httpx.Response:
    return await client.put(
        f"/v2/images/{image_id}/stage", content=data,
        headers={"content-type": "application/octet-stream"},
    )


async def start_import(client: httpx.AsyncClient, image_id: str, **body: Any) -> httpx.Response:
    return await client.post(f"/v2/images/{image_id}/import", json=body)


async def settle(node: Node) -> None:
    await node.runner.wait_idle()


async def show(client: httpx.AsyncClient, image_id: str) -> dict[str, Any]:
    result: dict[str, Any] = (await client.get(f"/v2/images/{image_id}")).json()
    return result


async def test_import_info_lists_the_enabled_methods(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v2/info/import")).json()
    assert body["import-methods"]["value"] == ["glance-direct", "web-download", "copy-image"]


async def test_glance_direct_stage_then_import(node: Node, tmp_path: Path) -> None:
    async with client_for(node) as client:
        image = await create_image(client, name="direct")
        assert (await stage(client, image["id"], DATA)).status_code == 204
        staged = await show(client, image["id"])
        assert staged["status"] == "uploading"
        response = await start_import(client, image["id"], method={"name": "glance-direct"})
        assert response.status_code == 202, response.text
        await settle(node)
        done = await show(client, image["id"])
        assert done["status"] == "active"
        assert done["checksum"] == hashlib.md5(DATA).hexdigest()
        assert done["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
        assert done["size"] == len(DATA)
        assert "os_glance_import_task" not in done
        assert (await client.get(f"/v2/images/{image['id']}/file")).content == DATA
        tasks = (await client.get(f"/v2/images/{image['id']}/tasks")).json()["tasks"]
        assert [t["status"] for t in tasks] == ["success"]
        assert tasks[0]["type"] == "api_image_import"
    assert list((tmp_path / "data" / "staging").iterdir()) == [
        tmp_path / "data" / "staging" / ".glimpse-store"
    ]


async def test_import_to_all_stores_reports_progress(multi: Node, tmp_path: Path) -> None:
    async with client_for(multi) as client:
        image = await create_image(client)
        await stage(client, image["id"], DATA)
        response = await start_import(
            client, image["id"], method={"name": "glance-direct"}, all_stores=True
        )
        assert response.status_code == 202
        await settle(multi)
        done = await show(client, image["id"])
        assert done["status"] == "active"
        assert sorted(done["stores"].split(",")) == ["central", "dcn0", "dcn1"]
        assert done["os_glance_importing_to_stores"] == ""
        assert done["os_glance_failed_import"] == ""
        for store in ("central", "dcn0", "dcn1"):
            assert (tmp_path / "stores" / store / image["id"]).read_bytes() == DATA


async def test_failure_with_all_stores_must_succeed_removes_every_copy(
    multi: Node, tmp_path: Path
) -> None:
    (tmp_path / "stores" / "dcn1" / ".glimpse-store").unlink()  # dcn1 refuses writes
    async with client_for(multi) as client:
        image = await create_image(client)
        await stage(client, image["id"], DATA)
        await start_import(client, image["id"], method={"name": "glance-direct"},
                           stores=["central", "dcn0", "dcn1"], all_stores_must_succeed=True)
        await settle(multi)
        done = await show(client, image["id"])
        assert done["status"] == "queued"
        assert "dcn1" in done["os_glance_failed_import"].split(",")
        assert done.get("stores") is None
        for store in ("central", "dcn0", "dcn1"):
            assert not (tmp_path / "stores" / store / image["id"]).exists()
        task = (await client.get(f"/v2/images/{image['id']}/tasks")).json()["tasks"][0]
        assert task["status"] == "failure"
        assert "dcn1" in task["message"]


async def test_allow_failure_keeps_the_stores_that_worked(multi: Node, tmp_path: Path) -> None:
    (tmp_path / "stores" / "dcn0" / ".glimpse-store").unlink()
    async with client_for(multi) as client:
        image = await create_image(client)
        await stage(client, image["id"], DATA)
        await start_import(client, image["id"], method={"name": "glance-direct"},
                           stores=["central", "dcn0", "dcn1"], all_stores_must_succeed=False)
        await settle(multi)
        done = await show(client, image["id"])
        assert done["status"] == "active"
        assert done["stores"] == "central,dcn1"
        assert done["os_glance_failed_import"] == "dcn0"
        assert done["os_glance_importing_to_stores"] == ""


async def test_copy_image_to_more_stores_and_lock(multi: Node, tmp_path: Path) -> None:
    async with client_for(multi) as client:
        image = await create_image(client)
        assert (await upload(client, image["id"], DATA)).status_code == 204
        asked = await asyncio.gather(
            start_import(client, image["id"], method={"name": "copy-image"}, stores=["dcn0"]),
            start_import(client, image["id"], method={"name": "copy-image"}, stores=["dcn1"]),
        )
        codes = sorted(r.status_code for r in asked)
        assert codes == [202, 409], [r.text for r in asked]
        await settle(multi)
        done = await show(client, image["id"])
        assert done["status"] == "active"
        assert len(done["stores"].split(",")) == 2
        # A store that already has the data is refused; all_stores skips it.
        present = done["stores"].split(",")[1]
        again = await start_import(client, image["id"], method={"name": "copy-image"},
                                   stores=[present])
        assert again.status_code == 409
        rest = await start_import(client, image["id"], method={"name": "copy-image"},
                                  all_stores=True)
        assert rest.status_code == 202
        await settle(multi)
        final = await show(client, image["id"])
        assert sorted(final["stores"].split(",")) == ["central", "dcn0", "dcn1"]
        assert (await start_import(client, image["id"], method={"name": "copy-image"},
                                   all_stores=True)).status_code == 409


async def test_wrong_state_unknown_method_and_store(multi: Node) -> None:
    async with client_for(multi) as client:
        image = await create_image(client)
        # glance-direct needs staged data (uploading); copy-image an active image.
        r = await start_import(client, image["id"], method={"name": "glance-direct"})
        assert r.status_code == 409
        r = await start_import(client, image["id"], method={"name": "copy-image"},
                               stores=["dcn0"])
        assert r.status_code == 409
        r = await start_import(client, image["id"], method={"name": "floppy-import"})
        assert r.status_code == 400
        await stage(client, image["id"], DATA)
        r = await start_import(client, image["id"], method={"name": "glance-direct"},
                               stores=["nowhere"])
        assert r.status_code == 400
        r = await start_import(client, image["id"], method="glance-direct")
        assert r.status_code == 400
        assert (await show(client, image["id"]))["status"] == "uploading"


async def test_stage_twice_and_stage_over_the_cap(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    node = await make_node(make_settings(image_size_cap=100_000))
    async with client_for(node) as client:
        image = await create_image(client)
        too_big = await stage(client, image["id"], b"x" * 200_000)
        assert too_big.status_code == 413
        assert (await show(client, image["id"]))["status"] == "queued"
        assert (await stage(client, image["id"], b"x" * 1000)).status_code == 204
        assert (await stage(client, image["id"], b"x" * 1000)).status_code == 409
    staged = sorted(p.name for p in (tmp_path / "data" / "staging").iterdir())
    assert staged == sorted([".glimpse-store", image["id"]])


async def test_deleting_a_staged_image_reclaims_staging(node: Node, tmp_path: Path) -> None:
    async with client_for(node) as client:
        image = await create_image(client)
        await stage(client, image["id"], DATA)
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    await node.services.imports.recover(include_own=False)
    assert not (tmp_path / "data" / "staging" / image["id"]).exists()


async def test_restart_fails_an_interrupted_import_cleanly(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = make_settings()
    first = await make_node(settings)
    async with client_for(first) as client:
        image = await create_image(client)
        await stage(client, image["id"], DATA)
    # An import whose node dies before it runs: recorded, locked, never finished.
    from glimpse.domain.image import Task
    from glimpse.services.imports import ImportRequest

    first.runner.start = lambda *args: None  # type: ignore[method-assign]
    ctx = first.services.images.policy  # noqa: F841  (node keeps its policy)
    from glimpse.policy.context import RequestContext

    admin = RequestContext("admin", "admin", ("admin", "member", "reader"))
    task: Task = await first.services.imports.import_image(
        admin, image["id"],
        ImportRequest("glance-direct", None, None, False, True),
    )
    await first.stop()
    second = await make_node(settings)
    async with client_for(second) as client:
        shown = await show(client, image["id"])
        assert shown["status"] == "queued"
        assert "os_glance_import_task" not in shown
        tasks = (await client.get(f"/v2/images/{image['id']}/tasks")).json()["tasks"]
        assert tasks[0]["id"] == task.id
        assert tasks[0]["status"] == "failure"
        assert "interrupted" in tasks[0]["message"]
    assert not (tmp_path / "data" / "staging" / image["id"]).exists()


async def test_tasks_api_is_admin_only(
    multi_tenant: Callable[[str], httpx.AsyncClient],
) -> None:
    alice = multi_tenant("alice-token")
    admin = multi_tenant("admin-token")
    assert (await alice.get("/v2/tasks")).status_code == 403
    assert (await admin.get("/v2/tasks")).status_code == 200
    assert (await admin.get("/v2/schemas/task")).json()["name"] == "task"


async def test_create_advertises_import_methods_and_stores(multi: Node) -> None:
    async with client_for(multi) as client:
        response = await client.post("/v2/images", json={"name": "x"})
        assert response.status_code == 201
        assert response.headers["openstack-image-import-methods"] == (
            "glance-direct,web-download,copy-image"
        )
        assert response.headers["openstack-image-store-ids"] == "central,dcn0,dcn1"
