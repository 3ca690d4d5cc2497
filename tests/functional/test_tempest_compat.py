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
