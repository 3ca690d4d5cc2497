"""POST /v2/images and GET /v2/images/{id}: every field of the image schema, as Glance."""

from __future__ import annotations

import hashlib
import re
import uuid

import httpx
from tests.conftest import create_image, upload

ISO8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_new_image_has_every_schema_field_with_glance_defaults(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v2/images", json={})
    assert response.status_code == 201, response.text
    image = response.json()
    assert response.headers["location"].endswith(f"/v2/images/{image['id']}")
    assert uuid.UUID(image["id"])
    assert image == {
        "id": image["id"],
        "name": None,
        "status": "queued",
        "visibility": "shared",
        "protected": False,
        "os_hidden": False,
        "owner": "admin",
        "size": None,
        "virtual_size": None,
        "checksum": None,
        "os_hash_algo": None,
        "os_hash_value": None,
        "min_disk": 0,
        "min_ram": 0,
        "disk_format": None,
        "container_format": None,
        "created_at": image["created_at"],
        "updated_at": image["updated_at"],
        "tags": [],
        "self": f"/v2/images/{image['id']}",
        "file": f"/v2/images/{image['id']}/file",
        "schema": "/v2/schemas/image",
    }
    assert ISO8601.match(image["created_at"]) and ISO8601.match(image["updated_at"])
    shown = await client.get(f"/v2/images/{image['id']}")
    assert shown.status_code == 200
    assert shown.json() == image


async def test_every_writable_field_round_trips(client: httpx.AsyncClient) -> None:
    body = {
        "name": "rhel-9.4",
        "visibility": "private",
        "protected": True,
        "os_hidden": True,
        "min_disk": 10,
        "min_ram": 2048,
        "disk_format": "qcow2",
        "container_format": "bare",
        "tags": ["rhel", "x86_64"],
        # the common properties glanceclient builds options from (guide Appendix A)
        "architecture": "x86_64",
        "os_distro": "rhel",
        "os_version": "9.4",
        "instance_uuid": "d4f2c0de-0000-4000-8000-000000000001",
        "kernel_id": "d4f2c0de-0000-4000-8000-000000000002",
        "ramdisk_id": "d4f2c0de-0000-4000-8000-000000000003",
        "description": "RHEL 9.4 guest image",
        # the guide's Appendix B keys, stored as arbitrary string properties
        "hw_firmware_type": "uefi",
        "os_secure_boot": "required",
        "hw_machine_type": "q35",
        "hw_disk_bus": "virtio",
        "hw_qemu_guest_agent": "yes",
    }
    image = await create_image(client, **body)
    shown = (await client.get(f"/v2/images/{image['id']}")).json()
    for key, value in body.items():
        assert image[key] == value, key
        assert shown[key] == value, key


async def test_data_fields_are_computed_while_streaming(client: httpx.AsyncClient) -> None:
    data = bytes(range(256)) * 4099
    image = await create_image(client, name="data")
    assert (await upload(client, image["id"], data)).status_code == 204
    shown = (await client.get(f"/v2/images/{image['id']}")).json()
    assert shown["status"] == "active"
    assert shown["size"] == len(data)
    assert shown["virtual_size"] == len(data)  # raw: virtual size is the byte count
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert shown["updated_at"] >= image["updated_at"]


async def test_client_chosen_id_is_kept_and_a_duplicate_is_409(
    client: httpx.AsyncClient,
) -> None:
    chosen = str(uuid.uuid4())
    image = await create_image(client, id=chosen, name="first")
    assert image["id"] == chosen
    assert (await client.get(f"/v2/images/{chosen}")).json()["name"] == "first"
    again = await client.post("/v2/images", json={"id": chosen, "name": "second"})
    assert again.status_code == 409
    assert (await client.get(f"/v2/images/{chosen}")).json()["name"] == "first"


async def test_id_of_a_deleted_image_is_never_reused(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    again = await client.post("/v2/images", json={"id": image["id"]})
    assert again.status_code == 409


async def test_malformed_client_id_is_400(client: httpx.AsyncClient) -> None:
    for bad_id in ("not-a-uuid", "12345", "", 42, None):
        response = await client.post("/v2/images", json={"id": bad_id})
        assert response.status_code == 400, (bad_id, response.text)


READ_ONLY_VALUES = {
    "status": "active", "checksum": "0" * 32, "size": 5, "virtual_size": 5,
    "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z",
    "os_hash_algo": "sha512", "os_hash_value": "0" * 128, "self": "/x", "file": "/x",
    "schema": "/x", "direct_url": "file:///etc/passwd", "stores": "file",
}


async def test_read_only_fields_are_refused_on_create(client: httpx.AsyncClient) -> None:
    # Values of the right type: Glance checks the schema first (400), then read-only (403).
    for field, value in READ_ONLY_VALUES.items():
        response = await client.post("/v2/images", json={"name": "ro", field: value})
        assert response.status_code == 403, (field, response.text)
        assert "read-only" in response.text, field
    assert (await client.get("/v2/images")).json()["images"] == []


async def test_reserved_properties_are_refused_on_create(client: httpx.AsyncClient) -> None:
    # Glance reserves the prefix "os_glance" (so "os_glancey" too) and three names.
    for key in ("os_glance_import_task", "os_glance_failed_import", "os_glance",
                "os_glance_x", "os_glancey", "location", "deleted", "deleted_at"):
        response = await client.post("/v2/images", json={"name": "reserved", key: "x"})
        assert response.status_code == 403, (key, response.text)
        assert "reserved" in response.text, key
    assert (await client.get("/v2/images")).json()["images"] == []


async def test_properties_like_but_outside_the_reserved_namespace_are_allowed(
    client: httpx.AsyncClient,
) -> None:
    image = await create_image(client, os_glanc="no", glance_thing="yes", x_os_glance="x")
    assert image["os_glanc"] == "no"
    assert image["glance_thing"] == "yes"
    assert image["x_os_glance"] == "x"


async def test_owner_defaults_to_the_caller_project_and_admin_may_set_it(
    client: httpx.AsyncClient,
) -> None:
    assert (await create_image(client))["owner"] == "admin"
    image = await create_image(client, owner="other-project")
    assert image["owner"] == "other-project"


SCHEMA_CASES: list[tuple[dict[str, object], int]] = [
    ({"name": "x" * 255}, 201),
    ({"name": "x" * 256}, 400),
    ({"name": 5}, 400),
    ({"name": None}, 201),
    ({"visibility": "secret"}, 400),
    ({"visibility": None}, 400),
    ({"protected": "yes"}, 400),
    ({"os_hidden": 1}, 400),
    ({"min_ram": "512"}, 400),
    ({"min_ram": 1.5}, 400),
    ({"min_ram": -1}, 400),
    ({"min_disk": -1}, 400),
    ({"min_disk": 2**31}, 400),
    ({"tags": "a,b"}, 400),
    ({"tags": [1]}, 400),
    ({"tags": ["x" * 256]}, 400),
    ({"disk_format": "floppy"}, 400),
    ({"container_format": "zip"}, 400),
    ({"owner": "x" * 256}, 400),
    ({"custom": 1}, 400),
    ({"custom": {"nested": "x"}}, 400),
    ({"custom": None}, 400),
    ({"custom": ["x"]}, 400),
    ({"kernel_id": "not-a-uuid"}, 400),
    ({"cinder_encryption_key_deletion_policy": "sometimes"}, 400),
]


async def test_create_validates_against_the_image_schema(client: httpx.AsyncClient) -> None:
    created = 0
    for body, status in SCHEMA_CASES:
        response = await client.post("/v2/images", json=body)
        assert response.status_code == status, (body, response.text)
        created += status == 201
    assert len((await client.get("/v2/images")).json()["images"]) == created


async def test_tags_on_create_are_deduplicated(client: httpx.AsyncClient) -> None:
    image = await create_image(client, tags=["a", "b", "a"])
    assert sorted(image["tags"]) == ["a", "b"]


async def test_ami_formats_must_match(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v2/images", json={"disk_format": "ami", "container_format": "bare"}
    )
    assert response.status_code == 400
    image = await create_image(client, disk_format="aki", container_format="aki")
    assert image["disk_format"] == "aki"


async def test_unknown_image_is_404(client: httpx.AsyncClient) -> None:
    for image_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = await client.get(f"/v2/images/{image_id}")
        assert response.status_code == 404
