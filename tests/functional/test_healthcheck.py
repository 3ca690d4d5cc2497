"""/healthcheck as load balancers and operators use it: plain OK, a drain file, and
the detailed JSON view."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import client_for, create_image, upload

from glimpse.config import Settings

JSON = {"accept": "application/json"}


async def test_disable_file_drains_the_node_and_removing_it_restores(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    flag = tmp_path / "drain"
    node = await make_node(make_settings(f"[healthcheck]\ndisable_by_file_path = {flag}\n"))
    async with client_for(node) as client:
        assert (await client.get("/healthcheck")).text == "OK"
        flag.write_text("maintenance")
        response = await client.get("/healthcheck")
        assert (response.status_code, response.text) == (503, "DISABLED BY FILE")
        body = (await client.get("/healthcheck", headers=JSON)).json()
        assert body["status"] == "FAILED" and body["reason"] == "DISABLED BY FILE"
        assert body["database"] == "OK"
        # Draining only tells the load balancer: requests that still arrive are served.
        image = await create_image(client)
        assert (await upload(client, image["id"], b"served while draining")).status_code == 204
        flag.unlink()
        assert (await client.get("/healthcheck")).status_code == 200


async def test_detail_is_shown_only_when_the_operator_enables_it(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    plain = await make_node(make_settings())
    async with client_for(plain) as client:
        body = (await client.get("/healthcheck", headers=JSON)).json()
        assert "detail" not in body
        assert body["stores"] == {"file": {"readable": True, "writable": True}}

    cache_dir = tmp_path / "cache"
    detailed = await make_node(make_settings(
        f"[DEFAULT]\nimage_cache_dir = {cache_dir}\nimage_cache_max_size = 1000000\n"
        "[healthcheck]\ndetailed = true\n"
    ))
    async with client_for(detailed) as client:
        response = await client.get("/healthcheck", headers=JSON)
        assert response.status_code == 200
        detail = response.json()["detail"]
        assert detail["database_ms"] >= 0
        assert detail["staging"]["free_bytes"] > 0
        assert detail["staging"]["total_bytes"] >= detail["staging"]["free_bytes"]
        assert detail["cache"]["path"] == str(cache_dir)
        assert detail["cache"]["max_size"] == 1000000
        assert detail["cache"]["cached_images"] == 0
        # Plain callers still get the plain answer.
        assert (await client.get("/healthcheck")).text == "OK"
