"""The composition root: settings in, a running node's parts out.

The only module that names concrete adapters (SQL repositories, the file store
driver, the auth strategies).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette

from glimpse.api.app import create_app
from glimpse.api.state import ApiOptions, ApiState
from glimpse.api.v2.schemas import build_schemas
from glimpse.auth.base import Authenticator
from glimpse.auth.noauth import NoAuth
from glimpse.auth.tokens import TokenFileAuth
from glimpse.cache.disk import DiskImageCache
from glimpse.config import Settings, resolve_database_url
from glimpse.db.sql.metadef_repository import SqlMetadefRepository
from glimpse.db.sql.quota_repository import SqlQuotaRepository
from glimpse.db.sql.repositories import SqlImageRepository, SqlMemberRepository
from glimpse.db.sql.session import Database
from glimpse.db.sql.task_repository import SqlTaskRepository
from glimpse.domain.quotas import USER_STORAGE_QUOTA
from glimpse.formats.stream import FormatPolicy
from glimpse.image_import.locations import LocationImportConfig, LocationImporter
from glimpse.image_import.plugins import build_plugins
from glimpse.image_import.runner import ImportRunner, RunnerConfig
from glimpse.image_import.uri_filter import UriFilter
from glimpse.policy.enforcer import PolicyEnforcer
from glimpse.quota.base import LimitSource, StaticLimits
from glimpse.services.bundle import Services
from glimpse.services.cache import CacheService
from glimpse.services.health import HealthService
from glimpse.services.image_data import DataLimits, ImageDataService
from glimpse.services.images import ImageRules, ImageService
from glimpse.services.imports import ImportService
from glimpse.services.location_patches import LocationPatcher, LocationRules
from glimpse.services.members import MemberService
from glimpse.services.metadefs import MetadefService
from glimpse.services.purge import Purger
from glimpse.services.quotas import QuotaService
from glimpse.services.scrubber import Scrubber
from glimpse.services.stores import StoreService
from glimpse.stores.base import StoreDriver
from glimpse.stores.file import FileStoreDriver
from glimpse.stores.registry import ManagedStore, StoreRegistry

log = logging.getLogger(__name__)


@dataclass
class Node:
    """One Glimpse node: its database, stores, services and ASGI app."""

    settings: Settings
    db: Database
    stores: StoreRegistry
    file_drivers: list[FileStoreDriver]
    services: Services
    app: Starlette
    runner: ImportRunner
    cache: DiskImageCache | None = None
    _watchdog: asyncio.Task[None] | None = None
    # Delayed delete: the scrubber (run here when delayed_delete is on) and db purge.
    scrubber: Scrubber | None = None
    purger: Purger | None = None
    _scrubbing: asyncio.Task[None] | None = None

    async def start(self, *, run_migrations: bool = True, recover: bool = True) -> None:
        """Serve. ``recover=False`` for one of several worker processes of a node: the
        parent recovered once before forking, and a worker that is restarted must not
        take its live siblings' uploads and imports for interrupted ones."""
        if self.cache is not None:  # refuses a directory another node uses
            await asyncio.to_thread(self.cache.prepare)
        if run_migrations:
            # Alembic is imported only here: serving workers never load it otherwise.
            from glimpse.db.sql import migrate

            await migrate.upgrade(self.db)
        for driver in self.file_drivers:
            driver.prepare()
        if recover:
            await self.recover_interrupted_work()
        else:
            # A worker uvicorn (re)started: only what processes that died left behind.
            await self.services.image_data.recover_interrupted_uploads()
            await self.services.imports.recover_stages()
        self._watchdog = asyncio.create_task(self._watch_leases())
        self.services.cache.start()
        if self.scrubber is not None and self.settings.scrubber.delayed_delete:
            self._scrubbing = asyncio.create_task(self.scrubber.run_forever())

    async def recover_interrupted_work(self) -> None:
        """What this node was doing when it stopped: partial files, uploads, imports."""
        for driver in self.file_drivers:
            removed = driver.remove_temporary_files()
            if removed:
                log.warning("removed %d partial files left by an interrupted write", removed)
        recovered = await self.services.image_data.recover_interrupted_uploads()
        if recovered:
            log.warning("%d interrupted uploads were reset to queued", recovered)
        failed = await self.services.imports.recover(include_own=True)
        if failed:
            log.warning("%d imports interrupted by a restart were failed cleanly", failed)
        failed = await self.services.stores.importer.recover(include_own=True)
        if failed:
            log.warning("%d location imports interrupted by a restart were failed", failed)

    async def _watch_leases(self) -> None:
        """Fail imports whose node stopped renewing its lease (another node died)."""
        interval = max(1.0, self.settings.imports.lease_seconds / 2)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.services.imports.recover(include_own=False)
                await self.services.stores.importer.recover(include_own=False)
            except Exception:
                log.exception("checking for abandoned imports failed")

    async def stop(self) -> None:
        if self._scrubbing is not None:
            self._scrubbing.cancel()
            await asyncio.gather(self._scrubbing, return_exceptions=True)
        await self.services.cache.stop()
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        await self.runner.cancel_all()
        await self.services.stores.importer.cancel_all()
        await self.db.close()


