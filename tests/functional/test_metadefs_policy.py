"""Who may read and write metadefs (guide 1.8, 1.9).

Default policy: only administrators create, change or delete; everyone reads public
namespaces and their own project's. Namespaces a caller may not see are "not found"
(404) for reads and writes alike; visible ones they may not change are 403.

Guide 1.9's override (``metadef_default: ''`` and every metadef rule set to
``rule:metadef_default``), given as an operator's ``policy.yaml`` through
``[oslo_policy] policy_file``, opens writes to all users; other projects' private
namespaces stay invisible.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import TOKENS, client_for

from glimpse.config import Settings

NS = "/v2/metadefs/namespaces"
IMAGE = "OS::Glance::Image"

# Guide 1.9, as the policy.yaml an operator writes from it.
METADEF_RULES = [
    "get_metadef_namespace", "get_metadef_namespaces", "modify_metadef_namespace",
    "add_metadef_namespace", "delete_metadef_namespace", "get_metadef_object",
    "get_metadef_objects", "modify_metadef_object", "add_metadef_object",
    "delete_metadef_object", "list_metadef_resource_types", "get_metadef_resource_type",
    "add_metadef_resource_type_association", "remove_metadef_resource_type_association",
    "get_metadef_property", "get_metadef_properties", "modify_metadef_property",
    "add_metadef_property", "remove_metadef_property", "get_metadef_tag", "get_metadef_tags",
    "modify_metadef_tag", "add_metadef_tag", "add_metadef_tags", "delete_metadef_tag",
    "delete_metadef_tags",
]
OPEN_POLICY = "\"metadef_default\": ''\n" + "".join(
    f'"{rule}": "rule:metadef_default"\n' for rule in METADEF_RULES
)

CONTENT: dict[str, Any] = {
    "resource_type_associations": [{"name": IMAGE}],
    "properties": {"p": {"title": "P", "type": "string"}},
    "objects": [{"name": "o"}],
    "tags": [{"name": "t"}],
}

Clients = Callable[[str], httpx.AsyncClient]


async def make_namespace(
    client: httpx.AsyncClient, name: str, *, expect: int = 201, **body: Any
) -> None:
    response = await client.post(NS, json={"namespace": name, **CONTENT, **body})
    assert response.status_code == expect, response.text


async def read_codes(client: httpx.AsyncClient, name: str) -> set[int]:
    """Status codes of every read of a namespace and its content."""
    base = f"{NS}/{name}"
    paths = ["", "/objects", "/objects/o", "/properties", "/properties/p", "/tags",
             "/tags/t", "/resource_types"]
    return {(await client.get(base + path)).status_code for path in paths}


async def write_codes(client: httpx.AsyncClient, name: str) -> dict[str, int]:
    """Status codes of every kind of write to a namespace (none of them can succeed
    for the callers this is used with, so the namespace is unchanged afterwards)."""
    base = f"{NS}/{name}"
    prop = {"name": "q", "title": "Q", "type": "string"}
    calls = {
        "add_metadef_object": client.post(f"{base}/objects", json={"name": "o2"}),
        "modify_metadef_object": client.put(f"{base}/objects/o", json={"name": "o"}),
        "delete_metadef_object": client.delete(f"{base}/objects/o"),
        "add_metadef_property": client.post(f"{base}/properties", json=prop),
        "modify_metadef_property": client.put(f"{base}/properties/p", json={**prop, "name": "p"}),
        "remove_metadef_property": client.delete(f"{base}/properties/p"),
        "add_metadef_tag": client.post(f"{base}/tags/t2"),
        "add_metadef_tags": client.post(f"{base}/tags", json={"tags": [{"name": "t3"}]}),
        "modify_metadef_tag": client.put(f"{base}/tags/t", json={"name": "t"}),
        "delete_metadef_tag": client.delete(f"{base}/tags/t"),
        "add_metadef_resource_type_association": client.post(
            f"{base}/resource_types", json={"name": "OS::Nova::Flavor"}),
        "remove_metadef_resource_type_association": client.delete(
            f"{base}/resource_types/{IMAGE}"),
        "delete_objects": client.delete(f"{base}/objects"),
        "delete_properties": client.delete(f"{base}/properties"),
        "delete_tags": client.delete(f"{base}/tags"),
        "modify_metadef_namespace": client.put(base, json={"namespace": name}),
        "delete_metadef_namespace": client.delete(base),
    }
    return {rule: (await call).status_code for rule, call in calls.items()}


async def listed(client: httpx.AsyncClient) -> set[str]:
    response = await client.get(NS)
    assert response.status_code == 200, response.text
    return {n["namespace"] for n in response.json()["namespaces"]}


# -- the default policy --------------------------------------------------------------------


@pytest.fixture
async def catalogue(multi_tenant: Clients) -> Clients:
    """Three namespaces made by an admin: public and private of project-a, private of
    the admin's project."""
    admin = multi_tenant("admin-token")
    await make_namespace(admin, "A::Public", visibility="public", owner="project-a")
    await make_namespace(admin, "A::Private", visibility="private", owner="project-a")
    await make_namespace(admin, "Admin::Private", visibility="private")
    return multi_tenant


