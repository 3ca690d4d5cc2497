"""Store sections with Glance's option names for the rbd, swift and s3 types, and the
start-up errors for what Glimpse does not offer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from glimpse.bootstrap import build_stores
from glimpse.config import Settings, load_settings


def settings(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "conf" / "glimpse-api.conf"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return load_settings([str(path)], {"data_dir": tmp_path / "data"})


def test_network_store_options_are_read_by_their_glance_names(tmp_path: Path) -> None:
    result = settings(tmp_path, """
[DEFAULT]
enabled_backends = ceph:rbd, obj:swift, bucket:s3
[glance_store]
default_backend = ceph
[ceph]
rbd_store_pool = glance-images
rbd_store_user = glance
rbd_store_ceph_conf = /etc/ceph/site.conf
rbd_thin_provisioning = true
[obj]
swift_store_config_file = glance-swift.conf
swift_store_large_object_size = 100
[bucket]
s3_store_host = s3.example.com
s3_store_access_key = AK
s3_store_secret_key = SK
s3_store_bucket = images
""")
    stores = {s.id: s for s in result.stores}
    assert stores["ceph"].type == "rbd"
    assert stores["ceph"].options["rbd_store_pool"] == "glance-images"
    assert stores["ceph"].options["rbd_store_chunk_size"] == 8
    assert stores["ceph"].options["rados_connect_timeout"] == -1
    assert stores["ceph"].options["rbd_thin_provisioning"] is True
    swift = stores["obj"].options
    # a relative credentials file is found beside the config file
    assert swift["swift_store_config_file"] == str(tmp_path / "conf" / "glance-swift.conf")
    assert swift["swift_store_container"] == "glance"
    assert swift["swift_store_large_object_size"] == 100
    assert swift["default_swift_reference"] == "ref1"
    s3 = stores["bucket"].options
    assert (s3["s3_store_large_object_size"], s3["s3_store_large_object_chunk_size"]) == (100, 10)
    assert s3["s3_store_thread_pools"] == 10


@pytest.mark.parametrize(("section", "message"), [
    ("[x]\n", "swift_store_config_file"),
    ("[x]\nswift_store_config_file = f\nswift_store_multi_tenant = true\n",
     "swift_store_multi_tenant is not supported"),
])
def test_swift_sections_that_cannot_work_stop_start_up(
    tmp_path: Path, section: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        settings(tmp_path, "[DEFAULT]\nenabled_backends = x:swift\n"
                           "[glance_store]\ndefault_backend = x\n" + section)


def test_s3_without_its_endpoint_and_keys_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="s3_store_access_key, s3_store_secret_key"):
        settings(tmp_path, "[DEFAULT]\nenabled_backends = x:s3\n[glance_store]\n"
                           "default_backend = x\n[x]\ns3_store_host = h\ns3_store_bucket = b\n")


def test_cinder_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no cinder store.*Cinder service"):
        settings(tmp_path, "[DEFAULT]\nenabled_backends = vol:cinder\n"
                           "[glance_store]\ndefault_backend = vol\n")


def test_unknown_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown type 'ftp'"):
        settings(tmp_path, "[DEFAULT]\nenabled_backends = x:ftp\n"
                           "[glance_store]\ndefault_backend = x\n")


def test_a_missing_credentials_file_stops_start_up(tmp_path: Path) -> None:
    config = settings(tmp_path, "[DEFAULT]\nenabled_backends = x:swift\n[glance_store]\n"
                                "default_backend = x\n[x]\nswift_store_config_file = none\n")
    with pytest.raises(ValueError, match="cannot be read"):
        build_stores(config)


def test_timeouts_reach_the_drivers(tmp_path: Path) -> None:
    """Glimpse's own swift_store_timeout and s3_store_timeout (Glance has none: a back end
    that stops answering holds its transfers for ever), and Glance's
    swift_store_retry_get_count."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "glance-swift.conf").write_text(
        "[ref1]\nauth_address = http://swift.example/auth/v1.0\nuser = a:b\nkey = k\n")
    text = """
[DEFAULT]
enabled_backends = obj:swift, bucket:s3, plain:swift
[glance_store]
default_backend = obj
[obj]
swift_store_config_file = glance-swift.conf
swift_store_timeout = 2.5
swift_store_retry_get_count = 3
[plain]
swift_store_config_file = glance-swift.conf
[bucket]
s3_store_host = s3.example.com
s3_store_access_key = AK
s3_store_secret_key = SK
s3_store_bucket = images
s3_store_timeout = 7
"""
    registry, _ = build_stores(settings(tmp_path, text))
    obj: Any = registry.get("obj").driver
    assert (obj.timeout, obj.retry_get_count) == (2.5, 3)
    plain: Any = registry.get("plain").driver
    assert (plain.timeout, plain.retry_get_count) == (60, 0)
    bucket: Any = registry.get("bucket").driver
    assert bucket.client.meta.config.read_timeout == 7
    assert bucket.client.meta.config.connect_timeout == 7
    # Three tries for transfers; one for clean-up after a failure (then the janitor).
    assert bucket.client.meta.config.retries["total_max_attempts"] == 3
    assert bucket.cleanup_client.meta.config.retries["total_max_attempts"] == 1
