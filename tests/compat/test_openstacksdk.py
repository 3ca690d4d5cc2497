"""openstacksdk's image proxy (and its cloud layer) against a live ``glimpse serve``.

Connections without Keystone: ``auth_type="none"`` with the server as endpoint (the SDK
discovers /v2), and ``auth_type="admin_token"`` with a token for the token server.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
from openstack.connection import Connection
from tests.compat.conftest import Api, corrupt_stored_data, unique
from tests.live_server import LiveServer

pytestmark = pytest.mark.compat


@pytest.fixture
def conn(noauth_server: LiveServer) -> Iterator[Connection]:
    connection = openstack.connect(auth_type="none", auth={"endpoint": noauth_server.url})
    yield connection
    connection.close()


def token_connection(server: LiveServer, token: str) -> Connection:
    return openstack.connect(
        auth_type="admin_token", auth={"endpoint": f"{server.url}/v2", "token": token}
    )


def test_image_lifecycle(conn: Connection, raw_file: Path, tmp_path: Path) -> None:
    data = raw_file.read_bytes()
    name = unique("sdk")
    created = conn.image.create_image(
        name=name, filename=str(raw_file), disk_format="raw", container_format="bare",
        tags=["sdk"], hw_firmware_type="uefi", min_ram=256,
    )
    image = conn.image.get_image(created.id)
    assert image.status == "active", image
    assert image.checksum == hashlib.md5(data).hexdigest()
    assert image.hash_algo == "sha512" and image.hash_value == hashlib.sha512(data).hexdigest()
    assert image.size == len(data) and image.min_ram == 256
    assert image.tags == ["sdk"] and image.properties["hw_firmware_type"] == "uefi"
    assert image.owner_id == "admin" and image.visibility == "shared"

    assert created.id in [i.id for i in conn.image.images()]
    assert [i.id for i in conn.image.images(name=name)] == [created.id]
    assert created.id in [i.id for i in conn.image.images(tag="sdk", status="active")]

    updated = conn.image.update_image(image, name=name + "-b", is_hidden=True,
                                      hw_machine_type="q35", is_protected=True)
    assert updated.name == name + "-b" and updated.is_hidden and updated.is_protected
    assert conn.image.get_image(image.id).hw_machine_type == "q35"  # an SDK attribute
    assert created.id not in [i.id for i in conn.image.images()]
    assert created.id in [i.id for i in conn.image.images(is_hidden=True)]

    response = conn.image.download_image(image)  # verifies the md5 checksum
    assert response.content == data
    sink = io.BytesIO()
    conn.image.download_image(image, output=sink, chunk_size=65536)
    assert sink.getvalue() == data
    conn.image.download_image(image, output=str(tmp_path / "out.raw"))
    assert (tmp_path / "out.raw").read_bytes() == data

    with pytest.raises(openstack.exceptions.HttpException) as refused:
        conn.image.delete_image(image)
    assert refused.value.status_code == 403
    conn.image.update_image(image, is_protected=False)
    conn.image.delete_image(image, ignore_missing=False)
    assert conn.image.find_image(image.id) is None
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.image.get_image(image.id)


def test_upload_tags_and_deactivate(conn: Connection) -> None:
    # The old one-call create-and-upload.
    image = conn.image.upload_image(name=unique("sdk-up"), disk_format="raw",
                                    container_format="bare", data=b"payload" * 1000)
    image = conn.image.get_image(image.id)
    assert image.status == "active" and image.size == 7000
    assert image.checksum == hashlib.md5(b"payload" * 1000).hexdigest()
    # Create, then PUT the data through the resource.
    later = conn.image.create_image(name=unique("sdk-later"), disk_format="raw",
                                    container_format="bare", allow_duplicates=True)
    assert later.status == "queued"
    later.data = io.BytesIO(b"later")
    later.upload(conn.image)
    assert conn.image.get_image(later.id).size == 5
    conn.image.delete_image(later)

    conn.image.add_tag(image, "one")
    conn.image.add_tag(image, "two")
    conn.image.remove_tag(image, "one")
    assert conn.image.get_image(image.id).tags == ["two"]

    conn.image.deactivate_image(image)
    assert conn.image.get_image(image.id).status == "deactivated"
    conn.image.reactivate_image(image)
    assert conn.image.get_image(image.id).status == "active"
    conn.image.delete_image(image)


def test_download_detects_corruption(conn: Connection, noauth_server: LiveServer) -> None:
    image = conn.image.create_image(name=unique("sdk-bad"), disk_format="raw",
                                    container_format="bare", data=b"good bytes" * 100,
                                    allow_duplicates=True)
    corrupt_stored_data(noauth_server, image.id)
    with pytest.raises(openstack.exceptions.InvalidResponse, match="checksum"):
        conn.image.download_image(image)


def test_cloud_layer(noauth_server: LiveServer, qcow2_file: Path, tmp_path: Path) -> None:
    """The cloud-layer calls Ansible's openstack.cloud modules use, on a connection
    configured the other way: a per-service endpoint override."""
    conn = openstack.connect(auth_type="none", image_endpoint_override=noauth_server.url)
    name = unique("cloud")
    image = conn.create_image(name, filename=str(qcow2_file), disk_format="qcow2",
                              container_format="bare", wait=True, meta={"os_distro": "cirros"})
    assert image.status == "active" and image.os_distro == "cirros"
    assert conn.get_image(name).id == image.id
    conn.download_image(name, output_path=str(tmp_path / "disk.qcow2"))
    assert (tmp_path / "disk.qcow2").read_bytes() == qcow2_file.read_bytes()
    assert conn.delete_image(name, wait=True)
    assert conn.get_image(name) is None
    conn.close()


def test_members(tokens_server: LiveServer) -> None:
    alice = token_connection(tokens_server, "alice-token")
    bob = token_connection(tokens_server, "bob-token")
    try:
        image = alice.image.create_image(name=unique("sdk-shared"), disk_format="raw",
                                         container_format="bare", data=b"shared bytes",
                                         allow_duplicates=True)
        with pytest.raises(openstack.exceptions.NotFoundException):
            bob.image.get_image(image.id)
        member = alice.image.add_member(image, member_id="project-b")
        assert member.status == "pending"
        assert [m.member_id for m in alice.image.members(image)] == ["project-b"]
        assert bob.image.get_image(image.id).id == image.id
        assert image.id not in [i.id for i in bob.image.images()]
        assert image.id in [i.id for i in bob.image.images(member_status="pending")]

        accepted = bob.image.update_member("project-b", image, status="accepted")
        assert accepted.status == "accepted"
        assert image.id in [i.id for i in bob.image.images()]
        assert bob.image.download_image(image).content == b"shared bytes"
        assert alice.image.get_member("project-b", image).status == "accepted"

        alice.image.remove_member("project-b", image)
        assert list(alice.image.members(image)) == []
        assert bob.image.find_image(image.id) is None
        alice.image.delete_image(image)
        assert not Api(tokens_server, "alice-token").exists(image.id)
    finally:
        alice.close()
        bob.close()
