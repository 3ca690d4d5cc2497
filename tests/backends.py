"""Real storage servers for the test tiers: Ceph clusters (RBD), radosgw (S3), Swift.

``scripts/ceph`` and ``scripts/swift`` start them on 127.0.0.1 under the repository's
``.cache`` (installing what is missing); the fixtures here call them once per session.
The scripts are idempotent and take a lock, so ``pytest -n 2`` workers share one set of
servers; tests keep apart by using fresh image ids. The servers stay up after the run
for the next one (stop them with ``scripts/ceph stop all`` and ``scripts/swift stop``).

When a service cannot be installed on this machine (the scripts exit with status 4) the
tests that need it are skipped, unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CANNOT_INSTALL = 4

S3_ACCESS_KEY = "glimpse-test-access"
S3_SECRET_KEY = "glimpse-test-secret-key"
SWIFT_USER = "glimpse:glimpse"
SWIFT_KEY = "glimpse-test-key"


def run_script(name: str, *args: str) -> str:
    """Run scripts/<name> ARGS; its last line of output. Skips (outside CI) or fails."""
    env = dict(os.environ, GLIMPSE_S3_ACCESS_KEY=S3_ACCESS_KEY,
               GLIMPSE_S3_SECRET_KEY=S3_SECRET_KEY, GLIMPSE_SWIFT_KEY=SWIFT_KEY)
    try:
        proc = subprocess.run(
            [str(REPO / "scripts" / name), *args], capture_output=True, text=True,
            timeout=900, env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/{name} {' '.join(args)} took longer than 15 minutes")
    if proc.returncode == CANNOT_INSTALL:
        message = f"scripts/{name} cannot install its service here: {proc.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if proc.returncode != 0:
        pytest.fail(f"scripts/{name} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if lines else ""


@dataclass(frozen=True)
class CephCluster:
    name: str
    conf: str
    fsid: str


def start_ceph(name: str) -> CephCluster:
    conf = run_script("ceph", "start", name)
    _link_bindings()
    import rados

    client = rados.Rados(conffile=conf, rados_id="admin")
    client.connect()
    try:
        fsid = client.get_fsid()
    finally:
        client.shutdown()
    return CephCluster(name, conf, fsid)


def _link_bindings() -> None:
    """Debian's rados/rbd modules, linked into this virtualenv (CPython 3.11 only)."""
    try:
        import rados  # noqa: F401
        import rbd  # noqa: F401

        return
    except ImportError:
        pass
    if sys.version_info[:2] != (3, 11):
        message = "Debian's Ceph bindings load only into CPython 3.11"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    run_script("ceph", "link-bindings", sys.prefix)
    importlib.invalidate_caches()


@pytest.fixture(scope="session")
def ceph_central() -> CephCluster:
    return start_ceph("central")


@pytest.fixture(scope="session")
def ceph_dcn0() -> CephCluster:
    return start_ceph("dcn0")


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str


@pytest.fixture(scope="session")
def radosgw(ceph_central: CephCluster) -> S3Endpoint:
    url = run_script("ceph", "start-rgw", ceph_central.name)
    return S3Endpoint(url, S3_ACCESS_KEY, S3_SECRET_KEY)


@dataclass(frozen=True)
class SwiftEndpoint:
    auth_url: str
    user: str
    key: str

    def config_file(self, directory: Path, reference: str = "ref1") -> Path:
        """A Glance-style glance-swift.conf with one reference for this account."""
        path = directory / "glance-swift.conf"
        path.write_text(
            f"[{reference}]\nauth_address = {self.auth_url}\nuser = {self.user}\n"
            f"key = {self.key}\nauth_version = 1\n"
        )
        return path


@pytest.fixture(scope="session")
def swift_aio() -> SwiftEndpoint:
    return SwiftEndpoint(run_script("swift", "start"), SWIFT_USER, SWIFT_KEY)
