"""python-glanceclient's ``glance`` command against a live ``glimpse serve``.

Commands are typed as users type them, with OS_IMAGE_URL and OS_AUTH_TOKEN set (noauth
ignores the token); the members flow uses a token-auth server with several projects.
State around a command is set up and checked over HTTP, which is cheaper than another
CLI start-up. Hiding (guide 3.5) and deleting several images (3.6) are in
test_guide_procedures.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from tests.compat.conftest import (
    CLI_TIMEOUT,
    Api,
    Glance,
    clean_env,
    corrupt_stored_data,
    parse_table,
    run,
    table_ids,
    unique,
)
from tests.live_server import LiveServer, tool

pytestmark = pytest.mark.compat


@pytest.fixture
def glance(noauth_server: LiveServer) -> Glance:
    return Glance(noauth_server)


def create(glance: Glance, *args: str) -> dict[str, str]:
    image = parse_table(glance("image-create", *args).stdout)
    assert image.get("id"), image
    return image


def test_image_create_with_file_and_property(glance: Glance, qcow2_file: Path) -> None:
    name = unique("cirros")
    data = qcow2_file.read_bytes()
    image = create(
        glance, "--name", name, "--disk-format", "qcow2", "--container-format", "bare",
        "--file", str(qcow2_file), "--property", "k=v",
    )
    assert image["status"] == "active", image
    assert image["name"] == name
    assert image["k"] == "v"
    assert image["disk_format"] == "qcow2" and image["container_format"] == "bare"
    assert image["size"] == str(len(data))
    assert image["virtual_size"] == str(64 * 1024 * 1024)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert image["visibility"] == "shared" and image["owner"] == "admin"

    shown = glance.show(image["id"])
    for key in ("status", "checksum", "os_hash_value", "size", "k", "name", "created_at"):
        assert shown[key] == image[key], (key, shown)
    # The same, typed with options instead of OS_IMAGE_URL / OS_AUTH_TOKEN.
    flags = run([tool("glance"), "--os-image-url", glance.server.url, "--os-auth-token", "x",
                 "image-list"], clean_env())
    assert image["id"] in table_ids(flags.stdout)


def test_update_properties_and_schema_options(glance: Glance, api: Api) -> None:
    """--property / --remove-property, and the options glanceclient builds from the
    image schema (guide Appendix A), on create and update."""
    image_id = str(uuid.uuid4())  # the client may choose the id
    image = create(
        glance, "--id", image_id, "--name", unique("appendix-a"), "--disk-format", "raw",
        "--container-format", "bare", "--architecture", "x86_64", "--os-distro", "rhel",
        "--os-version", "9.4", "--min-disk", "10", "--min-ram", "1024", "--tags", "a", "b",
        "--property", "hw_disk_bus=scsi",
    )
    assert image["id"] == image_id
    assert image["status"] == "queued"
    assert (image["architecture"], image["os_distro"], image["os_version"]) == (
        "x86_64", "rhel", "9.4")
    assert (image["min_disk"], image["min_ram"]) == ("10", "1024")
    assert image["hw_disk_bus"] == "scsi"
    assert sorted(json.loads(image["tags"])) == ["a", "b"]

    updated = parse_table(glance(
        "image-update", image_id, "--property", "hw_firmware_type=uefi",
        "--property", "os_secure_boot=required", "--property", "hw_disk_bus=virtio",
        "--remove-property", "architecture", "--name", "renamed", "--min-ram", "2048",
        "--instance-uuid", "1b5a1b10-e6d4-4a46-a1a8-6a2a9f1e1b8c",
        "--kernel-id", "c3a4c1a0-4cdb-4bd4-b1a3-4d4e8d2f3b11",
        "--ramdisk-id", "d5e0f8f1-1a1c-4b6a-9c55-8b6a7f1e3c22",
    ).stdout)
    assert updated["hw_firmware_type"] == "uefi"
    assert updated["os_secure_boot"] == "required"
    assert updated["hw_disk_bus"] == "virtio"
    assert "architecture" not in updated
    assert updated["name"] == "renamed" and updated["min_ram"] == "2048"
    stored = api.get(image_id)
    assert stored["instance_uuid"] == "1b5a1b10-e6d4-4a46-a1a8-6a2a9f1e1b8c"
    assert stored["kernel_id"] == "c3a4c1a0-4cdb-4bd4-b1a3-4d4e8d2f3b11"
    assert stored["ramdisk_id"] == "d5e0f8f1-1a1c-4b6a-9c55-8b6a7f1e3c22"

    after = parse_table(glance("image-update", image_id, "--remove-property",
                               "os_secure_boot", "--remove-property", "hw_disk_bus").stdout)
    assert "os_secure_boot" not in after and "hw_disk_bus" not in after
    assert after["hw_firmware_type"] == "uefi"
    # Reserved names are refused by the server, and the user is told so.
    refused = glance("image-update", image_id, "--property", "os_glance_foo=1", ok=False)
    assert "403" in refused.stderr or "forbidden" in refused.stderr.lower(), refused.describe()
    assert "os_glance_foo" not in api.get(image_id)


def test_protected_image_cannot_be_deleted(glance: Glance, api: Api) -> None:
    image_id = api.create(protected=True)["id"]
    refused = glance("image-delete", image_id, ok=False)
    assert "not permitted to delete" in refused.stderr, refused.describe()
    assert api.exists(image_id)
    glance("image-update", image_id, "--protected", "False")
    api.http.delete(f"/v2/images/{image_id}")


def test_download_bytes_and_checksums(glance: Glance, raw_file: Path, tmp_path: Path,
                                      api: Api) -> None:
    """glanceclient checks the body against os_hash_value (or checksum) while reading."""
    data = raw_file.read_bytes()
    image = api.create(data=data)
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    out = tmp_path / "out.raw"
    glance("image-download", image["id"], "--file", str(out), "--progress")
    assert out.read_bytes() == data
    # `glance image-download ID > file`: the bytes go to stdout.
    with (tmp_path / "stdout.raw").open("wb") as sink:
        proc = subprocess.run(
            [tool("glance"), "image-download", image["id"]], env=glance.env, stdout=sink,
            stderr=subprocess.PIPE, timeout=CLI_TIMEOUT,
        )
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "stdout.raw").read_bytes() == data

    # glanceclient verifies what it reads against os_hash_value: bad bytes are caught.
    corrupt_stored_data(glance.server, image["id"])
    bad = glance("image-download", image["id"], "--file", str(tmp_path / "bad.raw"), ok=False)
    assert "mismatch" in bad.stderr.lower() or "corrupt" in bad.stderr.lower(), bad.describe()

    # An image without data: glanceclient says so instead of writing an empty file.
    empty_id = api.create()["id"]
    result = glance("image-download", empty_id, "--file", str(tmp_path / "none"), ok=False)
    assert "no data" in result.stderr.lower(), result.describe()


def test_tags(glance: Glance, api: Api) -> None:
    image_id = api.create()["id"]
    glance("image-tag-update", image_id, "web")
    glance("image-tag-update", image_id, "db")
    assert sorted(api.get(image_id)["tags"]) == ["db", "web"]
    assert image_id in table_ids(glance("image-list", "--tag", "web", "--tag", "db").stdout)
    glance("image-tag-delete", image_id, "web")
    assert api.get(image_id)["tags"] == ["db"]


def test_deactivate_and_reactivate(glance: Glance, api: Api, tmp_path: Path) -> None:
    image_id = api.create(data=b"some bytes")["id"]
    glance("image-deactivate", image_id)
    assert api.get(image_id)["status"] == "deactivated"
    # Admins may still download a deactivated image (Glance's rule).
    glance("image-download", image_id, "--file", str(tmp_path / "admin.raw"))
    assert (tmp_path / "admin.raw").read_bytes() == b"some bytes"
    glance("image-reactivate", image_id)
    assert api.get(image_id)["status"] == "active"


def test_members(tokens_server: LiveServer, raw_file: Path, tmp_path: Path) -> None:
    """member-create/-list/-update/-delete between two projects, and what each sees."""
    alice, bob = Glance(tokens_server, "alice-token"), Glance(tokens_server, "bob-token")
    as_bob = Api(tokens_server, "bob-token")
    image = create(alice, "--name", unique("shared"), "--disk-format", "raw",
                   "--container-format", "bare", "--file", str(raw_file))
    image_id = image["id"]
    assert image["owner"] == "project-a"
    not_shared = bob("image-show", image_id, ok=False)
    assert "no image" in not_shared.stderr.lower(), not_shared.describe()

    created = alice("member-create", image_id, "project-b").stdout
    assert "project-b" in created and "pending" in created, created
    members = alice("member-list", "--image-id", image_id).stdout
    assert "project-b" in members and "pending" in members, members
    # A pending member sees the image by id, not in the default list.
    assert as_bob.exists(image_id)
    assert image_id not in table_ids(bob("image-list").stdout)
    assert image_id in table_ids(bob("image-list", "--member-status", "pending").stdout)
    assert not Api(tokens_server, "carol-token").exists(image_id)

    accepted = bob("member-update", image_id, "project-b", "accepted").stdout
    assert "accepted" in accepted, accepted
    assert image_id in table_ids(bob("image-list").stdout)
    out = tmp_path / "bob.raw"
    bob("image-download", image_id, "--file", str(out))
    assert out.read_bytes() == raw_file.read_bytes()

    bob("member-update", image_id, "project-b", "rejected")
    listed = as_bob.http.get("/v2/images").json()["images"]
    assert image_id not in [i["id"] for i in listed]
    alice("member-delete", image_id, "project-b")
    assert not as_bob.exists(image_id)
