"""Every option Glimpse reads, defined once, with Glance's section and option names.

Options are registered on an explicit ``ConfigOpts`` (never the global ``cfg.CONF``),
read once at start-up into a frozen :class:`Settings`, and passed down from there.
Options that only Glimpse has live in the ``[glimpse]`` section.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from oslo_config import cfg

DEFAULT_DISK_FORMATS = [
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
]
DEFAULT_CONTAINER_FORMATS = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]

_DEFAULT_OPTS = [
    cfg.HostAddressOpt("bind_host", default="127.0.0.1", help="Address to listen on."),
    cfg.PortOpt("bind_port", default=9292, help="Port to listen on."),
    cfg.IntOpt("workers", default=1, min=1, help="Server processes to run."),
    cfg.StrOpt(
        "auth_strategy",
        default="noauth",
        choices=["noauth", "tokens", "keystone"],
        help="Who is calling: noauth (every caller is admin of one project), "
        "tokens (static token file), keystone.",
    ),
    cfg.StrOpt("public_endpoint", help="URL shown in the versions document and links."),
    cfg.StrOpt(
        "worker_self_reference_url",
        help="The URL other nodes reach this node by. A node that stages glance-direct "
        "data records it on the image; other nodes replay import and delete requests "
        "there. Unset: public_endpoint (the same on every node: no replaying, so the "
        "staging area must be shared).",
    ),
    cfg.StrOpt("hashing_algorithm", default="sha512", help="Algorithm of os_hash_value."),
    cfg.BoolOpt("do_secure_hash", default=True, help="Read the data of a location added "
                "through the locations API to compute its checksum and os_hash_value (and "
                "check them against validation_data); off: trust validation_data."),
    cfg.IntOpt("http_retries", default=3, min=0, help="Attempts at reading a location's "
               "data for do_secure_hash before giving up."),
    cfg.IntOpt("image_size_cap", default=1099511627776, min=0, help="Largest image in bytes."),
    cfg.StrOpt(
        "user_storage_quota",
        default="0",
        help="Bytes a project may store across all its images (B, KB, MB, GB, TB "
        "suffixes); 0 means unlimited. Ignored with use_keystone_limits.",
    ),
    cfg.BoolOpt(
        "use_keystone_limits",
        default=False,
        help="Per-project limits from Keystone unified limits (image_size_total, "
        "image_stage_total, image_count_total, image_count_uploading), read with the "
        "[oslo_limit] options. Resources without a registered limit allow nothing.",
    ),
    cfg.IntOpt("image_member_quota", default=128, help="Members per image; negative: no limit."),
    cfg.IntOpt("image_property_quota", default=128, help="Properties per image; negative: none."),
    cfg.IntOpt("image_tag_quota", default=128, help="Tags per image; negative: no limit."),
    cfg.IntOpt("image_location_quota", default=10, help="Locations per image; negative: none."),
    cfg.IntOpt("limit_param_default", default=25, min=1, help="Default page size."),
    cfg.IntOpt("api_limit_max", default=1000, min=1, help="Largest page size."),
    cfg.BoolOpt("show_image_direct_url", default=False, help="Show direct_url on images."),
    cfg.BoolOpt("show_multiple_locations", default=False, help="Show locations on images."),
    cfg.IntOpt("max_request_id_length", default=64, help="Longest accepted request id."),
    cfg.DictOpt(
        "enabled_backends",
        help="Stores as id:type pairs (central:file, dcn0:file); each id has its own "
        "section. Unset: one file store configured in [glance_store].",
    ),
    cfg.StrOpt("node_staging_uri", default="", help="file:// URI of the staging area."),
    cfg.StrOpt("image_cache_dir", help="Directory of this node's image cache; setting it "
               "enables the cache (and the /v2/cache API)."),
    cfg.IntOpt("image_cache_max_size", default=10 * 1024**3, min=0,
               help="Bytes the pruner keeps the cache under, least recently used first."),
    cfg.IntOpt("image_cache_stall_time", default=86400, min=0,
               help="Seconds after which an incomplete cache fill is removed."),
    cfg.StrOpt("image_cache_driver", default="sqlite",
               choices=["sqlite", "centralized_db", "xattr"], ignore_case=True,
               help="Glance's driver names; Glimpse keeps a per-node SQLite index for all."),
    cfg.IntOpt("cache_prefetcher_interval", default=300, min=1,
               help="Seconds between runs of the prefetcher (and of the pruner and cleaner)."),
    cfg.ListOpt(
        "enabled_import_methods",
        default=["glance-direct", "web-download", "copy-image"],
        help="Import methods offered by POST /v2/images/{id}/import.",
    ),
]

# Delayed delete and the scrubber, as Glance names them ([DEFAULT]).
_SCRUBBER_OPTS = [
    cfg.BoolOpt("delayed_delete", default=False,
                help="DELETE hides the image as pending_delete and keeps its data; the "
                "scrubber removes the data later (glimpse scrub, or inside glimpse serve)."),
    cfg.IntOpt("scrub_time", default=0, min=0,
               help="Seconds an image stays pending_delete before its data is scrubbed."),
    cfg.IntOpt("scrub_pool_size", default=1, min=1,
               help="Images one scrubber pass removes data of at the same time."),
    cfg.IntOpt("wakeup_time", default=300, min=0,
               help="Seconds between scrubber passes (glimpse serve, glimpse scrub --daemon)."),
]

_IMPORT_OPTS = [
    cfg.ListOpt(
        "image_import_plugins",
        default=[],
        help="Plugins run on imported data, in order: image_conversion, "
        "image_decompression, inject_image_metadata, no_op.",
    ),
]
_IMPORT_FILTER_OPTS = [
    cfg.ListOpt("allowed_schemes", default=["http", "https"]),
    cfg.ListOpt("disallowed_schemes", default=[]),
    cfg.ListOpt("allowed_hosts", default=[]),
    cfg.ListOpt("disallowed_hosts", default=[]),
    cfg.ListOpt("allowed_ports", default=["80", "443"]),
    cfg.ListOpt("disallowed_ports", default=[]),
]
_CONVERSION_OPTS = [
    cfg.StrOpt("output_format", default="raw", choices=["raw", "qcow2", "vmdk"]),
]
_INJECT_OPTS = [
    cfg.DictOpt("inject", default={}, help="Properties set on every imported image."),
    cfg.ListOpt("ignore_user_roles", default=["admin"], help="Roles whose imports are left as is."),
]

_GLANCE_DOWNLOAD_OPTS = [
    cfg.ListOpt("extra_properties",
                default=["hw_", "trait:", "os_distro", "os_secure_boot", "os_type"],
                help="glance-download copies the remote image's properties whose names "
                "start with one of these."),
]

# oslo.middleware's healthcheck options, as glance-api.conf names them.
_HEALTHCHECK_OPTS = [
    cfg.BoolOpt("detailed", default=False, help="Show database latency, each store's "
                "state and the free space of staging and the image cache in /healthcheck's "
                "JSON answer (visible to anyone who can reach the endpoint)."),
    cfg.StrOpt("disable_by_file_path", help="While this file exists /healthcheck answers "
               "503 'DISABLED BY FILE', so load balancers drain the node before maintenance."),
]

_PASTE_OPTS = [cfg.StrOpt("flavor", help="Glance's pipeline flavor; 'keystone' selects keystone.")]

_DATABASE_OPTS = [
    cfg.StrOpt(
        "connection",
        secret=True,
        help="SQLAlchemy URL; default: SQLite file glimpse.db in the data directory.",
    ),
]

_FILE_STORE_OPTS = [
    cfg.StrOpt("filesystem_store_datadir", help="Directory of the file store."),
    cfg.MultiStrOpt(
        "filesystem_store_datadirs",
        help="Several directories as PATH:PRIORITY (repeatable); data goes to the "
        "highest-priority directory that can take it.",
    ),
    cfg.IntOpt("filesystem_store_chunk_size", default=1024 * 1024, min=4096),
    cfg.IntOpt("filesystem_store_file_perm", default=0),
    cfg.BoolOpt("filesystem_thin_provisioning", default=False),
]
_RBD_STORE_OPTS = [
    cfg.StrOpt("rbd_store_pool", default="images", help="Ceph pool the images go to."),
    cfg.StrOpt("rbd_store_user", help="Ceph user (client.<name>) to connect as; default: "
               "librados' default (admin)."),
    cfg.StrOpt("rbd_store_ceph_conf", default="", help="ceph.conf of the cluster; default: "
               "librados' search path (/etc/ceph/ceph.conf)."),
    cfg.IntOpt("rbd_store_chunk_size", default=8, min=1,
               help="RBD object size and write size in MiB (a power of two)."),
    cfg.BoolOpt("rbd_thin_provisioning", default=False,
                help="Skip writing all-zero chunks, so they take no space in the pool."),
    cfg.IntOpt("rados_connect_timeout", default=-1,
               help="Seconds allowed for connecting and for each cluster operation; "
               "negative: librados' defaults (operations may then wait for ever)."),
]
_SWIFT_STORE_OPTS = [
    cfg.StrOpt("swift_store_container", default="glance", help="Container of the images."),
    cfg.IntOpt("swift_store_large_object_size", default=5120, min=1,
               help="Size in MB above which images are stored as segments and a manifest."),
    cfg.IntOpt("swift_store_large_object_chunk_size", default=200, min=1,
               help="Size of each segment in MB."),
    cfg.BoolOpt("swift_store_create_container_on_put", default=False,
                help="Create the container on upload when it does not exist."),
    cfg.StrOpt("swift_store_config_file", help="File of Swift credential references "
               "(Glance's glance-swift.conf); relative paths start at the config file's "
               "directory."),
    cfg.StrOpt("default_swift_reference", default="ref1",
               help="Section of swift_store_config_file this store logs in with."),
    cfg.BoolOpt("swift_store_multi_tenant", default=False,
                help="Glance's per-tenant containers; not supported by Glimpse."),
    cfg.BoolOpt("swift_store_auth_insecure", default=False, help="Skip TLS verification."),
    cfg.StrOpt("swift_store_cacert", help="CA bundle for TLS to Swift and its auth service."),
    cfg.StrOpt("swift_store_region", help="Keystone region of the Swift endpoint."),
    cfg.StrOpt("swift_store_endpoint_type", default="publicURL"),
    cfg.StrOpt("swift_store_service_type", default="object-store"),
    cfg.IntOpt("swift_store_retry_get_count", default=0, min=0,
               help="Times a download cut off mid-way is resumed where it stopped."),
    # Glimpse's own: Glance waits for a Swift that stopped answering for ever.
    cfg.FloatOpt("swift_store_timeout", default=60.0, min=0.1,
                 help="Seconds Swift and its auth service may take to connect or to answer "
                 "each read or write; a transfer in flight fails after this."),
]
_CHECKSUM_CHOICES = ["when_required", "when_supported"]
_S3_STORE_OPTS = [
    cfg.StrOpt("s3_store_host", help="S3 endpoint, http(s)://host[:port] (http if bare)."),
    cfg.StrOpt("s3_store_region_name", default="", help="Region; empty for S3-compatibles."),
    cfg.StrOpt("s3_store_access_key", secret=True),
    cfg.StrOpt("s3_store_secret_key", secret=True),
    cfg.StrOpt("s3_store_bucket", help="Bucket of the images."),
    cfg.BoolOpt("s3_store_create_bucket_on_put", default=False,
                help="Create the bucket on upload when it does not exist."),
    cfg.StrOpt("s3_store_bucket_url_format", default="auto",
               choices=["auto", "virtual", "path"], help="Bucket addressing style."),
    cfg.IntOpt("s3_store_large_object_size", default=100, min=0,
               help="Size in MB above which images are sent as multipart uploads."),
    cfg.IntOpt("s3_store_large_object_chunk_size", default=10, min=5,
               help="Multipart part size in MB."),
    cfg.IntOpt("s3_store_thread_pools", default=10, min=1,
               help="Parts of one multipart upload sent in parallel."),
    cfg.StrOpt("s3_store_cacert", default="", help="CA bundle; empty: botocore's."),
    cfg.BoolOpt("s3_store_enable_data_integrity_protection", default=False),
    cfg.StrOpt("s3_store_request_checksum_calculation", default="when_required",
               choices=_CHECKSUM_CHOICES),
    cfg.StrOpt("s3_store_response_checksum_validation", default="when_required",
               choices=_CHECKSUM_CHOICES),
    # Glimpse's own, as swift_store_timeout.
    cfg.FloatOpt("s3_store_timeout", default=60.0, min=0.1,
                 help="Seconds S3 may take to answer each read or write (connecting: at "
                 "most 10); a transfer in flight fails after this."),
]
_HTTP_STORE_OPTS = [
    cfg.BoolOpt("https_insecure", default=True, help="Skip verifying web servers' "
                "certificates (Glance's default)."),
    cfg.StrOpt("https_ca_certificates_file", help="CA bundle to verify web servers with."),
    cfg.DictOpt("http_proxy_information", default={},
                help="Proxies by scheme, e.g. http:http://proxy:3128."),
]
_PER_STORE_OPTS = [
    cfg.StrOpt("store_description", help="Shown to users in GET /v2/info/stores."),
    cfg.IntOpt("weight", default=0, help="Higher weight: read from this store first."),
]
_STORE_OPTS = [
    cfg.StrOpt("default_backend", help="Store id new data goes to."),
    *_FILE_STORE_OPTS,
]
# Each store type's own options, read from the store's section into StoreSettings.options.
_TYPE_OPTS = {
    "rbd": _RBD_STORE_OPTS,
    "swift": _SWIFT_STORE_OPTS,
    "s3": _S3_STORE_OPTS,
    "http": _HTTP_STORE_OPTS,
}
STORE_TYPES = ("file", *_TYPE_OPTS)
UNSUPPORTED_STORE_TYPES = {
    "cinder": "Glimpse has no cinder store: it needs a Cinder service and os-brick to attach "
    "volumes to this host. Use rbd (Cinder on the same Ceph cluster still clones images "
    "copy-on-write), swift, s3 or file",
    "vmware": "Glimpse has no VMware datastore store",
}
RESERVED_STORES = ("os_glance_staging_store", "os_glance_tasks_store")

_FORMAT_OPTS = [
    cfg.ListOpt("disk_formats", default=DEFAULT_DISK_FORMATS),
    cfg.ListOpt("container_formats", default=DEFAULT_CONTAINER_FORMATS),
    cfg.ListOpt("vmdk_allowed_types", default=["streamOptimized", "monolithicSparse"]),
    cfg.BoolOpt("require_image_format_match", default=True),
    cfg.ListOpt("gpt_safety_checks_nonfatal", default=[]),
]

_POLICY_OPTS = [
    cfg.StrOpt("policy_file", default="policy.yaml", help="Policy overrides (YAML or JSON)."),
]

_GLIMPSE_OPTS = [
    cfg.StrOpt("data_dir", default="data", help="Where the embedded default keeps its files."),
    cfg.StrOpt("noauth_project_id", default="admin", help="Project of every noauth caller."),
    cfg.StrOpt("noauth_user_id", default="admin", help="User of every noauth caller."),
    cfg.BoolOpt(
        "allow_insecure_bind",
        default=False,
        help="Let noauth mode listen on a non-loopback address.",
    ),
    cfg.StrOpt("token_file", help="JSON file mapping tokens to user, project and roles."),
    cfg.StrOpt("node_id", default=socket.gethostname(), help="Name of this node."),
    cfg.StrOpt(
        "schema_image_file",
        help="JSON file of extra image properties to publish in the image schema "
        "(Glance's schema-image.json); default: the common properties Glance ships.",
    ),
    cfg.IntOpt("max_request_body_size", default=65536, help="Largest JSON body in bytes."),
    cfg.BoolOpt(
        "allow_encrypted_images",
        default=False,
        help="Accept encrypted disk images (qcow2 encryption, LUKS); refused by default "
        "because their contents cannot be inspected.",
    ),
    cfg.BoolOpt(
        "validate_image_properties_against_metadefs",
        default=False,
        help="Refuse image property values that the metadefs catalogue's definitions for "
        "OS::Glance::Image do not allow (os_distro=Ubuntu: use ubuntu).",
    ),
    cfg.IntOpt("web_download_timeout", default=60, help="Seconds without data before a "
               "web-download import gives up."),
    cfg.IntOpt("web_download_max_redirects", default=5),
    cfg.IntOpt("qemu_img_cpu_seconds", default=300, help="CPU limit of one qemu-img run."),
    cfg.IntOpt("qemu_img_memory_mib", default=2048, help="Address-space limit of qemu-img."),
    cfg.IntOpt("import_lease_seconds", default=120, help="How long a node's claim on a "
               "running import lasts without renewal before another node may take it."),
    cfg.IntOpt("keystone_limits_cache_time", default=30, min=0,
               help="Seconds a project's unified limits read from Keystone are reused "
               "(use_keystone_limits); 0: ask Keystone at every check."),
]

# oslo.limit's options naming the endpoint whose limits apply; keystoneauth's session
# and auth options of the same section are read by glimpse.quota.keystone.
_OSLO_LIMIT_OPTS = [
    cfg.StrOpt("endpoint_id", help="The image service's endpoint id in Keystone."),
    cfg.StrOpt("endpoint_service_name", help="Service name, to find the endpoint."),
    cfg.StrOpt("endpoint_service_type", help="Service type (image), to find the endpoint."),
    cfg.StrOpt("endpoint_region_name", help="Region of the endpoint, to find it."),
    cfg.StrOpt("endpoint_interface", default="public",
               choices=["public", "publicURL", "internal", "internalURL", "admin",
                        "adminURL"],
               help="Interface of the endpoint, to find it."),
]


def build_config_opts() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_opts(_DEFAULT_OPTS)
    conf.register_opts(_PASTE_OPTS, group="paste_deploy")
    conf.register_opts(_HEALTHCHECK_OPTS, group="healthcheck")
    conf.register_opts(_DATABASE_OPTS, group="database")
    conf.register_opts(_STORE_OPTS, group="glance_store")
    conf.register_opts(_FORMAT_OPTS, group="image_format")
    conf.register_opts(_POLICY_OPTS, group="oslo_policy")
    conf.register_opts(_GLIMPSE_OPTS, group="glimpse")
    conf.register_opts(_OSLO_LIMIT_OPTS, group="oslo_limit")
    conf.register_opts(_SCRUBBER_OPTS)
    conf.register_opts(_IMPORT_OPTS, group="image_import_opts")
    conf.register_opts(_IMPORT_FILTER_OPTS, group="import_filtering_opts")
    conf.register_opts(_CONVERSION_OPTS, group="image_conversion")
    conf.register_opts(_INJECT_OPTS, group="inject_metadata_properties")
    conf.register_opts(_GLANCE_DOWNLOAD_OPTS, group="glance_download_properties")
    return conf


def parse_size(text: str) -> int:
    """Parse Glance's size notation (``10GB``, ``512 MB``, ``1024``) into bytes."""
    units = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
    value = text.strip().upper().replace(" ", "")
    for suffix in ("KB", "MB", "GB", "TB", "B"):
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * units[suffix]
    return int(value)


