"""PUT/GET /v2/images/{id}/file: streamed upload and download, ranges, failures, races."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings
from glimpse.services import writers

DATA = bytes(range(256)) * 1024  # 256 KiB, every byte value


def store_files(node: Node) -> list[Path]:
    """Every file in the node's store directories, temporary ones included."""
    return sorted(
        p for driver in node.file_drivers for d in driver.datadirs if d.is_dir()
        for p in d.iterdir() if p.name != ".glimpse-store"
    )


async def status_of(client: httpx.AsyncClient, image_id: str) -> str:
    response = await client.get(f"/v2/images/{image_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def until_saving(client: httpx.AsyncClient, image_id: str) -> None:
    """Wait (up to 5 s, for loaded machines) until an upload has claimed the image."""
    for _ in range(500):
        if await status_of(client, image_id) == "saving":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the upload never started saving")


async def chunks_of(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


async def put_stream(
    client: httpx.AsyncClient, image_id: str, body: AsyncIterator[bytes],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.put(
        f"/v2/images/{image_id}/file", content=body,
        headers={"content-type": "application/octet-stream", **(headers or {})},
    )


# -- upload and download ---------------------------------------------------------


async def test_chunked_upload_then_download_returns_the_same_bytes(
    client: httpx.AsyncClient, node: Node
) -> None:
    image = await create_image(client)
    response = await put_stream(client, image["id"], chunks_of(DATA, 1000))
    assert response.status_code == 204, response.text
    assert response.content == b""
    download = await client.get(f"/v2/images/{image['id']}/file")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-length"] == str(len(DATA))
    assert download.headers["content-md5"] == hashlib.md5(DATA).hexdigest()
    assert download.content == DATA
    files = store_files(node)
    assert [p.read_bytes() for p in files] == [DATA]


async def test_hashing_algorithm_is_configurable(
    make_settings: Callable[..., Settings], make_node: Callable[[Settings], Any]
) -> None:
    node: Node = await make_node(make_settings("[DEFAULT]\nhashing_algorithm = sha256\n"))
    async with client_for(node) as client:
        image = await create_image(client)
        assert (await upload(client, image["id"], DATA)).status_code == 204
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
    assert shown["os_hash_algo"] == "sha256"
    assert shown["os_hash_value"] == hashlib.sha256(DATA).hexdigest()
    assert shown["checksum"] == hashlib.md5(DATA).hexdigest()


async def test_empty_upload_makes_an_active_empty_image(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    assert (await upload(client, image["id"], b"")).status_code == 204
    shown = (await client.get(f"/v2/images/{image['id']}")).json()
    assert (shown["status"], shown["size"]) == ("active", 0)
    assert shown["checksum"] == hashlib.md5(b"").hexdigest()
    download = await client.get(f"/v2/images/{image['id']}/file")
    assert download.status_code == 200 and download.content == b""


async def test_image_without_data_downloads_as_204(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    response = await client.get(f"/v2/images/{image['id']}/file")
    assert response.status_code == 204
    assert response.content == b""
    assert "content-md5" not in response.headers


async def test_upload_to_an_active_image_is_409_and_keeps_the_data(
    client: httpx.AsyncClient, node: Node
) -> None:
    image = await create_image(client)
    assert (await upload(client, image["id"], DATA)).status_code == 204
    response = await upload(client, image["id"], b"other bytes")
    assert response.status_code == 409, response.text
    assert (await client.get(f"/v2/images/{image['id']}/file")).content == DATA
    assert [p.read_bytes() for p in store_files(node)] == [DATA]


async def test_upload_needs_formats_set(client: httpx.AsyncClient, node: Node) -> None:
    response = await client.post("/v2/images", json={"name": "no formats"})
    image = response.json()
    response = await upload(client, image["id"], DATA)
    assert response.status_code == 400, response.text
    assert await status_of(client, image["id"]) == "queued"
    assert store_files(node) == []


async def test_upload_content_type_must_be_octet_stream(
    client: httpx.AsyncClient, node: Node
) -> None:
    image = await create_image(client)
    for content_type in ("application/json", "text/plain", None):
        headers = {"content-type": content_type} if content_type else {}
        response = await client.put(
            f"/v2/images/{image['id']}/file", content=DATA, headers=headers
        )
        assert response.status_code == 415, (content_type, response.text)
    assert await status_of(client, image["id"]) == "queued"
    assert store_files(node) == []


async def test_upload_and_download_of_unknown_image_are_404(client: httpx.AsyncClient) -> None:
    missing = "71d3c0aa-0000-4000-8000-000000000000"
    assert (await upload(client, missing, DATA)).status_code == 404
    assert (await client.get(f"/v2/images/{missing}/file")).status_code == 404


async def test_deleting_an_image_removes_its_data(client: httpx.AsyncClient, node: Node) -> None:
    image = await create_image(client)
    assert (await upload(client, image["id"], DATA)).status_code == 204
    assert len(store_files(node)) == 1
    assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    assert store_files(node) == []
    assert (await client.get(f"/v2/images/{image['id']}/file")).status_code == 404


# -- ranges -----------------------------------------------------------------------


async def test_range_requests_give_206_with_content_range(client: httpx.AsyncClient) -> None:
    data = b"0123456789"
    image = await create_image(client)
    assert (await upload(client, image["id"], data)).status_code == 204
    url = f"/v2/images/{image['id']}/file"
    cases = {
        "bytes=0-4": (b"01234", "bytes 0-4/10"),
        "bytes=3-3": (b"3", "bytes 3-3/10"),
        "bytes=7-": (b"789", "bytes 7-9/10"),
        "bytes=-3": (b"789", "bytes 7-9/10"),
        "bytes=5-100": (b"56789", "bytes 5-9/10"),
        "bytes=-100": (data, "bytes 0-9/10"),
    }
    for header, (body, content_range) in cases.items():
        response = await client.get(url, headers={"range": header})
        assert response.status_code == 206, (header, response.text)
        assert response.content == body, header
        assert response.headers["content-range"] == content_range, header
        assert response.headers["content-length"] == str(len(body)), header
    # The legacy request Content-Range Glance still honours.
    response = await client.get(url, headers={"content-range": "bytes 2-5/10"})
    assert response.status_code == 206
    assert response.content == b"2345"
    assert response.headers["content-range"] == "bytes 2-5/10"


async def test_unsatisfiable_or_malformed_ranges_are_416(client: httpx.AsyncClient) -> None:
    image = await create_image(client)
    assert (await upload(client, image["id"], b"0123456789")).status_code == 204
    url = f"/v2/images/{image['id']}/file"
    for header in ("bytes=10-", "bytes=100-200", "bytes=5-2", "bytes=abc", "pages=0-1",
                   "bytes="):
        response = await client.get(url, headers={"range": header})
        assert response.status_code == 416, (header, response.status_code, response.text)
    for header in ("bytes 5-2/10", "bytes x"):
        response = await client.get(url, headers={"content-range": header})
        assert response.status_code == 416, (header, response.status_code, response.text)
    # Glance supports one range per request only.
    response = await client.get(url, headers={"range": "bytes=0-1,4-5"})
    assert response.status_code == 400


# -- failed and aborted uploads ----------------------------------------------------


async def test_data_not_in_the_declared_format_is_415(
    client: httpx.AsyncClient, node: Node
) -> None:
    # As Glance since 2024.2 (require_image_format_match): refused, image back to queued.
    image = await create_image(client, disk_format="qcow2")
    response = await upload(client, image["id"], DATA)
    assert response.status_code == 415, response.text
    assert await status_of(client, image["id"]) == "queued"
    assert store_files(node) == []
    shown = (await client.get(f"/v2/images/{image['id']}")).json()
    assert (shown["size"], shown["checksum"], shown["virtual_size"]) == (None, None, None)


async def test_declared_size_mismatch_fails_cleanly(client: httpx.AsyncClient, node: Node) -> None:
    image = await create_image(client)
    for declared in (str(len(DATA) + 1), str(len(DATA) - 1)):
        response = await upload_with(client, image["id"], DATA,
                                     {"x-openstack-image-size": declared})
        assert response.status_code == 400, response.text
        assert await status_of(client, image["id"]) == "queued"
        assert store_files(node) == []
    response = await upload_with(client, image["id"], DATA, {"x-openstack-image-size": "ten"})
    assert response.status_code == 400
    response = await upload_with(client, image["id"], DATA,
                                 {"x-openstack-image-size": str(len(DATA))})
    assert response.status_code == 204


async def upload_with(
    client: httpx.AsyncClient, image_id: str, data: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await client.put(
        f"/v2/images/{image_id}/file", content=data,
        headers={"content-type": "application/octet-stream", **headers},
    )


async def asgi_upload_then_disconnect(node: Node, image_id: str, sent: list[bytes]) -> int:
    """Drive the ASGI app directly: send some body chunks, then the client goes away."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": True} for chunk in sent
    ]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    path = f"/v2/images/{image_id}/file"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "PUT",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 40000), "server": ("glimpse.test", 80),
        "headers": [(b"host", b"glimpse.test"),
                    (b"content-type", b"application/octet-stream"),
                    (b"transfer-encoding", b"chunked")],
    }
    await node.app(scope, receive, send)
    return statuses[0] if statuses else 0


async def test_client_disconnect_mid_upload_leaves_queued_image_and_no_data(
    client: httpx.AsyncClient, node: Node
) -> None:
    image = await create_image(client)
    status = await asgi_upload_then_disconnect(node, image["id"], [DATA, DATA])
    assert status in (400, 0)  # the client is gone; what matters is the state left
    assert await status_of(client, image["id"]) == "queued"
    assert store_files(node) == []
    shown = (await client.get(f"/v2/images/{image['id']}")).json()
    assert (shown["size"], shown["checksum"]) == (None, None)
    # The image is usable again.
    assert (await upload(client, image["id"], DATA)).status_code == 204
    assert (await client.get(f"/v2/images/{image['id']}/file")).content == DATA


async def test_cancelled_upload_leaves_queued_image_and_no_data(
    client: httpx.AsyncClient, node: Node
) -> None:
    image = await create_image(client)
    started = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield DATA
        started.set()
        await asyncio.Event().wait()  # never sends the rest
        yield b""

    task = asyncio.create_task(put_stream(client, image["id"], stalls()))
    await started.wait()
    await until_saving(client, image["id"])
    assert await status_of(client, image["id"]) == "saving"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await status_of(client, image["id"]) == "queued"
    assert store_files(node) == []


async def test_restart_after_a_crash_mid_upload_resets_the_image(
    client: httpx.AsyncClient, node: Node, make_node: Callable[[Settings], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = await create_image(client)
    started = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield DATA
        started.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(put_stream(client, image["id"], stalls()))
    await started.wait()
    for _ in range(500):  # the partial file appears once the first chunk is written
        if any(p.name.startswith(".tmp-") for p in store_files(node)):
            break
        await asyncio.sleep(0.01)
    assert await status_of(client, image["id"]) == "saving"
    assert store_files(node), "the partial file should exist while the upload runs"
    # The process "dies" here: a new node starts on the same database and directories
    # while the old one never gets to clean up. Both live in this test's process, so
    # the writer's process is declared dead (tests/integration kill real processes).
    monkeypatch.setattr(writers, "_alive", lambda pid: False)
    restarted = await make_node(node.settings)
    async with client_for(restarted) as after:
        assert await status_of(after, image["id"]) == "queued"
        assert store_files(restarted) == []
        assert (await after.get(f"/v2/images/{image['id']}/file")).status_code == 204
        assert (await upload(after, image["id"], DATA)).status_code == 204
        assert (await after.get(f"/v2/images/{image['id']}/file")).content == DATA
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await status_of(client, image["id"]) == "active"
    assert [p.read_bytes() for p in store_files(node)] == [DATA]


# -- concurrent uploads -------------------------------------------------------------


async def test_two_concurrent_uploads_exactly_one_wins(
    client: httpx.AsyncClient, node: Node
) -> None:
    image = await create_image(client)
    first, second = DATA, DATA[::-1]
    responses = await asyncio.gather(
        put_stream(client, image["id"], chunks_of(first, 4096)),
        put_stream(client, image["id"], chunks_of(second, 4096)),
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [204, 409], [r.text for r in responses]
    winner = first if responses[0].status_code == 204 else second
    shown = (await client.get(f"/v2/images/{image['id']}")).json()
    assert shown["status"] == "active"
    assert shown["checksum"] == hashlib.md5(winner).hexdigest()
    assert shown["os_hash_value"] == hashlib.sha512(winner).hexdigest()
    assert (await client.get(f"/v2/images/{image['id']}/file")).content == winner
    assert [p.read_bytes() for p in store_files(node)] == [winner]


async def test_upload_while_another_is_saving_is_409(
    client: httpx.AsyncClient, node: Node
) -> None:
    image = await create_image(client)
    release = asyncio.Event()
    sent_first = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield DATA[:1000]
        sent_first.set()
        await release.wait()
        yield DATA[1000:]

    task = asyncio.create_task(put_stream(client, image["id"], slow()))
    await sent_first.wait()
    await until_saving(client, image["id"])
    loser = await upload(client, image["id"], b"intruder")
    assert loser.status_code == 409, loser.text
    release.set()
    assert (await task).status_code == 204
    assert (await client.get(f"/v2/images/{image['id']}/file")).content == DATA
    assert [p.read_bytes() for p in store_files(node)] == [DATA]


async def test_delete_during_upload_leaves_no_data(client: httpx.AsyncClient, node: Node) -> None:
    image = await create_image(client)
    release = asyncio.Event()
    sent_first = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield DATA
        sent_first.set()
        await release.wait()
        yield DATA

    task = asyncio.create_task(put_stream(client, image["id"], slow()))
    await sent_first.wait()
    await until_saving(client, image["id"])
    assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    release.set()
    response = await task
    assert response.status_code == 410, response.text  # Glance: HTTPGone
    assert (await client.get(f"/v2/images/{image['id']}")).status_code == 404
    assert store_files(node) == []
