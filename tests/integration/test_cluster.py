"""Two Glimpse nodes on one PostgreSQL database, as API nodes of a cloud run them.

The nodes are real ``glimpse serve`` processes sharing the database and the image
store directory (an NFS share in a real deployment). Callers authenticate with real
Keystone tokens (scripts/keystone), which matters here: a request one node replays on
another carries the caller's own token.

Two layouts of glance-direct (guide 3.2.2, 4.1):
- each node stages on its own disk and names itself with ``worker_self_reference_url``:
  an import or delete that reaches the other node is replayed on the staging node;
- a staging directory shared by both nodes and no self URLs: any node imports.

And the work a node leaves when it dies: its running import is failed cleanly by the
other node once the lease runs out, and the image can be imported again.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.identity import authtoken_options, issue_token
from tests.live_server import LiveServer, free_port, postgres_database

PATCH = "application/openstack-images-v2.1-json-patch"
MiB = 1024 * 1024
LEASE_SECONDS = 4
QUOTA_MIB = 48  # per project; only the quota test comes near it


class Source(BaseHTTPRequestHandler):
    """web-download source: /fast/<n> sends n bytes at once, /trickle/<n> sends n bytes
    over about a minute (an import that is still running when its node is killed)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        kind, _, size = self.path.strip("/").partition("/")
        total = int(size)
        self.send_response(200)
        self.send_header("Content-Length", str(total))
        self.end_headers()
        sent = 0
        try:
            while sent < total:
                block = min(64 * 1024, total - sent)
                self.wfile.write(_payload(sent, block))
                sent += block
                if kind == "trickle":
                    self.wfile.flush()
                    time.sleep(0.25)
        except OSError:
            pass


_PATTERN = bytes(i % 251 for i in range(64 * 1024 + 251))


def _payload(offset: int, length: int) -> bytes:
    """Deterministic bytes (at most 64 KiB), so a test can recompute what was sent."""
    start = offset % 251
    return _PATTERN[start:start + length]


def _source_bytes(total: int) -> bytes:
    return b"".join(_payload(o, min(64 * 1024, total - o)) for o in range(0, total, 64 * 1024))


@pytest.fixture(scope="module")
def source() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Source)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@dataclass
class Cluster:
    a: LiveServer
    b: LiveServer
    token: str
    other_token: str  # a member of another project

    def client(self, node: LiveServer, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=node.url, timeout=60,
                            headers={"x-auth-token": token or self.token})


def _start_pair(
    root: Path, database: str, identity: dict[str, Any], source: str, *, shared_staging: bool
) -> tuple[LiveServer, LiveServer]:
    images = root / "images"  # the share every node mounts
    nodes = []
    for name in ("a", "b"):
        workdir = root / name
        workdir.mkdir(parents=True)
        port = free_port()
        default = {"enabled_import_methods": "glance-direct,web-download,copy-image",
                   "user_storage_quota": f"{QUOTA_MIB}MB"}
        if shared_staging:
            default["node_staging_uri"] = (root / "staging").as_uri()
        else:
            default["worker_self_reference_url"] = f"http://127.0.0.1:{port}"
        node = LiveServer(
            workdir, database_url=database, auth_strategy="keystone",
            options={
                "DEFAULT": default,
                "glance_store": {"filesystem_store_datadir": str(images)},
                "glimpse": {"node_id": f"node-{name}",
                            "import_lease_seconds": str(LEASE_SECONDS)},
                "import_filtering_opts": {"allowed_hosts": "127.0.0.1",
                                          "allowed_ports": source.rsplit(":", 1)[1]},
                "keystone_authtoken": authtoken_options(identity),
            },
        )
        node.port = port
        nodes.append(node)
    # Started together: both run the migrations on the one database at once.
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda n: n.start(), nodes))
    return nodes[0], nodes[1]


def _cluster(
    identity: dict[str, Any], source: str, root: Path, database: str, *, shared_staging: bool
) -> Iterator[Cluster]:
    a, b = _start_pair(root, database, identity, source, shared_staging=shared_staging)
    try:
        yield Cluster(a, b, issue_token(identity, "glimpse-a-member"),
                      issue_token(identity, "glimpse-b-member"))
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def cluster(
    keystone: dict[str, Any], source: str,
    tmp_path_factory: pytest.TempPathFactory, worker_id: str,
) -> Iterator[Cluster]:
    yield from _cluster(keystone, source, tmp_path_factory.mktemp(f"cluster-{worker_id}"),
                        postgres_database(f"cluster_{worker_id}"), shared_staging=False)


@pytest.fixture(scope="module")
def shared_cluster(
    keystone: dict[str, Any], source: str,
    tmp_path_factory: pytest.TempPathFactory, worker_id: str,
) -> Iterator[Cluster]:
    yield from _cluster(keystone, source,
                        tmp_path_factory.mktemp(f"cluster-shared-{worker_id}"),
                        postgres_database(f"cluster_shared_{worker_id}"), shared_staging=True)


