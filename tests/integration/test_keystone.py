"""auth_strategy = keystone against a real Keystone, with real tokens for each role.

scripts/keystone installs Keystone from PyPI (cached), runs it on loopback with SQLite
and fernet tokens and creates two projects, glimpse-a and glimpse-b, each with an
admin, a member and a reader user, and the image service user ``glance``. A real
``glimpse serve`` validates tokens through keystonemiddleware with a
``[keystone_authtoken]`` section as in glance-api.conf, and is registered in the
catalog (a region of its own per server, so parallel workers do not mix) for the
``openstack`` and ``glance`` clients with Keystone password auth.

Keystone starts once (the script reuses a running one) and each xdist worker starts
one Glimpse for the module; tests name their images uniquely and assert only about
them. Without Keystone installable the module skips, unless CI is set: then it fails.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.identity import authtoken_options, issue_token, keystone_script
from tests.live_server import LiveServer, free_port, tool

PATCH = "application/openstack-images-v2.1-json-patch"
CLI_TIMEOUT = 180


@pytest.fixture(scope="module")
def glimpse(
    keystone: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[LiveServer]:
    server = LiveServer(
        tmp_path_factory.mktemp(f"keystone-{worker_id}"),
        auth_strategy="keystone",
        options={"keystone_authtoken": authtoken_options(
            keystone, service_token_roles_required="true")},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def region(glimpse: LiveServer, worker_id: str) -> Iterator[str]:
    """The server in Keystone's catalog (type image), in a region of its own."""
    name = f"glimpse-{worker_id}-{glimpse.port}"
    keystone_script("catalog", glimpse.url, name)
    yield name
    try:
        keystone_script("uncatalog", name)
    except (RuntimeError, subprocess.TimeoutExpired):
        pass


class Caller:
    """One Keystone user's HTTP client for the Glimpse server."""

    def __init__(self, server: LiveServer, keystone: dict[str, Any], user: str) -> None:
        entry = keystone["users"][user]
        self.project_id: str = entry["project_id"]
        self.user_id: str = entry["user_id"]
        self.http = httpx.Client(
            base_url=server.url, timeout=60,
            headers={"x-auth-token": issue_token(keystone, user)},
        )

    def create(self, **body: Any) -> dict[str, Any]:
        body.setdefault("name", f"ks-{uuid.uuid4().hex[:8]}")
        body.setdefault("disk_format", "raw")
        body.setdefault("container_format", "bare")
        response = self.http.post("/v2/images", json=body)
        assert response.status_code == 201, response.text
        image: dict[str, Any] = response.json()
        return image

    def patch(self, image_id: str, ops: list[dict[str, Any]]) -> httpx.Response:
        return self.http.patch(f"/v2/images/{image_id}", json=ops,
                               headers={"content-type": PATCH})

    def listed(self, **params: str) -> list[str]:
        response = self.http.get("/v2/images", params={"limit": "1000", **params})
        assert response.status_code == 200, response.text
        return [image["id"] for image in response.json()["images"]]


@pytest.fixture(scope="module")
def callers(glimpse: LiveServer, keystone: dict[str, Any]) -> dict[str, Caller]:
    """Admin, member and reader of project A; member and reader of project B."""
    users = ["glimpse-a-admin", "glimpse-a-member", "glimpse-a-reader",
             "glimpse-b-member", "glimpse-b-reader"]
    return {user.removeprefix("glimpse-"): Caller(glimpse, keystone, user) for user in users}


# -- authentication -------------------------------------------------------------------


def test_no_token_is_401_with_keystone_challenge(
    glimpse: LiveServer, keystone: dict[str, Any]
) -> None:
    response = httpx.get(f"{glimpse.url}/v2/images", timeout=60)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Keystone uri="{keystone["www_authenticate_uri"]}"'
    )
    # The version document stays public, as in Glance.
    assert httpx.get(f"{glimpse.url}/versions", timeout=60).status_code == 200


def test_bad_and_revoked_tokens_are_401(glimpse: LiveServer, keystone: dict[str, Any]) -> None:
    bad = httpx.get(f"{glimpse.url}/v2/images", headers={"x-auth-token": "not-a-token"},
                    timeout=60)
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"].startswith("Keystone uri=")

    token = issue_token(keystone, "glimpse-a-member")
    revoked = httpx.delete(f"{keystone['auth_url']}/auth/tokens", timeout=60,
                           headers={"x-auth-token": token, "x-subject-token": token})
    assert revoked.status_code == 204, revoked.text
    response = httpx.get(f"{glimpse.url}/v2/images", headers={"x-auth-token": token},
                         timeout=60)
    assert response.status_code == 401


