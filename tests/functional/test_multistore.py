"""Several stores at once (guide chapter 5): discovery, choosing a store, one copy removed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings

MULTISTORE = """
[DEFAULT]
enabled_backends = central:file, dcn0:file, dcn1:file
show_multiple_locations = true

[glance_store]
default_backend = central

[central]
store_description = Central site
filesystem_store_datadir = {root}/central
weight = 100

[dcn0]
store_description = Edge site 0
filesystem_store_datadir = {root}/dcn0

[dcn1]
filesystem_store_datadir = {root}/dcn1
"""


@pytest.fixture
async def multi(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> Node:
    node: Node = await make_node(make_settings(MULTISTORE.format(root=tmp_path / "stores")))
    return node


async def _put(client: httpx.AsyncClient, image_id: str, data: bytes, store: str) -> httpx.Response:
    return await client.put(
        f"/v2/images/{image_id}/file", content=data,
        headers={"content-type": "application/octet-stream", "x-image-meta-store": store},
    )


async def test_info_stores_lists_each_store_with_the_default(multi: Node) -> None:
    async with client_for(multi) as client:
        stores = (await client.get("/v2/info/stores")).json()["stores"]
        assert stores == [
            {"id": "central", "description": "Central site", "default": "true"},
            {"id": "dcn0", "description": "Edge site 0"},
            {"id": "dcn1"},
        ]
        detail = (await client.get("/v2/info/stores/detail")).json()["stores"]
        central = detail[0]
        assert central["type"] == "file"
        assert central["weight"] == 100
        assert central["properties"]["data_dir"].endswith("central")


async def test_info_stores_is_404_without_multistore(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/info/stores")).status_code == 404


async def test_upload_to_a_chosen_store(multi: Node, tmp_path: Path) -> None:
    async with client_for(multi) as client:
        image = await create_image(client, name="edge")
        assert (await _put(client, image["id"], b"edge data", "dcn1")).status_code == 204
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["stores"] == "dcn1"
        assert shown["locations"][0]["metadata"] == {"store": "dcn1"}
        assert (tmp_path / "stores" / "dcn1" / image["id"]).read_bytes() == b"edge data"
        assert not (tmp_path / "stores" / "central" / image["id"]).exists()


async def test_default_store_and_unknown_store(multi: Node, tmp_path: Path) -> None:
    async with client_for(multi) as client:
        image = await create_image(client)
        response = await _put(client, image["id"], b"x", "nowhere")
        assert response.status_code == 400
        assert "nowhere" in response.text
        assert (await client.get(f"/v2/images/{image['id']}")).json()["status"] == "queued"
        assert (await upload(client, image["id"], b"central data")).status_code == 204
        assert (tmp_path / "stores" / "central" / image["id"]).read_bytes() == b"central data"


async def _image_in_two_stores(client: httpx.AsyncClient, multi: Node) -> str:
    """An image with copies in central and dcn0 (the copy is attached as a location)."""
    image = await create_image(client)
    assert (await upload(client, image["id"], b"shared bytes")).status_code == 204
    # A second copy, written straight into dcn0 and registered by the service API.
    dcn0 = multi.stores.get("dcn0")

    async def one() -> Any:
        yield b"shared bytes"

    stored = await dcn0.add(image["id"], one())
    from glimpse.db.base import ImageChanges
    from glimpse.domain.image import Location

    repo = multi.services.images.images
    await repo.update(
        image["id"],
        ImageChanges(add_locations=(Location(stored.location, "dcn0", {"store": "dcn0"}),)),
    )
    return str(image["id"])


async def test_delete_from_one_store_keeps_the_image(multi: Node, tmp_path: Path) -> None:
    async with client_for(multi) as client:
        image_id = await _image_in_two_stores(client, multi)
        assert (await client.get(f"/v2/images/{image_id}")).json()["stores"] == "central,dcn0"
        response = await client.delete(f"/v2/stores/dcn0/{image_id}")
        assert response.status_code == 204, response.text
        shown = (await client.get(f"/v2/images/{image_id}")).json()
        assert shown["status"] == "active"
        assert shown["stores"] == "central"
        assert not (tmp_path / "stores" / "dcn0" / image_id).exists()
        # The last copy cannot go this way, and a store without a copy is 404.
        assert (await client.delete(f"/v2/stores/central/{image_id}")).status_code == 403
        assert (await client.delete(f"/v2/stores/dcn1/{image_id}")).status_code == 404
        assert (await client.delete(f"/v2/stores/nowhere/{image_id}")).status_code == 409
        download = await client.get(f"/v2/images/{image_id}/file")
        assert download.content == b"shared bytes"


async def test_image_delete_removes_every_copy(multi: Node, tmp_path: Path) -> None:
    async with client_for(multi) as client:
        image_id = await _image_in_two_stores(client, multi)
        assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
        for store in ("central", "dcn0"):
            assert not (tmp_path / "stores" / store / image_id).exists()


async def test_concurrent_store_deletes_never_remove_the_last_copy(multi: Node) -> None:
    import asyncio

    async with client_for(multi) as client:
        image_id = await _image_in_two_stores(client, multi)
        results = await asyncio.gather(
            client.delete(f"/v2/stores/dcn0/{image_id}"),
            client.delete(f"/v2/stores/central/{image_id}"),
        )
        codes = sorted(r.status_code for r in results)
        assert codes[0] == 204 and codes[1] in (403, 409), codes
        shown = (await client.get(f"/v2/images/{image_id}")).json()
        assert shown["status"] == "active"
        assert (await client.get(f"/v2/images/{image_id}/file")).content == b"shared bytes"


async def test_locations_api_is_for_services(multi: Node) -> None:
    async with client_for(multi) as client:
        image = await create_image(client)
        # noauth callers are admin: admin passes add_image_location but is not a service.
        response = await client.post(
            f"/v2/images/{image['id']}/locations", json={"url": "file:///etc/passwd"}
        )
        assert response.status_code == 403
        locations = await client.get(f"/v2/images/{image['id']}/locations")
        assert locations.status_code == 200
        assert locations.json() == []


async def test_orphans_are_found(multi: Node, tmp_path: Path) -> None:
    async with client_for(multi) as client:
        image = await create_image(client)
        await upload(client, image["id"], b"kept")
    stray = tmp_path / "stores" / "dcn1" / "0c5e1c4a-0000-4000-8000-000000000000"
    stray.write_bytes(b"stray")
    orphans = await multi.services.stores.orphans()
    assert orphans == [("dcn1", stray.as_uri())]


def test_bad_store_config_fails_start_up(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="default_backend"):
        make_settings("[DEFAULT]\nenabled_backends = a:file\n")
    with pytest.raises(ValueError, match="unknown type"):
        make_settings("[DEFAULT]\nenabled_backends = a:floppy\n[glance_store]\ndefault_backend=a\n")


async def test_health_reports_a_store_that_stops_taking_writes(
    multi: Node, tmp_path: Path
) -> None:
    (tmp_path / "stores" / "dcn1" / ".glimpse-store").unlink()
    async with client_for(multi) as client:
        response = await client.get("/healthcheck", headers={"accept": "application/json"})
        assert response.status_code == 200
        body = response.json()
        assert body["stores"]["dcn1"] == {"readable": True, "writable": False}
        assert body["stores"]["central"] == {"readable": True, "writable": True}
        assert (await client.get("/healthcheck")).text == "OK"
        image = await create_image(client)
        refused = await _put(client, image["id"], b"x", "dcn1")
        assert refused.status_code == 503
        assert "is the share mounted" in refused.text
        assert (await _put(client, image["id"], b"x", "dcn0")).status_code == 204


async def test_stores_and_locations_are_listed_highest_weight_first(multi: Node) -> None:
    """As Glance: whatever order the copies were made in, an image lists its stores and
    locations by store weight (central weighs 100, dcn0 and dcn1 nothing)."""
    async with client_for(multi) as client:
        image = await create_image(client)
        assert (await _put(client, image["id"], b"edge first", "dcn1")).status_code == 204
        central = multi.stores.get("central")

        async def one() -> Any:
            yield b"edge first"

        stored = await central.add(image["id"], one())
        from glimpse.db.base import ImageChanges
        from glimpse.domain.image import Location

        await multi.services.images.images.update(
            image["id"],
            ImageChanges(add_locations=(Location(stored.location, "central",
                                                 {"store": "central"}),)),
        )
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["stores"] == "central,dcn1"
        assert [loc["metadata"]["store"] for loc in shown["locations"]] == ["central", "dcn1"]