@dataclass(frozen=True)
class StoreSettings:
    """One configured store: its id, driver type and the options of its section."""

    id: str
    type: str
    description: str | None = None
    weight: int = 0
    # file: (directory, priority) pairs, highest priority first
    datadirs: tuple[tuple[Path, int], ...] = ()
    chunk_size: int = 1024 * 1024
    file_perm: int = 0
    thin_provisioning: bool = False
    # rbd, swift, s3: the section's options of that type, by their Glance names
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportSettings:
    """Everything the import methods and plugins read (Glance's option names)."""

    enabled_methods: tuple[str, ...] = ("glance-direct", "web-download", "copy-image")
    plugins: tuple[str, ...] = ()
    allowed_schemes: tuple[str, ...] = ("http", "https")
    disallowed_schemes: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    disallowed_hosts: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = (80, 443)
    disallowed_ports: tuple[int, ...] = ()
    conversion_output_format: str = "raw"
    inject: tuple[tuple[str, str], ...] = ()
    inject_ignore_user_roles: tuple[str, ...] = ("admin",)
    web_download_timeout: int = 60
    web_download_max_redirects: int = 5
    qemu_img_cpu_seconds: int = 300
    qemu_img_memory_mib: int = 2048
    lease_seconds: int = 120
    glance_download_properties: tuple[str, ...] = (
        "hw_", "trait:", "os_distro", "os_secure_boot", "os_type",
    )


