"""GET /v2/images: filters, sorting, paging with next links, page-size caps."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from tests.conftest import client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings


async def listing(client: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    response = await client.get("/v2/images" + query)
    assert response.status_code == 200, (query, response.text)
    result: dict[str, Any] = response.json()
    return result


async def names(client: httpx.AsyncClient, query: str = "") -> list[str]:
    return sorted(i["name"] for i in (await listing(client, query))["images"])


async def make_catalogue(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Six images that differ in every filterable way."""
    specs: dict[str, dict[str, Any]] = {
        "alpha": {"disk_format": "qcow2", "tags": ["linux", "x86"], "os_distro": "fedora",
                  "visibility": "public"},
        "beta": {"disk_format": "raw", "tags": ["linux"], "os_distro": "ubuntu",
                 "protected": True},
        "gamma": {"disk_format": "iso", "container_format": "ova", "tags": ["x86"],
                  "os_distro": "ubuntu", "hw_firmware_type": "uefi", "visibility": "private"},
        "delta": {"disk_format": "raw", "os_hidden": True, "tags": ["linux", "x86"]},
        "eps,ilon": {"disk_format": "vmdk", "visibility": "community"},
        "zeta": {"disk_format": "raw", "min_ram": 512, "owner": "project-z"},
    }
    images = {}
    for name, spec in specs.items():
        images[name] = await create_image(client, name=name, **spec)
    # beta and gamma get data: active, with sizes 10 and 1000
    assert (await upload(client, images["beta"]["id"], b"b" * 10)).status_code == 204
    assert (await upload(client, images["gamma"]["id"], b"g" * 1000)).status_code == 204
    return images


async def test_filters(client: httpx.AsyncClient) -> None:
    images = await make_catalogue(client)
    # delta is hidden; eps,ilon is community but the caller owns it, so it is listed
    visible = ["alpha", "beta", "eps,ilon", "gamma", "zeta"]
    cases = {
        "": visible,
        "?name=alpha": ["alpha"],
        "?name=eq:alpha": ["alpha"],
        "?name=nope": [],
        '?name=in:alpha,"eps,ilon",zeta': ["alpha", "eps,ilon", "zeta"],
        '?name=in:"eps,ilon"&visibility=community': ["eps,ilon"],
        "?status=active": ["beta", "gamma"],
        "?status=queued": ["alpha", "eps,ilon", "zeta"],
        "?status=in:active,queued": visible,
        "?visibility=public": ["alpha"],
        "?visibility=private": ["gamma"],
        "?visibility=shared": ["beta", "zeta"],
        "?visibility=community": ["eps,ilon"],
        "?visibility=all": ["alpha", "beta", "eps,ilon", "gamma", "zeta"],
        "?owner=project-z": ["zeta"],
        "?owner=admin": ["alpha", "beta", "eps,ilon", "gamma"],
        "?tag=linux": ["alpha", "beta"],
        "?tag=x86": ["alpha", "gamma"],
        "?tag=linux&tag=x86": ["alpha"],
        "?tag=linux&tag=x86&os_hidden=true": ["delta"],
        "?tag=nope": [],
        "?size_min=10": ["beta", "gamma"],
        "?size_min=11": ["gamma"],
        "?size_max=10": ["beta"],
        "?size_min=10&size_max=999": ["beta"],
        "?disk_format=raw": ["beta", "zeta"],
        "?disk_format=in:raw,qcow2": ["alpha", "beta", "zeta"],
        "?container_format=ova": ["gamma"],
        "?container_format=in:bare,ova": visible,
        "?container_format=bare": ["alpha", "beta", "eps,ilon", "zeta"],
        "?protected=true": ["beta"],
        "?protected=false": ["alpha", "eps,ilon", "gamma", "zeta"],
        "?os_hidden=true": ["delta"],
        "?os_hidden=false": visible,
        f"?id={images['beta']['id']}": ["beta"],
        f"?id=in:{images['beta']['id']},{images['zeta']['id']}": ["beta", "zeta"],
        "?os_distro=ubuntu": ["beta", "gamma"],
        "?os_distro=ubuntu&hw_firmware_type=uefi": ["gamma"],
        "?os_distro=debian": [],
        "?min_ram=512": ["zeta"],
        f"?checksum={hashlib.md5(b'b' * 10).hexdigest()}": ["beta"],
        f"?os_hash_value={hashlib.sha512(b'g' * 1000).hexdigest()}": ["gamma"],
        "?name=alpha&status=active": [],
    }
    for query, expected in cases.items():
        assert await names(client, query) == sorted(expected), query


