"""/v2/images/{id}/members: the owner shares, each member sets its own status."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from tests.conftest import create_image, patch

Clients = Callable[[str], httpx.AsyncClient]
ISO8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def shared_image(owner: httpx.AsyncClient, *members: str) -> str:
    image = await create_image(owner, name="shared")
    for member in members:
        response = await owner.post(f"/v2/images/{image['id']}/members", json={"member": member})
        assert response.status_code == 200, response.text
    return str(image["id"])


async def test_add_member_returns_the_membership(multi_tenant: Clients) -> None:
    alice = multi_tenant("alice-token")
    image = await create_image(alice)
    response = await alice.post(f"/v2/images/{image['id']}/members", json={"member": "project-b"})
    assert response.status_code == 200
    member = response.json()
    assert member == {
        "member_id": "project-b", "image_id": image["id"], "status": "pending",
        "created_at": member["created_at"], "updated_at": member["updated_at"],
        "schema": "/v2/schemas/member",
    }
    assert ISO8601.match(member["created_at"]) and ISO8601.match(member["updated_at"])
    listing = (await alice.get(f"/v2/images/{image['id']}/members")).json()
    assert listing == {"members": [member], "schema": "/v2/schemas/members"}
    shown = await alice.get(f"/v2/images/{image['id']}/members/project-b")
    assert shown.status_code == 200 and shown.json() == member


async def test_duplicate_member_is_409(multi_tenant: Clients) -> None:
    alice = multi_tenant("alice-token")
    image_id = await shared_image(alice, "project-b")
    response = await alice.post(f"/v2/images/{image_id}/members", json={"member": "project-b"})
    assert response.status_code == 409
    members = (await alice.get(f"/v2/images/{image_id}/members")).json()["members"]
    assert [m["member_id"] for m in members] == ["project-b"]


async def test_members_only_on_shared_images(multi_tenant: Clients) -> None:
    alice = multi_tenant("alice-token")
    for visibility in ("private", "community"):
        image = await create_image(alice, visibility=visibility)
        url = f"/v2/images/{image['id']}/members"
        response = await alice.post(url, json={"member": "project-b"})
        assert response.status_code == 403, (visibility, response.text)
        assert (await alice.get(url)).status_code == 403, visibility
    admin = multi_tenant("admin-token")
    public = await create_image(admin, visibility="public")
    response = await admin.post(f"/v2/images/{public['id']}/members", json={"member": "p"})
    assert response.status_code == 403


async def test_members_stay_but_are_inert_once_the_image_is_no_longer_shared(
    multi_tenant: Clients,
) -> None:
    alice, bob = multi_tenant("alice-token"), multi_tenant("bob-token")
    image_id = await shared_image(alice, "project-b")
    url = f"/v2/images/{image_id}"
    response = await patch(alice, image_id, [{"op": "replace", "path": "/visibility",
                                             "value": "private"}])
    assert response.status_code == 200
    assert (await bob.get(url)).status_code == 404
    assert (await alice.get(url + "/members")).status_code == 403
    assert (await alice.delete(url + "/members/project-b")).status_code == 403
    response = await patch(alice, image_id, [{"op": "replace", "path": "/visibility",
                                             "value": "shared"}])
    assert (await bob.get(url)).status_code == 200
    members = (await alice.get(url + "/members")).json()["members"]
    assert [m["member_id"] for m in members] == ["project-b"]


async def test_who_sees_which_memberships(multi_tenant: Clients) -> None:
    alice, bob, carol, admin = (
        multi_tenant(t) for t in ("alice-token", "bob-token", "carol-token", "admin-token")
    )
    image_id = await shared_image(alice, "project-b", "project-c")
    url = f"/v2/images/{image_id}/members"

    async def member_ids(client: httpx.AsyncClient) -> list[str]:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        return sorted(m["member_id"] for m in response.json()["members"])

    assert await member_ids(alice) == ["project-b", "project-c"]
    assert await member_ids(admin) == ["project-b", "project-c"]
    assert await member_ids(multi_tenant("reader-a-token")) == ["project-b", "project-c"]
    # A member sees only its own membership.
    assert await member_ids(bob) == ["project-b"]
    assert await member_ids(carol) == ["project-c"]
    assert (await bob.get(url + "/project-b")).status_code == 200
    assert (await bob.get(url + "/project-c")).status_code == 404
    assert (await alice.get(url + "/project-z")).status_code == 404


async def test_only_the_member_sets_its_status(multi_tenant: Clients) -> None:
    alice, bob, carol, admin = (
        multi_tenant(t) for t in ("alice-token", "bob-token", "carol-token", "admin-token")
    )
    image_id = await shared_image(alice, "project-b", "project-c")
    url = f"/v2/images/{image_id}/members/project-b"
    for intruder in (alice, carol, multi_tenant("reader-a-token")):
        response = await intruder.put(url, json={"status": "accepted"})
        assert response.status_code == 403, response.text
    assert (await alice.get(url)).json()["status"] == "pending"
    response = await bob.put(url, json={"status": "accepted"})
    assert response.status_code == 200
    body = response.json()
    assert (body["member_id"], body["status"]) == ("project-b", "accepted")
    assert body["updated_at"] >= body["created_at"]
    assert (await alice.get(url)).json()["status"] == "accepted"
    # An administrator may set it too, as Glance's default policy allows.
    assert (await admin.put(url, json={"status": "rejected"})).status_code == 200
    assert (await bob.get(url)).json()["status"] == "rejected"
    # Back to pending is allowed.
    assert (await bob.put(url, json={"status": "pending"})).status_code == 200


async def test_member_status_body_is_validated(multi_tenant: Clients) -> None:
    alice, bob = multi_tenant("alice-token"), multi_tenant("bob-token")
    image_id = await shared_image(alice, "project-b")
    url = f"/v2/images/{image_id}/members/project-b"
    for body in ({"status": "maybe"}, {"status": None}, {"status": 1}, {}, [], "accepted",
                 {"member_id": "project-b"}):
        response = await bob.put(url, json=body)
        assert response.status_code == 400, (body, response.text)
    assert (await bob.get(url)).json()["status"] == "pending"
    missing = f"/v2/images/{image_id}/members/project-c"
    assert (await alice.put(missing, json={"status": "accepted"})).status_code in (403, 404)
    assert (await multi_tenant("carol-token").put(missing, json={"status": "accepted"})
            ).status_code == 404


async def test_add_member_body_is_validated(multi_tenant: Clients) -> None:
    alice = multi_tenant("alice-token")
    image = await create_image(alice)
    url = f"/v2/images/{image['id']}/members"
    for body in ({}, {"member": ""}, {"member": None}, [], "project-b", {"members": "x"},
                 {"member": "x" * 256}):
        response = await alice.post(url, json=body)
        assert response.status_code == 400, (body, response.text)
    assert (await alice.get(url)).json()["members"] == []


async def test_only_the_owner_adds_and_removes_members(multi_tenant: Clients) -> None:
    alice, bob, admin = (multi_tenant(t) for t in ("alice-token", "bob-token", "admin-token"))
    image_id = await shared_image(alice, "project-b")
    url = f"/v2/images/{image_id}/members"
    assert (await bob.post(url, json={"member": "project-c"})).status_code == 403
    assert (await bob.delete(url + "/project-b")).status_code == 403
    assert (await admin.post(url, json={"member": "project-c"})).status_code == 200
    assert (await alice.delete(url + "/project-c")).status_code == 204
    assert (await alice.delete(url + "/project-c")).status_code == 404
    assert (await alice.delete(url + "/project-b")).status_code == 204
    assert (await alice.get(url)).json()["members"] == []
    assert (await bob.get(f"/v2/images/{image_id}")).status_code == 404


async def test_deleting_the_image_ends_the_sharing(multi_tenant: Clients) -> None:
    alice, bob = multi_tenant("alice-token"), multi_tenant("bob-token")
    image_id = await shared_image(alice, "project-b")
    await bob.put(f"/v2/images/{image_id}/members/project-b", json={"status": "accepted"})
    assert (await alice.delete(f"/v2/images/{image_id}")).status_code == 204
    assert (await bob.get(f"/v2/images/{image_id}")).status_code == 404
    assert (await bob.get(f"/v2/images/{image_id}/members")).status_code == 404
    assert (await bob.get("/v2/images")).json()["images"] == []