@dataclass(frozen=True)
class ScrubberSettings:
    """Delayed delete and the scrubber (Glance's option names)."""

    delayed_delete: bool = False
    scrub_time: int = 0
    scrub_pool_size: int = 1
    wakeup_time: int = 300


@dataclass(frozen=True)
class UnifiedLimitSettings:
    """``use_keystone_limits`` and the ``[oslo_limit]`` endpoint it reads limits of."""

    enabled: bool = False
    endpoint_id: str | None = None
    endpoint_service_type: str | None = None
    endpoint_service_name: str | None = None
    endpoint_region_name: str | None = None
    endpoint_interface: str = "public"
    cache_time: int = 30


@dataclass(frozen=True)
class Settings:
    bind_host: str
    bind_port: int
    workers: int
    auth_strategy: str
    public_endpoint: str | None
    worker_self_reference_url: str | None
    hashing_algorithm: str
    image_size_cap: int
    user_storage_quota: int
    image_member_quota: int
    image_property_quota: int
    image_tag_quota: int
    image_location_quota: int
    limit_param_default: int
    api_limit_max: int
    show_image_direct_url: bool
    show_multiple_locations: bool
    max_request_id_length: int
    database_url: str
    data_dir: Path
    disk_formats: tuple[str, ...]
    container_formats: tuple[str, ...]
    vmdk_allowed_types: tuple[str, ...]
    require_image_format_match: bool
    gpt_safety_checks_nonfatal: tuple[str, ...]
    policy_file: str
    config_dir: Path | None
    noauth_project_id: str
    noauth_user_id: str
    allow_insecure_bind: bool
    token_file: Path | None
    node_id: str
    schema_image_file: Path | None
    max_request_body_size: int
    allow_encrypted_images: bool = False
    stores: tuple[StoreSettings, ...] = ()
    default_store: str = "file"
    multistore: bool = False
    staging_dir: Path | None = None
    imports: ImportSettings = ImportSettings()
    validate_image_properties_against_metadefs: bool = False
    # The INI files read, in order: adapters with sections of their own (keystonemiddleware
    # reads [keystone_authtoken]) read them from the same files.
    config_files: tuple[str, ...] = ()
    image_cache_dir: Path | None = None  # None: no cache
    image_cache_max_size: int = 10 * 1024**3
    image_cache_stall_time: int = 86400
    image_cache_driver: str = "sqlite"
    cache_prefetcher_interval: int = 300
    healthcheck_detailed: bool = False
    healthcheck_disable_file: Path | None = None
    scrubber: ScrubberSettings = ScrubberSettings()
    unified_limits: UnifiedLimitSettings = UnifiedLimitSettings()
    do_secure_hash: bool = True
    http_retries: int = 3

    @property
    def store_dir(self) -> Path:
        """The (first) directory of the default store, where new image files go."""
        store = next(s for s in self.stores if s.id == self.default_store)
        return store.datadirs[0][0]


