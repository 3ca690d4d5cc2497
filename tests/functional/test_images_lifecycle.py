"""Status transitions: deactivate/reactivate, protected images, delete."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from tests.conftest import create_image, patch, upload

Clients = Callable[[str], httpx.AsyncClient]


async def status(client: httpx.AsyncClient, image_id: str) -> str:
    response = await client.get(f"/v2/images/{image_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def test_deactivated_image_can_be_downloaded_only_by_admin(multi_tenant: Clients) -> None:
    alice, bob, admin = (multi_tenant(t) for t in ("alice-token", "bob-token", "admin-token"))
    image = await create_image(alice, name="to-deactivate")
    url = f"/v2/images/{image['id']}"
    assert (await upload(alice, image["id"], b"payload")).status_code == 204
    await alice.post(url + "/members", json={"member": "project-b"})
    await bob.put(url + "/members/project-b", json={"status": "accepted"})

    assert (await alice.post(url + "/actions/deactivate")).status_code == 204
    assert await status(alice, image["id"]) == "deactivated"
    for refused in (alice, bob):
        response = await refused.get(url + "/file")
        assert response.status_code == 403, response.text
    download = await admin.get(url + "/file")
    assert download.status_code == 200 and download.content == b"payload"
    # Still listed and shown; metadata can change; data cannot be replaced.
    assert image["id"] in {i["id"] for i in (await bob.get("/v2/images")).json()["images"]}
    response = await patch(alice, image["id"], [{"op": "add", "path": "/note", "value": "x"}])
    assert response.status_code == 200
    assert (await upload(alice, image["id"], b"other")).status_code == 409
    # Deactivating again is a no-op; the member cannot reactivate.
    assert (await alice.post(url + "/actions/deactivate")).status_code == 204
    assert (await bob.post(url + "/actions/reactivate")).status_code == 403
    assert (await alice.post(url + "/actions/reactivate")).status_code == 204
    assert await status(alice, image["id"]) == "active"
    assert (await bob.get(url + "/file")).content == b"payload"
    assert (await alice.post(url + "/actions/reactivate")).status_code == 204  # no-op


async def test_only_active_images_can_be_deactivated(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    url = f"/v2/images/{image['id']}"
    assert (await client.post(url + "/actions/deactivate")).status_code == 403
    assert (await client.post(url + "/actions/reactivate")).status_code == 403
    assert await status(client, image["id"]) == "queued"
    missing = "/v2/images/5d1c7a5e-0000-4000-8000-000000000000"
    assert (await client.post(missing + "/actions/deactivate")).status_code == 404
    assert (await client.post(missing + "/actions/reactivate")).status_code == 404


async def test_deactivated_image_can_be_deleted(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    assert (await upload(client, image["id"], b"x")).status_code == 204
    assert (await client.post(f"/v2/images/{image['id']}/actions/deactivate")).status_code == 204
    assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    assert (await client.get(f"/v2/images/{image['id']}")).status_code == 404


async def test_protected_image_cannot_be_deleted_until_unprotected(
    client: httpx.AsyncClient,
) -> None:
    image = await create_image(client, protected=True)
    assert (await upload(client, image["id"], b"keep me")).status_code == 204
    response = await client.delete(f"/v2/images/{image['id']}")
    assert response.status_code == 403, response.text
    assert await status(client, image["id"]) == "active"
    assert (await client.get(f"/v2/images/{image['id']}/file")).content == b"keep me"
    response = await patch(client, image["id"], [{"op": "replace", "path": "/protected",
                                                  "value": False}])
    assert response.status_code == 200
    assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    assert (await client.get(f"/v2/images/{image['id']}")).status_code == 404


async def test_protected_image_of_a_project_resists_its_members_and_admin(
    multi_tenant: Clients,
) -> None:
    alice, admin = multi_tenant("alice-token"), multi_tenant("admin-token")
    image = await create_image(alice, protected=True)
    for caller in (alice, admin):
        assert (await caller.delete(f"/v2/images/{image['id']}")).status_code == 403
    assert await status(alice, image["id"]) == "queued"


async def test_several_deletes_in_a_row(client: httpx.AsyncClient) -> None:
    """As ``glance image-delete a b c``: one DELETE per image."""
    images = [await create_image(client, name=f"d{i}") for i in range(3)]
    keep = await create_image(client, name="keep")
    assert (await upload(client, images[0]["id"], b"data")).status_code == 204
    for image in images:
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    for image in images:
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 404
        assert (await client.get(f"/v2/images/{image['id']}")).status_code == 404
        assert (await client.get(f"/v2/images/{image['id']}/file")).status_code == 404
    listed = [i["id"] for i in (await client.get("/v2/images")).json()["images"]]
    assert listed == [keep["id"]]
