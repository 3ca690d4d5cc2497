"""Behaviours Tempest's image API tests check, where Glance's answer is not the obvious one."""

from __future__ import annotations

import httpx


async def test_empty_image_id_is_404_not_a_redirect(client: httpx.AsyncClient) -> None:
    # Glance's router has no trailing-slash redirects (Tempest: get/delete_image_null_id).
    for method in ("GET", "DELETE", "PATCH"):
        response = await client.request(method, "/v2/images/")
        assert response.status_code == 404, (method, response.status_code)


async def test_legacy_import_task_with_a_filtered_uri_is_400(client: httpx.AsyncClient) -> None:
    # Current Glance filters import_from before creating the task (Tempest:
    # test_task_create_fake_image_location); other legacy tasks are still refused.
    body = {"type": "import", "input": {
        "import_from": "http://127.0.0.1:1/dummy-img-file.qcow2",  # port not allowed
        "import_from_format": "qcow2",
        "image_properties": {"disk_format": "qcow2", "container_format": "bare"}}}
    response = await client.post("/v2/tasks", json=body)
    assert response.status_code == 400, response.text
    assert "not allowed" in response.text
    missing = await client.post("/v2/tasks", json={"type": "import", "input": {}})
    assert missing.status_code == 400
    other = await client.post("/v2/tasks", json={"type": "location_import", "input": {}})
    assert other.status_code == 403


async def test_image_tasks_carry_request_and_user_ids(client: httpx.AsyncClient) -> None:
    # Glance lists an image's tasks as its database rows (Tempest compares request_id
    # with the import call's x-openstack-request-id).
    created = await client.post("/v2/images", json={
        "name": "t", "disk_format": "raw", "container_format": "bare"})
    image_id = created.json()["id"]
    staged = await client.put(f"/v2/images/{image_id}/stage", content=b"x" * 1024,
                              headers={"content-type": "application/octet-stream"})
    assert staged.status_code == 204
    started = await client.post(f"/v2/images/{image_id}/import",
                                json={"method": {"name": "glance-direct"}})
    assert started.status_code == 202
    tasks = (await client.get(f"/v2/images/{image_id}/tasks")).json()["tasks"]
    assert tasks[0]["request_id"] == started.headers["x-openstack-request-id"]
    assert "user_id" in tasks[0] and tasks[0]["deleted"] is False
    assert tasks[0]["input"]["import_req"]["method"]["name"] == "glance-direct"