def load_settings(
    config_files: list[str] | None = None,
    overrides: dict[str, object] | None = None,
) -> Settings:
    """Read the INI files once and return typed settings.

    ``overrides`` holds command-line shortcuts (host, port, data_dir) and test values,
    keyed by the Settings field name; they win over the files.
    """
    conf = build_config_opts()
    conf(args=[], default_config_files=list(config_files or []), project="glimpse")
    values = dict(overrides or {})
    data_dir = values.pop("data_dir", None)
    settings = settings_from_conf(
        conf, config_files or [], Path(str(data_dir)) if data_dir is not None else None
    )
    return replace(settings, **values) if values else settings  # type: ignore[arg-type]


def settings_from_conf(
    conf: cfg.ConfigOpts, config_files: list[str], data_dir_override: Path | None = None
) -> Settings:
    data_dir = (data_dir_override or Path(conf.glimpse.data_dir)).expanduser()
    auth_strategy = conf.auth_strategy
    flavor = conf.paste_deploy.flavor or ""
    if "keystone" in flavor:
        auth_strategy = "keystone"
    config_dir = Path(config_files[0]).resolve().parent if config_files else None
    stores, default_store, multistore = _store_settings(conf, data_dir, config_dir)
    return Settings(
        stores=stores,
        default_store=default_store,
        multistore=multistore,
        staging_dir=_staging_dir(conf, data_dir),
        imports=_import_settings(conf),
        bind_host=conf.bind_host,
        bind_port=conf.bind_port,
        workers=conf.workers,
        auth_strategy=auth_strategy,
        public_endpoint=conf.public_endpoint,
        worker_self_reference_url=conf.worker_self_reference_url,
        hashing_algorithm=conf.hashing_algorithm,
        do_secure_hash=conf.do_secure_hash,
        http_retries=conf.http_retries,
        image_size_cap=conf.image_size_cap,
        user_storage_quota=parse_size(conf.user_storage_quota),
        image_member_quota=conf.image_member_quota,
        image_property_quota=conf.image_property_quota,
        image_tag_quota=conf.image_tag_quota,
        image_location_quota=conf.image_location_quota,
        limit_param_default=conf.limit_param_default,
        api_limit_max=conf.api_limit_max,
        show_image_direct_url=conf.show_image_direct_url,
        show_multiple_locations=conf.show_multiple_locations,
        max_request_id_length=conf.max_request_id_length,
        database_url=conf.database.connection or "",
        data_dir=data_dir,
        disk_formats=_items(conf.image_format.disk_formats),
        container_formats=_items(conf.image_format.container_formats),
        vmdk_allowed_types=tuple(conf.image_format.vmdk_allowed_types),
        require_image_format_match=conf.image_format.require_image_format_match,
        gpt_safety_checks_nonfatal=tuple(conf.image_format.gpt_safety_checks_nonfatal),
        policy_file=conf.oslo_policy.policy_file,
        config_dir=config_dir,
        config_files=tuple(str(Path(f).resolve()) for f in config_files),
        noauth_project_id=conf.glimpse.noauth_project_id,
        noauth_user_id=conf.glimpse.noauth_user_id,
        allow_insecure_bind=conf.glimpse.allow_insecure_bind,
        token_file=Path(conf.glimpse.token_file) if conf.glimpse.token_file else None,
        node_id=conf.glimpse.node_id,
        schema_image_file=(
            Path(conf.glimpse.schema_image_file) if conf.glimpse.schema_image_file else None
        ),
        max_request_body_size=conf.glimpse.max_request_body_size,
        allow_encrypted_images=conf.glimpse.allow_encrypted_images,
        validate_image_properties_against_metadefs=(
            conf.glimpse.validate_image_properties_against_metadefs
        ),
        image_cache_dir=Path(conf.image_cache_dir).expanduser() if conf.image_cache_dir else None,
        image_cache_max_size=conf.image_cache_max_size,
        image_cache_stall_time=conf.image_cache_stall_time,
        image_cache_driver=conf.image_cache_driver.lower(),
        cache_prefetcher_interval=conf.cache_prefetcher_interval,
        healthcheck_detailed=conf.healthcheck.detailed,
        healthcheck_disable_file=(
            Path(conf.healthcheck.disable_by_file_path).expanduser()
            if conf.healthcheck.disable_by_file_path else None
        ),
        scrubber=ScrubberSettings(
            delayed_delete=conf.delayed_delete, scrub_time=conf.scrub_time,
            scrub_pool_size=conf.scrub_pool_size, wakeup_time=conf.wakeup_time,
        ),
        unified_limits=_unified_limit_settings(conf),
    )


