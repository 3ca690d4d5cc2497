"""Hostile and malformed requests: Glance's status code, a clear message, nothing changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from tests.conftest import PATCH_TYPE, create_image, patch

NUL = "\u0000"


async def image_count(client: httpx.AsyncClient) -> int:
    response = await client.get("/v2/images?visibility=all&os_hidden=false")
    hidden = await client.get("/v2/images?visibility=all&os_hidden=true")
    return len(response.json()["images"]) + len(hidden.json()["images"])


async def raw_patch(client: httpx.AsyncClient, image_id: str, body: bytes) -> httpx.Response:
    return await client.patch(
        f"/v2/images/{image_id}", content=body, headers={"content-type": PATCH_TYPE}
    )


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    image = await create_image(client, name="n")
    bodies = [b"{", b"{'name': 'x'}", b"[1,]", b"\xff\xfe", b"nul", b'{"a": NaN}',
              b"[" * 100_000 + b"]" * 100_000]
    for body in bodies:
        for method, url, content_type in (
            ("POST", "/v2/images", "application/json"),
            ("PATCH", f"/v2/images/{image['id']}", PATCH_TYPE),
            ("POST", f"/v2/images/{image['id']}/members", "application/json"),
            ("PUT", f"/v2/images/{image['id']}/members/p", "application/json"),
        ):
            response = await client.request(method, url, content=body,
                                            headers={"content-type": content_type})
            assert response.status_code in (400, 413), (method, url, body[:20], response.text)
            assert response.status_code == 400 or len(body) > 65536
    assert await image_count(client) == 1
    assert (await client.get(f"/v2/images/{image['id']}")).json()["name"] == "n"


async def test_missing_or_non_object_create_body_is_400(client: httpx.AsyncClient) -> None:
    for body in (b"", b"[]", b'"name"', b"42", b"null", b"true"):
        response = await client.post(
            "/v2/images", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (body, response.text)
    assert await image_count(client) == 0


async def test_patch_body_must_be_a_list_of_operations(client: httpx.AsyncClient) -> None:
    image = await create_image(client, name="n")
    for body in (b'{"op": "replace", "path": "/name", "value": "x"}', b'"x"', b"null", b"",
                 b'["replace"]', b"[null]", b"[[]]"):
        response = await raw_patch(client, image["id"], body)
        assert response.status_code == 400, (body, response.text)
    assert (await client.get(f"/v2/images/{image['id']}")).json() == image


async def test_bad_patch_operations_are_400(client: httpx.AsyncClient) -> None:
    image = await create_image(client, name="n", prop="v")
    bad: list[dict[str, Any]] = [
        {"op": "move", "from": "/name", "path": "/x"},
        {"op": "copy", "from": "/name", "path": "/x"},
        {"op": "test", "path": "/name", "value": "n"},
        {"op": "REPLACE", "path": "/name", "value": "x"},
        {"op": None, "path": "/name", "value": "x"},
        {"path": "/name", "value": "x"},
        {"op": "replace", "value": "x"},
        {"op": "replace", "path": "/name"},
        {"op": "add", "path": "/prop"},
        {"op": "replace", "path": "name", "value": "x"},
        {"op": "replace", "path": "", "value": "x"},
        {"op": "replace", "path": "/", "value": "x"},
        {"op": "replace", "path": "//name", "value": "x"},
        {"op": "replace", "path": "/name/", "value": "x"},
        {"op": "replace", "path": "/name/first", "value": "x"},
        {"op": "add", "path": "/tags/-", "value": "x"},
        {"op": "replace", "path": "/~2name", "value": "x"},
        {"op": "replace", "path": "/name~", "value": "x"},
        {"op": "replace", "path": 5, "value": "x"},
        {"op": "replace", "path": ["name"], "value": "x"},
    ]
    for op in bad:
        response = await patch(client, image["id"], [op])
        assert response.status_code == 400, (op, response.text)
    assert (await client.get(f"/v2/images/{image['id']}")).json() == image


async def test_hostile_property_names(client: httpx.AsyncClient) -> None:
    hostile = ["x" * 256, "bad\nname", f"nul{NUL}name", "esc\x1b[31m", "tab\tname", "\x7f", ""]
    for name in hostile:
        response = await client.post("/v2/images", json={name: "v"})
        assert response.status_code == 400, (repr(name), response.text)
    assert await image_count(client) == 0
    image = await create_image(client)
    for name in hostile:
        if not name:
            continue
        escaped = name.replace("~", "~0").replace("/", "~1")
        response = await patch(client, image["id"], [{"op": "add", "path": f"/{escaped}",
                                                      "value": "v"}])
        assert response.status_code == 400, (repr(name), response.text)
    assert (await client.get(f"/v2/images/{image['id']}")).json() == image
    # Long but legal names, and names from other scripts, are kept as given.
    fine = {"x" * 255: "v", "名前": "値", "hw:cpu_policy": "dedicated", "with space": "ok"}
    created = await create_image(client, **fine)
    for key, value in fine.items():
        assert created[key] == value


async def test_nul_and_control_characters_in_values(client: httpx.AsyncClient) -> None:
    """NUL cannot be stored by PostgreSQL: refuse it everywhere with 400, never 500."""
    for body in ({"name": f"a{NUL}b"}, {"prop": f"a{NUL}b"}, {"tags": [f"a{NUL}b"]},
                 {"os_distro": f"{NUL}"}):
        response = await client.post("/v2/images", json=body)
        assert response.status_code == 400, (body, response.text)
    image = await create_image(client, name="n")
    for path, value in (("/name", f"a{NUL}"), ("/prop", f"a{NUL}"), ("/tags", [f"{NUL}"])):
        response = await patch(client, image["id"], [{"op": "add", "path": path, "value": value}])
        assert response.status_code == 400, (path, response.text)
    url = f"/v2/images/{image['id']}"
    assert (await client.put(url + "/tags/a%00b")).status_code == 400
    assert (await client.post(url + "/members", json={"member": f"p{NUL}"})).status_code == 400
    for query in ("?name=a%00b", "?prop=a%00", "?tag=%00", "?a%00b=c", "?marker=%00",
                  "?owner=%00", "?id=in:%00"):
        response = await client.get("/v2/images" + query)
        assert response.status_code in (200, 400), (query, response.text)
        if response.status_code == 200:
            assert response.json()["images"] == [], query
    for path in ("/v2/images/a%00b", f"{url}/members/a%00b", f"{url}/tags/%00"):
        assert (await client.get(path)).status_code in (400, 404, 405), path
    assert (await client.get(url)).json() == image
    # Other control characters in values are data, kept as given.
    created = await create_image(client, name="tab\there", description="line\nbreak")
    assert created["name"] == "tab\there" and created["description"] == "line\nbreak"


async def test_wrong_types_in_member_bodies(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    url = f"/v2/images/{image['id']}/members"
    for body in ({"member": 5}, {"member": ["p"]}, {"member": {"id": "p"}}, {"member": True}):
        response = await client.post(url, json=body)
        assert response.status_code == 400, (body, response.text)
    assert (await client.get(url)).json()["members"] == []


async def test_oversized_bodies_are_413(client: httpx.AsyncClient) -> None:
    big = {"name": "big", "description": "x" * 70_000}
    response = await client.post("/v2/images", json=big)
    assert response.status_code == 413, response.text

    async def chunked_json() -> AsyncIterator[bytes]:
        yield b'{"description": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    response = await client.post(
        "/v2/images", content=chunked_json(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert await image_count(client) == 0
    image = await create_image(client, name="n")
    ops = [{"op": "add", "path": f"/p{i}", "value": "x" * 1000} for i in range(100)]
    assert (await patch(client, image["id"], ops)).status_code == 413
    assert (await client.get(f"/v2/images/{image['id']}")).json() == image
    # Just under the limit is fine.
    ok = await client.post("/v2/images", json={"description": "x" * 60_000})
    assert ok.status_code == 201


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    for method, path in (("GET", "/v2/nothing"), ("GET", f"/v2/images/{image['id']}/nothing")):
        response = await client.request(method, path)
        assert response.status_code == 404, (method, path)
    for method, path in (("PUT", "/v2/images"), ("DELETE", "/v2/images"),
                         ("POST", f"/v2/images/{image['id']}"),
                         ("POST", f"/v2/images/{image['id']}/file"),
                         ("GET", f"/v2/images/{image['id']}/actions/deactivate")):
        response = await client.request(method, path)
        assert response.status_code == 405, (method, path, response.status_code)
        assert response.headers.get("allow"), (method, path)


async def test_bad_image_ids_in_paths_are_404(client: httpx.AsyncClient) -> None:
    for image_id in ("not-a-uuid", "1" * 300, "%20", "..", "0e5a1f6c-0000-4000-8000-00000000dead"):
        for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/file"),
                               ("GET", "/members"), ("PUT", "/tags/t")):
            response = await client.request(method, f"/v2/images/{image_id}{suffix}")
            assert response.status_code == 404, (image_id, method, suffix, response.text)


async def test_a_callers_request_id_is_kept_and_a_huge_one_refused(
    client: httpx.AsyncClient,
) -> None:
    mine = "req-0a1b2c3d-0000-4000-8000-000000000001"
    response = await client.get("/v2/images", headers={"x-openstack-request-id": mine})
    assert response.headers["x-openstack-request-id"] == mine
    response = await client.get("/v2/images", headers={"x-openstack-request-id": "r" * 65})
    assert response.status_code == 431
    assert response.headers["x-openstack-request-id"].startswith("req-")


async def test_an_overlong_header_line_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/images", headers={"x-big": "a" * 20000})
    assert response.status_code == 400
    assert "Header line too long" in response.text