async def test_time_filters(client: httpx.AsyncClient) -> None:
    for name in ("one", "two", "three"):
        await create_image(client, name=name)
    await client.patch(
        f"/v2/images/{(await listing(client, '?name=two'))['images'][0]['id']}",
        json=[{"op": "replace", "path": "/min_ram", "value": 1}],
        headers={"content-type": "application/openstack-images-v2.1-json-patch"},
    )
    images = (await listing(client))["images"]
    for field in ("created_at", "updated_at"):
        for image in images:
            stamp = image[field]
            expectations = {
                "eq": lambda v, s=stamp: v == s, "neq": lambda v, s=stamp: v != s,
                "gt": lambda v, s=stamp: v > s, "gte": lambda v, s=stamp: v >= s,
                "lt": lambda v, s=stamp: v < s, "lte": lambda v, s=stamp: v <= s,
            }
            for op, matches in expectations.items():
                expected = sorted(i["name"] for i in images if matches(i[field]))
                assert await names(client, f"?{field}={op}:{stamp}") == expected, (field, op)
            # Without an operator the value is compared for equality.
            expected = sorted(i["name"] for i in images if i[field] == stamp)
            assert await names(client, f"?{field}={stamp}") == expected
        assert await names(client, f"?{field}=lt:2000-01-01T00:00:00Z") == []
        assert len(await names(client, f"?{field}=gt:2000-01-01T00:00:00%2B02:00")) == 3
        both = f"?{field}=gt:2000-01-01T00:00:00Z&{field}=lt:2999-01-01T00:00:00Z"
        assert len(await names(client, both)) == 3


async def test_sorting(client: httpx.AsyncClient) -> None:
    sizes = {"b": 30, "a": 10, "c": 20, "d": None}
    for name, size in sizes.items():
        image = await create_image(client, name=name)
        if size is not None:
            assert (await upload(client, image["id"], b"x" * size)).status_code == 204

    async def order(query: str) -> list[str]:
        return [i["name"] for i in (await listing(client, query))["images"]]

    # Default: newest first.
    assert await order("") == ["d", "c", "a", "b"]
    assert await order("?sort_key=name") == ["d", "c", "b", "a"]
    assert await order("?sort_key=name&sort_dir=asc") == ["a", "b", "c", "d"]
    assert await order("?sort_key=created_at&sort_dir=asc") == ["b", "a", "c", "d"]
    assert await order("?sort=name:asc") == ["a", "b", "c", "d"]
    assert await order("?sort=name") == ["d", "c", "b", "a"]  # default direction desc
    assert (await order("?sort_key=size&sort_dir=desc"))[:3] == ["b", "c", "a"]
    assert (await order("?sort=size:asc"))[-3:] == ["a", "c", "b"]
    assert await order("?sort=status:asc,name:desc") == ["c", "b", "a", "d"]
    assert await order("?sort_key=status&sort_key=name&sort_dir=asc&sort_dir=desc") == [
        "c", "b", "a", "d"
    ]
    bad = [
        "?sort_key=owner", "?sort_key=nope", "?sort_dir=up", "?sort=name:up", "?sort=nope:asc",
        "?sort=name:asc&sort_key=name", "?sort=name:asc&sort_dir=asc",
        "?sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc&sort_dir=asc",
    ]
    for query in bad:
        response = await client.get("/v2/images" + query)
        assert response.status_code == 400, (query, response.text)


async def walk(client: httpx.AsyncClient, first: str) -> list[list[str]]:
    """Follow next links from ``first``; the names of each page."""
    pages: list[list[str]] = []
    url: str | None = first
    while url is not None:
        body = await listing(client, url.removeprefix("/v2/images"))
        pages.append([i["name"] for i in body["images"]])
        url = body.get("next")
        assert len(pages) < 50, "paging does not end"
    return pages