def _unified_limit_settings(conf: cfg.ConfigOpts) -> UnifiedLimitSettings:
    section = conf.oslo_limit
    settings = UnifiedLimitSettings(
        enabled=conf.use_keystone_limits,
        endpoint_id=section.endpoint_id,
        endpoint_service_type=section.endpoint_service_type,
        endpoint_service_name=section.endpoint_service_name,
        endpoint_region_name=section.endpoint_region_name,
        endpoint_interface=section.endpoint_interface,
        cache_time=conf.glimpse.keystone_limits_cache_time,
    )
    if settings.enabled and not (
        settings.endpoint_id or settings.endpoint_service_type
        or settings.endpoint_service_name
    ):
        raise ValueError(
            "use_keystone_limits needs [oslo_limit] endpoint_id (or endpoint_service_type "
            "/ endpoint_service_name) naming the image endpoint whose limits apply"
        )
    return settings


def _store_settings(
    conf: cfg.ConfigOpts, data_dir: Path, config_dir: Path | None = None
) -> tuple[tuple[StoreSettings, ...], str, bool]:
    backends: dict[str, str] = dict(conf.enabled_backends or {})
    if not backends:
        store = _file_store("file", "file", conf.glance_store, data_dir / "images", None, 0)
        return (store,), "file", False
    stores = []
    for store_id, store_type in backends.items():
        store_type = (store_type or "").strip()
        if store_id in RESERVED_STORES:
            raise ValueError(f"store id {store_id!r} is reserved for Glimpse's own use")
        if store_type in UNSUPPORTED_STORE_TYPES:
            raise ValueError(f"store {store_id!r}: {UNSUPPORTED_STORE_TYPES[store_type]}")
        if store_type not in STORE_TYPES:
            raise ValueError(
                f"store {store_id!r} has unknown type {store_type!r}; known: "
                + ", ".join(STORE_TYPES)
            )
        if store_type != "file":
            stores.append(_typed_store(conf, store_id, store_type, config_dir))
            continue
        conf.register_opts([*_PER_STORE_OPTS, *_FILE_STORE_OPTS], group=store_id)
        section = conf[store_id]
        stores.append(
            _file_store(
                store_id, store_type, section, data_dir / store_id,
                section.store_description, section.weight,
            )
        )
    default = conf.glance_store.default_backend
    if not default:
        raise ValueError("[glance_store] default_backend must name one of enabled_backends")
    if default not in backends:
        raise ValueError(
            f"[glance_store] default_backend {default!r} is not among enabled_backends"
        )
    return tuple(stores), default, True


