"""PUT/DELETE /v2/images/{id}/tags/{tag}."""

from __future__ import annotations

from urllib.parse import quote

import httpx
from tests.conftest import create_image


async def tags_of(client: httpx.AsyncClient, image_id: str) -> list[str]:
    return sorted((await client.get(f"/v2/images/{image_id}")).json()["tags"])


async def test_add_is_idempotent_and_delete_removes(client: httpx.AsyncClient) -> None:
    image = await create_image(client, tags=["existing"])
    url = f"/v2/images/{image['id']}/tags"
    assert (await client.put(url + "/new")).status_code == 204
    assert (await client.put(url + "/new")).status_code == 204
    assert await tags_of(client, image["id"]) == ["existing", "new"]
    assert (await client.delete(url + "/existing")).status_code == 204
    assert await tags_of(client, image["id"]) == ["new"]
    assert (await client.delete(url + "/existing")).status_code == 404
    assert (await client.delete(url + "/never")).status_code == 404
    assert await tags_of(client, image["id"]) == ["new"]


async def test_tags_with_unusual_characters(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    url = f"/v2/images/{image['id']}/tags/"
    odd = ["with space", "ünïcødé", "semi;colon", "per%cent", "x" * 255, "a:b", "q?uery"]
    for tag in odd:
        response = await client.put(url + quote(tag, safe=""))
        assert response.status_code == 204, (tag, response.text)
    assert await tags_of(client, image["id"]) == sorted(odd)
    listed = (await client.get("/v2/images", params={"tag": "ünïcødé"})).json()["images"]
    assert [i["id"] for i in listed] == [image["id"]]
    for tag in odd:
        assert (await client.delete(url + quote(tag, safe=""))).status_code == 204, tag
    assert await tags_of(client, image["id"]) == []


async def test_overlong_tag_is_400(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    response = await client.put(f"/v2/images/{image['id']}/tags/{'x' * 256}")
    assert response.status_code == 400, response.text
    assert await tags_of(client, image["id"]) == []


async def test_tags_of_unknown_image_are_404(client: httpx.AsyncClient) -> None:
    url = "/v2/images/1c9a5b1e-0000-4000-8000-000000000000/tags/t"
    assert (await client.put(url)).status_code == 404
    assert (await client.delete(url)).status_code == 404


async def test_tag_changes_bump_updated_at_only_when_something_changes(
    client: httpx.AsyncClient,
) -> None:
    image = await create_image(client, tags=["a"])
    assert (await client.put(f"/v2/images/{image['id']}/tags/a")).status_code == 204
    shown = (await client.get(f"/v2/images/{image['id']}")).json()
    assert shown["tags"] == ["a"]
    assert shown["updated_at"] >= image["updated_at"]