def build_limit_source(settings: Settings) -> LimitSource | None:
    """Keystone unified limits, else the legacy per-project storage quota, else none."""
    unified = settings.unified_limits
    if unified.enabled:
        # Imported here, as keystonemiddleware: nodes without Keystone skip keystoneauth.
        from glimpse.quota.keystone import EndpointChoice, KeystoneLimits

        return KeystoneLimits(
            settings.config_files,
            EndpointChoice(
                endpoint_id=unified.endpoint_id,
                service_type=unified.endpoint_service_type,
                service_name=unified.endpoint_service_name,
                region_name=unified.endpoint_region_name,
                interface=unified.endpoint_interface,
            ),
            cache_seconds=unified.cache_time,
        )
    if settings.user_storage_quota > 0:
        return StaticLimits({USER_STORAGE_QUOTA: settings.user_storage_quota})
    return None


def build_authenticator(settings: Settings) -> Authenticator:
    if settings.auth_strategy == "noauth":
        return NoAuth(settings.noauth_project_id, settings.noauth_user_id)
    if settings.auth_strategy == "tokens":
        if settings.token_file is None:
            raise ValueError("auth_strategy = tokens needs [glimpse] token_file")
        return TokenFileAuth(settings.token_file)
    if settings.auth_strategy == "keystone":
        # Imported here: keystonemiddleware takes a second or two to import, which
        # nodes without Keystone need not pay.
        from glimpse.auth.keystone import KeystoneAuth

        return KeystoneAuth(settings.config_files)
    raise ValueError(f"unknown auth_strategy {settings.auth_strategy!r}")


def build_stores(settings: Settings) -> tuple[StoreRegistry, list[FileStoreDriver]]:
    """One managed store per configured store; an unknown type stops start-up."""
    stores: list[ManagedStore] = []
    file_drivers: list[FileStoreDriver] = []
    for config in settings.stores:
        driver: StoreDriver
        if config.type == "file":
            driver = FileStoreDriver(
                [path for path, _ in config.datadirs],
                chunk_size=config.chunk_size,
                file_perm=config.file_perm,
                thin_provisioning=config.thin_provisioning,
                node_id=settings.node_id,
            )
            file_drivers.append(driver)
        elif config.type in _DRIVER_FACTORIES:
            driver = _DRIVER_FACTORIES[config.type](config.options)
        else:
            raise ValueError(f"store {config.id}: unknown store type {config.type!r}")
        stores.append(
            ManagedStore(
                config.id,
                driver,
                description=config.description,
                weight=config.weight,
                read_only=config.type == "http",
                hashing_algorithm=settings.hashing_algorithm,
            )
        )
    registry = StoreRegistry(stores, settings.default_store, multistore=settings.multistore)
    return registry, file_drivers


_MIB = 1024 * 1024


# The network stores' modules are imported only when configured: their client libraries
# (librbd bindings, swiftclient, boto3) are heavy, and the bindings may be absent.
def _rbd_driver(o: dict[str, Any]) -> StoreDriver:
    from glimpse.stores.rbd import RbdStoreDriver

    return RbdStoreDriver(
        pool=o["rbd_store_pool"], user=o["rbd_store_user"], conffile=o["rbd_store_ceph_conf"],
        chunk_size=o["rbd_store_chunk_size"] * _MIB,
        thin_provisioning=o["rbd_thin_provisioning"],
        connect_timeout=o["rados_connect_timeout"],
    )


