"""Fixtures for the contract tests of the network stores (real servers, tests/backends.py)."""

from tests.backends import ceph_central, ceph_dcn0, radosgw, swift_aio  # noqa: F401
