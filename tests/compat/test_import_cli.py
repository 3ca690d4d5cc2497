"""The guide's import procedures (1.4, 3.2.1, 3.2.2, 3.4.3, 5.3.2-5.3.4, 5.5.1-5.5.2, 5.6)
as real ``glance`` CLI calls against a live server with three file stores, the
conversion plugin, and a web server on loopback allowed by the URI filter."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.compat.conftest import Api, Glance, OpenStack, parse_table, unique
from tests.live_server import LiveServer, database_for

WEB_DATA = os.urandom(2 * 1024 * 1024)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, qcow2_file: Path) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    (root / "image.raw").write_bytes(WEB_DATA)
    (root / "image.qcow2").write_bytes(qcow2_file.read_bytes())

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def multistore(
    tmp_path_factory: pytest.TempPathFactory, server_backend: str, worker: str, web: str
) -> Iterator[LiveServer]:
    port = web.rsplit(":", 1)[1]
    workdir = tmp_path_factory.mktemp(f"import-{server_backend}")
    stores = workdir / "stores"
    server = LiveServer(
        workdir,
        database_url=database_for(server_backend, f"glimpse_compat_{worker}_import"),
        options={
            "DEFAULT": {"enabled_backends": "central:file, dcn0:file, dcn1:file",
                        "show_multiple_locations": "true"},
            "glance_store": {"default_backend": "central"},
            "central": {"filesystem_store_datadir": str(stores / "central")},
            "dcn0": {"filesystem_store_datadir": str(stores / "dcn0")},
            "dcn1": {"filesystem_store_datadir": str(stores / "dcn1")},
            "import_filtering_opts": {"allowed_hosts": "127.0.0.1",
                                      "allowed_ports": f"[80,443,{port}]"},
            "image_import_opts": {"image_import_plugins": "['image_conversion']"},
        },
    )
    server.start()
    yield server
    server.stop()


def wait_settled(api: Api, image_id: str, timeout: float = 60) -> dict[str, Any]:
    """Until the import finished: no lock, nothing pending (guide 5.4's watch)."""
    deadline = time.time() + timeout
    while True:
        image = api.get(image_id)
        if "os_glance_import_task" not in image and image["status"] != "importing":
            return image
        assert time.time() < deadline, f"import did not finish: {image}"
        time.sleep(0.2)


@pytest.fixture
def glance(multistore: LiveServer) -> Glance:
    return Glance(multistore)


@pytest.fixture
def api_ms(multistore: LiveServer) -> Iterator[Api]:
    client = Api(multistore)
    yield client
    client.close()


def created_id(result: Any) -> str:
    return parse_table(result.stdout)["id"]


def test_import_info_lists_the_methods(glance: Glance) -> None:
    # The table wraps long values; compare without its borders and line breaks.
    out = re.sub(r"[\s|]", "", glance("import-info").stdout)
    assert "glance-direct" in out and "web-download" in out and "copy-image" in out


def test_1_4_web_download_qcow2_is_stored_as_raw(glance: Glance, api_ms: Api, web: str,
                                                 qcow2_file: Path, tmp_path: Path) -> None:
    result = glance(
        "image-create-via-import", "--disk-format", "qcow2", "--container-format", "bare",
        "--name", unique("guide-1-4"), "--visibility", "public",
        "--import-method", "web-download", "--uri", f"{web}/image.qcow2",
    )
    image = wait_settled(api_ms, created_id(result))
    assert image["status"] == "active", image
    assert image["disk_format"] == "raw"
    assert image["virtual_size"] == 64 * 1024 * 1024
    expected = tmp_path / "expected.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(qcow2_file),
                    str(expected)], check=True)
    download = tmp_path / "got.raw"
    glance("image-download", "--file", str(download), image["id"])
    assert download.read_bytes() == expected.read_bytes()


def test_3_2_2_glance_direct_in_one_command(glance: Glance, api_ms: Api, raw_file: Path) -> None:
    result = glance(
        "image-create-via-import", "--container-format", "bare", "--disk-format", "raw",
        "--name", unique("guide-3-2-2"), "--file", str(raw_file),
    )
    image = wait_settled(api_ms, created_id(result))
    assert image["status"] == "active"
    assert image["os_hash_value"] == hashlib.sha512(raw_file.read_bytes()).hexdigest()
    shown = glance.show(image["id"])
    assert shown["status"] == "active"


