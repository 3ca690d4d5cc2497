"""The image cache through real clients against a live ``glimpse serve`` (guide 1.6).

``glance cache-list|cache-queue|cache-delete|cache-clear|cache-clean|cache-prune`` (the
v2 cache API, 2.14-2.18) and the guide's ``glance-cache-manage`` commands as ``glimpse
cache ... --host``, against a server started on a free loopback port with
``image_cache_dir`` set and stopped by its PID; ``glimpse cache prefetch|prune|clean``
run beside it on the same node's configuration. Tests in this module share one server
(per backend leg and xdist worker) and run in order on it.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.compat.conftest import Api, Glance, Result, clean_env, run
from tests.live_server import LiveServer, database_for, tool

pytestmark = pytest.mark.compat

DATA = os.urandom(3 * 1024 * 1024 + 5)
UNKNOWN = "3f1e2d3c-0000-4000-8000-00000000dead"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, server_backend: str, worker: str
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp(f"cache-{server_backend}")
    live = LiveServer(
        workdir,
        database_url=database_for(server_backend, f"glimpse_compat_{worker}_cache"),
        options={"DEFAULT": {"image_cache_dir": str(workdir / "cache"),
                             "cache_prefetcher_interval": "3600"}},
    )
    live.start()
    try:
        yield live
    finally:
        live.stop()
        assert live.process is not None and live.process.returncode is not None


@pytest.fixture
def glance(server: LiveServer) -> Glance:
    return Glance(server)


@pytest.fixture
def api(server: LiveServer) -> Api:
    return Api(server)


def glimpse(*args: str, ok: bool = True) -> Result:
    return run([tool("glimpse"), *args], clean_env(), ok=ok)


def manage(server: LiveServer, *args: str, ok: bool = True) -> Result:
    """``glimpse cache <command> --host <address>:<port>`` as the guide's procedure."""
    return glimpse("cache", *args, "--host", f"127.0.0.1:{server.port}", ok=ok)


def state(api: Api) -> dict[str, list[object]]:
    response = api.http.get("/v2/cache")
    assert response.status_code == 200, response.text
    result: dict[str, list[object]] = response.json()
    return result


def cached(api: Api) -> set[str]:
    return {str(e["image_id"]) for e in state(api)["cached_images"]}  # type: ignore[index]


def wait_cached(api: Api, image_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if image_id in cached(api):
            return
        time.sleep(0.05)
    raise AssertionError(f"image {image_id} was not cached: {state(api)}")


def image_ids(text: str) -> list[str]:
    """The image ids in a ``glimpse cache`` table, in order."""
    return re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)


def store_file(server: LiveServer, image_id: str) -> Path:
    return server.data_dir / "images" / image_id


def cache_list_rows(glance: Glance) -> dict[str, list[str]]:
    """``glance cache-list`` rows by image id: [state, accessed, modified, size, hits]."""
    rows = {}
    for line in glance("cache-list").stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("ID", ""):
            rows[cells[0]] = cells[1:]
    return rows


def test_glance_cache_queue_list_delete_clear(
    glance: Glance, api: Api, server: LiveServer, tmp_path: Path
) -> None:
    image = api.create(DATA)
    result = glance("cache-queue", image["id"])
    assert result.stderr.strip() == "", result.describe()
    wait_cached(api, image["id"])
    row = cache_list_rows(glance)[image["id"]]
    assert row[0] == "cached" and row[3] == str(len(DATA)) and row[4] == "0"

    # Served from the cache while the store has lost the file.
    store_file(server, image["id"]).unlink()
    out = tmp_path / "downloaded"
    glance("image-download", "--file", str(out), image["id"])
    assert hashlib.md5(out.read_bytes()).hexdigest() == hashlib.md5(DATA).hexdigest()
    assert cache_list_rows(glance)[image["id"]][4] == "1"

    result = glance("cache-delete", image["id"])
    assert result.stderr.strip() == "", result.describe()
    assert image["id"] not in cache_list_rows(glance)
    glance("image-download", "--file", str(out), image["id"], ok=False)  # the store: gone