def test_token_scope_sets_the_owner(callers: dict[str, Caller]) -> None:
    member = callers["a-member"]
    image = member.create()
    assert image["owner"] == member.project_id
    # Creating for another project is refused (add_image checks owner = project).
    response = member.http.post("/v2/images", json={
        "name": "other", "owner": callers["b-member"].project_id,
        "disk_format": "raw", "container_format": "bare"})
    assert response.status_code == 403, response.text


# -- reader, member, admin of one project ----------------------------------------------


def test_reader_lists_and_shows_but_cannot_change(callers: dict[str, Caller]) -> None:
    image = callers["a-member"].create()
    reader = callers["a-reader"]
    assert image["id"] in reader.listed()
    assert reader.http.get(f"/v2/images/{image['id']}").status_code == 200

    create = reader.http.post("/v2/images", json={"name": "r", "disk_format": "raw",
                                                  "container_format": "bare"})
    assert create.status_code == 403, create.text
    rename = reader.patch(image["id"], [{"op": "replace", "path": "/name", "value": "x"}])
    assert rename.status_code == 403, rename.text
    upload = reader.http.put(f"/v2/images/{image['id']}/file", content=b"data",
                             headers={"content-type": "application/octet-stream"})
    assert upload.status_code == 403, upload.text
    assert reader.http.put(f"/v2/images/{image['id']}/tags/t").status_code == 403
    assert reader.http.delete(f"/v2/images/{image['id']}").status_code == 403
    # ... and nothing changed.
    shown = reader.http.get(f"/v2/images/{image['id']}").json()
    assert shown["name"] == image["name"] and shown["status"] == "queued"


def test_member_uploads_downloads_and_deletes(callers: dict[str, Caller]) -> None:
    member = callers["a-member"]
    image = member.create()
    upload = member.http.put(f"/v2/images/{image['id']}/file", content=b"x" * 4096,
                             headers={"content-type": "application/octet-stream"})
    assert upload.status_code == 204, upload.text
    assert member.http.get(f"/v2/images/{image['id']}/file").content == b"x" * 4096
    # Readers may not download (download_image needs member), as in Glance.
    assert callers["a-reader"].http.get(f"/v2/images/{image['id']}/file").status_code == 403
    assert member.http.delete(f"/v2/images/{image['id']}").status_code == 204


# -- visibility and sharing across projects ------------------------------------------


def test_private_image_is_invisible_to_other_projects(callers: dict[str, Caller]) -> None:
    image = callers["a-member"].create()
    other = callers["b-member"]
    assert other.http.get(f"/v2/images/{image['id']}").status_code == 404
    assert image["id"] not in other.listed()
    assert other.http.delete(f"/v2/images/{image['id']}").status_code == 404
    # An admin of any project is a cloud admin (context_is_admin = role:admin).
    assert callers["a-admin"].http.get(f"/v2/images/{image['id']}").status_code == 200
    b_image = other.create()
    assert callers["a-admin"].http.get(f"/v2/images/{b_image['id']}").status_code == 200
    assert callers["a-member"].http.get(f"/v2/images/{b_image['id']}").status_code == 404


def test_sharing_and_membership(callers: dict[str, Caller]) -> None:
    owner, b_member, b_reader = callers["a-member"], callers["b-member"], callers["b-reader"]
    b_project = b_member.project_id
    image = owner.create(visibility="shared")
    assert b_member.http.get(f"/v2/images/{image['id']}").status_code == 404

    # Only the owner's members add members; a reader of the owner project may not.
    denied = callers["a-reader"].http.post(f"/v2/images/{image['id']}/members",
                                           json={"member": b_project})
    assert denied.status_code == 403, denied.text
    added = owner.http.post(f"/v2/images/{image['id']}/members", json={"member": b_project})
    assert added.status_code == 200, added.text
    assert added.json()["status"] == "pending"

    # Pending: B can see the image but it is not in B's default list.
    assert b_member.http.get(f"/v2/images/{image['id']}").status_code == 200
    assert image["id"] not in b_member.listed()
    assert image["id"] in b_member.listed(member_status="pending")

    # B's reader may not accept for the project; B's member may.
    path = f"/v2/images/{image['id']}/members/{b_project}"
    assert b_reader.http.put(path, json={"status": "accepted"}).status_code == 403
    accepted = b_member.http.put(path, json={"status": "accepted"})
    assert accepted.status_code == 200, accepted.text
    assert image["id"] in b_member.listed()
    assert image["id"] in b_reader.listed()
    # A member consumes; it does not own: no changes, no members of its own.
    change = b_member.patch(image["id"], [{"op": "replace", "path": "/name", "value": "b"}])
    assert change.status_code == 403, change.text
    grab = b_member.http.post(f"/v2/images/{image['id']}/members",
                              json={"member": callers["a-admin"].project_id})
    assert grab.status_code == 403, grab.text

    # The owner sees the membership; removing it makes the image invisible to B again.
    members = owner.http.get(f"/v2/images/{image['id']}/members").json()["members"]
    assert [(m["member_id"], m["status"]) for m in members] == [(b_project, "accepted")]
    assert owner.http.delete(path).status_code == 204
    assert b_member.http.get(f"/v2/images/{image['id']}").status_code == 404