async def test_paging_covers_every_image_exactly_once(client: httpx.AsyncClient) -> None:
    created = [f"img-{i:02d}" for i in range(11)]
    for name in created:
        await create_image(client, name=name, tags=["paged"] if name != "img-05" else [])
    for query in ("?limit=3", "?limit=3&sort_key=name&sort_dir=asc", "?limit=4&sort=name:desc",
                  "?limit=1", "?limit=11"):
        pages = await walk(client, "/v2/images" + query)
        flat = [n for page in pages for n in page]
        assert sorted(flat) == created, query
        assert len(flat) == len(set(flat)), query
        limit = int(dict(parse_qsl(urlsplit(query).query))["limit"])
        assert all(len(page) == limit for page in pages[:-1]), (query, pages)
        if "sort_dir=asc" in query:
            assert flat == created
    # Filters and sorting are carried by next links.
    pages = await walk(client, "/v2/images?tag=paged&limit=4&sort_key=name&sort_dir=asc")
    flat = [n for page in pages for n in page]
    assert flat == [n for n in created if n != "img-05"]
    body = await listing(client, "?tag=paged&limit=4")
    query = dict(parse_qsl(urlsplit(body["next"]).query))
    assert query["tag"] == "paged" and query["limit"] == "4" and "marker" in query
    assert body["first"] == "/v2/images?tag=paged&limit=4"
    assert body["schema"] == "/v2/schemas/images"


async def test_paging_with_repeated_tags_keeps_them_all(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await create_image(client, name=f"t{i}", tags=["a", "b"])
    await create_image(client, name="only-a", tags=["a"])
    pages = await walk(client, "/v2/images?tag=a&tag=b&limit=2")
    assert sorted(n for page in pages for n in page) == ["t0", "t1", "t2"]


async def test_marker_must_be_a_visible_image(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    for marker in ("0e5a1f6c-0000-4000-8000-00000000dead", "junk"):
        response = await client.get(f"/v2/images?marker={marker}")
        assert response.status_code == 400, marker
    await client.delete(f"/v2/images/{image['id']}")
    assert (await client.get(f"/v2/images?marker={image['id']}")).status_code == 400


async def test_page_size_defaults_and_caps(
    make_settings: Callable[..., Settings], make_node: Callable[[Settings], Any]
) -> None:
    node: Node = await make_node(make_settings(limit_param_default=2, api_limit_max=4))
    async with client_for(node) as client:
        for i in range(6):
            await create_image(client, name=f"i{i}")
        assert len((await listing(client))["images"]) == 2
        assert len((await listing(client, "?limit=3"))["images"]) == 3
        for huge in ("5", "1000", "1000000", str(10**30)):
            body = await listing(client, f"?limit={huge}")
            assert len(body["images"]) == 4, huge
            assert "next" in body
        pages = await walk(client, "/v2/images?limit=1000")
        assert [len(p) for p in pages] == [4, 2]
        for bad in ("-1", "abc", "1.5", ""):
            response = await client.get(f"/v2/images?limit={bad}")
            assert response.status_code == 400, bad


async def test_invalid_filter_values_are_400(client: httpx.AsyncClient) -> None:
    bad = [
        "?visibility=everyone", "?member_status=maybe", "?protected=yes", "?os_hidden=1",
        "?size_min=big", "?size_max=1.5", "?created_at=yesterday", "?updated_at=gt:never",
        "?created_at=after:2020-01-01T00:00:00Z", "?changes-since=2020-01-01T00:00:00Z",
        "?name=gt:a", "?status=neq:active", "?id=lt:x",
    ]
    for query in bad:
        response = await client.get("/v2/images" + query)
        assert response.status_code == 400, (query, response.text)


async def test_deleted_images_are_never_listed(client: httpx.AsyncClient) -> None:
    keep = await create_image(client, name="keep")
    gone = await create_image(client, name="gone")
    assert (await client.delete(f"/v2/images/{gone['id']}")).status_code == 204
    for query in ("", "?visibility=all", "?status=deleted", f"?id={gone['id']}"):
        found = [i["id"] for i in (await listing(client, query))["images"]]
        assert gone["id"] not in found, query
    assert [i["id"] for i in (await listing(client))["images"]] == [keep["id"]]
