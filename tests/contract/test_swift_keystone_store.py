"""The store contract against Swift with Keystone v3 auth: the Swift all-in-one's second
proxy (authtoken + keystoneauth, scripts/swift start-keystone) and the Keystone of
scripts/keystone. Glimpse logs in with a ``glance-swift.conf`` reference holding
``auth_version = 3``, ``project_name`` and the domain options, as Glance's does, as the user
``glimpse-swift``, whose only role is the proxy's operator role ``swiftoperator``; the
images land in that project's account, found through the catalog's object-store endpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import swiftclient
from tests.backends import SwiftKeystoneEndpoint, keystone_state
from tests.contract.store_contract import MIB, StoreContract, chunks, new_id, pieces, read_all

from glimpse.domain.errors import StoreUnavailable
from glimpse.stores.registry import ManagedStore
from glimpse.stores.swift import SwiftCredentials, SwiftStoreDriver, load_credentials

CONTAINER = "glimpse-contract-keystone"


def connection(ks: SwiftKeystoneEndpoint) -> swiftclient.Connection:
    conn: swiftclient.Connection = ks.connection()
    return conn


def keystone_driver(ks: SwiftKeystoneEndpoint, tmp_path: Path, **options: Any
                    ) -> SwiftStoreDriver:
    path = tmp_path / "glance-swift.conf"
    if not path.exists():
        ks.config_file(tmp_path)
    options.setdefault("container", CONTAINER)
    options.setdefault("create_container_on_put", True)
    options.setdefault("large_object_size", 2 * MIB)
    options.setdefault("large_object_chunk_size", MIB)
    return SwiftStoreDriver(load_credentials(path, "ks"), reference="ks", **options)


_shared: list[SwiftStoreDriver] = []


class KeystoneHarness:
    scheme = "swift+config://ks/"
    foreign = f"swift+config://elsewhere/{CONTAINER}/{new_id()}"

    def __init__(self, ks: SwiftKeystoneEndpoint, tmp_path: Path) -> None:
        self.ks = ks
        self.tmp_path = tmp_path

    def driver(self) -> SwiftStoreDriver:
        # One driver for the suite, as one for a server's life: it logs in once (a
        # Keystone login and its first validation by Swift take about a second here).
        if not _shared:
            _shared.append(keystone_driver(self.ks, self.tmp_path))
        return _shared[0]

    def leftovers(self, image_id: str) -> list[str]:
        try:
            _, objects = connection(self.ks).get_container(
                CONTAINER, prefix=image_id, full_listing=True
            )
        except swiftclient.ClientException as exc:
            if exc.http_status == 404:
                return []
            raise
        return [o["name"] for o in objects]

    def unreachable(self) -> SwiftStoreDriver:
        """Keystone is not there: the login fails, quickly."""
        credentials = SwiftCredentials("http://127.0.0.1:9/v3", self.ks.user, "x", "3",
                                       project_name=self.ks.project)
        return SwiftStoreDriver(credentials, container=CONTAINER, retries=0, timeout=2)


@pytest.fixture
def harness(swift_keystone: SwiftKeystoneEndpoint, tmp_path: Path) -> KeystoneHarness:
    return KeystoneHarness(swift_keystone, tmp_path)


class TestSwiftKeystoneContract(StoreContract):
    pass


# -- what Keystone auth adds ------------------------------------------------------------


async def test_large_images_go_to_the_projects_account_as_segments(
    swift_keystone: SwiftKeystoneEndpoint, tmp_path: Path
) -> None:
    driver = keystone_driver(swift_keystone, tmp_path)
    store = ManagedStore("swift", driver)
    image_id = new_id()
    data = os.urandom(3 * MIB + 5)
    stored = await store.add(image_id, pieces(data))
    assert stored.location == f"swift+config://ks/{CONTAINER}/{image_id}"
    # The storage URL came from the catalog: the account of the user's project.
    assert driver._auth is not None
    assert driver._auth[0] == swift_keystone.storage_url
    assert swift_keystone.project_id in swift_keystone.storage_url
    headers = connection(swift_keystone).head_object(CONTAINER, image_id)
    assert headers["x-object-manifest"].startswith(f"{CONTAINER}/{image_id}-")
    assert await read_all(store, stored.location, MIB - 3, 6) == data[MIB - 3 : MIB + 3]
    await store.delete(stored.location)
    assert KeystoneHarness(swift_keystone, tmp_path).leftovers(image_id) == []


async def test_a_token_swift_refuses_is_replaced_by_a_new_login(
    swift_keystone: SwiftKeystoneEndpoint, tmp_path: Path
) -> None:
    """Tokens are reused between operations; one that expired or was revoked (401) makes
    the driver log in again, and the operation goes through."""
    driver = keystone_driver(swift_keystone, tmp_path)
    store = ManagedStore("swift", driver)
    first = await store.add(new_id(), chunks(b"first"))
    assert driver._auth is not None
    driver._auth = (driver._auth[0], "gAAAAA-not-a-valid-token")
    second = await store.add(new_id(), chunks(b"second"))
    assert driver._auth[1] != "gAAAAA-not-a-valid-token"
    assert await read_all(store, second.location) == b"second"
    for stored in (first, second):
        await store.delete(stored.location)


async def test_wrong_password_is_a_clear_error_without_the_password(
    swift_keystone: SwiftKeystoneEndpoint, tmp_path: Path
) -> None:
    swift_keystone.config_file(tmp_path, key="not-the-password")
    driver = keystone_driver(swift_keystone, tmp_path)
    with pytest.raises(StoreUnavailable, match="Keystone login failed.*401") as refused:
        await ManagedStore("swift", driver).add(new_id(), chunks(b"x"))
    assert "not-the-password" not in str(refused.value)
    health = await ManagedStore("swift", driver).health()
    assert not health.ok and "not-the-password" not in health.detail


async def test_a_user_without_the_operator_role_is_refused(
    swift_keystone: SwiftKeystoneEndpoint, tmp_path: Path
) -> None:
    """A project member without swiftoperator (or admin) logs in but gets 403 from
    keystoneauth: a clear error naming the status."""
    users: Any = keystone_state()["users"]
    member = users["glimpse-a-member"]
    path = tmp_path / "glance-swift.conf"
    path.write_text(
        f"[ks]\nauth_address = {swift_keystone.auth_url}\nauth_version = 3\n"
        f"user = {member['project']}:{member['username']}\nkey = {member['password']}\n"
        "user_domain_name = Default\nproject_domain_name = Default\n"
    )
    driver = SwiftStoreDriver(load_credentials(path, "ks"), reference="ks",
                              container=CONTAINER, create_container_on_put=True)
    with pytest.raises(StoreUnavailable, match="403"):
        await ManagedStore("swift", driver).add(new_id(), chunks(b"x"))


async def test_properties_and_locations_hold_no_credentials(
    swift_keystone: SwiftKeystoneEndpoint, tmp_path: Path
) -> None:
    driver = keystone_driver(swift_keystone, tmp_path)
    stored = await ManagedStore("swift", driver).add(new_id(), chunks(b"x"))
    shown = f"{stored.location} {driver.properties()} {driver.credentials!r}"
    assert swift_keystone.password not in shown
    assert swift_keystone.user not in stored.location
    await driver.delete(stored.location)
