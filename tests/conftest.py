"""Shared fixtures: a node on a real database (SQLite, and PostgreSQL when enabled).

Functional tests drive the ASGI app in-process through httpx; every test gets a fresh
data directory and an empty database. The PostgreSQL leg runs when
GLIMPSE_TEST_POSTGRES=1 (scripts/test sets it); under CI it must not be skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from glimpse.bootstrap import Node, build_node
from glimpse.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
BACKENDS = ["sqlite", "postgres"]


def _postgres_enabled() -> bool:
    return os.environ.get("GLIMPSE_TEST_POSTGRES") == "1"


@pytest.fixture(scope="session")
def postgres_url(worker_id: str) -> Iterator[str]:
    """One database per xdist worker on the cluster scripts/postgres runs.

    The name carries the process id: several test runs on one machine share the
    cluster, and ``createdb`` of a name another run uses would drop its database.
    """
    if not _postgres_enabled():
        if os.environ.get("CI"):
            pytest.fail("CI runs must include PostgreSQL: GLIMPSE_TEST_POSTGRES is not 1")
        pytest.skip("PostgreSQL leg disabled (set GLIMPSE_TEST_POSTGRES=1 or use scripts/test)")
    worker = re.sub(r"[^a-z0-9_]", "_", worker_id.lower())
    name = f"glimpse_test_{worker}_{os.getpid()}"
    script = str(REPO / "scripts/postgres")
    subprocess.run([script, "start"], check=True, capture_output=True)
    url = subprocess.run(
        [script, "createdb", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    yield url
    subprocess.run([script, "dropdb", name], check=False, capture_output=True)


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


async def _empty_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'glimpse.db'}"
    url = str(request.getfixturevalue("postgres_url"))
    await _empty_postgres(url)
    return url


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    """Settings for a test node; keyword arguments override any field."""

    def make(config: str | None = None, **overrides: Any) -> Settings:
        files = []
        if config is not None:
            path = tmp_path / "glimpse-api.conf"
            path.write_text(config)
            files.append(str(path))
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "database_url": database_url}
        values.update(overrides)
        return load_settings(files, values)

    return make


@pytest.fixture
async def make_node() -> AsyncIterator[Callable[[Settings], Any]]:
    nodes: list[Node] = []

    async def make(settings: Settings) -> Node:
        node = build_node(settings)
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.stop()


@pytest.fixture
async def node(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> Node:
    result: Node = await make_node(make_settings())
    return result


def client_for(node: Node, token: str | None = None) -> httpx.AsyncClient:
    headers = {"x-auth-token": token} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app),
        base_url="http://glimpse.test",
        headers=headers,
    )


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(node) as c:
        yield c


TOKENS = {
    "admin-token": {"user_id": "admin-user", "project_id": "admin-project", "roles": ["admin"]},
    "alice-token": {"user_id": "alice", "project_id": "project-a", "roles": ["member"]},
    "reader-a-token": {"user_id": "rita", "project_id": "project-a", "roles": ["reader"]},
    "bob-token": {"user_id": "bob", "project_id": "project-b", "roles": ["member"]},
    "carol-token": {"user_id": "carol", "project_id": "project-c", "roles": ["member"]},
}


@pytest.fixture
async def multi_tenant(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """A node with auth_strategy=tokens; call the fixture with a token to get a client."""
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"tokens": TOKENS}))
    node = await make_node(make_settings(auth_strategy="tokens", token_file=token_file))
    clients: list[httpx.AsyncClient] = []

    def for_token(token: str) -> httpx.AsyncClient:
        c = client_for(node, token)
        clients.append(c)
        return c

    yield for_token
    for c in clients:
        await c.aclose()


async def create_image(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("disk_format", "raw")
    body.setdefault("container_format", "bare")
    response = await client.post("/v2/images", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def upload(client: httpx.AsyncClient, image_id: str, data: bytes) -> httpx.Response:
    return await client.put(
        f"/v2/images/{image_id}/file",
        content=data,
        headers={"content-type": "application/octet-stream"},
    )


async def patch(
    client: httpx.AsyncClient, image_id: str, ops: list[dict[str, Any]]
) -> httpx.Response:
    return await client.patch(
        f"/v2/images/{image_id}", json=ops, headers={"content-type": PATCH_TYPE}
    )
