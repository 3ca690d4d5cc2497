"""Fixtures for the integration tests of the network stores (tests/backends.py)."""

from tests.backends import (  # noqa: F401
    ceph_central,
    ceph_dcn0,
    radosgw,
    swift_aio,
    swift_keystone,
    swift_outage,
)