async def test_default_admin_sees_and_writes_everything(catalogue: Clients) -> None:
    admin = catalogue("admin-token")
    assert {"A::Public", "A::Private", "Admin::Private"} <= await listed(admin)
    for name in ("A::Public", "A::Private", "Admin::Private"):
        assert await read_codes(admin, name) == {200}
    response = await admin.put(f"{NS}/A::Private", json={
        "namespace": "A::Private", "owner": "project-a", "description": "by admin"})
    assert response.status_code == 200, response.text
    assert (await admin.post(f"{NS}/A::Private/tags/admin-tag")).status_code == 201
    assert (await admin.delete(f"{NS}/Admin::Private")).status_code == 204


@pytest.mark.parametrize("token", ["alice-token", "reader-a-token"])
async def test_default_owning_project_reads_but_cannot_write(
    catalogue: Clients, token: str
) -> None:
    client = catalogue(token)
    assert await listed(client) == {"A::Public", "A::Private"}
    assert await read_codes(client, "A::Private") == {200}
    assert await read_codes(client, "A::Public") == {200}
    # Only admins write (guide 1.8), even to the project's own namespaces.
    response = await client.post(NS, json={"namespace": "A::Mine"})
    assert response.status_code == 403, response.text
    for name in ("A::Private", "A::Public"):
        codes = await write_codes(client, name)
        assert set(codes.values()) == {403}, codes
    assert await read_codes(client, "A::Private") == {200}  # nothing changed
    # Another project's private namespace is not found, for reads and writes alike.
    assert await read_codes(client, "Admin::Private") == {404}
    assert set((await write_codes(client, "Admin::Private")).values()) == {404}
    assert (await client.get("/v2/metadefs/resource_types")).status_code == 200


async def test_default_other_project_sees_only_public(catalogue: Clients) -> None:
    bob = catalogue("bob-token")
    assert await listed(bob) == {"A::Public"}
    assert await read_codes(bob, "A::Public") == {200}
    assert await read_codes(bob, "A::Private") == {404}
    assert set((await write_codes(bob, "A::Public")).values()) == {403}
    assert set((await write_codes(bob, "A::Private")).values()) == {404}
    assert (await bob.post(NS, json={"namespace": "B::Mine"})).status_code == 403
    # Filters and markers cannot reach what the caller may not see.
    only_private = (await bob.get(NS, params={"visibility": "private"})).json()
    assert only_private["namespaces"] == []
    assert (await bob.get(NS, params={"marker": "A::Private"})).status_code == 404


# -- guide 1.9: opening writes to everyone ---------------------------------------------------