def _typed_store(
    conf: cfg.ConfigOpts, store_id: str, store_type: str, config_dir: Path | None
) -> StoreSettings:
    """An rbd, swift or s3 store: its section's options of that type, checked here."""
    opts = _TYPE_OPTS[store_type]
    conf.register_opts([*_PER_STORE_OPTS, *opts], group=store_id)
    section = conf[store_id]
    options = {opt.dest: section[opt.dest] for opt in opts}
    if store_type == "swift":
        if options["swift_store_multi_tenant"]:
            raise ValueError(
                f"[{store_id}] swift_store_multi_tenant is not supported: Glimpse keeps "
                "images in the account of swift_store_config_file"
            )
        path = options["swift_store_config_file"]
        if not path:
            raise ValueError(f"[{store_id}] a swift store needs swift_store_config_file")
        path = Path(path).expanduser()
        if not path.is_absolute() and config_dir is not None:
            path = config_dir / path
        options["swift_store_config_file"] = str(path)
    if store_type == "s3":
        missing = [name for name in ("s3_store_host", "s3_store_access_key",
                                     "s3_store_secret_key", "s3_store_bucket")
                   if not options[name]]
        if missing:
            raise ValueError(f"[{store_id}] an s3 store needs {', '.join(missing)}")
    return StoreSettings(
        id=store_id, type=store_type, description=section.store_description,
        weight=section.weight, options=options,
    )


