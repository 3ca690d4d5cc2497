"""Fixtures for the integration tests of the network stores (tests/backends.py)."""

from tests.backends import ceph_central, ceph_dcn0, radosgw, swift_aio  # noqa: F401
