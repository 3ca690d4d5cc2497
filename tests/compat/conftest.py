"""Fixtures of the compat tier: live servers, the real clients, image files.

Servers are session-scoped (one per backend leg and auth mode per xdist worker): tests
share them, so each test names its images uniquely and asserts only about its own.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import struct
import subprocess
import threading
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.live_server import BACKENDS, LiveServer, database_for, free_port, tool

pytestmark = pytest.mark.compat

CLI_TIMEOUT = 120


@pytest.fixture(scope="session")
def worker(request: pytest.FixtureRequest) -> str:
    return str(getattr(request.config, "workerinput", {}).get("workerid", "main"))


@pytest.fixture(scope="session", params=BACKENDS)
def server_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _serve(
    tmp_path_factory: pytest.TempPathFactory, backend: str, name: str, **kwargs: object
) -> Iterator[LiveServer]:
    database_url = database_for(backend, name)
    server = LiveServer(
        tmp_path_factory.mktemp(f"{name}-{backend}"), database_url=database_url,
        **kwargs,  # type: ignore[arg-type]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def noauth_server(
    tmp_path_factory: pytest.TempPathFactory, server_backend: str, worker: str
) -> Iterator[LiveServer]:
    """The embedded default: noauth, every caller is admin of project "admin"."""
    yield from _serve(tmp_path_factory, server_backend, f"glimpse_compat_{worker}_noauth")


@pytest.fixture
def api(noauth_server: LiveServer) -> Iterator[Api]:
    """HTTP access to the noauth server, for set-up and checks around a command."""
    client = Api(noauth_server)
    yield client
    client.close()


@pytest.fixture(scope="session")
def tokens_server(
    tmp_path_factory: pytest.TempPathFactory, server_backend: str, worker: str
) -> Iterator[LiveServer]:
    """auth_strategy = tokens: several projects (tests/live_server.py TOKENS)."""
    yield from _serve(
        tmp_path_factory, server_backend, f"glimpse_compat_{worker}_tokens",
        auth_strategy="tokens",
    )


# -- running the real command-line clients ---------------------------------------------


@dataclass
class Result:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n-> exit {self.returncode}\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )

    def json(self) -> object:
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"not JSON output:\n{self.describe()}") from None


_cli_home: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME of the session's own for the clients: glanceclient caches the image schema
    in ~/.glanceclient once for every endpoint and never refreshes it, so a schema from
    another server (or an older Glimpse) would shape the options it accepts."""
    home = tmp_path_factory.mktemp("home")
    _cli_home[:] = [home]
    return home


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any OS_* cloud settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    if _cli_home:
        env["HOME"] = str(_cli_home[0])
    env.update(extra)
    return env


def run(args: Sequence[str], env: dict[str, str], *, ok: bool = True, cwd: Path | None = None,
        timeout: float = CLI_TIMEOUT) -> Result:
    # stdin is a terminal, as for a user at a shell: glance and openstack read image
    # data from stdin when it is not a tty.
    master, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            list(args), env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd,
            stdin=terminal,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"$ {' '.join(args)}\ntimed out after {timeout}s\nstdout:\n{exc.stdout!r}\n"
            f"stderr:\n{exc.stderr!r}"
        ) from None
    finally:
        os.close(master)
        os.close(terminal)
    result = Result(list(args), proc.returncode, proc.stdout, proc.stderr)
    if ok:
        assert result.returncode == 0, f"command failed:\n{result.describe()}"
    else:
        assert result.returncode != 0, f"command should have failed:\n{result.describe()}"
    return result


class Glance:
    """The ``glance`` CLI as users type it: OS_IMAGE_URL + OS_AUTH_TOKEN, no Keystone."""

    def __init__(self, server: LiveServer, token: str = "x") -> None:
        self.server = server
        self.env = clean_env(OS_IMAGE_URL=server.url, OS_AUTH_TOKEN=token)

    def __call__(self, *args: str, ok: bool = True, cwd: Path | None = None) -> Result:
        return run([tool("glance"), *args], self.env, ok=ok, cwd=cwd)

    def show(self, image_id: str) -> dict[str, str]:
        return parse_table(self("image-show", image_id).stdout)


