"""The Keystone limit source against a stand-in Keystone (a few stdlib HTTP handlers).

keystoneauth runs for real (password auth, the token's catalog, version discovery);
the stand-in answers the calls oslo.limit makes, and records them. The real Keystone
is in tests/integration/test_keystone_limits.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from glimpse.config import load_settings
from glimpse.domain.errors import IdentityUnavailable
from glimpse.quota.keystone import EndpointChoice, KeystoneLimits

MIB = 1024 * 1024
IMAGE_SERVICE = "svc-image"


class FakeKeystone:
    def __init__(self) -> None:
        self.registered = {"image_size_total": 100, "image_count_total": 5,
                           "image_count_uploading": -1}
        self.project = {"p1": {"image_count_total": 50, "image_size_total": 2}}
        self.calls: list[tuple[str, dict[str, list[str]]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def catalog(self) -> list[dict[str, Any]]:
        return [
            {"id": "svc-identity", "type": "identity", "name": "keystone", "endpoints": [
                {"id": "e-id", "interface": "public", "region_id": "RegionOne",
                 "url": self.url + "/v3"}]},
            {"id": IMAGE_SERVICE, "type": "image", "name": "glance", "endpoints": [
                {"id": f"e-{region}-{interface}", "interface": interface,
                 "region_id": region, "url": "http://glimpse.example"}
                for region in ("RegionOne", "RegionTwo")
                for interface in ("public", "internal")]},
        ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        keystone = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: object, headers: dict[str, str] | None = None
                      ) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                token = {"methods": ["password"], "expires_at": "2999-01-01T00:00:00Z",
                         "user": {"id": "glance", "name": "glance", "domain": {"id": "default"}},
                         "system": {"all": True}, "roles": [{"id": "r", "name": "reader"}],
                         "catalog": keystone.catalog()}
                self.reply(201, {"token": token}, {"X-Subject-Token": "tok"})

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                keystone.calls.append((url.path, query))
                version = {"id": "v3.14", "status": "stable",
                           "links": [{"rel": "self", "href": keystone.url + "/v3/"}]}
                if url.path in ("/v3", "/v3/"):
                    self.reply(200, {"version": version})
                elif url.path == "/":
                    self.reply(300, {"versions": {"values": [version]}})
                elif url.path == "/v3/registered_limits":
                    self.reply(200, {"registered_limits": [
                        {"resource_name": name, "default_limit": value,
                         "service_id": IMAGE_SERVICE}
                        for name, value in keystone.registered.items()
                        if query.get("service_id") == [IMAGE_SERVICE]
                    ]})
                elif url.path == "/v3/limits":
                    project = query["project_id"][0]
                    self.reply(200, {"limits": [
                        {"resource_name": name, "resource_limit": value, "project_id": project}
                        for name, value in keystone.project.get(project, {}).items()
                    ]})
                else:
                    self.reply(404, {"error": {"code": 404}})

        return Handler


@pytest.fixture
def keystone() -> Iterator[FakeKeystone]:
    fake = FakeKeystone()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()  # serve_forever polls every 0.5 s
    fake.server.server_close()


def config(tmp_path: Path, auth_url: str, **extra: str) -> str:
    options = {"auth_type": "password", "auth_url": auth_url, "username": "glance",
               "password": "secret", "user_domain_id": "default", "system_scope": "all",
               **extra}
    path = tmp_path / "glimpse-api.conf"
    path.write_text("[DEFAULT]\nuse_keystone_limits = true\n[oslo_limit]\n"
                    + "".join(f"{k} = {v}\n" for k, v in options.items()))
    return str(path)


async def test_project_limits_win_over_registered_ones_sizes_in_bytes(
    keystone: FakeKeystone, tmp_path: Path
) -> None:
    source = KeystoneLimits(
        [config(tmp_path, keystone.url + "/v3")],
        EndpointChoice(service_type="image", region_name="RegionTwo"),
        cache_seconds=0,
    )
    assert await source.limits("p1") == {
        "image_size_total": 2 * MIB,  # the project's, in bytes
        "image_count_total": 50,
        "image_count_uploading": -1,  # unlimited stays unlimited
        "image_stage_total": 0,  # registered nowhere: nothing allowed, as oslo.limit
    }
    assert (await source.limits("p2"))["image_size_total"] == 100 * MIB
    assert (await source.limits(None))["image_count_total"] == 5
    # The image endpoint was found in the token's catalog: its service and region
    # filter every read.
    reads = [query for path, query in keystone.calls if path.endswith("limits")]
    assert all(q["service_id"] == [IMAGE_SERVICE] and q["region_id"] == ["RegionTwo"]
               for q in reads)


async def test_limits_are_cached_for_the_configured_time(
    keystone: FakeKeystone, tmp_path: Path
) -> None:
    source = KeystoneLimits([config(tmp_path, keystone.url + "/v3")],
                            EndpointChoice(endpoint_id="e-RegionOne-public"),
                            cache_seconds=300)
    await source.limits("p1")
    keystone.project["p1"]["image_count_total"] = 7
    assert (await source.limits("p1"))["image_count_total"] == 50
    assert len([p for p, _ in keystone.calls if p == "/v3/limits"]) == 1
    fresh = KeystoneLimits([config(tmp_path, keystone.url + "/v3")],
                           EndpointChoice(endpoint_id="e-RegionOne-public"), cache_seconds=0)
    assert (await fresh.limits("p1"))["image_count_total"] == 7


async def test_keystone_unreachable_is_503_never_unlimited(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = KeystoneLimits([config(tmp_path, f"http://127.0.0.1:{port}/v3")],
                            EndpointChoice(service_type="image"))
    with pytest.raises(IdentityUnavailable):
        await source.limits("p1")


async def test_an_endpoint_that_matches_nothing_is_503(
    keystone: FakeKeystone, tmp_path: Path
) -> None:
    # Two regions have a public image endpoint: the choice is ambiguous.
    source = KeystoneLimits([config(tmp_path, keystone.url + "/v3")],
                            EndpointChoice(service_type="image"))
    with pytest.raises(IdentityUnavailable):
        await source.limits("p1")


def test_credentials_are_required(tmp_path: Path) -> None:
    path = tmp_path / "glimpse-api.conf"
    path.write_text("[oslo_limit]\nendpoint_id = e1\n")
    with pytest.raises(ValueError, match=r"\[oslo_limit\]"):
        KeystoneLimits([str(path)], EndpointChoice(endpoint_id="e1"))


def test_use_keystone_limits_needs_an_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "glimpse-api.conf"
    path.write_text("[DEFAULT]\nuse_keystone_limits = true\n")
    with pytest.raises(ValueError, match="endpoint_id"):
        load_settings([str(path)])
    path.write_text("[DEFAULT]\nuse_keystone_limits = true\n[oslo_limit]\n"
                    "endpoint_service_type = image\nendpoint_region_name = RegionOne\n"
                    "endpoint_interface = internalURL\n[glimpse]\n"
                    "keystone_limits_cache_time = 5\n")
    unified = load_settings([str(path)]).unified_limits
    assert unified.enabled and unified.endpoint_service_type == "image"
    assert (unified.endpoint_region_name, unified.endpoint_interface) == (
        "RegionOne", "internalURL")
    assert unified.cache_time == 5