def _create(client: httpx.Client, **body: Any) -> str:
    body = {"name": f"cluster-{uuid.uuid4().hex[:8]}", "disk_format": "raw",
            "container_format": "bare", **body}
    response = client.post("/v2/images", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _stage(client: httpx.Client, image_id: str, data: bytes) -> None:
    response = client.put(f"/v2/images/{image_id}/stage", content=data,
                          headers={"content-type": "application/octet-stream"})
    assert response.status_code == 204, response.text


def _wait_status(client: httpx.Client, image_id: str, wanted: str, timeout: float = 60) -> dict[
    str, Any
]:
    deadline = time.monotonic() + timeout
    image: dict[str, Any] = {}
    while time.monotonic() < deadline:
        image = client.get(f"/v2/images/{image_id}").json()
        if image["status"] == wanted:
            return image
        time.sleep(0.2)
    raise AssertionError(f"image {image_id} stayed {image.get('status')}, wanted {wanted}")


def _staged_files(node: LiveServer) -> list[str]:
    staging = node.data_dir / "staging"
    return sorted(p.name for p in staging.iterdir() if not p.name.startswith(".")) \
        if staging.is_dir() else []


# -- glance-direct with staging on each node --------------------------------------------


def test_stage_on_one_node_import_on_the_other(cluster: Cluster) -> None:
    data = os.urandom(3 * MiB)
    with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
        image_id = _create(a)
        _stage(a, image_id, data)
        assert _staged_files(cluster.a) == [image_id]
        # The stage host is the nodes' business: callers never see it.
        assert "os_glance_stage_host" not in b.get(f"/v2/images/{image_id}").json()

        response = b.post(f"/v2/images/{image_id}/import",
                          json={"method": {"name": "glance-direct"}},
                          headers={"x-openstack-request-id": "req-cluster-import-1"})
        assert response.status_code == 202, response.text
        assert response.headers["x-openstack-request-id"] == "req-cluster-import-1"

        image = _wait_status(b, image_id, "active")
        assert image["checksum"] == hashlib.md5(data).hexdigest()
        assert image["size"] == len(data)
        assert b.get(f"/v2/images/{image_id}/file").content == data
        assert a.get(f"/v2/images/{image_id}/file").content == data
        # The replayed request carried the caller's request id to the node that ran it.
        tasks = b.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        assert [t["request_id"] for t in tasks] == ["req-cluster-import-1"]
    assert image_id not in _staged_files(cluster.a)


def test_replayed_import_keeps_the_callers_identity(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as a, \
            cluster.client(cluster.b, cluster.other_token) as stranger_on_b:
        image_id = _create(a)
        _stage(a, image_id, b"private bytes")
        # Another project's member cannot see the image on either node.
        response = stranger_on_b.post(f"/v2/images/{image_id}/import",
                                      json={"method": {"name": "glance-direct"}})
        assert response.status_code == 404, response.text
        assert a.get(f"/v2/images/{image_id}").json()["status"] == "uploading"
        assert _staged_files(cluster.a).count(image_id) == 1
        assert a.delete(f"/v2/images/{image_id}").status_code == 204


def test_delete_on_the_other_node_removes_the_staged_data(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
        image_id = _create(a)
        _stage(a, image_id, os.urandom(MiB))
        assert image_id in _staged_files(cluster.a)
        assert b.delete(f"/v2/images/{image_id}").status_code == 204
        assert image_id not in _staged_files(cluster.a)
        assert a.get(f"/v2/images/{image_id}").status_code == 404
        assert b.get(f"/v2/images/{image_id}").status_code == 404


def test_concurrent_uploads_through_both_nodes_one_wins(cluster: Cluster) -> None:
    first, second = os.urandom(2 * MiB), os.urandom(2 * MiB)
    with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
        image_id = _create(a)

        def upload(args: tuple[httpx.Client, bytes]) -> int:
            client, data = args
            return client.put(f"/v2/images/{image_id}/file", content=data,
                              headers={"content-type": "application/octet-stream"}).status_code

        with ThreadPoolExecutor(2) as pool:
            codes = list(pool.map(upload, [(a, first), (b, second)]))
        assert sorted(codes) == [204, 409], codes
        winner = first if codes[0] == 204 else second
        image = b.get(f"/v2/images/{image_id}").json()
        assert image["status"] == "active"
        assert image["checksum"] == hashlib.md5(winner).hexdigest()
        assert a.get(f"/v2/images/{image_id}/file").content == winner


def test_concurrent_patches_through_both_nodes_lose_nothing(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
        image_id = _create(a)

        def patch(i: int) -> int:
            client = a if i % 2 else b
            return client.patch(
                f"/v2/images/{image_id}",
                json=[{"op": "add", "path": f"/prop_{i}", "value": str(i)}],
                headers={"content-type": PATCH},
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(patch, range(16)))
        assert codes == [200] * 16
        image = a.get(f"/v2/images/{image_id}").json()
        assert {f"prop_{i}": str(i) for i in range(16)}.items() <= image.items()


def test_concurrent_uploads_through_both_nodes_cannot_pass_the_project_quota(
    cluster: Cluster,
) -> None:
    """Each upload fits the quota alone, not both: counted under one lock in the shared
    database, whichever node takes them; the one refused gives its room back at once,
    so the other finishes."""
    size = 40 * MiB
    with cluster.client(cluster.a, cluster.other_token) as a, \
            cluster.client(cluster.b, cluster.other_token) as b:
        images = [_create(a), _create(b)]

        def upload(args: tuple[httpx.Client, str]) -> int:
            client, image_id = args
            return client.put(f"/v2/images/{image_id}/file", content=os.urandom(size),
                              headers={"content-type": "application/octet-stream"}).status_code

        with ThreadPoolExecutor(2) as pool:
            codes = list(pool.map(upload, [(a, images[0]), (b, images[1])]))
        assert sorted(codes) == [204, 413], codes
        states = [a.get(f"/v2/images/{i}").json()["status"] for i in images]
        assert sorted(states) == ["active", "queued"]
        for image_id in images:
            assert a.delete(f"/v2/images/{image_id}").status_code == 204


# -- glance-direct with a shared staging area ---------------------------------------


def test_shared_staging_any_node_imports(shared_cluster: Cluster) -> None:
    data = os.urandom(2 * MiB)
    with shared_cluster.client(shared_cluster.a) as a, \
            shared_cluster.client(shared_cluster.b) as b:
        image_id = _create(b)
        _stage(b, image_id, data)
        response = a.post(f"/v2/images/{image_id}/import",
                          json={"method": {"name": "glance-direct"}})
        assert response.status_code == 202, response.text
        image = _wait_status(a, image_id, "active")
        assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
        assert b.get(f"/v2/images/{image_id}/file").content == data
    # The node that imported removed the shared staged file.
    staging = shared_cluster.a.workdir.parent / "staging"
    assert [p.name for p in staging.iterdir() if p.name == image_id] == []


# -- a node dies ----------------------------------------------------------------------


def test_staging_node_down_import_is_504_and_delete_still_works(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
        image_id = _create(a)
        _stage(a, image_id, os.urandom(MiB))
        cluster.a.kill()
        try:
            response = b.post(f"/v2/images/{image_id}/import",
                              json={"method": {"name": "glance-direct"}})
            assert response.status_code == 504, response.text
            assert "Stage host" in response.text
            assert b.get(f"/v2/images/{image_id}").json()["status"] == "uploading"
            # Delete falls back to this node: the image goes, the file waits for A.
            assert b.delete(f"/v2/images/{image_id}").status_code == 204
            assert b.get(f"/v2/images/{image_id}").status_code == 404
        finally:
            cluster.a.start()
        # A comes back and reclaims the orphaned staged file.
        deadline = time.monotonic() + 30
        while image_id in _staged_files(cluster.a) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert image_id not in _staged_files(cluster.a)


def test_import_of_a_killed_node_is_failed_by_the_other_and_can_run_again(
    cluster: Cluster, source: str
) -> None:
    size = 4 * MiB
    with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
        image_id = _create(a)
        response = a.post(f"/v2/images/{image_id}/import", json={
            "method": {"name": "web-download", "uri": f"{source}/trickle/{size}"}})
        assert response.status_code == 202, response.text
        _wait_status(a, image_id, "importing")
        tasks = a.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        assert tasks[0]["status"] in ("pending", "processing")
        cluster.a.kill()
        try:
            # B sees A's lease run out and fails the import cleanly.
            image = _wait_status(b, image_id, "queued", timeout=6 * LEASE_SECONDS + 30)
            assert image["size"] is None and image["checksum"] is None
            assert "os_glance_import_task" not in image
            task = b.get(f"/v2/images/{image_id}/tasks").json()["tasks"][0]
            assert task["status"] == "failure"
            assert "interrupted" in task["message"]

            response = b.post(f"/v2/images/{image_id}/import", json={
                "method": {"name": "web-download", "uri": f"{source}/fast/{size}"}})
            assert response.status_code == 202, response.text
            image = _wait_status(b, image_id, "active")
            assert image["checksum"] == hashlib.md5(_source_bytes(size)).hexdigest()
        finally:
            cluster.a.start()
        assert a.get(f"/v2/images/{image_id}").json()["status"] == "active"