def test_glance_cache_clear_targets_clean_and_prune(
    glance: Glance, api: Api, server: LiveServer
) -> None:
    kept = api.create(DATA)
    glance("cache-queue", kept["id"])
    wait_cached(api, kept["id"])
    stuck = api.create(DATA)
    store_file(server, stuck["id"]).unlink()  # its fetch fails: it stays queued
    glance("cache-queue", stuck["id"])
    rows = cache_list_rows(glance)
    assert rows[stuck["id"]][0] == "queued" and rows[kept["id"]][0] == "cached"

    glance("cache-clear", "--target", "queue")
    assert state(api)["queued_images"] == [] and kept["id"] in cached(api)
    glance("cache-clear", "--target", "cache")
    assert cached(api) == set()
    api.http.put(f"/v2/cache/{stuck['id']}")
    api.http.put(f"/v2/cache/{kept['id']}")
    wait_cached(api, kept["id"])
    glance("cache-clear")
    assert state(api) == {"cached_images": [], "queued_images": []}

    assert glance("cache-clean").stderr.strip() == ""
    assert glance("cache-prune").stdout.strip() == "Pruned 0 file(s), 0 byte(s)."


def test_glance_cache_queue_refusals(glance: Glance, api: Api) -> None:
    result = glance("cache-queue", UNKNOWN)
    assert "404" in result.stderr and f"No image found with ID {UNKNOWN}" in result.stderr
    empty = api.create()
    result = glance("cache-queue", empty["id"])
    assert "400" in result.stderr
    assert "Only images with status active can be targeted for queueing" in result.stderr
    assert empty["id"] not in cache_list_rows(glance)


def test_the_guide_procedure_with_glimpse_cache(api: Api, server: LiveServer) -> None:
    # 1.6.3 step 1: queue an image; the node fetches it (at once, and on its interval).
    image = api.create(DATA)
    result = manage(server, "queue-image", image["id"])
    assert f"Image {image['id']} queued for caching" in result.stdout
    wait_cached(api, image["id"])
    # Step 2: list the cached images.
    listed = manage(server, "list-cached").stdout
    assert image["id"] in listed and f"{len(DATA):,}" in listed

    # 1.6.4: the other options.
    stuck = api.create(DATA)
    store_file(server, stuck["id"]).unlink()
    manage(server, "queue-image", stuck["id"])
    assert image_ids(manage(server, "list-queued").stdout) == [stuck["id"]]
    manage(server, "delete-queued-image", stuck["id"])
    assert state(api)["queued_images"] == []
    failed = manage(server, "delete-queued-image", stuck["id"], ok=False)
    assert f"Image {stuck['id']} is not queued" in failed.stderr

    manage(server, "delete-cached-image", image["id"])
    assert image["id"] not in cached(api)
    failed = manage(server, "delete-cached-image", image["id"], ok=False)
    assert f"Image {image['id']} is not cached" in failed.stderr

    api.http.put(f"/v2/cache/{image['id']}")
    api.http.put(f"/v2/cache/{stuck['id']}")
    wait_cached(api, image["id"])
    assert "Removed 1 cached image(s)" in manage(server, "delete-all-cached-images").stdout
    assert "Removed 1 image(s) from the caching queue" in manage(
        server, "delete-all-queued-images").stdout
    assert state(api) == {"cached_images": [], "queued_images": []}

    failed = manage(server, "queue-image", UNKNOWN, ok=False)
    assert f"404 Not Found: No image found with ID {UNKNOWN}" in failed.stderr


def test_the_cache_jobs_run_once_beside_the_server(api: Api, server: LiveServer) -> None:
    image = api.create(DATA)
    path = store_file(server, image["id"])
    path.rename(path.with_name("away"))
    api.http.put(f"/v2/cache/{image['id']}")  # the node's own fetch fails
    local = ["--config-file", str(server.config_file), "--data-dir", str(server.data_dir)]
    result = glimpse("cache", "prefetch", *local)
    assert image["id"] in result.stdout and "failed, still queued" in result.stdout
    assert state(api)["queued_images"] == [image["id"]]

    path.with_name("away").rename(path)
    result = glimpse("cache", "prefetch", *local)
    assert image["id"] in result.stdout and "cached" in result.stdout
    assert state(api)["queued_images"] == [] and image["id"] in cached(api)  # the node sees it
    response = api.http.get(f"/v2/images/{image['id']}/file")
    assert response.content == DATA

    assert "Removed 0 stalled and 0 invalid entries." in glimpse("cache", "clean", *local).stdout
    assert "Pruned 0 file(s)" in glimpse("cache", "prune", *local).stdout
    api.http.delete("/v2/cache")


def test_a_node_without_a_cache_has_no_cache_api(noauth_server: LiveServer) -> None:
    result = Glance(noauth_server)("cache-list", ok=False)
    assert "does not support image caching API" in result.stderr
    failed = glimpse("cache", "list-cached", "--host", noauth_server.url, ok=False)
    assert "Caching via API is not supported at this site." in failed.stderr
    assert httpx.get(f"{noauth_server.url}/v2/cache").status_code == 404