def test_3_2_2_stage_then_import(glance: Glance, api_ms: Api, raw_file: Path) -> None:
    created = glance("image-create", "--container-format", "bare", "--disk-format", "raw",
                     "--name", unique("staged"))
    image_id = created_id(created)
    glance("image-stage", "--file", str(raw_file), image_id)
    assert api_ms.get(image_id)["status"] == "uploading"
    glance("image-import", "--import-method", "glance-direct", image_id)
    assert wait_settled(api_ms, image_id)["status"] == "active"


def test_5_3_2_web_download_to_several_stores(glance: Glance, api_ms: Api, web: str) -> None:
    result = glance(
        "image-create-via-import", "--container-format", "bare", "--disk-format", "raw",
        "--name", unique("guide-5-3-2"), "--import-method", "web-download",
        "--uri", f"{web}/image.raw", "--stores", "central,dcn0,dcn1",
    )
    image = wait_settled(api_ms, created_id(result))
    assert image["status"] == "active"
    assert sorted(image["stores"].split(",")) == ["central", "dcn0", "dcn1"]
    shown = glance("image-show", image["id"]).stdout
    assert "stores" in shown and "dcn1" in shown


def test_5_3_3_all_stores_without_failure(glance: Glance, api_ms: Api, web: str) -> None:
    result = glance(
        "image-create-via-import", "--container-format", "bare", "--disk-format", "raw",
        "--name", unique("guide-5-3-3"), "--import-method", "web-download",
        "--uri", f"{web}/image.raw", "--all-stores", "true", "--allow-failure", "false",
    )
    image = wait_settled(api_ms, created_id(result))
    assert image["status"] == "active"
    assert image["os_glance_failed_import"] == ""
    assert sorted(image["stores"].split(",")) == ["central", "dcn0", "dcn1"]


def test_5_3_4_single_store(glance: Glance, api_ms: Api, web: str) -> None:
    result = glance(
        "image-create-via-import", "--container-format", "bare", "--disk-format", "raw",
        "--name", unique("guide-5-3-4"), "--import-method", "web-download",
        "--uri", f"{web}/image.raw", "--store", "dcn1",
    )
    image = wait_settled(api_ms, created_id(result))
    assert image["stores"] == "dcn1"


def test_5_5_copy_image_then_delete_one_copy(glance: Glance, api_ms: Api,
                                             raw_file: Path) -> None:
    image = api_ms.create(raw_file.read_bytes(), name=unique("guide-5-5"))
    assert image["stores"] == "central"
    glance("image-import", image["id"], "--stores", "dcn0", "--import-method", "copy-image")
    assert sorted(wait_settled(api_ms, image["id"])["stores"].split(",")) == ["central", "dcn0"]
    glance("image-import", image["id"], "--all-stores", "true", "--import-method", "copy-image")
    final = wait_settled(api_ms, image["id"])
    assert sorted(final["stores"].split(",")) == ["central", "dcn0", "dcn1"]
    listed = glance("image-list", "--include-stores").stdout
    assert image["id"] in listed and "dcn1" in listed
    # guide 5.6: remove the dcn1 copy; the image stays, with the others.
    glance("stores-delete", "--store", "dcn1", image["id"])
    after = api_ms.get(image["id"])
    assert after["status"] == "active"
    assert sorted(after["stores"].split(",")) == ["central", "dcn0"]
    stores_info = glance("stores-info").stdout
    assert "central" in stores_info and "dcn0" in stores_info


def test_web_download_refused_uri_fails_cleanly(glance: Glance, api_ms: Api) -> None:
    result = glance(
        "image-create-via-import", "--container-format", "bare", "--disk-format", "raw",
        "--name", unique("refused"), "--import-method", "web-download",
        "--uri", "http://127.0.0.1:21/image.raw",
    )
    image = wait_settled(api_ms, created_id(result))
    assert image["status"] == "queued"
    tasks = api_ms.http.get(f"/v2/images/{image['id']}/tasks").json()["tasks"]
    assert tasks[0]["status"] == "failure"
    assert "port" in tasks[0]["message"]


def test_5_7_locations_in_openstack_image_show(multistore: LiveServer, api_ms: Api,
                                               raw_file: Path) -> None:
    image = api_ms.create(raw_file.read_bytes(), name=unique("guide-5-7"))
    shown = OpenStack(multistore).json("image", "show", image["id"], "-c", "properties")
    properties = shown["properties"]
    assert isinstance(properties, dict), shown
    locations = properties["locations"]
    assert [loc["metadata"] for loc in locations] == [{"store": "central"}]
    assert locations[0]["url"].startswith("file://")