def _swift_driver(o: dict[str, Any]) -> StoreDriver:
    from glimpse.stores.swift import SwiftStoreDriver, load_credentials

    reference = o["default_swift_reference"]
    return SwiftStoreDriver(
        load_credentials(o["swift_store_config_file"], reference),
        reference=reference, container=o["swift_store_container"],
        large_object_size=o["swift_store_large_object_size"] * _MIB,
        large_object_chunk_size=o["swift_store_large_object_chunk_size"] * _MIB,
        create_container_on_put=o["swift_store_create_container_on_put"],
        insecure=o["swift_store_auth_insecure"], cacert=o["swift_store_cacert"],
        region=o["swift_store_region"], endpoint_type=o["swift_store_endpoint_type"],
        service_type=o["swift_store_service_type"],
        timeout=o["swift_store_timeout"], retry_get_count=o["swift_store_retry_get_count"],
    )


def _s3_driver(o: dict[str, Any]) -> StoreDriver:
    from glimpse.stores.s3 import S3StoreDriver

    return S3StoreDriver(
        host=o["s3_store_host"], access_key=o["s3_store_access_key"],
        secret_key=o["s3_store_secret_key"], bucket=o["s3_store_bucket"],
        region_name=o["s3_store_region_name"],
        create_bucket_on_put=o["s3_store_create_bucket_on_put"],
        bucket_url_format=o["s3_store_bucket_url_format"],
        large_object_size=o["s3_store_large_object_size"] * _MIB,
        large_object_chunk_size=o["s3_store_large_object_chunk_size"] * _MIB,
        thread_pools=o["s3_store_thread_pools"], cacert=o["s3_store_cacert"],
        data_integrity_protection=o["s3_store_enable_data_integrity_protection"],
        request_checksum_calculation=o["s3_store_request_checksum_calculation"],
        response_checksum_validation=o["s3_store_response_checksum_validation"],
        timeout=o["s3_store_timeout"],
    )


def _http_driver(o: dict[str, Any]) -> StoreDriver:
    from glimpse.stores.http import HttpStoreDriver

    verify: bool | str = o["https_ca_certificates_file"] or not o["https_insecure"]
    return HttpStoreDriver(verify=verify, proxies=o["http_proxy_information"])


_DRIVER_FACTORIES: dict[str, Callable[[dict[str, Any]], StoreDriver]] = {
    "http": _http_driver,
    "rbd": _rbd_driver,
    "swift": _swift_driver,
    "s3": _s3_driver,
}


def build_cache(settings: Settings) -> DiskImageCache | None:
    """This node's image cache when ``image_cache_dir`` is set (as Glance), else None."""
    if settings.image_cache_dir is None:
        return None
    if settings.image_cache_driver != "sqlite":
        log.info("image_cache_driver = %s: Glimpse keeps a per-node SQLite index in "
                 "image_cache_dir for every driver name", settings.image_cache_driver)
    return DiskImageCache(
        settings.image_cache_dir,
        node_id=settings.node_id,
        max_size=settings.image_cache_max_size,
        stall_time=settings.image_cache_stall_time,
    )


