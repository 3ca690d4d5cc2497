"""Fixtures for the contract tests of the network stores (real servers, tests/backends.py)."""

from tests.backends import (  # noqa: F401
    ceph_central,
    ceph_dcn0,
    radosgw,
    swift_aio,
    swift_keystone,
    swift_outage,
)
