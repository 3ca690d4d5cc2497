"""PATCH /v2/images/{id}: JSON-patch add/replace/remove on core fields and properties."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from tests.conftest import PATCH_TYPE, create_image, patch, upload

DRAFT4_TYPE = "application/openstack-images-v2.0-json-patch"


async def show(client: httpx.AsyncClient, image_id: str) -> dict[str, Any]:
    response = await client.get(f"/v2/images/{image_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_core_fields_are_replaced_and_added(client: httpx.AsyncClient) -> None:
    image = await create_image(client, name="before")
    response = await patch(client, image["id"], [
        {"op": "replace", "path": "/name", "value": "after"},
        {"op": "add", "path": "/min_ram", "value": 1024},
        {"op": "replace", "path": "/min_disk", "value": 20},
        {"op": "replace", "path": "/protected", "value": True},
        {"op": "replace", "path": "/os_hidden", "value": True},
        {"op": "replace", "path": "/visibility", "value": "private"},
        {"op": "replace", "path": "/disk_format", "value": "qcow2"},
        {"op": "replace", "path": "/container_format", "value": "ova"},
        {"op": "replace", "path": "/tags", "value": ["x", "y", "x"]},
    ])
    assert response.status_code == 200, response.text
    body = response.json()
    expected = {
        "name": "after", "min_ram": 1024, "min_disk": 20, "protected": True,
        "os_hidden": True, "visibility": "private", "disk_format": "qcow2",
        "container_format": "ova",
    }
    shown = await show(client, image["id"])
    for key, value in expected.items():
        assert body[key] == value, key
        assert shown[key] == value, key
    assert sorted(shown["tags"]) == ["x", "y"]
    assert shown["updated_at"] >= image["updated_at"]
    assert shown["created_at"] == image["created_at"]


async def test_name_can_be_set_to_null(client: httpx.AsyncClient) -> None:
    image = await create_image(client, name="named")
    response = await patch(client, image["id"], [{"op": "replace", "path": "/name", "value": None}])
    assert response.status_code == 200
    assert (await show(client, image["id"]))["name"] is None


async def test_custom_properties_add_replace_remove(client: httpx.AsyncClient) -> None:
    image = await create_image(client, os_distro="fedora", hw_disk_bus="ide")
    response = await patch(client, image["id"], [
        {"op": "add", "path": "/hw_firmware_type", "value": "uefi"},
        {"op": "replace", "path": "/os_distro", "value": "rhel"},
        {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},  # add on existing replaces
        {"op": "add", "path": "/with~1slash~0tilde", "value": "escaped"},
    ])
    assert response.status_code == 200, response.text
    shown = await show(client, image["id"])
    assert shown["hw_firmware_type"] == "uefi"
    assert shown["os_distro"] == "rhel"
    assert shown["hw_disk_bus"] == "virtio"
    assert shown["with/slash~tilde"] == "escaped"
    response = await patch(client, image["id"], [{"op": "remove", "path": "/os_distro"}])
    assert response.status_code == 200
    assert "os_distro" not in response.json()
    assert "os_distro" not in await show(client, image["id"])


async def test_missing_properties_cannot_be_replaced_or_removed(
    client: httpx.AsyncClient,
) -> None:
    image = await create_image(client, keep="me")
    for op in ({"op": "replace", "path": "/nope", "value": "x"}, {"op": "remove", "path": "/nope"}):
        response = await patch(client, image["id"], [op])
        assert response.status_code == 409, (op, response.text)
    # A failing operation leaves the earlier ones of the same request unapplied.
    response = await patch(client, image["id"], [
        {"op": "add", "path": "/new", "value": "v"},
        {"op": "remove", "path": "/nope"},
    ])
    assert response.status_code == 409
    shown = await show(client, image["id"])
    assert "new" not in shown and shown["keep"] == "me"


async def test_core_fields_cannot_be_removed(client: httpx.AsyncClient) -> None:
    image = await create_image(client, name="n")
    for field in ("name", "min_ram", "visibility", "tags", "disk_format", "protected"):
        response = await patch(client, image["id"], [{"op": "remove", "path": f"/{field}"}])
        assert response.status_code == 403, (field, response.text)
    assert (await show(client, image["id"]))["name"] == "n"


async def test_read_only_and_reserved_paths_are_403(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    read_only = {
        "id": "6c3b3b94-0000-4000-8000-000000000000", "status": "active", "size": 1,
        "virtual_size": 1, "checksum": "0" * 32, "os_hash_algo": "md5",
        "os_hash_value": "0" * 128, "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z", "self": "/x", "file": "/x", "schema": "/x",
        "direct_url": "file:///etc/passwd",
    }
    for field, value in read_only.items():
        for op in ("add", "replace", "remove"):
            change: dict[str, Any] = {"op": op, "path": f"/{field}"}
            if op != "remove":
                change["value"] = value
            response = await patch(client, image["id"], [change])
            assert response.status_code == 403, (field, op, response.text)
    for key in ("os_glance_import_task", "os_glance_failed_import", "os_glancey",
                "location", "deleted", "deleted_at"):
        for op in ("add", "replace", "remove"):
            change = {"op": op, "path": f"/{key}"}
            if op != "remove":
                change["value"] = "x"
            response = await patch(client, image["id"], [change])
            assert response.status_code == 403, (key, op, response.text)
            assert "reserved" in response.text
    shown = await show(client, image["id"])
    assert shown["status"] == "queued" and shown["id"] == image["id"]
    assert not any(k.startswith("os_glance") for k in shown)


async def test_values_are_checked_against_the_schema(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    bad_values: list[tuple[str, object]] = [
        ("name", 1), ("name", "x" * 256), ("min_ram", "1"), ("min_ram", -1), ("min_disk", -5),
        ("protected", "true"), ("os_hidden", None), ("visibility", "everyone"),
        ("disk_format", "floppy"), ("container_format", "zip"), ("tags", "a"),
        ("tags", [None]), ("custom", 1), ("custom", None), ("custom", {"a": "b"}),
        ("kernel_id", "nope"),
    ]
    for field, value in bad_values:
        response = await patch(
            client, image["id"], [{"op": "replace" if field != "custom" else "add",
                                   "path": f"/{field}", "value": value}]
        )
        assert response.status_code == 400, (field, value, response.text)
    assert await show(client, image["id"]) == image


async def test_formats_can_change_only_while_queued(client: httpx.AsyncClient) -> None:
    image = await create_image(client, disk_format="raw", container_format="bare")
    assert (await upload(client, image["id"], b"data")).status_code == 204
    for field, value in (("disk_format", "qcow2"), ("container_format", "ova")):
        response = await patch(client, image["id"], [{"op": "replace", "path": f"/{field}",
                                                      "value": value}])
        assert response.status_code == 403, (field, response.text)
    shown = await show(client, image["id"])
    assert (shown["disk_format"], shown["container_format"]) == ("raw", "bare")
    # Other fields of an active image can still change.
    response = await patch(client, image["id"], [{"op": "replace", "path": "/name", "value": "a"}])
    assert response.status_code == 200


async def test_draft4_media_type(client: httpx.AsyncClient) -> None:
    image = await create_image(client, present="yes")
    headers = {"content-type": DRAFT4_TYPE}
    url = f"/v2/images/{image['id']}"
    response = await client.patch(url, json=[{"add": "/new", "value": "v"}], headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["new"] == "v"
    # draft 4 "add" of an existing member is a conflict
    for path in ("/present", "/name"):
        response = await client.patch(url, json=[{"add": path, "value": "v"}], headers=headers)
        assert response.status_code == 409, (path, response.text)
    response = await client.patch(url, json=[{"replace": "/present", "value": "no"}],
                                  headers=headers)
    assert response.status_code == 200
    response = await client.patch(url, json=[{"remove": "/new"}], headers=headers)
    assert response.status_code == 200
    shown = await show(client, image["id"])
    assert shown["present"] == "no" and "new" not in shown
    for bad in ([{"value": "v"}], [{"add": "/a", "remove": "/b", "value": "v"}]):
        response = await client.patch(url, json=bad, headers=headers)
        assert response.status_code == 400, (bad, response.text)


async def test_owner_is_changed_by_admin(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    response = await patch(client, image["id"], [{"op": "replace", "path": "/owner",
                                                  "value": "project-x"}])
    assert response.status_code == 200
    assert (await show(client, image["id"]))["owner"] == "project-x"


async def test_empty_patch_changes_nothing(client: httpx.AsyncClient) -> None:
    image = await create_image(client, name="same")
    response = await patch(client, image["id"], [])
    assert response.status_code == 200
    assert response.json() == image


async def test_patch_of_unknown_or_deleted_image_is_404(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    for image_id in (image["id"], "0e5a1f6c-0000-4000-8000-00000000dead"):
        response = await patch(client, image_id, [{"op": "replace", "path": "/name",
                                                   "value": "x"}])
        assert response.status_code == 404


async def test_sixteen_concurrent_patches_all_apply(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    responses = await asyncio.gather(*(
        patch(client, image["id"], [{"op": "add", "path": f"/prop_{i}", "value": str(i)}])
        for i in range(16)
    ))
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses]
    shown = await show(client, image["id"])
    assert {k: v for k, v in shown.items() if k.startswith("prop_")} == {
        f"prop_{i}": str(i) for i in range(16)
    }


async def test_concurrent_patches_of_core_fields_and_tags_all_apply(
    client: httpx.AsyncClient,
) -> None:
    image = await create_image(client)
    changes = [
        [{"op": "replace", "path": "/name", "value": "n"}],
        [{"op": "replace", "path": "/min_ram", "value": 64}],
        [{"op": "replace", "path": "/min_disk", "value": 2}],
        [{"op": "replace", "path": "/os_hidden", "value": True}],
        [{"op": "add", "path": "/a", "value": "1"}],
        [{"op": "add", "path": "/b", "value": "2"}],
    ]
    responses = await asyncio.gather(*(patch(client, image["id"], c) for c in changes))
    assert [r.status_code for r in responses] == [200] * len(changes)
    tag_responses = await asyncio.gather(*(
        client.put(f"/v2/images/{image['id']}/tags/t{i}") for i in range(8)
    ))
    assert [r.status_code for r in tag_responses] == [204] * 8
    shown = await show(client, image["id"])
    assert (shown["name"], shown["min_ram"], shown["min_disk"], shown["os_hidden"]) == (
        "n", 64, 2, True
    )
    assert (shown["a"], shown["b"]) == ("1", "2")
    assert sorted(shown["tags"]) == [f"t{i}" for i in range(8)]


async def test_patch_content_type_must_be_json_patch(client: httpx.AsyncClient) -> None:
    image = await create_image(client, name="n")
    ops = '[{"op": "replace", "path": "/name", "value": "x"}]'
    for content_type in ("application/json", "text/plain", None):
        headers = {"content-type": content_type} if content_type else {}
        response = await client.patch(f"/v2/images/{image['id']}", content=ops, headers=headers)
        assert response.status_code == 415, (content_type, response.text)
        assert PATCH_TYPE in response.headers["accept-patch"]
    assert (await show(client, image["id"]))["name"] == "n"
