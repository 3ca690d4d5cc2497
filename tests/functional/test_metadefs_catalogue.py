"""The default catalogue (guide Appendix B, 2.3, 2.4), ``glimpse metadefs
load|export|unload``, the optional check of image properties against it, and the
migration that creates the catalogue's tables."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from tests.conftest import TOKENS, client_for, create_image, patch

from glimpse.bootstrap import Node
from glimpse.cli.main import main
from glimpse.config import Settings
from glimpse.db.metadefs import LoadMode
from glimpse.db.sql.tables import metadata
from glimpse.metadefs import catalogue

NS = "/v2/metadefs/namespaces"
IMAGE = "OS::Glance::Image"
SHIPPED = ["Glimpse::Image::Common", "Glimpse::Image::Libvirt", "Glimpse::Image::VMware",
           "Glimpse::Image::XenAPI"]
# Every image property the guide names (Appendix B, 2.3, 2.4) that the catalogue defines.
GUIDE_KEYS = {
    "architecture", "hypervisor_type", "instance_uuid", "kernel_id", "os_distro",
    "os_version", "ramdisk_id", "vm_mode", "hw_cdrom_bus", "hw_disk_bus", "hw_firmware_type",
    "hw_machine_type", "hw_numa_nodes", "hw_numa_cpus.0", "hw_numa_cpus.1", "hw_numa_mem.0",
    "hw_numa_mem.1", "hw_pci_numa_affinity_policy", "hw_qemu_guest_agent", "hw_rng_model",
    "hw_scsi_model", "hw_tpm_model", "hw_tpm_version", "hw_video_model", "hw_video_ram",
    "hw_watchdog_action", "os_command_line", "os_secure_boot", "hw_vif_model",
    "vmware_adaptertype", "vmware_ostype", "vmware_image_version", "auto_disk_config",
    "os_type",
}
GUIDE_DISTROS = ["arch", "centos", "debian", "fedora", "freebsd", "gentoo", "mandrake",
                 "mandriva", "mes", "msdos", "netbsd", "netware", "openbsd", "opensolaris",
                 "opensuse", "rhel", "sled", "ubuntu", "windows"]


async def load_shipped(node: Node) -> list[tuple[str, str]]:
    contents = [catalogue.parse(doc, name) for name, doc in catalogue.shipped_documents()]
    return await node.services.metadefs.load_catalogue(contents, LoadMode.SKIP)


# -- the shipped catalogue -------------------------------------------------------------------


async def test_shipped_catalogue_describes_the_guide(node: Node, client: httpx.AsyncClient) -> None:
    assert await load_shipped(node) == [(name, "created") for name in SHIPPED]
    assert await load_shipped(node) == [(name, "skipped") for name in SHIPPED]

    listing = (await client.get(NS, params={"resource_types": IMAGE, "limit": 50})).json()
    assert sorted(n["namespace"] for n in listing["namespaces"]) == SHIPPED
    types = (await client.get("/v2/metadefs/resource_types")).json()["resource_types"]
    assert [t["name"] for t in types] == [IMAGE]

    namespace_schema = (await client.get("/v2/schemas/metadefs/namespace")).json()
    defined: set[str] = set()
    for name in SHIPPED:
        shown = (await client.get(f"{NS}/{name}")).json()
        jsonschema.validate(shown, namespace_schema)  # what glanceclient checks
        assert shown["visibility"] == "public" and shown["protected"] is True
        assert shown["owner"] == "admin"
        assert [a["name"] for a in shown["resource_type_associations"]] == [IMAGE]
        defined |= set(shown["properties"])
    assert GUIDE_KEYS <= defined

    base = f"{NS}/Glimpse::Image::Common/properties"
    os_distro = (await client.get(f"{base}/os_distro")).json()
    assert os_distro["type"] == "string" and os_distro["enum"] == GUIDE_DISTROS
    libvirt = (await client.get(f"{NS}/Glimpse::Image::Libvirt")).json()
    assert libvirt["properties"]["os_secure_boot"]["enum"] == ["required", "disabled",
                                                               "optional"]
    secure_boot = next(o for o in libvirt["objects"] if o["name"] == "UEFI Secure Boot")
    assert secure_boot["required"] == ["hw_firmware_type", "os_secure_boot"]
    assert secure_boot["properties"]["hw_machine_type"]["enum"] == ["q35"]
    # The shipped namespaces are protected: the API cannot delete them.
    assert (await client.delete(f"{NS}/Glimpse::Image::Common")).status_code == 403


# -- glimpse metadefs load | export | unload ---------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Callable[..., Any]:
    """Run ``glimpse`` with a config file pointing at the test database."""
    config = tmp_path / "glimpse-api.conf"
    config.write_text(
        f"[database]\nconnection = {database_url}\n[glimpse]\ndata_dir = {tmp_path / 'data'}\n"
    )

    def run(*args: str, ok: bool = True, input: str | None = None) -> Any:
        result = CliRunner().invoke(main, [*args, "--config-file", str(config)], input=input)
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        else:
            assert result.exit_code != 0, result.output
        return result

    return run


def test_cli_load_export_unload(cli: Callable[..., Any], tmp_path: Path) -> None:
    out = cli("metadefs", "load").output
    assert out.count("created") == 4 and "Glimpse::Image::Libvirt" in out
    assert cli("metadefs", "load").output.count("skipped") == 4

    exported = tmp_path / "export"
    cli("metadefs", "export", "--path", str(exported))
    files = sorted(p.name for p in exported.glob("*.json"))
    assert files == ["Glimpse-Image-Common.json", "Glimpse-Image-Libvirt.json",
                     "Glimpse-Image-VMware.json", "Glimpse-Image-XenAPI.json"]
    common_file = exported / "Glimpse-Image-Common.json"
    common = json.loads(common_file.read_text())
    assert common["properties"]["os_distro"]["enum"][-2:] == ["ubuntu", "windows"]
    assert common["resource_type_associations"] == [{"name": IMAGE}]
    # An export loads back as the same namespace.
    shipped = dict(catalogue.shipped_documents())["image-common.json"]
    assert catalogue.parse(common, "export") == catalogue.parse(shipped, "shipped")

    # --merge adds what is missing; --prefer-new also replaces what differs.
    common["properties"]["os_extra"] = {"title": "Extra", "type": "string"}
    common["properties"]["os_version"]["title"] = "Changed"
    common_file.write_text(json.dumps(common))
    assert "merged" in cli("metadefs", "load", "--path", str(common_file), "--merge").output
    again = tmp_path / "again"
    cli("metadefs", "export", "--path", str(again))
    merged = json.loads((again / "Glimpse-Image-Common.json").read_text())
    assert "os_extra" in merged["properties"]
    assert merged["properties"]["os_version"]["title"] != "Changed"
    out = cli("metadefs", "load", "--path", str(common_file), "--merge", "--prefer-new").output
    assert "updated" in out
    cli("metadefs", "export", "--path", str(again))
    updated = json.loads((again / "Glimpse-Image-Common.json").read_text())
    assert updated["properties"]["os_version"]["title"] == "Changed"

    # --overwrite replaces a namespace with the file's version.
    assert "replaced" in cli("metadefs", "load", "--overwrite").output
    cli("metadefs", "export", "--path", str(again))
    restored = json.loads((again / "Glimpse-Image-Common.json").read_text())
    assert "os_extra" not in restored["properties"]

    cli("metadefs", "load", "--merge", "--overwrite", ok=False)
    cli("metadefs", "load", "--prefer-new", ok=False)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"namespace": "X", "properties": {"p": {"type": "string"}}}))
    result = cli("metadefs", "load", "--path", str(broken), ok=False)
    assert "title" in result.output

    cli("metadefs", "unload", input="n\n", ok=False)  # asks first
    assert "removed 4 namespaces" in cli("metadefs", "unload", "--yes").output
    empty = tmp_path / "empty"
    cli("metadefs", "export", "--path", str(empty))
    assert list(empty.glob("*.json")) == []


# -- [glimpse] validate_image_properties_against_metadefs ---------------------------------------


async def test_properties_are_free_by_default(node: Node, client: httpx.AsyncClient) -> None:
    await load_shipped(node)
    image = await create_image(client, os_distro="Ubuntu", hw_vif_model="bogus")
    assert image["os_distro"] == "Ubuntu"


@pytest.fixture
async def checking(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """A node with the check on, the shipped catalogue loaded and token auth."""
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"tokens": TOKENS}))
    node = await make_node(make_settings(
        "[glimpse]\nvalidate_image_properties_against_metadefs = true\n",
        auth_strategy="tokens", token_file=token_file,
    ))
    assert node.settings.validate_image_properties_against_metadefs is True
    await load_shipped(node)
    clients: list[httpx.AsyncClient] = []

    def for_token(token: str) -> httpx.AsyncClient:
        clients.append(client_for(node, token))
        return clients[-1]

    yield for_token
    for c in clients:
        await c.aclose()


async def refused(client: httpx.AsyncClient, **properties: str) -> str:
    response = await client.post(
        "/v2/images", json={"disk_format": "raw", "container_format": "bare", **properties},
        headers={"accept": "application/json"},
    )
    assert response.status_code == 400, response.text
    message: str = response.json()["message"]
    return message


async def test_check_refuses_values_the_catalogue_does_not_allow(
    checking: Callable[[str], httpx.AsyncClient],
) -> None:
    alice = checking("alice-token")
    message = await refused(alice, os_distro="Ubuntu")
    assert message.startswith("Property os_distro has an invalid value 'Ubuntu'")
    assert "did you mean 'ubuntu'?" in message
    assert "did you mean 'rhel'?" in await refused(alice, os_distro="com.redhat.rhel")
    assert "did you mean 'debian'?" in await refused(alice, os_distro="org.debian")
    assert "not an integer" in await refused(alice, hw_numa_nodes="two")
    assert "minimum" in await refused(alice, hw_numa_nodes="0")
    assert "pattern" in await refused(alice, **{"hw_numa_cpus.1": "0,a"})
    assert "boolean" in await refused(alice, auto_disk_config="maybe")
    # hw_vif_model is defined per hypervisor: a value has to fit one of them.
    message = await refused(alice, hw_vif_model="bogus")
    assert "Glimpse::Image::Libvirt" in message and "Glimpse::Image::VMware" in message

    image = await create_image(
        alice, os_distro="ubuntu", os_version="22.04", hw_vif_model="VirtualE1000",
        hw_numa_nodes="2", auto_disk_config="true", **{"hw_numa_cpus.0": "0-1,3"},
        hw_qemu_guest_agent="yes", hw_firmware_type="uefi", os_secure_boot="required",
        hw_machine_type="q35", architecture="x86_64", free_form="anything",
    )
    assert image["os_distro"] == "ubuntu"
    response = await patch(alice, image["id"], [
        {"op": "replace", "path": "/os_distro", "value": "Fedora"}])
    assert response.status_code == 400 and "fedora" in response.text
    response = await patch(alice, image["id"], [
        {"op": "add", "path": "/hw_video_model", "value": "virtio"},
        {"op": "replace", "path": "/os_version", "value": "24.04"}])
    assert response.status_code == 200, response.text
    assert (await alice.get(f"/v2/images/{image['id']}")).json()["os_distro"] == "ubuntu"


async def test_check_uses_public_and_own_namespaces_with_their_prefix(
    checking: Callable[[str], httpx.AsyncClient],
) -> None:
    admin = checking("admin-token")
    response = await admin.post(NS, json={
        "namespace": "B::Colours", "owner": "project-b", "visibility": "private",
        "resource_type_associations": [{"name": IMAGE, "prefix": "paint_"}],
        "properties": {"colour": {"title": "Colour", "type": "string",
                                  "enum": ["red", "green"]}},
    })
    assert response.status_code == 201, response.text
    bob, alice = checking("bob-token"), checking("alice-token")
    message = await refused(bob, paint_colour="blue")
    assert "paint_colour" in message and "(namespace B::Colours)" in message
    assert (await create_image(bob, paint_colour="red"))["paint_colour"] == "red"
    assert (await create_image(bob, colour="blue"))["colour"] == "blue"  # no prefix: free
    # project-a does not see project-b's private namespace: its definitions do not apply.
    assert (await create_image(alice, paint_colour="blue"))["paint_colour"] == "blue"


# -- the migration ------------------------------------------------------------------------------


async def test_migration_creates_the_declared_tables(node: Node) -> None:
    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection)
        return [d for d in compare_metadata(context, metadata) if "metadef" in repr(d)]

    async with node.db.engine.connect() as conn:
        assert await conn.run_sync(differences) == []
