"""glance-download: import an image from another region's image service, found in the
caller's Keystone catalog, with the caller's token (two real Glimpse servers, each in
a region of its own in the real Keystone of scripts/keystone)."""

from __future__ import annotations

import hashlib
import os
import pty
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.identity import authtoken_options, issue_token, keystone_script
from tests.integration.test_keystone import _cli_env
from tests.live_server import LiveServer, tool

METHODS = "glance-direct,web-download,copy-image,glance-download"


@dataclass
class Regions:
    local: httpx.Client
    remote: httpx.Client
    local_region: str
    remote_region: str
    identity: dict[str, Any]


def _server(workdir: Path, identity: dict[str, Any], **default: str) -> LiveServer:
    workdir.mkdir(parents=True)
    return LiveServer(workdir, auth_strategy="keystone", options={
        "DEFAULT": default, "keystone_authtoken": authtoken_options(identity)})


@pytest.fixture(scope="module")
def regions(
    keystone: dict[str, Any], tmp_path_factory: pytest.TempPathFactory,
    worker_id: str,
) -> Iterator[Regions]:
    root = tmp_path_factory.mktemp(f"download-{worker_id}")
    local = _server(root / "local", keystone, enabled_import_methods=METHODS).start()
    remote = _server(root / "remote", keystone).start()
    names = [f"dl-local-{worker_id}-{local.port}", f"dl-remote-{worker_id}-{remote.port}"]
    keystone_script("catalog", local.url, names[0])
    keystone_script("catalog", remote.url, names[1])
    # Tokens are checked (and their catalog read) when used: issue after cataloguing.
    token = issue_token(keystone, "glimpse-a-member")
    headers = {"x-auth-token": token}
    try:
        with httpx.Client(base_url=local.url, headers=headers, timeout=60) as lc, \
                httpx.Client(base_url=remote.url, headers=headers, timeout=60) as rc:
            yield Regions(lc, rc, names[0], names[1], keystone)
    finally:
        for name in names:
            try:
                keystone_script("uncatalog", name)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        local.stop()
        remote.stop()


def _create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    body = {"name": f"dl-{uuid.uuid4().hex[:8]}", "disk_format": "raw",
            "container_format": "bare", **body}
    response = client.post("/v2/images", json=body)
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()
    return image


def _import(regions: Regions, image_id: str, **method: str) -> httpx.Response:
    return regions.local.post(f"/v2/images/{image_id}/import", json={
        "method": {"name": "glance-download", **method}})


def _settled(client: httpx.Client, image_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The image and its import task once the task has finished."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        if tasks and tasks[0]["status"] in ("success", "failure"):
            return client.get(f"/v2/images/{image_id}").json(), tasks[0]
        time.sleep(0.2)
    raise AssertionError(f"the import of {image_id} did not finish")


def test_copies_data_formats_and_selected_properties(regions: Regions) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = _create(regions.remote, disk_format="raw", hw_disk_bus="scsi",
                     os_distro="ubuntu", trait_no_copy="x", owner_note="stays remote")
    response = regions.remote.put(f"/v2/images/{source['id']}/file", content=data,
                                  headers={"content-type": "application/octet-stream"})
    assert response.status_code == 204, response.text

    target = _create(regions.local, disk_format="qcow2")
    response = _import(regions, target["id"], glance_region=regions.remote_region,
                       glance_image_id=source["id"])
    assert response.status_code == 202, response.text
    image, task = _settled(regions.local, target["id"])
    assert task["status"] == "success", task["message"]
    assert image["status"] == "active"
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert image["size"] == len(data)
    # Formats come from the remote image; only the configured property prefixes do.
    assert (image["disk_format"], image["container_format"]) == ("raw", "bare")
    assert image["hw_disk_bus"] == "scsi" and image["os_distro"] == "ubuntu"
    assert "owner_note" not in image and "trait_no_copy" not in image
    assert regions.local.get(f"/v2/images/{target['id']}/file").content == data
    assert task["input"]["import_req"]["method"]["glance_region"] == regions.remote_region


def test_remote_image_must_be_active(regions: Regions) -> None:
    source = _create(regions.remote)  # queued: no data
    target = _create(regions.local)
    response = _import(regions, target["id"], glance_region=regions.remote_region,
                       glance_image_id=source["id"])
    assert response.status_code == 202, response.text
    image, task = _settled(regions.local, target["id"])
    assert task["status"] == "failure"
    assert "should be active" in task["message"]
    assert image["status"] == "queued" and image["size"] is None


def test_unknown_region_and_unknown_image_fail_the_task_cleanly(regions: Regions) -> None:
    for method, expected in [
        ({"glance_region": "no-such-region", "glance_image_id": str(uuid.uuid4())},
         "No image service endpoint"),
        ({"glance_region": regions.remote_region, "glance_image_id": str(uuid.uuid4())},
         "answered 404"),
    ]:
        target = _create(regions.local)
        assert _import(regions, target["id"], **method).status_code == 202
        image, task = _settled(regions.local, target["id"])
        assert task["status"] == "failure"
        assert expected in task["message"]
        assert image["status"] == "queued"
        # The caller's token never lands in the task.
        assert regions.local.headers["x-auth-token"] not in str(task)


def test_bad_requests_are_400_before_anything_starts(regions: Regions) -> None:
    target = _create(regions.local)
    for method, message in [
        ({"glance_image_id": str(uuid.uuid4())}, "glance_region"),
        ({"glance_region": regions.remote_region}, "glance_image_id"),
        ({"glance_region": regions.remote_region, "glance_image_id": "not-a-uuid"},
         "does not look like a UUID"),
    ]:
        response = _import(regions, target["id"], **method)
        assert response.status_code == 400, response.text
        assert message in response.text
    assert regions.local.get(f"/v2/images/{target['id']}/tasks").json()["tasks"] == []
    # Not enabled on the remote server (Glance's default list leaves it out).
    other = _create(regions.remote)
    response = regions.remote.post(f"/v2/images/{other['id']}/import", json={
        "method": {"name": "glance-download", "glance_region": "x",
                   "glance_image_id": str(uuid.uuid4())}})
    assert response.status_code == 400


def test_glance_cli_image_create_via_import_from_another_region(
    regions: Regions, tmp_path: Path
) -> None:
    data = os.urandom(1024 * 1024)
    source = _create(regions.remote, os_distro="fedora")
    assert regions.remote.put(f"/v2/images/{source['id']}/file", content=data, headers={
        "content-type": "application/octet-stream"}).status_code == 204
    env = _cli_env(regions.identity, regions.local_region, "glimpse-a-member", tmp_path)
    # stdin is a terminal, as at a shell: glanceclient takes any other stdin as data.
    master, terminal = pty.openpty()
    try:
        result = subprocess.run([
            tool("glance"), "--os-image-api-version", "2", "image-create-via-import",
            "--container-format", "bare", "--disk-format", "raw", "--name", "from-remote",
            "--import-method", "glance-download", "--remote-region", regions.remote_region,
            "--remote-image-id", source["id"],
        ], env=env, stdin=terminal, capture_output=True, text=True, timeout=180)
    finally:
        os.close(master)
        os.close(terminal)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    image_id = next(line.split("|")[2].strip() for line in out.splitlines()
                    if line.startswith("| id "))
    image, task = _settled(regions.local, image_id)
    assert task["status"] == "success", task["message"]
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_distro"] == "fedora"