def test_only_admin_publicizes(callers: dict[str, Caller]) -> None:
    member, admin, other = callers["a-member"], callers["a-admin"], callers["b-member"]
    image = member.create()
    public = [{"op": "replace", "path": "/visibility", "value": "public"}]
    assert member.patch(image["id"], public).status_code == 403
    created = member.http.post("/v2/images", json={
        "name": "pub", "visibility": "public", "disk_format": "raw", "container_format": "bare"})
    assert created.status_code == 403, created.text
    assert other.http.get(f"/v2/images/{image['id']}").status_code == 404

    response = admin.patch(image["id"], public)
    assert response.status_code == 200, response.text
    assert response.json()["visibility"] == "public"
    assert other.http.get(f"/v2/images/{image['id']}").status_code == 200
    assert image["id"] in other.listed(visibility="public")
    # Public images stay the owner's to change: B may see but not modify.
    rename = other.patch(image["id"], [{"op": "replace", "path": "/name", "value": "b"}])
    assert rename.status_code == 403


def test_member_may_make_community(callers: dict[str, Caller]) -> None:
    member, other = callers["a-member"], callers["b-member"]
    image = member.create()
    response = member.patch(image["id"], [
        {"op": "replace", "path": "/visibility", "value": "community"}])
    assert response.status_code == 200, response.text
    assert other.http.get(f"/v2/images/{image['id']}").status_code == 200
    assert image["id"] in other.listed(visibility="community")
    assert image["id"] not in other.listed()  # community images are listed only on request


# -- metadefs --------------------------------------------------------------------------


def test_metadefs_read_for_all_write_for_admin(callers: dict[str, Caller]) -> None:
    listed = callers["a-reader"].http.get("/v2/metadefs/namespaces")
    assert listed.status_code == 200, listed.text
    assert "namespaces" in listed.json()
    name = f"KS::Test{uuid.uuid4().hex[:8]}"
    body = {"namespace": name, "visibility": "public", "protected": False}
    denied = callers["a-member"].http.post("/v2/metadefs/namespaces", json=body)
    assert denied.status_code == 403, denied.text
    created = callers["a-admin"].http.post("/v2/metadefs/namespaces", json=body)
    assert created.status_code == 201, created.text
    assert callers["b-reader"].http.get(f"/v2/metadefs/namespaces/{name}").status_code == 200
    gone = callers["a-admin"].http.delete(f"/v2/metadefs/namespaces/{name}")
    assert gone.status_code == 204, gone.text


# -- the real clients with Keystone password auth --------------------------------------


def _cli_env(keystone: dict[str, Any], region: str, user: str, home: Path) -> dict[str, str]:
    entry = keystone["users"][user]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(
        HOME=str(home),
        OS_AUTH_URL=keystone["auth_url"],
        OS_IDENTITY_API_VERSION="3",
        OS_USERNAME=entry["username"],
        OS_PASSWORD=entry["password"],
        OS_PROJECT_NAME=entry["project"],
        OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default",
        OS_REGION_NAME=region,
        OS_INTERFACE="public",
    )
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True,
                            timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (
        f"$ {' '.join(args)}\n-> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_openstack_and_glance_clients_with_password_auth(
    region: str, keystone: dict[str, Any], callers: dict[str, Caller], tmp_path: Path
) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    name = f"ks-cli-{uuid.uuid4().hex[:8]}"
    member = _cli_env(keystone, region, "glimpse-a-member", tmp_path)
    created = json.loads(_run([
        tool("openstack"), "image", "create", "--disk-format", "raw",
        "--container-format", "bare", "--file", str(disk), name, "-f", "json",
    ], member).stdout)
    assert created["status"] == "active" and created["owner"] == keystone["projects"]["glimpse-a"]

    listed = json.loads(_run([tool("openstack"), "image", "list", "-f", "json"], member).stdout)
    assert name in [row["Name"] for row in listed]

    reader = _cli_env(keystone, region, "glimpse-a-reader", tmp_path)
    out = _run([tool("glance"), "image-list"], reader).stdout
    assert created["id"] in out and name in out

    # Project B's member does not see it through the clients either.
    other = _cli_env(keystone, region, "glimpse-b-member", tmp_path)
    out = _run([tool("glance"), "image-list"], other).stdout
    assert created["id"] not in out
    assert callers["b-member"].http.get(f"/v2/images/{created['id']}").status_code == 404


