"""Fixtures shared by the integration tests: the network stores (tests/backends.py) and
the real Keystone (tests/identity.py)."""

from tests.backends import (  # noqa: F401
    ceph_central,
    ceph_dcn0,
    radosgw,
    swift_aio,
    swift_keystone,
    swift_outage,
)
from tests.identity import keystone  # noqa: F401
