"""The end of an image's life: delete ordering (data first, record last), delayed delete
and the scrubber, restore, and purging deleted rows (issues #8 and #10).

A store that refuses to delete (RBD data whose snapshot has clones) or cannot be reached
is played by a driver wrapped around the real file store driver: it refuses or fails
for the locations a test names, and otherwise deletes for real. The real-Ceph version
of the refusal is in tests/integration/test_rbd_delete.py.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select, update
from tests.conftest import client_for, create_image, patch, upload

from glimpse.bootstrap import Node
from glimpse.config import ScrubberSettings, Settings
from glimpse.db.sql.tables import image_locations, image_properties, images, metadata, tasks
from glimpse.domain.errors import Conflict, ImageNotFound, InvalidInput, StoreUnavailable
from glimpse.services.scrubber import Scrubber

DELAYED = """
[DEFAULT]
delayed_delete = true
scrub_time = 0
wakeup_time = 3600
"""

STORES = """
[DEFAULT]
enabled_backends = central:file, dcn0:file
show_multiple_locations = true
{extra}

[glance_store]
default_backend = central

[central]
filesystem_store_datadir = {root}/central

[dcn0]
filesystem_store_datadir = {root}/dcn0
"""


class FlakyDriver:
    """The real driver, except for deletes of the locations a test names: ``in_use``
    ones are refused (Conflict, as RBD data with clones), ``unreachable`` ones fail
    (StoreUnavailable), and every delete may be slowed down. ``removed`` records the
    real deletes, in order."""

    def __init__(self, inner: Any, removed: list[str]) -> None:
        self.inner = inner
        self.in_use: set[str] = set()
        self.unreachable: set[str] = set()
        self.down = False
        self.delay = 0.0
        self.removed = removed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def delete(self, location: str) -> None:
        await asyncio.sleep(self.delay)
        if self.down or location in self.unreachable:
            raise StoreUnavailable("the store does not answer")
        if location in self.in_use:
            raise Conflict("its snapshot has 1 clone(s)")
        await self.inner.delete(location)
        self.removed.append(location)


def flaky(node: Node, store_id: str | None = None, removed: list[str] | None = None) -> FlakyDriver:
    store = node.stores.get(store_id)
    driver = FlakyDriver(store.driver, removed if removed is not None else [])
    store.driver = driver  # type: ignore[assignment]
    return driver


async def shown(client: httpx.AsyncClient, image_id: str) -> dict[str, Any]:
    response = await client.get(f"/v2/images/{image_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def uploaded(client: httpx.AsyncClient, data: bytes, **body: Any) -> dict[str, Any]:
    image = await create_image(client, **body)
    assert (await upload(client, image["id"], data)).status_code == 204
    return await shown(client, image["id"])


def data_file(node: Node, image_id: str) -> Path:
    return node.settings.store_dir / image_id


async def listed(client: httpx.AsyncClient) -> set[str]:
    return {i["id"] for i in (await client.get("/v2/images")).json()["images"]}


@pytest.fixture
async def delayed(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> Node:
    node: Node = await make_node(make_settings(DELAYED))
    return node


@pytest.fixture
async def two_stores(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> Node:
    config = STORES.format(root=tmp_path / "stores", extra="")
    node: Node = await make_node(make_settings(config))
    return node


async def copied_to_dcn0(client: httpx.AsyncClient, node: Node, data: bytes) -> dict[str, Any]:
    image = await uploaded(client, data)
    response = await client.post(f"/v2/images/{image['id']}/import", json={
        "method": {"name": "copy-image"}, "stores": ["dcn0"],
    })
    assert response.status_code == 202, response.text
    await node.runner.wait_idle()
    image = await shown(client, image["id"])
    assert image["stores"] == "central,dcn0"
    return image


# -- immediate delete: the data first ---------------------------------------------------


async def test_a_store_refusing_keeps_the_image_active_with_its_data(node: Node) -> None:
    driver = flaky(node)
    async with client_for(node) as client:
        image = await uploaded(client, b"cloned by a volume")
        driver.in_use.add(data_file(node, image["id"]).as_uri())

        response = await client.delete(f"/v2/images/{image['id']}")
        assert response.status_code == 409, response.text
        assert f"Image {image['id']} could not be deleted because it is in use" in response.text
        assert "clone" in response.text
        after = await shown(client, image["id"])
        assert after["status"] == "active" and after["checksum"] == image["checksum"]
        assert (await client.get(f"/v2/images/{image['id']}/file")).content == b"cloned by a volume"
        assert image["id"] in await listed(client)

        # Once the clone is gone the delete goes through, data and record.
        driver.in_use.clear()
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
        assert (await client.get(f"/v2/images/{image['id']}")).status_code == 404
        assert not data_file(node, image["id"]).exists()


async def test_an_unreachable_store_keeps_the_image_and_a_retry_finishes(node: Node) -> None:
    driver = flaky(node)
    async with client_for(node) as client:
        image = await uploaded(client, b"behind a partition")
        driver.down = True
        response = await client.delete(f"/v2/images/{image['id']}")
        assert response.status_code == 503, response.text
        assert "try again later" in response.text
        assert (await shown(client, image["id"]))["status"] == "active"
        assert data_file(node, image["id"]).read_bytes() == b"behind a partition"

        driver.down = False
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
        assert not data_file(node, image["id"]).exists()


async def test_refused_second_copy_keeps_that_copy_as_the_image_location(
    two_stores: Node, tmp_path: Path
) -> None:
    """Copies are removed one by one, each location forgotten as soon as its data is
    gone (as Glance): when the second store refuses, the image stays active with the
    copy that is left, and can still be downloaded; a later DELETE finishes."""
    driver = flaky(two_stores, "dcn0")
    async with client_for(two_stores) as client:
        image = await copied_to_dcn0(client, two_stores, b"two copies")
        central = tmp_path / "stores" / "central" / image["id"]
        edge = tmp_path / "stores" / "dcn0" / image["id"]
        driver.in_use.add(edge.as_uri())

        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 409
        after = await shown(client, image["id"])
        assert after["status"] == "active" and after["stores"] == "dcn0"
        assert [loc["url"] for loc in after["locations"]] == [edge.as_uri()]
        assert not central.exists() and edge.read_bytes() == b"two copies"
        assert (await client.get(f"/v2/images/{image['id']}/file")).content == b"two copies"

        driver.in_use.clear()
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
        assert not edge.exists()


async def test_concurrent_deletes_one_wins_the_other_is_404(node: Node) -> None:
    removed: list[str] = []
    driver = flaky(node, removed=removed)
    driver.delay = 0.3  # both requests are in flight while the data is being removed
    async with client_for(node) as client:
        image = await uploaded(client, b"raced")
        url = f"/v2/images/{image['id']}"
        answers = await asyncio.gather(client.delete(url), client.delete(url),
                                       client.delete(url))
        assert sorted(a.status_code for a in answers) == [204, 404, 404]
        assert removed == [data_file(node, image["id"]).as_uri()]  # removed exactly once
        assert not data_file(node, image["id"]).exists()
        assert (await client.get(url)).status_code == 404


async def test_protected_image_is_refused_before_any_data_goes(node: Node) -> None:
    removed: list[str] = []
    flaky(node, removed=removed)
    async with client_for(node) as client:
        image = await uploaded(client, b"keep", protected=True)
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 403
        assert removed == [] and data_file(node, image["id"]).exists()


# -- delayed delete ---------------------------------------------------------------------


async def test_delayed_delete_hides_the_image_and_keeps_its_data(delayed: Node) -> None:
    async with client_for(delayed) as client:
        image = await uploaded(client, b"pending bytes", name="doomed", tags=["t"])
        kept = await uploaded(client, b"other")
        url = f"/v2/images/{image['id']}"
        assert (await client.delete(url)).status_code == 204

        assert (await client.get(url)).status_code == 404
        assert (await client.get(url + "/file")).status_code == 404
        assert (await patch(client, image["id"], [
            {"op": "add", "path": "/x", "value": "y"}])).status_code == 404
        assert (await client.delete(url)).status_code == 404
        assert await listed(client) == {kept["id"]}
        assert image["id"] not in {
            i["id"] for i in (await client.get("/v2/images?status=pending_delete")).json()["images"]
        }
        assert data_file(delayed, image["id"]).read_bytes() == b"pending bytes"
        # Its data is the scrubber's to remove, not an orphan for `glimpse stores orphans`.
        assert await delayed.services.stores.orphans() == []

        # A queued image has no data: it is deleted at once, as Glance does.
        empty = await create_image(client)
        assert (await client.delete(f"/v2/images/{empty['id']}")).status_code == 204
    repo = delayed.services.images.images
    cutoff = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
    assert await repo.pending_delete_ids(cutoff) == [image["id"]]


async def test_pending_delete_data_does_not_count_against_the_quota(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    node = await make_node(make_settings(DELAYED + "user_storage_quota = 10\n"))
    async with client_for(node) as client:
        first = await uploaded(client, b"8 bytes!")
        assert (await client.delete(f"/v2/images/{first['id']}")).status_code == 204
        second = await create_image(client)
        assert (await upload(client, second["id"], b"8 bytes?")).status_code == 204


async def test_scrubber_removes_the_data_after_scrub_time(delayed: Node) -> None:
    async with client_for(delayed) as client:
        image = await uploaded(client, b"to scrub")
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    repo = delayed.services.images.images
    patient = Scrubber(repo, delayed.stores, ScrubberSettings(scrub_time=3600), "patient")
    report = await patient.scrub_once()
    assert report.scrubbed == [] and report.failed == []
    assert data_file(delayed, image["id"]).exists()

    assert delayed.scrubber is not None
    report = await delayed.scrubber.scrub_once()
    assert report.scrubbed == [image["id"]] and report.failed == []
    assert not data_file(delayed, image["id"]).exists()
    with pytest.raises(Conflict, match="from deleted to active"):
        await delayed.scrubber.restore(image["id"])
    assert (await delayed.scrubber.scrub_once()).scrubbed == []
    statuses = await location_statuses(delayed, image["id"])
    assert statuses == ["deleted"]


async def test_restore_brings_the_image_back_whole(delayed: Node) -> None:
    data = bytes(range(256)) * 4096
    async with client_for(delayed) as client:
        image = await uploaded(client, data, name="oops", tags=["keep"], os_distro="fedora")
        assert (await client.post(f"/v2/images/{image['id']}/members",
                                  json={"member": "other-project"})).status_code == 200
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
        assert delayed.scrubber is not None
        restored = await delayed.scrubber.restore(image["id"])
        assert restored.status == "active"

        back = await shown(client, image["id"])
        for key in ("status", "checksum", "os_hash_value", "size", "name", "tags",
                    "os_distro", "visibility"):
            assert back[key] == image[key], key
        download = await client.get(f"/v2/images/{image['id']}/file")
        assert download.status_code == 200
        assert hashlib.md5(download.content).hexdigest() == image["checksum"]
        assert download.content == data
        members = (await client.get(f"/v2/images/{image['id']}/members")).json()["members"]
        assert [m["member_id"] for m in members] == ["other-project"]
        assert image["id"] in await listed(client)
        # Nothing left for the scrubber; the image can be deleted again.
        assert (await delayed.scrubber.scrub_once()).scrubbed == []
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204

    with pytest.raises(ImageNotFound):
        await delayed.scrubber.restore("5d1c7a5e-0000-4000-8000-000000000000")


async def test_restore_of_an_image_that_is_not_pending_delete_is_refused(delayed: Node) -> None:
    async with client_for(delayed) as client:
        image = await uploaded(client, b"alive")
    assert delayed.scrubber is not None
    with pytest.raises(Conflict, match="from active to active"):
        await delayed.scrubber.restore(image["id"])


async def test_two_scrubbers_never_remove_the_same_data(
    delayed: Node, make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    """Two nodes on one database and one store, scrubbing at the same moment: each image
    is scrubbed by exactly one of them, its data removed exactly once, neither fails."""
    other = await make_node(make_settings(DELAYED, node_id="node-b"))
    removed: list[str] = []
    for node in (delayed, other):
        flaky(node, removed=removed).delay = 0.05
    async with client_for(delayed) as client:
        ids = []
        for n in range(6):
            image = await uploaded(client, f"image {n}".encode())
            assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
            ids.append(image["id"])
    assert delayed.scrubber is not None and other.scrubber is not None
    first, second = await asyncio.gather(delayed.scrubber.scrub_once(),
                                         other.scrubber.scrub_once())
    assert first.failed == second.failed == []
    assert sorted(first.scrubbed + second.scrubbed) == sorted(ids)
    assert not set(first.scrubbed) & set(second.scrubbed)
    assert sorted(removed) == sorted(data_file(delayed, i).as_uri() for i in ids)
    assert not any(data_file(delayed, i).exists() for i in ids)


async def test_a_live_claim_is_left_alone_and_an_expired_one_is_taken_over(delayed: Node) -> None:
    """A scrubber that died mid-way leaves its claim to expire; until then others skip
    the image (and restore refuses it), after that the next pass scrubs it."""
    async with client_for(delayed) as client:
        image = await uploaded(client, b"claimed")
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    repo = delayed.services.images.images
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=5)
    assert delayed.scrubber is not None

    assert await repo.claim_pending_delete(image["id"], "node-x/scrub/1", 3600, later)
    report = await delayed.scrubber.scrub_once()
    assert report.scrubbed == [] and report.failed == []
    assert data_file(delayed, image["id"]).exists()
    with pytest.raises(Conflict, match="being scrubbed by node-x/scrub/1"):
        await delayed.scrubber.restore(image["id"])

    await repo.release_claim(image["id"], "node-x/scrub/1")
    assert await repo.claim_pending_delete(image["id"], "node-x/scrub/2", 0, later)
    await asyncio.sleep(0.01)  # node-x died: its claim expires
    report = await delayed.scrubber.scrub_once()
    assert report.scrubbed == [image["id"]]
    assert not data_file(delayed, image["id"]).exists()


async def test_a_scrub_cancelled_mid_way_leaves_the_image_for_the_next_pass(
    delayed: Node,
) -> None:
    driver = flaky(delayed)
    async with client_for(delayed) as client:
        image = await uploaded(client, b"interrupted")
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    assert delayed.scrubber is not None
    driver.delay = 5
    scrubbing = asyncio.create_task(delayed.scrubber.scrub_once())
    await asyncio.sleep(0.3)
    scrubbing.cancel()
    await asyncio.gather(scrubbing, return_exceptions=True)
    assert data_file(delayed, image["id"]).exists()

    driver.delay = 0
    report = await delayed.scrubber.scrub_once()  # the claim was released, not left
    assert report.scrubbed == [image["id"]]
    assert not data_file(delayed, image["id"]).exists()


async def test_a_store_down_during_a_scrub_leaves_that_image_for_the_next_pass(
    delayed: Node,
) -> None:
    driver = flaky(delayed)
    async with client_for(delayed) as client:
        stuck = await uploaded(client, b"unreachable")
        fine = await uploaded(client, b"reachable")
        for image in (stuck, fine):
            assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    driver.unreachable.add(data_file(delayed, stuck["id"]).as_uri())
    assert delayed.scrubber is not None

    report = await delayed.scrubber.scrub_once()
    assert report.scrubbed == [fine["id"]] and report.failed == [stuck["id"]]
    assert data_file(delayed, stuck["id"]).read_bytes() == b"unreachable"
    assert not data_file(delayed, fine["id"]).exists()
    assert await location_statuses(delayed, stuck["id"]) == ["pending_delete"]

    driver.unreachable.clear()
    report = await delayed.scrubber.scrub_once()
    assert report.scrubbed == [stuck["id"]] and report.failed == []
    assert not data_file(delayed, stuck["id"]).exists()


async def test_scrubbing_a_two_store_image_keeps_what_could_not_be_removed(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    config = STORES.format(root=tmp_path / "stores", extra="delayed_delete = true")
    node = await make_node(make_settings(config))
    driver = flaky(node, "dcn0")
    driver.down = True
    async with client_for(node) as client:
        image = await copied_to_dcn0(client, node, b"both sites")
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    assert node.scrubber is not None
    assert (await node.scrubber.scrub_once()).failed == [image["id"]]
    assert not (tmp_path / "stores" / "central" / image["id"]).exists()
    assert (tmp_path / "stores" / "dcn0" / image["id"]).exists()
    assert sorted(await location_statuses(node, image["id"])) == ["deleted", "pending_delete"]
    driver.down = False
    assert (await node.scrubber.scrub_once()).scrubbed == [image["id"]]
    assert not (tmp_path / "stores" / "dcn0" / image["id"]).exists()


async def location_statuses(node: Node, image_id: str) -> list[str]:
    stmt = select(image_locations.c.status).where(image_locations.c.image_id == image_id)
    return await node.db.run_read(lambda conn: list(conn.scalars(stmt)))


# -- db purge -----------------------------------------------------------------------------


async def backdate(node: Node, image_id: str, days: int) -> None:
    when = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days)
    stmt = update(images).where(images.c.id == image_id).values(deleted_at=when)
    await node.db.run_write(lambda conn: conn.execute(stmt))


async def rows(node: Node, table: Any, image_id: str) -> int:
    column = table.c.id if table is images else table.c.image_id
    stmt = select(column).where(column == image_id)
    return len(await node.db.run_read(lambda conn: list(conn.scalars(stmt))))


async def test_purge_removes_old_rows_and_keeps_image_ids_taken(delayed: Node) -> None:
    assert delayed.purger is not None and delayed.scrubber is not None
    async with client_for(delayed) as client:
        old = await uploaded(client, b"old", name="old")
        recent = await uploaded(client, b"recent")
        pending = await uploaded(client, b"pending, long ago")
        alive = await uploaded(client, b"alive", note="x")
        for image in (old, recent):
            assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
        assert sorted((await delayed.scrubber.scrub_once()).scrubbed) == sorted(
            [old["id"], recent["id"]])
        assert (await client.delete(f"/v2/images/{pending['id']}")).status_code == 204
    repo = delayed.services.images.images
    for image_id, days in ((old["id"], 40), (recent["id"], 3), (pending["id"], 400)):
        await backdate(delayed, image_id, days)
    expired = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=45)
    await delayed.db.run_write(lambda conn: conn.execute(insert(tasks).values(
        id="11111111-0000-4000-8000-000000000001", type="import", status="success",
        owner="admin", image_id=old["id"], input="{}", message="", created_at=expired,
        updated_at=expired, expires_at=expired, deleted=False)))

    counts = await delayed.purger.purge(30, 1)  # one row per transaction
    assert counts["image_locations"] == 1 and counts["tasks"] == 1
    assert await rows(delayed, image_locations, old["id"]) == 0
    assert await rows(delayed, image_locations, recent["id"]) == 1
    # pending_delete: its locations are the scrubber's work list, never purged.
    assert await rows(delayed, image_locations, pending["id"]) == 1
    assert await rows(delayed, image_locations, alive["id"]) == 1
    assert await rows(delayed, image_properties, alive["id"]) == 1
    assert await rows(delayed, images, old["id"]) == 1
    assert (await delayed.purger.purge(30, 100))["image_locations"] == 0

    async with client_for(delayed) as client:
        # The id of a purged image is still taken.
        again = await client.post("/v2/images", json={"id": old["id"], "name": "impostor"})
        assert again.status_code == 409, again.text
        assert (await client.get(f"/v2/images/{alive['id']}/file")).content == b"alive"

        assert await delayed.purger.purge_images_table(30, 1) == 1
        assert await rows(delayed, images, old["id"]) == 0
        assert await rows(delayed, images, recent["id"]) == 1
        assert await rows(delayed, images, pending["id"]) == 1
        # What purge-images-table is kept apart for: the id can now be handed out again.
        reused = await client.post("/v2/images", json={"id": old["id"], "name": "impostor"})
        assert reused.status_code == 201, reused.text
    assert await repo.pending_delete_ids(datetime.now(UTC).replace(tzinfo=None)) == [
        pending["id"]]


@pytest.mark.parametrize(("age", "max_rows", "message"), [
    (0, 100, "positive number of days"),
    (-3, 100, "positive number of days"),
    (10**7, 100, "days since 1970"),
    (30, 0, "positive number of rows"),
    (30, -2, "positive number of rows"),
    (30, 2**31, "at most"),
])
async def test_purge_refuses_bad_values(node: Node, age: int, max_rows: int, message: str) -> None:
    assert node.purger is not None
    with pytest.raises(InvalidInput, match=message):
        await node.purger.purge(age, max_rows)
    with pytest.raises(InvalidInput, match=message):
        await node.purger.purge_images_table(age, max_rows)


async def test_purge_without_batches(node: Node) -> None:
    assert node.purger is not None
    async with client_for(node) as client:
        ids = []
        for n in range(3):
            image = await uploaded(client, f"{n}".encode())
            assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
            ids.append(image["id"])
    for image_id in ids:
        await backdate(node, image_id, 31)
    assert (await node.purger.purge(30, -1))["image_locations"] == 3
    assert await node.purger.purge_images_table(30, -1) == 3


# -- the migration --------------------------------------------------------------------------


async def test_migrations_create_the_declared_images_table(node: Node) -> None:
    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection)
        return [d for d in compare_metadata(context, metadata) if "metadef" not in repr(d)]

    async with node.db.engine.connect() as conn:
        assert await conn.run_sync(differences) == []
