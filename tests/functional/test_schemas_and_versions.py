"""Version documents, /v2.N prefixes, JSON-schema documents, health check, request ids."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import PATCH_TYPE, client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings

REQUEST_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Glance without multiple stores and without a cache advertises exactly these.
EXPECTED_VERSIONS = {
    "v2.0", "v2.1", "v2.2", "v2.3", "v2.4", "v2.5", "v2.6", "v2.7", "v2.9", "v2.15", "v2.17",
}


async def test_version_documents(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert root.status_code == 300
    listed = await client.get("/versions")
    assert listed.status_code == 200
    assert root.json() == listed.json()
    versions = listed.json()["versions"]
    assert {v["id"] for v in versions} == EXPECTED_VERSIONS
    assert [v["id"] for v in versions if v["status"] == "CURRENT"] == ["v2.17"]
    assert {v["status"] for v in versions} == {"CURRENT", "SUPPORTED"}
    for version in versions:
        assert version["links"] == [{"rel": "self", "href": "http://glimpse.test/v2/"}]


async def test_public_endpoint_is_used_in_version_links(
    make_settings: Callable[..., Settings], make_node: Callable[[Settings], Any]
) -> None:
    config = "[DEFAULT]\npublic_endpoint = https://images.example.com:9292\n"
    node: Node = await make_node(make_settings(config))
    async with client_for(node) as client:
        versions = (await client.get("/versions")).json()["versions"]
    assert {v["links"][0]["href"] for v in versions} == {"https://images.example.com:9292/v2/"}


async def test_minor_version_prefixes_reach_the_v2_api(client: httpx.AsyncClient) -> None:
    image = await create_image(client, name="versioned")
    for prefix in ("/v2", "/v2.0", "/v2.1", "/v2.9", "/v2.17"):
        response = await client.get(f"{prefix}/images/{image['id']}")
        assert response.status_code == 200, prefix
        assert response.json()["name"] == "versioned"
        listing = await client.get(f"{prefix}/images")
        assert [i["id"] for i in listing.json()["images"]] == [image["id"]], prefix
    response = await client.patch(
        f"/v2.1/images/{image['id']}",
        json=[{"op": "replace", "path": "/name", "value": "via 2.1"}],
        headers={"content-type": PATCH_TYPE},
    )
    assert response.status_code == 200
    assert (await upload(client, image["id"], b"x")).status_code == 204
    assert (await client.get(f"/v2.1/images/{image['id']}/file")).content == b"x"
    assert (await client.get("/v2.1/schemas/image")).status_code == 200


async def test_image_schema_document(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/v2/schemas/image")).json()
    assert schema["name"] == "image"
    assert schema["additionalProperties"] == {"type": "string"}
    assert {link["rel"] for link in schema["links"]} == {"self", "enclosure", "describedby"}
    properties = schema["properties"]
    base = {
        "id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
        "os_hash_algo", "os_hash_value", "owner", "size", "virtual_size", "container_format",
        "disk_format", "created_at", "updated_at", "tags", "direct_url", "min_ram",
        "min_disk", "self", "file", "stores", "schema", "locations",
    }
    assert base <= set(properties)
    for read_only in ("status", "checksum", "size", "virtual_size", "created_at",
                      "updated_at", "self", "file", "schema", "os_hash_algo", "os_hash_value"):
        assert properties[read_only].get("readOnly") is True, read_only
    assert properties["visibility"]["enum"] == ["community", "public", "private", "shared"]
    assert properties["id"]["pattern"]
    # The common properties glanceclient builds its options from (guide Appendix A).
    for common in ("architecture", "os_distro", "os_version", "instance_uuid", "kernel_id",
                   "ramdisk_id", "description"):
        assert common in properties, common
        assert properties[common]["is_base"] is False
    assert "is_base" not in properties["name"]


async def test_collection_and_member_schemas(client: httpx.AsyncClient) -> None:
    image = (await client.get("/v2/schemas/image")).json()
    images = (await client.get("/v2/schemas/images")).json()
    assert images["name"] == "images"
    assert images["properties"]["images"] == {"type": "array", "items": image}
    assert {"first", "next", "schema"} <= set(images["properties"])
    assert {link["rel"] for link in images["links"]} == {"first", "next", "describedby"}
    member = (await client.get("/v2/schemas/member")).json()
    assert member["name"] == "member"
    assert set(member["properties"]) == {
        "member_id", "image_id", "created_at", "updated_at", "status", "schema"
    }
    assert member["properties"]["status"]["enum"] == ["pending", "accepted", "rejected"]
    members = (await client.get("/v2/schemas/members")).json()
    assert members["name"] == "members"
    assert members["properties"]["members"]["items"] == member


async def test_operator_schema_file_extends_and_validates(
    make_settings: Callable[..., Settings], make_node: Callable[[Settings], Any], tmp_path: Path
) -> None:
    extra = tmp_path / "schema-image.json"
    extra.write_text(json.dumps({
        "hw_firmware_type": {"type": "string", "enum": ["bios", "uefi"],
                             "description": "Firmware the guest boots with."},
        "os_distro": {"type": "string"},
    }))
    config = f"[glimpse]\nschema_image_file = {extra}\n"
    node: Node = await make_node(make_settings(config))
    async with client_for(node) as client:
        properties = (await client.get("/v2/schemas/image")).json()["properties"]
        assert properties["hw_firmware_type"]["enum"] == ["bios", "uefi"]
        bad = await client.post("/v2/images", json={"hw_firmware_type": "coreboot"})
        assert bad.status_code == 400
        image = await create_image(client, hw_firmware_type="uefi")
        response = await client.patch(
            f"/v2/images/{image['id']}",
            json=[{"op": "replace", "path": "/hw_firmware_type", "value": "floppy"}],
            headers={"content-type": PATCH_TYPE},
        )
        assert response.status_code == 400
        assert (await client.get(f"/v2/images/{image['id']}")).json()["hw_firmware_type"] == "uefi"


async def test_healthcheck(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthcheck")
    assert response.status_code == 200
    assert "OK" in response.text
    assert (await client.head("/healthcheck")).status_code == 200


async def test_request_id_on_every_response(
    client: httpx.AsyncClient, multi_tenant: Callable[[str], httpx.AsyncClient]
) -> None:
    image = await create_image(client)
    url = f"/v2/images/{image['id']}"
    responses = [
        await client.get("/"),
        await client.get("/versions"),
        await client.get("/healthcheck"),
        await client.get("/v2/schemas/image"),
        await client.get("/v2/images"),
        await client.post("/v2/images", json={}),
        await client.get(url),
        await client.get(url + "/file"),  # 204
        await upload(client, image["id"], b"0123456789"),  # 204
        await client.get(url + "/file"),  # 200, streamed
        await client.get(url + "/file", headers={"range": "bytes=0-1"}),  # 206
        await client.get(url + "/file", headers={"range": "bytes=50-"}),  # 416
        await upload(client, image["id"], b"again"),  # 409
        await client.post("/v2/images", json={"name": 1}),  # 400
        await client.post("/v2/images", json={"status": "active"}),  # 403
        await client.get("/v2/images/6f0e0ad6-0000-4000-8000-000000000000"),  # 404
        await client.get("/no/such/path"),  # 404 from the router
        await client.put("/v2/images"),  # 405
        await client.patch(url, json=[]),  # 415
        await client.post("/v2/images", content=b"x" * 70_000,
                          headers={"content-type": "application/json"}),  # 413
        await multi_tenant("").get("/v2/images"),  # 401
        await multi_tenant("bob-token").delete(url),  # 404 for another project
    ]
    statuses = {r.status_code for r in responses}
    assert {200, 201, 204, 206, 300, 400, 401, 403, 404, 405, 409, 413, 415, 416} <= statuses
    seen = set()
    for response in responses:
        request_id = response.headers.get("x-openstack-request-id", "")
        assert REQUEST_ID.match(request_id), (response.request.url, response.status_code)
        seen.add(request_id)
    assert len(seen) == len(responses)


async def test_errors_are_json_when_asked(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/v2/images/6f0e0ad6-0000-4000-8000-000000000000",
        headers={"accept": "application/json"},
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert "6f0e0ad6-0000-4000-8000-000000000000" in response.json()["message"]
    html = await client.get("/v2/images/6f0e0ad6-0000-4000-8000-000000000000")
    assert html.headers["content-type"].startswith("text/html")
    assert "404 Not Found" in html.text


async def test_versions_we_do_not_serve_get_the_versions_document(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/v3/images", "/v1/images", "/v2.99/images"):
        response = await client.get(path)
        assert response.status_code == 300, (path, response.text)
        assert response.json()["versions"][0]["id"].startswith("v2.")
    assert (await client.get("/v2.9/images")).status_code == 200
    assert (await client.get("/v2/images")).status_code == 200
