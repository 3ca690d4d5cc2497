"""Import end to end on a node: web-download from a local HTTP server (with the guide's
URI filtering) and glance-direct with qemu-img conversion (guide 1.4, 3.4)."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import client_for, create_image

from glimpse.config import Settings

IMPORT_CONFIG = """
[import_filtering_opts]
allowed_hosts = 127.0.0.1
allowed_ports = {port}

[image_import_opts]
image_import_plugins = {plugins}
"""


@pytest.fixture
def web_root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/redirect-out"):
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.2:1/secret")
                self.end_headers()
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, server.server_address[1]
    server.shutdown()
    server.server_close()


async def _node(make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
                port: int, plugins: str = "[]") -> Any:
    return await make_node(make_settings(IMPORT_CONFIG.format(port=port, plugins=plugins)))


async def test_web_download_imports_the_remote_bytes(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    web_root: tuple[Path, int],
) -> None:
    root, port = web_root
    data = os.urandom(3 * 1024 * 1024)
    (root / "disk.raw").write_bytes(data)
    node = await _node(make_node, make_settings, port)
    async with client_for(node) as client:
        image = await create_image(client, name="from-web")
        response = await client.post(
            f"/v2/images/{image['id']}/import",
            json={"method": {"name": "web-download",
                             "uri": f"http://127.0.0.1:{port}/disk.raw"}},
        )
        assert response.status_code == 202, response.text
        await node.runner.wait_idle()
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["status"] == "active", shown
        assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
        assert (await client.get(f"/v2/images/{image['id']}/file")).content == data


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://127.0.0.1:{port}/redirect-out", "127.0.0.2"),
        ("ftp://127.0.0.1:{port}/disk.raw", "scheme"),
        ("http://127.0.0.1:{port}/missing", "404"),
        ("http://2130706433:{port}/disk.raw", "2130706433"),
    ],
)
async def test_web_download_refusals_fail_the_task_cleanly(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    web_root: tuple[Path, int], uri: str, reason: str, tmp_path: Path,
) -> None:
    root, port = web_root
    (root / "disk.raw").write_bytes(b"x" * 1000)
    node = await _node(make_node, make_settings, port)
    async with client_for(node) as client:
        image = await create_image(client)
        response = await client.post(
            f"/v2/images/{image['id']}/import",
            json={"method": {"name": "web-download", "uri": uri.format(port=port)}},
        )
        assert response.status_code == 202
        await node.runner.wait_idle()
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["status"] == "queued"
        assert "os_glance_import_task" not in shown
        task = (await client.get(f"/v2/images/{image['id']}/tasks")).json()["tasks"][0]
        assert task["status"] == "failure"
        assert reason in task["message"], task["message"]
    staging = tmp_path / "data" / "staging"
    assert [p.name for p in staging.iterdir()] == [".glimpse-store"]


needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-img") is None and not os.environ.get("CI"),
    reason="qemu-img is not installed (scripts/install-qemu)",
)


@needs_qemu
async def test_glance_direct_with_conversion_stores_raw(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    web_root: tuple[Path, int], tmp_path: Path,
) -> None:
    raw = tmp_path / "src.raw"
    raw.write_bytes(os.urandom(1024 * 1024) + bytes(3 * 1024 * 1024))
    qcow2 = tmp_path / "src.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
                   check=True)
    expected = tmp_path / "expected.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(qcow2),
                    str(expected)], check=True)
    node = await _node(make_node, make_settings, web_root[1], "['image_conversion']")
    async with client_for(node) as client:
        image = await create_image(client, disk_format="qcow2", name="convert-me")
        staged = await client.put(
            f"/v2/images/{image['id']}/stage", content=qcow2.read_bytes(),
            headers={"content-type": "application/octet-stream"},
        )
        assert staged.status_code == 204, staged.text
        response = await client.post(f"/v2/images/{image['id']}/import",
                                     json={"method": {"name": "glance-direct"}})
        assert response.status_code == 202
        await node.runner.wait_idle()
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["status"] == "active", shown
        assert shown["disk_format"] == "raw"
        assert shown["virtual_size"] == 4 * 1024 * 1024
        body = (await client.get(f"/v2/images/{image['id']}/file")).content
        assert hashlib.sha256(body).digest() == hashlib.sha256(expected.read_bytes()).digest()
        assert shown["os_hash_value"] == hashlib.sha512(body).hexdigest()