class OpenStack:
    """``openstack`` (python-openstackclient) without Keystone.

    noauth: ``--os-auth-type none --os-endpoint URL`` (the endpoint serves every
    service; the SDK discovers /v2 from the version document). Token auth: the
    ``admin_token`` plugin with the token; it does no discovery, so the endpoint names
    /v2. Commands that look projects up in Keystone get ``identity`` (a stand-in).
    """

    def __init__(self, server: LiveServer, token: str | None = None,
                 identity: str | None = None) -> None:
        if token is None:
            self.auth = ["--os-auth-type", "none", "--os-endpoint", server.url]
        else:
            self.auth = ["--os-auth-type", "admin_token", "--os-endpoint", f"{server.url}/v2",
                         "--os-token", token]
        extra = {}
        if identity is not None:
            self.auth += ["--os-identity-api-version", "3"]
            extra["OS_IDENTITY_ENDPOINT_OVERRIDE"] = identity
        self.env = clean_env(**extra)

    def __call__(self, *args: str, ok: bool = True, cwd: Path | None = None) -> Result:
        return run([tool("openstack"), *self.auth, *args], self.env, ok=ok, cwd=cwd)

    def json(self, *args: str) -> dict[str, object]:
        value = self(*args, "-f", "json").json()
        assert isinstance(value, dict), value
        return value