@pytest.fixture
async def opened(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[Clients]:
    """A node whose operator applied guide 1.9 in policy.yaml ([oslo_policy])."""
    (tmp_path / "policy.yaml").write_text(OPEN_POLICY)
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"tokens": TOKENS}))
    settings = make_settings(
        "[oslo_policy]\npolicy_file = policy.yaml\n",
        auth_strategy="tokens", token_file=token_file,
    )
    assert settings.policy_file == "policy.yaml"
    node = await make_node(settings)
    clients: list[httpx.AsyncClient] = []

    def for_token(token: str) -> httpx.AsyncClient:
        clients.append(client_for(node, token))
        return clients[-1]

    yield for_token
    for c in clients:
        await c.aclose()


async def test_override_opens_writes_to_project_members(opened: Clients) -> None:
    alice = opened("alice-token")
    await make_namespace(alice, "A::Open", visibility="private")
    shown = (await alice.get(f"{NS}/A::Open")).json()
    assert shown["owner"] == "project-a"
    base = f"{NS}/A::Open"
    prop = {"name": "q", "title": "Q", "type": "string"}
    steps = [
        alice.post(f"{base}/objects", json={"name": "o2"}),
        alice.put(f"{base}/objects/o2", json={"name": "o3", "description": "d"}),
        alice.delete(f"{base}/objects/o3"),
        alice.post(f"{base}/properties", json=prop),
        alice.put(f"{base}/properties/q", json={**prop, "title": "Q2"}),
        alice.delete(f"{base}/properties/q"),
        alice.post(f"{base}/tags/t2"),
        alice.post(f"{base}/tags", json={"tags": [{"name": "t3"}]},
                   headers={"X-Openstack-Append": "true"}),
        alice.put(f"{base}/tags/t3", json={"name": "t4"}),
        alice.delete(f"{base}/tags/t4"),
        alice.post(f"{base}/resource_types", json={"name": "OS::Nova::Flavor"}),
        alice.delete(f"{base}/resource_types/OS::Nova::Flavor"),
        alice.delete(f"{base}/objects"),
        alice.delete(f"{base}/properties"),
        alice.delete(f"{base}/tags"),
        alice.put(base, json={"namespace": "A::Opened", "visibility": "public"}),
    ]
    for step in steps:
        response = await step
        assert response.status_code in (200, 201, 204), response.text
    shown = (await alice.get(f"{NS}/A::Opened")).json()
    assert shown["visibility"] == "public"
    assert [a["name"] for a in shown["resource_type_associations"]] == [IMAGE]
    assert "objects" not in shown and "tags" not in shown and "properties" not in shown
    assert (await alice.delete(f"{NS}/A::Opened")).status_code == 204
    # Still: a project creates namespaces for itself only.
    response = await alice.post(NS, json={"namespace": "B::ByAlice", "owner": "project-b"})
    assert response.status_code == 403, response.text


async def test_override_keeps_private_namespaces_invisible(opened: Clients) -> None:
    alice, bob = opened("alice-token"), opened("bob-token")
    await make_namespace(alice, "A::Secret", visibility="private")
    await make_namespace(alice, "A::Shared", visibility="public")
    await make_namespace(bob, "B::Own", visibility="private")
    assert await listed(bob) == {"A::Shared", "B::Own"}
    assert await listed(alice) == {"A::Secret", "A::Shared"}
    assert await read_codes(bob, "A::Secret") == {404}
    assert set((await write_codes(bob, "A::Secret")).values()) == {404}
    # A public namespace is writable by everyone under this policy (what guide 1.9
    # asks for; it is why the guide tells operators to audit what they expose).
    response = await bob.put(f"{NS}/A::Shared", json={
        "namespace": "A::Shared", "visibility": "public", "owner": "project-a",
        "description": "edited by project-b"})
    assert response.status_code == 200, response.text
    # ...but nobody may hand a namespace to another project unless admin.
    response = await bob.put(f"{NS}/A::Shared", json={"namespace": "A::Shared",
                                                     "owner": "project-c"})
    assert response.status_code == 403
    admin = opened("admin-token")
    assert {"A::Secret", "A::Shared", "B::Own"} <= await listed(admin)
