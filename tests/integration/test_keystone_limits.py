"""use_keystone_limits against a real Keystone (issue #8).

scripts/keystone runs Keystone; each xdist worker starts one ``glimpse serve`` with
Keystone tokens and ``use_keystone_limits``, registers it in the catalog in a region of
its own, and ``scripts/keystone limits`` registers the image service's limits there
(with glimpse-b's override) and gives the service user the system reader role it reads
them with, as Glance's install guide asks. The server finds its endpoint by
``endpoint_service_type`` and ``endpoint_region_name``, and asks Keystone at every check
(``keystone_limits_cache_time = 0``), so a limit changed with ``scripts/keystone limits``
applies to the next request.

Tests change project glimpse-a's limits in that region only, and remove the project's
images when they end.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.identity import authtoken_options, keystone_script
from tests.integration.test_keystone import Caller, _cli_env, _run
from tests.live_server import LiveServer, tool

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def region(worker_id: str) -> str:
    return f"glimpse-limits-{worker_id}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def glimpse(
    keystone: dict[str, Any], region: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    service = keystone["service"]
    server = LiveServer(
        tmp_path_factory.mktemp("keystone-limits"),
        auth_strategy="keystone",
        options={
            "DEFAULT": {"use_keystone_limits": "true"},
            "glimpse": {"keystone_limits_cache_time": "0"},
            "keystone_authtoken": authtoken_options(keystone),
            # As Glance's install guide writes it (endpoint found by type and region).
            "oslo_limit": {
                "auth_url": keystone["www_authenticate_uri"],
                "auth_type": "password",
                "user_domain_id": "default",
                "username": service["username"],
                "password": service["password"],
                "system_scope": "all",
                "endpoint_service_type": "image",
                "endpoint_region_name": region,
            },
        },
    )
    server.start()
    try:
        keystone_script("catalog", server.url, region)
        registered = json.loads(keystone_script("limits", region))
        assert registered["registered"] == {
            "image_size_total": 1000, "image_stage_total": 1000,
            "image_count_total": 100, "image_count_uploading": 10,
        }
        yield server
    finally:
        server.stop()
        try:
            keystone_script("uncatalog", region)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass


@pytest.fixture(scope="module")
def users(glimpse: LiveServer, keystone: dict[str, Any]) -> dict[str, Caller]:
    return {name: Caller(glimpse, keystone, f"glimpse-{name}")
            for name in ("a-member", "b-member")}


@pytest.fixture
def alice(users: dict[str, Caller], region: str) -> Iterator[Caller]:
    """Project glimpse-a's member; the project's images are removed afterwards."""
    yield users["a-member"]
    for image_id in users["a-member"].listed():
        users["a-member"].http.delete(f"/v2/images/{image_id}")


def set_limits(region: str, **limits: int) -> None:
    """Project glimpse-a's limits in this server's region (sizes in MiB)."""
    keystone_script("limits", region, *[f"glimpse-a:{k}={v}" for k, v in limits.items()])


def roomy(**limits: int) -> dict[str, int]:
    return {"image_size_total": 100, "image_stage_total": 100, "image_count_total": 100,
            "image_count_uploading": 10, **limits}


def put(caller: Caller, image_id: str, data: bytes, what: str = "file") -> httpx.Response:
    """Sent in 64 KiB chunks without a length: the server counts the bytes as they come."""
    def body() -> Iterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    return caller.http.put(f"/v2/images/{image_id}/{what}", content=body(),
                           headers={"content-type": "application/octet-stream"})


def usage(caller: Caller) -> dict[str, dict[str, int]]:
    response = caller.http.get("/v2/info/usage")
    assert response.status_code == 200, response.text
    result: dict[str, dict[str, int]] = response.json()["usage"]
    return result


def store_sizes(server: LiveServer) -> list[int]:
    root = server.data_dir / "images"
    return sorted(p.stat().st_size for p in root.rglob("*")
                  if p.is_file() and p.name != ".glimpse-store")


def test_registered_limits_and_a_project_override(users: dict[str, Caller]) -> None:
    """glimpse-b has the override scripts/keystone makes; the rest is registered."""
    assert usage(users["b-member"]) == {
        "image_size_total": {"limit": 1000, "usage": 0},
        "image_stage_total": {"limit": 1000, "usage": 0},
        "image_count_total": {"limit": 50, "usage": 0},
        "image_count_uploading": {"limit": 10, "usage": 0},
    }


def test_create_beyond_image_count_total_is_413(alice: Caller, region: str) -> None:
    set_limits(region, **roomy(image_count_total=2))
    alice.create()
    alice.create()
    response = alice.http.post("/v2/images", json={"name": "one-too-many"})
    assert response.status_code == 413, response.text
    assert "Resource image_count_total is over limit of 2" in response.text
    assert usage(alice)["image_count_total"] == {"limit": 2, "usage": 2}
    # Raised in Keystone: the next request sees it.
    set_limits(region, image_count_total=3)
    alice.create()


def test_size_limit_as_tempest_unified_limits_scenario_expects(
    alice: Caller, region: str, glimpse: LiveServer
) -> None:
    """tempest.scenario.test_unified_limits.ImageQuotaTest.test_image_size_quota: at
    1 MiB, a second 1 MiB upload still succeeds (it started within the limit), a third
    is refused (413, OverLimit) and leaves the image queued with nothing stored."""
    set_limits(region, **roomy(image_size_total=1))
    first, second, third = alice.create(), alice.create(), alice.create()
    assert put(alice, first["id"], b"x" * MIB).status_code == 204
    assert put(alice, second["id"], b"y" * MIB).status_code == 204
    response = put(alice, third["id"], b"z" * MIB)
    assert response.status_code == 413, response.text
    assert "Resource image_size_total is over limit of 1" in response.text
    assert alice.http.get(f"/v2/images/{third['id']}").json()["status"] == "queued"
    assert store_sizes(glimpse) == [MIB, MIB]
    assert usage(alice)["image_size_total"] == {"limit": 1, "usage": 2}
    # Raised in Keystone, the limit lets the third one in.
    set_limits(region, **roomy(image_size_total=3))
    assert put(alice, third["id"], b"z" * MIB).status_code == 204


def test_concurrent_uploads_cannot_overshoot(
    alice: Caller, region: str, glimpse: LiveServer
) -> None:
    """Five uploads of a bit more than 1 MiB into 3 MiB: two fit, and at most one more
    (the last one running) may finish past the limit; Glance would let all five in."""
    set_limits(region, **roomy(image_size_total=3))
    images = [alice.create() for _ in range(5)]
    data = b"z" * (MIB + 4096)
    with ThreadPoolExecutor(5) as pool:
        codes = list(pool.map(lambda i: put(alice, i["id"], data).status_code, images))
    assert set(codes) <= {204, 413} and 1 <= codes.count(204) <= 3, codes
    assert store_sizes(glimpse) == [len(data)] * codes.count(204)
    for image, code in zip(images, codes, strict=True):
        status = alice.http.get(f"/v2/images/{image['id']}").json()["status"]
        assert status == ("active" if code == 204 else "queued")
    assert usage(alice)["image_size_total"]["usage"] == codes.count(204)  # MiB, rounded down


def test_stage_quota_and_usage_through_an_import(alice: Caller, region: str) -> None:
    """As tempest's test_image_stage_quota: at 1 MiB a second 1 MiB stage still
    succeeds, a third is refused; importing frees the staging quota."""
    set_limits(region, **roomy(image_stage_total=1))
    staged, second, other = alice.create(), alice.create(), alice.create()
    assert put(alice, staged["id"], b"s" * MIB, what="stage").status_code == 204
    assert put(alice, second["id"], b"s" * MIB, what="stage").status_code == 204
    response = put(alice, other["id"], b"t", what="stage")
    assert response.status_code == 413, response.text
    assert "Resource image_stage_total is over limit of 1" in response.text
    assert alice.http.get(f"/v2/images/{other['id']}").json()["status"] == "queued"
    assert usage(alice) == {
        "image_size_total": {"limit": 100, "usage": 0},
        "image_stage_total": {"limit": 1, "usage": 2},
        "image_count_total": {"limit": 100, "usage": 3},
        "image_count_uploading": {"limit": 10, "usage": 2},
    }
    for image in (staged, second):
        response = alice.http.post(f"/v2/images/{image['id']}/import",
                                   json={"method": {"name": "glance-direct"}})
        assert response.status_code == 202, response.text
    for _ in range(300):
        states = {alice.http.get(f"/v2/images/{i['id']}").json()["status"]
                  for i in (staged, second)}
        if states == {"active"}:
            break
        time.sleep(0.1)
    assert usage(alice)["image_stage_total"]["usage"] == 0
    assert usage(alice)["image_size_total"]["usage"] == 2
    assert put(alice, other["id"], b"t" * MIB, what="stage").status_code == 204


def test_glance_usage_command(
    alice: Caller, region: str, keystone: dict[str, Any], tmp_path: Path
) -> None:
    """python-glanceclient's ``glance usage`` reads GET /v2/info/usage."""
    set_limits(region, **roomy(image_count_total=7))
    alice.create()
    out = _run([tool("glance"), "usage"],
               _cli_env(keystone, region, "glimpse-a-member", tmp_path)).stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]]
            for line in out.splitlines() if line.startswith("| image_")}
    assert rows["image_count_total"] == ["7", "1"]
    assert rows["image_size_total"] == ["100", "0"]
