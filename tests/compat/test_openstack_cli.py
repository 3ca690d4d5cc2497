"""python-openstackclient's ``openstack image ...`` against a live ``glimpse serve``.

Without Keystone: ``--os-auth-type none --os-endpoint URL`` on the noauth server;
``--os-auth-type admin_token --os-endpoint URL/v2 --os-token T`` on the token server.
openstackclient resolves project names in Keystone before member calls
(``image add project``, ``image set --accept --project``); a stand-in answers that
look-up (see conftest). ``set --accept`` needs ``--project`` here: without Keystone
there is no token scope to take the caller's project from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.compat.conftest import Api, OpenStack, unique
from tests.live_server import LiveServer

pytestmark = pytest.mark.compat


@pytest.fixture
def osc(noauth_server: LiveServer) -> OpenStack:
    return OpenStack(noauth_server)


def ids(rows: object) -> list[str]:
    assert isinstance(rows, list), rows
    return [row["ID"] for row in rows]


def test_create_show_list(osc: OpenStack, api: Api, qcow2_file: Path) -> None:
    name, tag = unique("osc"), unique("tag")
    data = qcow2_file.read_bytes()
    image = osc.json(
        "image", "create", "--disk-format", "qcow2", "--container-format", "bare",
        "--file", str(qcow2_file), "--property", "k=v", "--tag", tag, "--min-ram", "512",
        "--public", name,
    )
    assert image["name"] == name and image["status"] == "active", image
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["size"] == len(data)
    assert image["tags"] == [tag] and image["min_ram"] == 512
    assert image["visibility"] == "public"
    properties = image["properties"]
    assert isinstance(properties, dict) and properties["k"] == "v", image
    assert properties["os_hash_value"] == hashlib.sha512(data).hexdigest()

    shown = osc.json("image", "show", name)  # by name: a filtered list, then the image
    assert shown["id"] == image["id"] and shown["virtual_size"] == 64 * 1024 * 1024
    listed = osc("image", "list", "-f", "json", "--long", "--tag", tag,
                 "--property", "k=v").json()
    assert ids(listed) == [image["id"]], listed


def test_set_unset_hidden_save(osc: OpenStack, api: Api, raw_file: Path,
                               tmp_path: Path) -> None:
    data = raw_file.read_bytes()
    image_id = api.create(data=data, name=unique("set"))["id"]
    osc("image", "set", "--property", "hw_firmware_type=uefi", "--property", "a=b",
        "--tag", "x", "--hidden", "--min-disk", "2", "--name", "renamed-" + image_id[:8],
        "--architecture", "x86_64", "--os-distro", "fedora", image_id)
    image = api.get(image_id)
    assert image["hw_firmware_type"] == "uefi" and image["a"] == "b"
    assert image["os_hidden"] is True and image["min_disk"] == 2
    assert image["tags"] == ["x"] and image["architecture"] == "x86_64"
    assert image["name"] == "renamed-" + image_id[:8]
    assert image_id not in [i["id"] for i in api.http.get("/v2/images").json()["images"]]
    assert image_id in ids(osc("image", "list", "-f", "json", "--hidden").json())

    osc("image", "unset", "--property", "a", "--tag", "x", image_id)
    osc("image", "set", "--unhidden", image_id)
    image = api.get(image_id)
    assert "a" not in image and image["tags"] == [] and image["os_hidden"] is False

    out = tmp_path / "saved.raw"
    osc("image", "save", "--file", str(out), image_id)
    assert out.read_bytes() == data


def test_deactivate_activate_delete(osc: OpenStack, api: Api) -> None:
    first = api.create(data=b"first")["id"]
    second = api.create()["id"]
    osc("image", "set", "--deactivate", first)
    assert api.get(first)["status"] == "deactivated"
    osc("image", "set", "--activate", first)
    assert api.get(first)["status"] == "active"
    osc("image", "delete", first, second)
    assert not api.exists(first) and not api.exists(second)
    # (Deleting a missing image fails too; openstackclient words any 404 there as
    # "Multi Backend support not enabled.", against Glance as well.)


def test_sharing_with_another_project(tokens_server: LiveServer, identity_stub: str,
                                      raw_file: Path) -> None:
    alice = OpenStack(tokens_server, "alice-token", identity=identity_stub)
    bob = OpenStack(tokens_server, "bob-token", identity=identity_stub)
    image_id = Api(tokens_server, "alice-token").create(data=raw_file.read_bytes())["id"]

    member = alice.json("image", "add", "project", image_id, "project-b")
    assert member["member_id"] == "project-b" and member["status"] == "pending", member
    members = alice("image", "member", "list", "-f", "json", image_id).json()
    assert isinstance(members, list)
    assert [(m["Member ID"], m["Status"]) for m in members] == [("project-b", "pending")]

    bob("image", "set", "--accept", "--project", "project-b", image_id)
    assert image_id in ids(bob("image", "list", "-f", "json", "--shared").json())

    alice("image", "remove", "project", image_id, "project-b")
    assert not Api(tokens_server, "bob-token").exists(image_id)
