"""The product guide's procedures that touch only the core, run as written.

Source: creating-and-managing-images-rhosp-17.1 (sections 2.3, 3.1, 3.3, 3.5, 3.6 and
Appendix A). The endpoint comes from OS_IMAGE_URL (glance) or --os-endpoint (openstack);
placeholders (<name>, <image-file>, ...) are filled in; nothing else is changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.compat.conftest import Api, Glance, OpenStack, parse_table, table_ids, unique
from tests.live_server import LiveServer

pytestmark = pytest.mark.compat


@pytest.fixture
def glance(noauth_server: LiveServer) -> Glance:
    return Glance(noauth_server)


def test_2_3_creating_an_image_for_uefi_secure_boot(noauth_server: LiveServer, api: Api,
                                                      uefi_file: Path) -> None:
    openstack = OpenStack(noauth_server)
    # 1. $ openstack image create --file <base_image_file> uefi_secure_boot_image
    created = openstack("image", "create", "--file", str(uefi_file), "uefi_secure_boot_image")
    image_id = parse_table(created.stdout)["id"]
    # 2. $ openstack image set --property hw_machine_type=q35 uefi_secure_boot_image
    openstack("image", "set", "--property", "hw_machine_type=q35", "uefi_secure_boot_image")
    # 3. $ openstack image set \
    #     --property hw_firmware_type=uefi \
    #     --property os_secure_boot=required \
    #     uefi_secure_boot_image
    openstack("image", "set", "--property", "hw_firmware_type=uefi",
              "--property", "os_secure_boot=required", "uefi_secure_boot_image")

    image = api.get(image_id)
    assert image["name"] == "uefi_secure_boot_image" and image["status"] == "active"
    # openstackclient's defaults when the guide gives no formats.
    assert (image["disk_format"], image["container_format"]) == ("raw", "bare")
    assert image["size"] == uefi_file.stat().st_size
    assert image["hw_machine_type"] == "q35"
    assert image["hw_firmware_type"] == "uefi"
    assert image["os_secure_boot"] == "required"


def test_3_1_uploading_images(glance: Glance, api: Api, qcow2_file: Path) -> None:
    name = unique("guide-3-1")
    # $ glance image-create --name <name> \
    #     --is-public true --disk-format qcow2 \
    #     --container-format bare \
    #     --file <image-file> \
    #     --property <image-metadata>
    as_written = glance(
        "image-create", "--name", name, "--is-public", "true", "--disk-format", "qcow2",
        "--container-format", "bare", "--file", str(qcow2_file),
        "--property", "hw_disk_bus=scsi", ok=False,
    )
    # --is-public is Image API v1; glanceclient's v2 shell rejects it before any request
    # is sent (against Glance as well). The v2 spelling is --visibility public.
    assert "unrecognized arguments: --is-public true" in as_written.stderr, \
        as_written.describe()
    assert not [i for i in api.http.get("/v2/images", params={"name": name}).json()["images"]]

    image = parse_table(glance(
        "image-create", "--name", name, "--visibility", "public", "--disk-format", "qcow2",
        "--container-format", "bare", "--file", str(qcow2_file),
        "--property", "hw_disk_bus=scsi",
    ).stdout)
    assert image["status"] == "active" and image["visibility"] == "public"
    assert image["hw_disk_bus"] == "scsi"
    assert image["size"] == str(qcow2_file.stat().st_size)


def test_3_3_updating_image_properties(glance: Glance, api: Api) -> None:
    """The section's procedure has no command in the guide text; this is the one its
    Appendix A options belong to: glance image-update with --property and the options
    the image schema publishes, and --remove-property."""
    image_id = api.create(data=b"x" * 4096)["id"]
    glance("image-update", image_id, "--property", "hw_disk_bus=scsi",
           "--property", "hw_scsi_model=virtio-scsi", "--property", "hw_vif_model=virtio",
           "--property", "hw_video_model=virtio", "--property", "hypervisor_type=kvm",
           "--os-distro", "rhel", "--os-version", "9.4", "--architecture", "x86_64")
    image = api.get(image_id)
    for key, value in {
        "hw_disk_bus": "scsi", "hw_scsi_model": "virtio-scsi", "hw_vif_model": "virtio",
        "hw_video_model": "virtio", "hypervisor_type": "kvm", "os_distro": "rhel",
        "os_version": "9.4", "architecture": "x86_64",
    }.items():
        assert image.get(key) == value, (key, image)
    glance("image-update", image_id, "--remove-property", "hypervisor_type")
    assert "hypervisor_type" not in api.get(image_id)


def test_3_5_hiding_or_unhiding_images(glance: Glance, api: Api, raw_file: Path) -> None:
    # "To create a hidden image, add the --hidden argument to the glance image-create
    # command."
    created = parse_table(glance(
        "image-create", "--name", unique("centos7"), "--disk-format", "raw",
        "--container-format", "bare", "--file", str(raw_file), "--hidden", "true",
    ).stdout)
    hidden_id = created["id"]
    assert created["os_hidden"] == "True"
    visible_id = api.create(data=b"latest", name=unique("centos9"))["id"]
    # $ glance image-update <image_id> --hidden 'true'
    glance("image-update", visible_id, "--hidden", "true")
    assert api.get(visible_id)["os_hidden"] is True
    # $ glance image-update <image_id> --hidden 'false'
    glance("image-update", visible_id, "--hidden", "false")
    assert api.get(visible_id)["os_hidden"] is False
    # $ glance image-list --hidden 'true'
    hidden = table_ids(glance("image-list", "--hidden", "true").stdout)
    assert hidden_id in hidden and visible_id not in hidden
    assert all(api.get(i)["os_hidden"] for i in hidden), "--hidden true lists only hidden"
    # "You can hide public images from normal listings presented to users."
    listed = table_ids(glance("image-list").stdout)
    assert visible_id in listed and hidden_id not in listed
    # "Users can discover and use hidden images."
    assert api.get(hidden_id)["status"] == "active"
    assert api.http.get(f"/v2/images/{hidden_id}/file").content == raw_file.read_bytes()


def test_3_6_deleting_images(glance: Glance, api: Api) -> None:
    first, second, third = (api.create(data=b"x")["id"] for _ in range(3))
    # $ glance image-delete <image-id> [<image-id> ...]
    glance("image-delete", first)
    glance("image-delete", second, third)
    for image_id in (first, second, third):
        assert not api.exists(image_id)
    again = glance("image-delete", first, ok=False)
    assert "no image" in again.stderr.lower(), again.describe()