# -- what the adapter makes of real tokens ------------------------------------------


def _password_token(keystone: dict[str, Any], user: dict[str, Any], scope: dict[str, Any]) -> str:
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user["username"], "domain": {"id": "default"},
            "password": user["password"]}}},
        "scope": scope,
    }}
    response = httpx.post(f"{keystone['auth_url']}/auth/tokens", json=body, timeout=60)
    assert response.status_code == 201, response.text
    return response.headers["x-subject-token"]


async def test_context_from_real_tokens(
    glimpse: LiveServer, keystone: dict[str, Any]
) -> None:
    # The adapter in-process, configured by the very file the live server reads.
    from glimpse.auth.keystone import KeystoneAuth

    auth = KeystoneAuth([str(glimpse.config_file)])
    member = keystone["users"]["glimpse-a-member"]
    token = issue_token(keystone, "glimpse-a-member")
    ctx = await auth.authenticate({"x-auth-token": token}, "req-1")
    assert (ctx.user_id, ctx.project_id) == (member["user_id"], member["project_id"])
    assert set(ctx.roles) == {"member", "reader"}  # reader is implied by member
    assert ctx.system_scope is None and ctx.service_roles == () and not ctx.is_admin
    assert ctx.auth_token == token

    # A service token (the image service user's, role service) rides along.
    service = keystone["service"]
    service_token = _password_token(keystone, service,
                                    {"project": {"id": service["project_id"]}})
    ctx = await auth.authenticate(
        {"x-auth-token": token, "x-service-token": service_token}, "req-2")
    assert ctx.project_id == member["project_id"] and "service" in ctx.service_roles

    # A system-scoped admin token: no project, system scope "all".
    system = _password_token(keystone, keystone["admin"], {"system": {"all": True}})
    ctx = await auth.authenticate({"x-auth-token": system}, "req-3")
    assert ctx.system_scope == "all" and ctx.project_id is None
    assert ctx.user_id == keystone["admin"]["user_id"] and "admin" in ctx.roles


def _memcached_binary() -> str | None:
    found = shutil.which("memcached")
    if found or not os.environ.get("CI"):
        return found
    # CI machines start fresh: install Debian's package, as scripts/postgres does PostgreSQL.
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "memcached"]):
        subprocess.run(args, env=env, capture_output=True, timeout=600, check=False)
    return shutil.which("memcached")


@pytest.fixture
def memcached() -> Iterator[str]:
    """A memcached of the test's own on loopback (Debian's memcached package)."""
    binary = _memcached_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("memcached could not be installed (apt-get install memcached)")
        pytest.skip("memcached is not installed (apt-get install memcached)")
    port = free_port()
    args = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _cached_items(server: str) -> int:
    host, port = server.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += s.recv(65536)
    stats = dict(line.split(" ")[1:3] for line in data.decode().splitlines()
                 if line.startswith("STAT "))
    return int(stats["curr_items"])


async def test_tokens_are_cached_in_memcached(
    glimpse: LiveServer, keystone: dict[str, Any], memcached: str, tmp_path: Path
) -> None:
    from glimpse.auth.keystone import KeystoneAuth

    # A second file adds to the server's [keystone_authtoken], as --config-file does.
    extra = tmp_path / "memcache.conf"
    extra.write_text(f"[keystone_authtoken]\nmemcached_servers = {memcached}\n")
    auth = KeystoneAuth([str(glimpse.config_file), str(extra)])
    assert _cached_items(memcached) == 0
    token = issue_token(keystone, "glimpse-b-reader")
    ctx = await auth.authenticate({"x-auth-token": token}, "req-1")
    assert ctx.project_id == keystone["users"]["glimpse-b-reader"]["project_id"]
    assert _cached_items(memcached) >= 1
    again = await auth.authenticate({"x-auth-token": token}, "req-2")
    assert again == dataclasses.replace(ctx, request_id="req-2")
