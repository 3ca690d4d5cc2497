"""An operator's policy.yaml, named by ``[oslo_policy] policy_file``, overrides Glance's
default rules by name."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import TOKENS, client_for, create_image, patch, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings


@asynccontextmanager
async def tenants(
    make_settings: Callable[..., Settings], make_node: Callable[[Settings], Any],
    tmp_path: Path, config: str,
) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"tokens": TOKENS}))
    settings = make_settings(config, auth_strategy="tokens", token_file=token_file)
    node: Node = await make_node(settings)
    clients: list[httpx.AsyncClient] = []

    def for_token(token: str) -> httpx.AsyncClient:
        clients.append(client_for(node, token))
        return clients[-1]

    yield for_token
    for c in clients:
        await c.aclose()


async def test_publicize_image_opened_to_members(
    make_settings: Callable[..., Settings], make_node: Callable[[Settings], Any], tmp_path: Path
) -> None:
    (tmp_path / "policy.yaml").write_text(
        '# the operator lets project members publish images\n'
        '"publicize_image": "role:member"\n'
    )
    config = "[oslo_policy]\npolicy_file = policy.yaml\n"
    async with tenants(make_settings, make_node, tmp_path, config) as clients:
        alice, bob, rita = clients("alice-token"), clients("bob-token"), clients("reader-a-token")
        image = await create_image(alice, name="made public", visibility="public")
        assert image["visibility"] == "public"
        other = await create_image(alice, name="later")
        response = await patch(alice, other["id"], [{"op": "replace", "path": "/visibility",
                                                     "value": "public"}])
        assert response.status_code == 200
        listed = {i["name"] for i in (await bob.get("/v2/images")).json()["images"]}
        assert listed == {"made public", "later"}
        # Rules not overridden keep Glance's defaults.
        response = await rita.post("/v2/images", json={"visibility": "public"})
        assert response.status_code == 403
        response = await patch(bob, image["id"], [{"op": "replace", "path": "/name",
                                                   "value": "x"}])
        assert response.status_code == 403


async def test_without_the_override_members_cannot_publicize(multi_tenant: Any) -> None:
    alice = multi_tenant("alice-token")
    response = await alice.post("/v2/images", json={"visibility": "public"})
    assert response.status_code == 403


async def test_rules_can_be_tightened_and_use_json(
    make_settings: Callable[..., Settings], make_node: Callable[[Settings], Any], tmp_path: Path
) -> None:
    policy_file = tmp_path / "custom-policy.json"
    policy_file.write_text(json.dumps({
        "delete_image": "role:admin",
        "download_image": "role:admin",
        "communitize_image": "!",
        "context_is_admin": "role:admin or user_id:carol",
    }))
    config = f"[oslo_policy]\npolicy_file = {policy_file}\n"
    async with tenants(make_settings, make_node, tmp_path, config) as clients:
        alice, admin, carol = clients("alice-token"), clients("admin-token"), clients("carol-token")
        image = await create_image(alice, name="mine")
        assert (await upload(alice, image["id"], b"data")).status_code == 204
        assert (await alice.get(f"/v2/images/{image['id']}/file")).status_code == 403
        assert (await alice.delete(f"/v2/images/{image['id']}")).status_code == 403
        response = await alice.post("/v2/images", json={"visibility": "community"})
        assert response.status_code == 403
        assert (await admin.get(f"/v2/images/{image['id']}/file")).content == b"data"
        # A redefined base rule is used by every rule that refers to it, and decides who
        # is an administrator: carol sees, lists and changes another project's image,
        # but delete_image now needs the role itself.
        assert (await carol.get(f"/v2/images/{image['id']}")).status_code == 200
        listed = (await carol.get("/v2/images")).json()["images"]
        assert [i["id"] for i in listed] == [image["id"]]
        response = await patch(carol, image["id"], [{"op": "replace", "path": "/name",
                                                     "value": "by carol"}])
        assert response.status_code == 200
        assert (await carol.delete(f"/v2/images/{image['id']}")).status_code == 403
        assert (await admin.delete(f"/v2/images/{image['id']}")).status_code == 204


async def test_listing_can_be_closed(
    make_settings: Callable[..., Settings], make_node: Callable[[Settings], Any], tmp_path: Path
) -> None:
    (tmp_path / "policy.yaml").write_text('"get_images": "role:admin"\n"add_member": "!"\n')
    config = "[oslo_policy]\npolicy_file = policy.yaml\n"
    async with tenants(make_settings, make_node, tmp_path, config) as clients:
        alice, admin = clients("alice-token"), clients("admin-token")
        image = await create_image(alice)
        assert (await alice.get("/v2/images")).status_code == 403
        assert (await admin.get("/v2/images")).status_code == 200
        assert (await alice.get(f"/v2/images/{image['id']}")).status_code == 200
        response = await alice.post(f"/v2/images/{image['id']}/members",
                                    json={"member": "project-b"})
        assert response.status_code == 403
