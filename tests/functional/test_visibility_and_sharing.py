"""Who sees what: owner, members (pending/accepted/rejected), community, public, admin.

Runs on the token-auth node: project-a (alice, member; rita, reader), project-b (bob),
project-c (carol) and admin-project (admin). Invisible images are 404, never 403.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from tests.conftest import PATCH_TYPE, create_image, patch, upload

Clients = Callable[[str], httpx.AsyncClient]


async def ids(client: httpx.AsyncClient, query: str = "") -> set[str]:
    response = await client.get("/v2/images" + query)
    assert response.status_code == 200, response.text
    return {i["id"] for i in response.json()["images"]}


async def assert_invisible(client: httpx.AsyncClient, image_id: str) -> None:
    """Every image endpoint answers 404 (never 403) for an image the caller cannot see."""
    url = f"/v2/images/{image_id}"
    calls = [
        client.get(url),
        client.get(url + "/file"),
        client.patch(url, json=[{"op": "replace", "path": "/name", "value": "x"}],
                     headers={"content-type": PATCH_TYPE}),
        client.delete(url),
        client.put(url + "/file", content=b"x",
                   headers={"content-type": "application/octet-stream"}),
        client.put(url + "/tags/t"),
        client.delete(url + "/tags/t"),
        client.post(url + "/actions/deactivate"),
        client.post(url + "/actions/reactivate"),
        client.get(url + "/members"),
        client.post(url + "/members", json={"member": "project-c"}),
        client.get(url + "/members/project-b"),
        client.put(url + "/members/project-b", json={"status": "accepted"}),
        client.delete(url + "/members/project-b"),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 404, (
            response.request.method, response.request.url.path, response.status_code,
            response.text,
        )
    assert image_id not in await ids(client, "?visibility=all&member_status=all")


async def test_private_image_is_seen_by_its_project_and_admin_only(
    multi_tenant: Clients,
) -> None:
    alice, rita, bob, admin = (multi_tenant(t) for t in
                               ("alice-token", "reader-a-token", "bob-token", "admin-token"))
    image = await create_image(alice, name="private", visibility="private")
    assert (await upload(alice, image["id"], b"secret")).status_code == 204
    assert image["owner"] == "project-a"
    for viewer in (alice, rita, admin):
        assert (await viewer.get(f"/v2/images/{image['id']}")).status_code == 200
        assert image["id"] in await ids(viewer)
    await assert_invisible(bob, image["id"])
    # Nothing bob tried changed anything.
    shown = (await alice.get(f"/v2/images/{image['id']}")).json()
    assert (shown["name"], shown["status"], shown["tags"]) == ("private", "active", [])
    assert (await alice.get(f"/v2/images/{image['id']}/file")).content == b"secret"


async def test_reader_role_can_read_but_not_modify(multi_tenant: Clients) -> None:
    alice, rita = multi_tenant("alice-token"), multi_tenant("reader-a-token")
    image = await create_image(alice, name="a")
    url = f"/v2/images/{image['id']}"
    assert (await rita.get(url)).status_code == 200
    assert (await rita.get(url + "/members")).status_code == 200
    refused = [
        rita.post("/v2/images", json={"name": "by reader"}),
        patch(rita, image["id"], [{"op": "replace", "path": "/name", "value": "x"}]),
        rita.delete(url),
        upload(rita, image["id"], b"x"),
        rita.put(url + "/tags/t"),
        rita.post(url + "/members", json={"member": "project-b"}),
        rita.post(url + "/actions/deactivate"),
    ]
    for call in refused:
        response = await call
        assert response.status_code == 403, (
            response.request.method, response.request.url.path, response.text
        )
    shown = (await alice.get(url)).json()
    assert (shown["name"], shown["status"], shown["tags"]) == ("a", "queued", [])
    assert await ids(alice) == {image["id"]}


async def test_shared_image_is_seen_by_members_by_status(multi_tenant: Clients) -> None:
    alice, bob, carol = (multi_tenant(t) for t in ("alice-token", "bob-token", "carol-token"))
    image = await create_image(alice, name="shared")  # visibility defaults to shared
    assert image["visibility"] == "shared"
    url = f"/v2/images/{image['id']}"
    # Shared but with no members yet: invisible to other projects.
    await assert_invisible(bob, image["id"])

    response = await alice.post(url + "/members", json={"member": "project-b"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    # A pending member can see the image, but it is not in the default list.
    assert (await bob.get(url)).status_code == 200
    assert image["id"] not in await ids(bob)
    assert image["id"] in await ids(bob, "?member_status=pending")
    assert image["id"] in await ids(bob, "?member_status=all")
    assert image["id"] not in await ids(bob, "?member_status=accepted")
    await assert_invisible(carol, image["id"])

    assert (await bob.put(url + "/members/project-b", json={"status": "accepted"})).status_code \
        == 200
    assert image["id"] in await ids(bob)
    assert image["id"] in await ids(bob, "?visibility=shared")
    assert image["id"] not in await ids(bob, "?member_status=pending")

    assert (await bob.put(url + "/members/project-b", json={"status": "rejected"})).status_code \
        == 200
    assert image["id"] not in await ids(bob)
    assert image["id"] in await ids(bob, "?member_status=rejected")
    assert (await bob.get(url)).status_code == 200  # still readable by a rejected member
    # The owner lists its own images whatever the member status filter.
    for query in ("", "?member_status=pending", "?member_status=rejected", "?visibility=shared"):
        assert image["id"] in await ids(alice, query), query

    # Removing the member makes the image invisible again.
    assert (await alice.delete(url + "/members/project-b")).status_code == 204
    await assert_invisible(bob, image["id"])


async def test_members_can_download_but_not_modify(multi_tenant: Clients) -> None:
    alice, bob = multi_tenant("alice-token"), multi_tenant("bob-token")
    image = await create_image(alice, name="shared")
    assert (await upload(alice, image["id"], b"payload")).status_code == 204
    url = f"/v2/images/{image['id']}"
    await alice.post(url + "/members", json={"member": "project-b"})
    assert (await bob.get(url + "/file")).content == b"payload"
    refused = [
        patch(bob, image["id"], [{"op": "replace", "path": "/name", "value": "mine"}]),
        bob.delete(url),
        bob.put(url + "/tags/t"),
        bob.post(url + "/members", json={"member": "project-c"}),
        bob.delete(url + "/members/project-b"),
        bob.post(url + "/actions/deactivate"),
    ]
    for call in refused:
        response = await call
        assert response.status_code == 403, (
            response.request.method, response.request.url.path, response.text
        )
    shown = (await alice.get(url)).json()
    assert (shown["name"], shown["status"], shown["tags"]) == ("shared", "active", [])
    members = (await alice.get(url + "/members")).json()["members"]
    assert [m["member_id"] for m in members] == ["project-b"]


async def test_public_image_is_seen_by_everyone(multi_tenant: Clients) -> None:
    admin, alice, bob = (multi_tenant(t) for t in ("admin-token", "alice-token", "bob-token"))
    image = await create_image(admin, name="public", visibility="public")
    assert (await upload(admin, image["id"], b"pub")).status_code == 204
    for viewer in (alice, bob, multi_tenant("reader-a-token")):
        assert (await viewer.get(f"/v2/images/{image['id']}")).status_code == 200
        assert image["id"] in await ids(viewer)
        assert image["id"] in await ids(viewer, "?visibility=public")
        assert image["id"] not in await ids(viewer, "?visibility=private")
    assert (await bob.get(f"/v2/images/{image['id']}/file")).content == b"pub"
    response = await patch(bob, image["id"], [{"op": "replace", "path": "/name", "value": "x"}])
    assert response.status_code == 403
    assert (await bob.delete(f"/v2/images/{image['id']}")).status_code == 403


async def test_publicizing_needs_admin(multi_tenant: Clients) -> None:
    alice, admin = multi_tenant("alice-token"), multi_tenant("admin-token")
    response = await alice.post("/v2/images", json={"name": "p", "visibility": "public"})
    assert response.status_code == 403, response.text
    image = await create_image(alice, name="p")
    response = await patch(alice, image["id"],
                           [{"op": "replace", "path": "/visibility", "value": "public"}])
    assert response.status_code == 403
    assert (await alice.get(f"/v2/images/{image['id']}")).json()["visibility"] == "shared"
    response = await patch(admin, image["id"],
                           [{"op": "replace", "path": "/visibility", "value": "public"}])
    assert response.status_code == 200
    assert (await alice.get(f"/v2/images/{image['id']}")).json()["visibility"] == "public"
    # The owner may take it back from public to private.
    response = await patch(alice, image["id"],
                           [{"op": "replace", "path": "/visibility", "value": "private"}])
    assert response.status_code == 200


async def test_community_image_is_readable_by_all_but_listed_only_on_request(
    multi_tenant: Clients,
) -> None:
    alice, bob, admin = (multi_tenant(t) for t in ("alice-token", "bob-token", "admin-token"))
    image = await create_image(alice, name="community", visibility="community")
    assert (await upload(alice, image["id"], b"community")).status_code == 204
    assert image["id"] in await ids(alice)  # the owner lists its community images
    for viewer in (bob, admin):
        assert (await viewer.get(f"/v2/images/{image['id']}")).status_code == 200
        assert image["id"] not in await ids(viewer)
        assert image["id"] in await ids(viewer, "?visibility=community")
        assert image["id"] in await ids(viewer, "?visibility=all")
    assert (await bob.get(f"/v2/images/{image['id']}/file")).content == b"community"
    # Community images have no members.
    response = await alice.post(f"/v2/images/{image['id']}/members", json={"member": "project-b"})
    assert response.status_code == 403


async def test_admin_sees_every_project_and_may_act_on_it(multi_tenant: Clients) -> None:
    alice, bob, admin = (multi_tenant(t) for t in ("alice-token", "bob-token", "admin-token"))
    a = await create_image(alice, name="a", visibility="private")
    b = await create_image(bob, name="b")
    assert {a["id"], b["id"]} <= await ids(admin)
    assert a["id"] in await ids(admin, "?owner=project-a")
    assert b["id"] not in await ids(admin, "?owner=project-a")
    response = await patch(admin, a["id"],
                           [{"op": "replace", "path": "/name", "value": "by admin"}])
    assert response.status_code == 200
    assert (await alice.get(f"/v2/images/{a['id']}")).json()["name"] == "by admin"
    assert (await admin.delete(f"/v2/images/{b['id']}")).status_code == 204
    assert (await bob.get(f"/v2/images/{b['id']}")).status_code == 404


async def test_images_for_another_project_need_admin(multi_tenant: Clients) -> None:
    alice, admin, bob = (multi_tenant(t) for t in ("alice-token", "admin-token", "bob-token"))
    response = await alice.post("/v2/images", json={"owner": "project-b"})
    assert response.status_code == 403
    image = await create_image(admin, owner="project-b", visibility="private")
    assert (await bob.get(f"/v2/images/{image['id']}")).status_code == 200
    response = await patch(alice, image["id"], [{"op": "replace", "path": "/owner",
                                                "value": "project-a"}])
    assert response.status_code == 404
    own = await create_image(alice)
    response = await patch(alice, own["id"], [{"op": "replace", "path": "/owner",
                                              "value": "project-b"}])
    assert response.status_code == 403
    assert (await alice.get(f"/v2/images/{own['id']}")).json()["owner"] == "project-a"


async def test_unauthenticated_requests_are_401(multi_tenant: Clients) -> None:
    anonymous = multi_tenant("")
    assert (await anonymous.get("/v2/images")).status_code == 401
    bogus = multi_tenant("no-such-token")
    response = await bogus.get("/v2/images")
    assert response.status_code == 401
    assert "x-openstack-request-id" in response.headers
    # The version documents and health check need no token.
    assert (await anonymous.get("/versions")).status_code == 200
    assert (await anonymous.get("/healthcheck")).status_code == 200
