"""The metadefs API (namespaces, objects, properties, tags, resource types) as an
administrator: paths, status codes and JSON shapes as Glance's, in-process."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

NS = "/v2/metadefs/namespaces"
IMAGE = "OS::Glance::Image"


async def create_namespace(client: httpx.AsyncClient, name: str, **body: Any) -> dict[str, Any]:
    response = await client.post(NS, json={"namespace": name, **body})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def schema(client: httpx.AsyncClient, kind: str) -> dict[str, Any]:
    response = await client.get(f"/v2/schemas/metadefs/{kind}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# -- namespaces ---------------------------------------------------------------------------


async def test_namespace_create_show_defaults(client: httpx.AsyncClient) -> None:
    response = await client.post(NS, json={"namespace": "Test::Basic"})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{NS}/Test::Basic"
    body = response.json()
    assert body["namespace"] == "Test::Basic"
    assert body["visibility"] == "private"
    assert body["protected"] is False
    assert body["owner"] == "admin"  # the caller's project (noauth: "admin")
    assert body["self"] == f"{NS}/Test::Basic"
    assert body["schema"] == "/v2/schemas/metadefs/namespace"
    assert body["created_at"].endswith("Z") and body["updated_at"].endswith("Z")
    # Fields not set are left out, as Glance's serialiser does.
    for absent in ("display_name", "description", "properties", "objects", "tags",
                   "resource_type_associations"):
        assert absent not in body
    shown = (await client.get(f"{NS}/Test::Basic")).json()
    assert shown == body
    jsonschema.validate(shown, await schema(client, "namespace"))


async def test_namespace_create_with_content_and_prefixed_show(client: httpx.AsyncClient) -> None:
    body = await create_namespace(
        client, "Test::Full", display_name="Full", description="Everything at once",
        visibility="public", protected=True,
        resource_type_associations=[{"name": IMAGE, "prefix": "hw_"},
                                    {"name": "OS::Cinder::Volume", "prefix": "hw_",
                                     "properties_target": "image"}],
        properties={"cpu_cores": {"title": "Cores", "type": "integer", "minimum": 1,
                                  "unknown_key": "dropped"}},
        objects=[{"name": "CPU", "description": "cpu", "required": ["cpu_sockets"],
                  "properties": {"cpu_sockets": {"title": "Sockets", "type": "integer"}}}],
        tags=[{"name": "alpha"}, {"name": "beta"}],
    )
    assert body["protected"] is True and body["visibility"] == "public"
    assert body["properties"] == {
        "cpu_cores": {"title": "Cores", "type": "integer", "minimum": 1}
    }
    assert [o["name"] for o in body["objects"]] == ["CPU"]
    assert body["objects"][0]["self"] == f"{NS}/Test::Full/objects/CPU"
    assert sorted(t["name"] for t in body["tags"]) == ["alpha", "beta"]
    assocs = {a["name"]: a for a in body["resource_type_associations"]}
    assert assocs["OS::Cinder::Volume"]["properties_target"] == "image"
    assert "properties_target" not in assocs[IMAGE]
    jsonschema.validate(body, await schema(client, "namespace"))

    prefixed = (await client.get(f"{NS}/Test::Full", params={"resource_type": IMAGE})).json()
    assert list(prefixed["properties"]) == ["hw_cpu_cores"]
    assert list(prefixed["objects"][0]["properties"]) == ["hw_cpu_sockets"]
    assert prefixed["objects"][0]["required"] == ["hw_cpu_sockets"]
    # An unknown resource type changes nothing.
    plain = (await client.get(f"{NS}/Test::Full", params={"resource_type": "Nope"})).json()
    assert list(plain["properties"]) == ["cpu_cores"]


async def test_namespace_errors(client: httpx.AsyncClient) -> None:
    await create_namespace(client, "Test::Dup")
    assert (await client.post(NS, json={"namespace": "Test::Dup"})).status_code == 409
    assert (await client.get(f"{NS}/Test::Missing")).status_code == 404
    # Schema problems are 400; read-only attributes are 403 (as Glance).
    assert (await client.post(NS, json={"display_name": "no name"})).status_code == 400
    assert (await client.post(NS, json={"namespace": "x", "visibility": "shared"})
            ).status_code == 400
    assert (await client.post(NS, json={"namespace": "x" * 81})).status_code == 400
    assert (await client.post(NS, json={"namespace": "x", "bogus": 1})).status_code == 400
    for key in ("self", "schema", "created_at", "updated_at"):
        response = await client.post(NS, json={"namespace": "x", key: "v"})
        assert response.status_code == 403, (key, response.text)
    response = await client.post(NS, json={"namespace": "x", "properties": {"p": {"title": "P"}}})
    assert response.status_code == 400  # a property needs a type
    response = await client.post(NS, content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    # Content that names something twice is refused whole: no namespace is left behind.
    response = await client.post(NS, json={"namespace": "Test::Twice",
                                           "tags": [{"name": "a"}, {"name": "a"}]})
    assert response.status_code == 400
    assert (await client.get(f"{NS}/Test::Twice")).status_code == 404


async def test_namespace_update_rename_and_delete(client: httpx.AsyncClient) -> None:
    await create_namespace(client, "Test::Old", display_name="Old", visibility="public",
                           tags=[{"name": "kept"}])
    await create_namespace(client, "Test::Taken")
    response = await client.put(f"{NS}/Test::Old", json={
        "namespace": "Test::New", "display_name": "New", "description": "renamed",
        "visibility": "public", "protected": False,
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["namespace"] == "Test::New" and body["display_name"] == "New"
    assert body["self"] == f"{NS}/Test::New"
    assert "tags" not in body  # an update returns the namespace's own fields only
    assert (await client.get(f"{NS}/Test::Old")).status_code == 404
    shown = (await client.get(f"{NS}/Test::New")).json()
    assert shown["tags"] == [{"name": "kept"}]  # content follows the rename
    # A PUT is a replacement: unset visibility falls back to private.
    body = (await client.put(f"{NS}/Test::New", json={"namespace": "Test::New"})).json()
    assert body["visibility"] == "private" and "display_name" not in body
    assert (await client.put(f"{NS}/Test::New", json={"namespace": "Test::Taken"})
            ).status_code == 409
    assert (await client.put(f"{NS}/Test::Gone", json={"namespace": "Test::Gone"})
            ).status_code == 404
    assert (await client.put(f"{NS}/Test::New", json={"namespace": "Test::New",
                                                      "created_at": "x"})).status_code == 403
    assert (await client.delete(f"{NS}/Test::New")).status_code == 204
    assert (await client.get(f"{NS}/Test::New")).status_code == 404
    assert (await client.delete(f"{NS}/Test::New")).status_code == 404


async def test_protected_namespace_and_content_cannot_be_deleted(
    client: httpx.AsyncClient,
) -> None:
    await create_namespace(
        client, "Test::Protected", protected=True,
        resource_type_associations=[{"name": IMAGE}],
        properties={"p": {"title": "P", "type": "string"}},
        objects=[{"name": "o"}], tags=[{"name": "t"}],
    )
    base = f"{NS}/Test::Protected"
    for path in ("", "/objects", "/properties", "/tags", "/objects/o", "/properties/p",
                 "/tags/t", f"/resource_types/{IMAGE}"):
        response = await client.delete(base + path)
        assert response.status_code == 403, (path, response.text)
        assert "protected" in response.text
    # Unprotect, then everything goes.
    await client.put(base, json={"namespace": "Test::Protected", "protected": False})
    for path in ("/objects", "/properties", "/tags", f"/resource_types/{IMAGE}", ""):
        assert (await client.delete(base + path)).status_code == 204, path


async def test_namespace_list_pagination_sort_and_filters(client: httpx.AsyncClient) -> None:
    names = [f"Test::List{i}" for i in range(5)]
    for i, name in enumerate(names):
        await create_namespace(
            client, name, visibility="public" if i % 2 else "private",
            resource_type_associations=[{"name": IMAGE}] if i < 2 else [],
        )
    body = (await client.get(NS)).json()
    assert body["first"] == NS and body["schema"] == "/v2/schemas/metadefs/namespaces"
    assert "next" not in body
    assert [n["namespace"] for n in body["namespaces"]] == names[::-1]  # created_at desc
    jsonschema.validate(body, await schema(client, "namespaces"))

    seen: list[str] = []
    url: str | None = f"{NS}?limit=2&sort_key=namespace&sort_dir=asc"
    while url:
        page = (await client.get(url)).json()
        seen += [n["namespace"] for n in page["namespaces"]]
        assert len(page["namespaces"]) <= 2
        url = page.get("next")
    assert seen == sorted(names)

    public = (await client.get(NS, params={"visibility": "public"})).json()["namespaces"]
    assert {n["namespace"] for n in public} == {names[1], names[3]}
    by_type = (await client.get(NS, params={"resource_types": f"{IMAGE},Other"})).json()
    assert {n["namespace"] for n in by_type["namespaces"]} == {names[0], names[1]}
    assert by_type["namespaces"][0]["resource_type_associations"][0]["name"] == IMAGE

    for params in ({"visibility": "shared"}, {"sort_dir": "up"}, {"sort_key": "nope"},
                   {"limit": "x"}, {"limit": "-1"}):
        assert (await client.get(NS, params=params)).status_code == 400, params
    assert (await client.get(NS, params={"marker": "Test::Nope"})).status_code == 404


# -- objects ------------------------------------------------------------------------------


async def test_object_crud(client: httpx.AsyncClient) -> None:
    await create_namespace(client, "Test::Objects")
    base = f"{NS}/Test::Objects/objects"
    obj = {"name": "CPU Limits", "description": "Limits of the CPU",
           "required": ["quota:cpu_shares"],
           "properties": {"quota:cpu_shares": {"title": "Shares", "type": "integer",
                                               "minimum": 0}}}
    response = await client.post(base, json=obj)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["self"] == f"{base}/CPU Limits"
    assert created["schema"] == "/v2/schemas/metadefs/object"
    assert created["required"] == ["quota:cpu_shares"]
    jsonschema.validate(created, await schema(client, "object"))
    assert (await client.post(base, json=obj)).status_code == 409
    assert (await client.post(base, json={"name": "bad", "properties": {"x": {"type": "string"}}})
            ).status_code == 400  # a property definition needs a title
    assert (await client.post(base, json={"name": "ro", "self": "x"})).status_code == 403
    await client.post(base, json={"name": "Second"})

    listed = (await client.get(base)).json()
    assert [o["name"] for o in listed["objects"]] == ["CPU Limits", "Second"]
    assert listed["schema"] == "/v2/schemas/metadefs/objects"
    jsonschema.validate(listed, await schema(client, "objects"))
    shown = (await client.get(f"{base}/CPU Limits")).json()
    assert shown["properties"]["quota:cpu_shares"]["minimum"] == 0

    response = await client.put(f"{base}/CPU Limits",
                                json={"name": "CPU", "description": "renamed"})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "CPU" and response.json()["properties"] == {}
    assert (await client.get(f"{base}/CPU Limits")).status_code == 404
    assert (await client.put(f"{base}/CPU", json={"name": "Second"})).status_code == 409
    assert (await client.put(f"{base}/Nope", json={"name": "Nope"})).status_code == 404

    assert (await client.delete(f"{base}/CPU")).status_code == 204
    assert (await client.delete(f"{base}/CPU")).status_code == 404
    assert (await client.delete(base)).status_code == 204
    assert (await client.get(base)).json()["objects"] == []
    assert (await client.get(f"{NS}/Test::Nope/objects")).status_code == 404


# -- properties ---------------------------------------------------------------------------


async def test_property_crud_and_prefix(client: httpx.AsyncClient) -> None:
    await create_namespace(client, "Test::Props",
                           resource_type_associations=[{"name": IMAGE, "prefix": "hw_"}])
    base = f"{NS}/Test::Props/properties"
    prop = {"name": "watchdog_action", "title": "Watchdog", "type": "string",
            "enum": ["disabled", "reset", "poweroff"], "default": "disabled"}
    response = await client.post(base, json=prop)
    assert response.status_code == 201, response.text
    assert response.json() == prop
    jsonschema.validate(response.json(), await schema(client, "property"))
    assert (await client.post(base, json=prop)).status_code == 409
    assert (await client.post(base, json={"title": "No name", "type": "string"})
            ).status_code == 400
    assert (await client.post(base, json={**prop, "name": "x", "type": "text"})
            ).status_code == 400
    assert (await client.post(base, json={**prop, "name": "x", "unknown": 1})
            ).status_code == 400
    await client.post(base, json={"name": "numbers", "title": "N", "type": "array",
                                  "items": {"type": "integer"}, "minItems": 1})

    listed = (await client.get(base)).json()
    assert list(listed["properties"]) == ["watchdog_action", "numbers"]
    assert listed["properties"]["numbers"]["items"] == {"type": "integer"}
    jsonschema.validate(listed, await schema(client, "properties"))
    assert (await client.get(f"{base}/watchdog_action")).json()["enum"][1] == "reset"

    # Asked with a resource type, the name is given with that type's prefix.
    shown = await client.get(f"{base}/hw_watchdog_action", params={"resource_type": IMAGE})
    assert shown.status_code == 200, shown.text
    assert shown.json()["title"] == "Watchdog"
    assert (await client.get(f"{base}/watchdog_action", params={"resource_type": IMAGE})
            ).status_code == 404
    assert (await client.get(f"{base}/hw_watchdog_action", params={"resource_type": "Nope"})
            ).status_code == 404

    updated = await client.put(f"{base}/watchdog_action",
                               json={**prop, "name": "watchdog", "title": "Dog"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "watchdog" and updated.json()["title"] == "Dog"
    assert (await client.get(f"{base}/watchdog_action")).status_code == 404
    assert (await client.put(f"{base}/watchdog", json={**prop, "name": "numbers"})
            ).status_code == 409
    assert (await client.put(f"{base}/nope", json={**prop, "name": "nope"})).status_code == 404

    assert (await client.delete(f"{base}/watchdog")).status_code == 204
    assert (await client.delete(f"{base}/watchdog")).status_code == 404
    assert (await client.delete(base)).status_code == 204
    assert (await client.get(base)).json() == {"properties": {}}


# -- tags ---------------------------------------------------------------------------------


async def test_tag_crud(client: httpx.AsyncClient) -> None:
    await create_namespace(client, "Test::Tags")
    base = f"{NS}/Test::Tags/tags"
    response = await client.post(f"{base}/single")
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "single" and "created_at" in response.json()
    jsonschema.validate(response.json(), await schema(client, "tag"))
    assert (await client.post(f"{base}/single")).status_code == 409
    assert (await client.post(f"{base}/{'x' * 81}")).status_code == 400

    # Several at once replace the namespace's tags...
    response = await client.post(base, json={"tags": [{"name": "a"}, {"name": "b"}]})
    assert response.status_code == 201, response.text
    assert response.json() == {"tags": [{"name": "a"}, {"name": "b"}]}
    assert {t["name"] for t in (await client.get(base)).json()["tags"]} == {"a", "b"}
    # ...or, with X-Openstack-Append, are added to them.
    response = await client.post(base, json={"tags": [{"name": "c"}]},
                                 headers={"X-Openstack-Append": "True"})
    assert response.status_code == 201
    assert {t["name"] for t in (await client.get(base)).json()["tags"]} == {"a", "b", "c"}
    assert (await client.post(base, json={"tags": [{"name": "c"}]},
                              headers={"X-Openstack-Append": "true"})).status_code == 409
    assert (await client.post(base, json={"tags": [{"name": "d"}, {"name": "d"}]})
            ).status_code == 409
    assert (await client.post(base, json={"tags": [{"nom": "d"}]})).status_code == 400
    assert {t["name"] for t in (await client.get(base)).json()["tags"]} == {"a", "b", "c"}

    listed = (await client.get(base, params={"sort_key": "name", "sort_dir": "asc",
                                             "limit": 2})).json()
    assert listed == {"tags": [{"name": "a"}, {"name": "b"}]}
    after = (await client.get(base, params={"sort_key": "name", "sort_dir": "asc",
                                            "marker": "b"})).json()
    assert after == {"tags": [{"name": "c"}]}
    assert (await client.get(base, params={"marker": "zz"})).status_code == 404

    shown = (await client.get(f"{base}/a")).json()
    assert shown["name"] == "a" and "updated_at" in shown
    response = await client.put(f"{base}/a", json={"name": "aa"})
    assert response.status_code == 200 and response.json()["name"] == "aa"
    assert (await client.get(f"{base}/a")).status_code == 404
    assert (await client.put(f"{base}/aa", json={"name": "b"})).status_code == 409
    assert (await client.put(f"{base}/aa", json={"name": "x", "created_at": "t"})
            ).status_code == 403
    assert (await client.put(f"{base}/nope", json={"name": "y"})).status_code == 404
    assert (await client.delete(f"{base}/aa")).status_code == 204
    assert (await client.delete(f"{base}/aa")).status_code == 404
    assert (await client.delete(base)).status_code == 204
    assert (await client.get(base)).json() == {"tags": []}


# -- resource types -------------------------------------------------------------------------


async def test_resource_type_associations(client: httpx.AsyncClient) -> None:
    await create_namespace(client, "Test::Types")
    base = f"{NS}/Test::Types/resource_types"
    response = await client.post(base, json={"name": IMAGE, "prefix": "hw_"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == IMAGE and created["prefix"] == "hw_"
    assert "properties_target" not in created
    jsonschema.validate(created, await schema(client, "resource_type"))
    assert (await client.post(base, json={"name": IMAGE})).status_code == 409
    assert (await client.post(base, json={"prefix": "x"})).status_code == 400
    assert (await client.post(base, json={"name": "X", "created_at": "t"})).status_code == 403
    await client.post(base, json={"name": "OS::Nova::Flavor", "properties_target": "x"})

    listed = (await client.get(base)).json()
    assert [a["name"] for a in listed["resource_type_associations"]] == [
        IMAGE, "OS::Nova::Flavor"
    ]
    jsonschema.validate(listed, await schema(client, "resource_types"))
    types = (await client.get("/v2/metadefs/resource_types")).json()["resource_types"]
    assert {t["name"] for t in types} == {IMAGE, "OS::Nova::Flavor"}

    assert (await client.delete(f"{base}/OS::Nova::Flavor")).status_code == 204
    assert (await client.delete(f"{base}/OS::Nova::Flavor")).status_code == 404
    assert (await client.delete(f"{base}/Never::Seen")).status_code == 404
    assert [a["name"] for a in (await client.get(base)).json()["resource_type_associations"]
            ] == [IMAGE]
    # A resource type outlives its associations, as in Glance.
    types = (await client.get("/v2/metadefs/resource_types")).json()["resource_types"]
    assert "OS::Nova::Flavor" in {t["name"] for t in types}
    # Deleting the namespace takes its associations with it.
    assert (await client.delete(f"{NS}/Test::Types")).status_code == 204
    assert (await client.get(base)).status_code == 404


# -- schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["namespace", "namespaces", "object", "objects", "property",
                                  "properties", "resource_type", "resource_types", "tag",
                                  "tags"])
async def test_schema_documents(client: httpx.AsyncClient, kind: str) -> None:
    document = await schema(client, kind)
    jsonschema.Draft4Validator.check_schema(document)
    assert document["name"] in (kind, "resource_type_association", "resource_type_associations")
    if kind.endswith("s"):
        assert {"first", "next", "schema"} <= set(document["properties"])
    else:
        assert document["additionalProperties"] is False


async def test_unknown_schema_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/schemas/metadefs/nope")).status_code == 404