def _file_store(
    store_id: str, store_type: str, section: Any, fallback: Path,
    description: str | None, weight: int,
) -> StoreSettings:
    dirs: list[tuple[Path, int]] = []
    for item in section.filesystem_store_datadirs or []:
        path, _, priority = item.rpartition(":")
        if not path:
            path, priority = priority, "0"
        dirs.append((Path(path).expanduser(), int(priority or 0)))
    if section.filesystem_store_datadir:
        dirs.insert(0, (Path(section.filesystem_store_datadir).expanduser(), 0))
    if not dirs:
        dirs = [(fallback, 0)]
    dirs.sort(key=lambda d: -d[1])
    return StoreSettings(
        id=store_id,
        type=store_type,
        description=description,
        weight=weight,
        datadirs=tuple(dirs),
        chunk_size=section.filesystem_store_chunk_size,
        file_perm=section.filesystem_store_file_perm,
        thin_provisioning=section.filesystem_thin_provisioning,
    )


def _items(values: list[str] | None) -> tuple[str, ...]:
    """List option items, also written the guide's way: ``[80,443]``, ``['a']``."""
    items = []
    for value in values or []:
        item = value.strip().strip("[]").strip().strip("'\"").strip()
        if item:
            items.append(item)
    return tuple(items)


def _import_settings(conf: cfg.ConfigOpts) -> ImportSettings:
    filters = conf.import_filtering_opts
    glimpse = conf.glimpse
    inject = {k.strip().strip("'\""): v.strip().strip("'\"") for k, v in
              conf.inject_metadata_properties.inject.items()}
    return ImportSettings(
        enabled_methods=_items(conf.enabled_import_methods),
        plugins=_items(conf.image_import_opts.image_import_plugins),
        allowed_schemes=_items(filters.allowed_schemes),
        disallowed_schemes=_items(filters.disallowed_schemes),
        allowed_hosts=_items(filters.allowed_hosts),
        disallowed_hosts=_items(filters.disallowed_hosts),
        allowed_ports=tuple(int(p) for p in _items(filters.allowed_ports)),
        disallowed_ports=tuple(int(p) for p in _items(filters.disallowed_ports)),
        conversion_output_format=conf.image_conversion.output_format,
        inject=tuple(sorted(inject.items())),
        inject_ignore_user_roles=_items(conf.inject_metadata_properties.ignore_user_roles),
        web_download_timeout=glimpse.web_download_timeout,
        web_download_max_redirects=glimpse.web_download_max_redirects,
        qemu_img_cpu_seconds=glimpse.qemu_img_cpu_seconds,
        qemu_img_memory_mib=glimpse.qemu_img_memory_mib,
        lease_seconds=glimpse.import_lease_seconds,
        glance_download_properties=_items(conf.glance_download_properties.extra_properties),
    )