def build_node(
    settings: Settings, *, migrate_on_start: bool = True, recover_on_start: bool = True
) -> Node:
    """Everything one node needs; ``migrate_on_start=False`` for server workers whose
    parent already brought the database up to date."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(resolve_database_url(settings))
    stores, file_drivers = build_stores(settings)
    cache = build_cache(settings)
    policy = PolicyEnforcer(settings.policy_file, settings.config_dir)
    image_repo = SqlImageRepository(db)
    member_repo = SqlMemberRepository(db)
    metadefs = MetadefService(SqlMetadefRepository(db), policy)
    quotas = QuotaService(SqlQuotaRepository(db), build_limit_source(settings))
    images = ImageService(
        image_repo,
        member_repo,
        stores,
        policy,
        ImageRules(
            disk_formats=settings.disk_formats,
            container_formats=settings.container_formats,
            image_property_quota=settings.image_property_quota,
            image_tag_quota=settings.image_tag_quota,
        ),
        property_check=(
            metadefs.check_image_properties
            if settings.validate_image_properties_against_metadefs else None
        ),
        cache=cache,
        delayed_delete=settings.scrubber.delayed_delete,
        node_id=settings.node_id,
        quotas=quotas,
        locations=LocationPatcher(stores, LocationRules(
            show_multiple_locations=settings.show_multiple_locations,
            hashing_algorithm=settings.hashing_algorithm,
            location_quota=settings.image_location_quota,
            uri_filter=UriFilter.from_settings(settings.imports),
        )),
    )
    format_policy = FormatPolicy(
        disk_formats=settings.disk_formats,
        require_image_format_match=settings.require_image_format_match,
        vmdk_allowed_types=settings.vmdk_allowed_types,
        gpt_safety_checks_nonfatal=settings.gpt_safety_checks_nonfatal,
        allow_encrypted=settings.allow_encrypted_images,
    )
    staging_dir = settings.staging_dir or settings.data_dir / "staging"
    staging_driver = FileStoreDriver([staging_dir], node_id=settings.node_id)
    file_drivers.append(staging_driver)
    staging = ManagedStore("os_glance_staging_store", staging_driver,
                           hashing_algorithm=settings.hashing_algorithm)
    task_repo = SqlTaskRepository(db)
    runner = ImportRunner(
        image_repo,
        task_repo,
        stores,
        staging,
        staging_dir,
        build_plugins(
            settings.imports.plugins, settings.imports, format_policy, settings.image_size_cap
        ),
        RunnerConfig(
            node_id=settings.node_id,
            lease_seconds=settings.imports.lease_seconds,
            size_cap=settings.image_size_cap,
            uri_filter=UriFilter.from_settings(settings.imports),
            web_download_timeout=settings.imports.web_download_timeout,
            web_download_max_redirects=settings.imports.web_download_max_redirects,
            format_policy=format_policy,
            glance_download_properties=settings.imports.glance_download_properties,
        ),
    )
    services = Services(
        images=images,
        image_data=ImageDataService(
            images,
            image_repo,
            stores,
            DataLimits(settings.image_size_cap),
            format_policy,
            settings.node_id,
            cache,
        ),
        members=MemberService(images, member_repo, settings.image_member_quota),
        stores=StoreService(
            images, image_repo, stores, settings.image_location_quota, tasks=task_repo,
            importer=LocationImporter(image_repo, task_repo, stores, LocationImportConfig(
                node_id=settings.node_id,
                lease_seconds=settings.imports.lease_seconds,
                do_secure_hash=settings.do_secure_hash,
                http_retries=settings.http_retries,
                hashing_algorithm=settings.hashing_algorithm,
            )),
            uri_filter=UriFilter.from_settings(settings.imports),
        ),
        imports=ImportService(
            images, image_repo, task_repo, stores, staging, runner,
            settings.imports.enabled_methods, settings.image_size_cap, format_policy,
            settings.node_id, settings.imports.lease_seconds,
            self_url=settings.worker_self_reference_url or settings.public_endpoint,
        ),
        health=HealthService(
            image_repo, stores, staging_dir=staging_dir, cache=cache,
            cache_dir=settings.image_cache_dir, cache_max_size=settings.image_cache_max_size,
            disable_file=settings.healthcheck_disable_file,
            detailed=settings.healthcheck_detailed,
        ),
        metadefs=metadefs,
        cache=CacheService(images, image_repo, stores, cache,
                           job_interval=settings.cache_prefetcher_interval),
        quotas=quotas,
    )
    api_state = ApiState(
        services=services,
        schemas=build_schemas(
            settings.disk_formats, settings.container_formats, settings.schema_image_file
        ),
        options=ApiOptions(
            limit_param_default=settings.limit_param_default,
            api_limit_max=settings.api_limit_max,
            show_image_direct_url=settings.show_image_direct_url,
            show_multiple_locations=settings.show_multiple_locations,
            max_request_body_size=settings.max_request_body_size,
            max_request_id_length=settings.max_request_id_length,
            public_endpoint=settings.public_endpoint,
            multistore=stores.multistore,
            store_weights={s.id: s.weight for s in stores.all()},
        ),
        authenticator=build_authenticator(settings),
    )
    node: Node

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await node.start(run_migrations=migrate_on_start, recover=recover_on_start)
        try:
            yield
        finally:
            await node.stop()

    app = create_app(api_state, lifespan)
    node = Node(settings, db, stores, file_drivers, services, app, runner, cache,
                scrubber=Scrubber(image_repo, stores, settings.scrubber, settings.node_id),
                purger=Purger(image_repo))
    return node
