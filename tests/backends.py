"""Real storage servers for the test tiers: Ceph clusters (RBD), radosgw (S3), Swift.

``scripts/ceph`` and ``scripts/swift`` start them on 127.0.0.1 under the repository's
``.cache`` (installing what is missing); the fixtures here call them once per session.
The scripts are idempotent and take a lock, so ``pytest -n 2`` workers share one set of
servers; tests keep apart by using fresh image ids. The servers stay up after the run
for the next one (stop them with ``scripts/ceph stop all`` and ``scripts/swift stop``).

When a service cannot be installed on this machine (the scripts exit with status 4) the
tests that need it are skipped, unless ``CI`` is set: then they fail.

Outage tests freeze a server of their own with SIGSTOP (the Swift instance ``outage``,
the radosgw of the Ceph cluster ``outage``), never the shared ones, one test at a time
(:func:`frozen_one_at_a_time`), and always let it run again (SIGCONT) on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class SwiftKeystoneEndpoint:
    """The Swift proxy that takes Keystone tokens, and a user with its operator role."""

    auth_url: str  # Keystone's /v3
    user: str
    password: str
    project: str
    project_id: str
    storage_url: str

    def connection(self) -> Any:
        """A swiftclient connection as this user (a keystoneauth session), to look behind
        the store."""
        import swiftclient
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        auth = v3.Password(auth_url=self.auth_url, username=self.user, password=self.password,
                           project_name=self.project, user_domain_id="default",
                           project_domain_id="default")
        return swiftclient.Connection(session=session.Session(auth=auth), retries=1)

    def config_file(self, directory: Path, reference: str = "ks", **extra: str) -> Path:
        """Append a Keystone v3 reference for this user to ``directory``/glance-swift.conf
        (``extra`` overrides its options)."""
        path = directory / "glance-swift.conf"
        lines = {
            "auth_address": self.auth_url, "auth_version": "3", "user": self.user,
            "key": self.password, "project_name": self.project,
            "user_domain_id": "default", "project_domain_id": "default", **extra,
        }
        with path.open("a") as f:
            f.write(f"[{reference}]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items()))
            f.write("\n")
        return path


@pytest.fixture(scope="session")
def swift_keystone() -> SwiftKeystoneEndpoint:
    """The Swift all-in-one with its Keystone proxy (scripts/swift start-keystone), which
    also starts the Keystone of scripts/keystone."""
    info = json.loads(run_script("swift", "start-keystone"))
    return SwiftKeystoneEndpoint(
        auth_url=info["auth_url"], user=info["user"], password=info["password"],
        project=info["project"], project_id=info["project_id"],
        storage_url=info["storage_url"],
    )


def keystone_state() -> dict[str, object]:
    """scripts/keystone json: its users, projects and passwords."""
    proc = subprocess.run([str(REPO / "scripts" / "keystone"), "json"], capture_output=True,
                          text=True, timeout=900, check=True)
    state: dict[str, object] = json.loads(proc.stdout)
    return state


# -- servers that tests freeze ---------------------------------------------------------


def daemon_pid(pid_file: Path, mark: str) -> int:
    """The PID in ``pid_file`` if that process is ours (its command line has ``mark``)."""
    pid = int(pid_file.read_text().strip())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert mark in cmdline, f"process {pid} of {pid_file} is not ours: {cmdline}"
    return pid


def resume_if_ours(pid_file: Path, mark: str) -> None:
    """SIGCONT to the process of ``pid_file`` if it is ours: a run killed while it was
    frozen left it stopped."""
    with contextlib.suppress(OSError, ValueError, AssertionError):
        os.kill(daemon_pid(pid_file, mark), signal.SIGCONT)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block; running again afterwards, always."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def frozen_one_at_a_time(lock_file: Path) -> AsyncIterator[None]:
    """Hold an flock on ``lock_file``: one test at a time freezes that server, across
    xdist workers and test runs on this machine."""
    with open(lock_file, "a") as lock:
        await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class SwiftOutage:
    """The Swift instance ``outage``: tempauth, and its proxy's PID to freeze."""

    endpoint: SwiftEndpoint
    base: Path  # <cache>/swift/outage

    def proxy_pid(self) -> int:
        return daemon_pid(*_swift_proxy(self.base))

    def thaw(self) -> None:
        """Holding the lock: a run killed mid-test may have left the proxy stopped."""
        resume_if_ours(*_swift_proxy(self.base))

    @property
    def lock_file(self) -> Path:
        return self.base / "freeze.lock"


def _swift_proxy(base: Path) -> tuple[Path, str]:
    """The PID file of an instance's tempauth proxy, and what its command line names."""
    return base / "run" / "proxy.pid", str(base / "etc" / "proxy-server.conf")


@pytest.fixture(scope="session")
def swift_outage() -> SwiftOutage:
    base = Path(os.environ.get("GLIMPSE_CACHE_DIR", REPO / ".cache")) / "swift" / "outage"
    url = run_script("swift", "start", "outage")
    return SwiftOutage(SwiftEndpoint(url, SWIFT_USER, SWIFT_KEY), base)


@dataclass(frozen=True)
class S3Outage:
    """The radosgw of the Ceph cluster ``outage`` (whose OSD the RBD outage test freezes;
    both take the same lock)."""

    endpoint: S3Endpoint
    cluster: Path  # <cache>/ceph/outage

    def radosgw_pid(self) -> int:
        return daemon_pid(self.cluster / "run" / "client.rgw.gw.pid",
                          str(self.cluster / "ceph.conf"))


def ceph_outage_lock() -> Path:
    return Path(os.environ.get("GLIMPSE_CACHE_DIR", REPO / ".cache")) / "ceph" / "outage" / (
        "freeze.lock")


def start_s3_outage() -> S3Outage:
    """radosgw on the cluster ``outage``; call it holding :func:`ceph_outage_lock` (so it
    may resume a radosgw that a run killed mid-test left stopped)."""
    cluster = ceph_outage_lock().parent
    resume_if_ours(cluster / "run" / "client.rgw.gw.pid", str(cluster / "ceph.conf"))
    url = run_script("ceph", "start-rgw", "outage")
    return S3Outage(S3Endpoint(url, S3_ACCESS_KEY, S3_SECRET_KEY), cluster)