def _staging_dir(conf: cfg.ConfigOpts, data_dir: Path) -> Path:
    conf.register_opts(_FILE_STORE_OPTS, group="os_glance_staging_store")
    staging = conf.os_glance_staging_store.filesystem_store_datadir
    if staging:
        return Path(staging).expanduser()
    uri = conf.node_staging_uri
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    return data_dir / "staging"


def resolve_database_url(settings: Settings) -> str:
    """The configured URL, made async-capable; SQLite in the data directory by default."""
    url = settings.database_url
    if not url:
        return f"sqlite+aiosqlite:///{(settings.data_dir / 'glimpse.db').resolve()}"
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    if url.startswith(("postgresql:", "postgres:")):
        return "postgresql+asyncpg:" + url.split(":", 1)[1]
    if url.startswith("postgresql+psycopg2:"):
        return "postgresql+asyncpg:" + url.split(":", 1)[1]
    if url.startswith(("mysql:", "mysql+pymysql:")):
        return "mysql+aiomysql:" + url.split(":", 1)[1]
    return url


def environment_config_files() -> list[str]:
    """Config files named by GLIMPSE_CONFIG (colon-separated), for tools run by hand."""
    raw = os.environ.get("GLIMPSE_CONFIG", "")
    return [p for p in raw.split(":") if p]