class Api:
    """Direct HTTP calls for setting up and checking state around a client command
    (much cheaper than another CLI start-up); not the thing under test."""

    def __init__(self, server: LiveServer, token: str = "x") -> None:
        self.http = httpx.Client(base_url=server.url, headers={"x-auth-token": token},
                                 timeout=30)

    def create(self, data: bytes | None = None, **body: object) -> dict[str, Any]:
        body.setdefault("name", unique("api"))
        body.setdefault("disk_format", "raw")
        body.setdefault("container_format", "bare")
        response = self.http.post("/v2/images", json=body)
        assert response.status_code == 201, response.text
        image: dict[str, Any] = response.json()
        if data is not None:
            put = self.http.put(f"/v2/images/{image['id']}/file", content=data,
                                headers={"content-type": "application/octet-stream"})
            assert put.status_code == 204, put.text
            image = self.get(image["id"])
        return image

    def get(self, image_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v2/images/{image_id}")
        assert response.status_code == 200, response.text
        image: dict[str, Any] = response.json()
        return image

    def close(self) -> None:
        self.http.close()

    def exists(self, image_id: str) -> bool:
        response = self.http.get(f"/v2/images/{image_id}")
        assert response.status_code in (200, 404), response.text
        return response.status_code == 200


def corrupt_stored_data(server: LiveServer, image_id: str) -> None:
    """Flip the first bytes of an image's stored file (same size), as a bad disk would."""
    stored = [p for p in server.data_dir.rglob(image_id) if p.is_file()]
    assert len(stored) == 1, f"expected one data file for {image_id}: {stored}"
    with stored[0].open("r+b") as f:
        head = f.read(16)
        f.seek(0)
        f.write(bytes(b ^ 0xFF for b in head))


def parse_table(text: str) -> dict[str, str]:
    """The Property/Value table glanceclient prints, as a dict (wrapped values joined)."""
    rows: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|", 1)]
        if len(cells) != 2 or cells[0] == "Property":
            continue
        if cells[0]:
            key = cells[0]
            rows[key] = cells[1]
        elif key:
            rows[key] += cells[1]
    return rows


def table_ids(text: str) -> list[str]:
    """The first column of a list table (the IDs), header excluded."""
    ids = []
    for line in text.splitlines():
        if line.startswith("|"):
            first = line.strip("|").split("|")[0].strip()
            if first and first not in ("ID", "Image ID"):
                ids.append(first)
    return ids


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- image files ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


@pytest.fixture(scope="session")
def raw_file(files: Path) -> Path:
    """Raw disk bytes: a GPT disk whose data is not all zeros."""
    path = files / "disk.raw"
    path.write_bytes(gpt_disk(2 * 1024 * 1024, fill=os.urandom(64 * 1024)))
    return path


@pytest.fixture(scope="session")
def qcow2_file(files: Path) -> Path:
    """A real qcow2 made by qemu-img (scripts/install-qemu installs it)."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-img is missing: scripts/install-qemu must run before the tests")
        pytest.skip("qemu-img is missing (run scripts/install-qemu)")
    path = files / "disk.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(path), "64M"], check=True,
                   timeout=60)
    return path


@pytest.fixture(scope="session")
def uefi_file(files: Path) -> Path:
    """Guide 2.3's <base_image_file>: a raw disk with a GPT and an EFI system partition."""
    path = files / "uefi.raw"
    path.write_bytes(gpt_disk(4 * 1024 * 1024))
    return path


_EFI_SYSTEM = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")


def gpt_disk(size: int, fill: bytes = b"") -> bytes:
    """A raw disk image of ``size`` bytes: protective MBR, GPT with one EFI system
    partition, backup GPT; ``fill`` is written at the start of the partition."""
    sectors = size // 512
    first, last = 2048, sectors - 34
    entry = (
        _EFI_SYSTEM.bytes_le + uuid.uuid4().bytes_le
        + struct.pack("<QQQ", first, last, 0)
        + "EFI system partition".encode("utf-16-le").ljust(72, b"\0")
    )
    entries = entry.ljust(128 * 128, b"\0")
    disk_guid = uuid.uuid4().bytes_le

    def header(current: int, backup: int, entries_lba: int) -> bytes:
        fields = struct.pack(
            "<8sIIIIQQQQ16sQIII", b"EFI PART", 0x00010000, 92, 0, 0, current, backup,
            34, sectors - 34, disk_guid, entries_lba, 128, 128, zlib.crc32(entries),
        )
        crc = zlib.crc32(fields)
        return (fields[:16] + struct.pack("<I", crc) + fields[20:]).ljust(512, b"\0")

    mbr = bytearray(512)
    mbr[446:462] = struct.pack(
        "<B3BB3BII", 0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1, min(sectors - 1, 0xFFFFFFFF)
    )
    mbr[510:512] = b"\x55\xaa"
    disk = bytearray(size)
    disk[0:512] = mbr
    disk[512:1024] = header(1, sectors - 1, 2)
    disk[1024:1024 + len(entries)] = entries
    disk[first * 512:first * 512 + len(fill)] = fill
    backup_entries = (sectors - 33) * 512
    disk[backup_entries:backup_entries + len(entries)] = entries
    disk[(sectors - 1) * 512:] = header(sectors - 1, 1, sectors - 33)
    return bytes(disk)


# -- a stand-in for Keystone's project look-up ------------------------------------------


class _IdentityHandler(BaseHTTPRequestHandler):
    """Answers what openstackclient asks Keystone before image member calls: the v3
    version document and ``GET /v3/projects/<id>`` (every project exists)."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        base = f"http://{self.headers['host']}"
        if path == "/v3":
            body = {"version": {"id": "v3.14", "status": "stable",
                                "links": [{"rel": "self", "href": f"{base}/v3/"}]}}
            status = 200
        elif path.startswith("/v3/projects/"):
            project = path.rsplit("/", 1)[1]
            body = {"project": {"id": project, "name": project, "domain_id": "default",
                                "enabled": True}}
            status = 200
        else:
            body, status = {"error": {"code": 404, "message": "not found"}}, 404
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def identity_stub() -> Iterator[str]:
    """URL of the project look-up stand-in (``OS_IDENTITY_ENDPOINT_OVERRIDE``)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _IdentityHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v3"
    finally:
        httpd.shutdown()
        httpd.server_close()
