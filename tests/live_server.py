"""A real ``glimpse serve`` process, for the tiers that need one (compat, integration).

:class:`LiveServer` writes a Glance-style INI file, starts ``glimpse serve`` on a free
loopback port with its own data directory, waits for ``/healthcheck`` and stops the
process by its PID (SIGTERM, then SIGKILL). ``kill()`` is the crash: SIGKILL, no
clean-up. The child gets the parent's environment (so a ``PYTHONPATH`` the test run
needs reaches the server too).

The PostgreSQL leg uses the private cluster of ``scripts/postgres`` when
GLIMPSE_TEST_POSTGRES=1; under CI it must not be skipped (the rule of tests/conftest.py).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", "postgres"]

# Projects for token-auth servers: an admin, two projects that share images, a reader.
TOKENS = {
    "admin-token": {"user_id": "admin-user", "project_id": "admin-project", "roles": ["admin"]},
    "alice-token": {"user_id": "alice", "project_id": "project-a", "roles": ["member"]},
    "bob-token": {"user_id": "bob", "project_id": "project-b", "roles": ["member"]},
    "carol-token": {"user_id": "carol", "project_id": "project-c", "roles": ["member"]},
}


def tool(name: str) -> str:
    """The console script ``name`` of the running virtualenv (or from PATH)."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed in this environment")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Test runs may overlap (two people, or a run and CI, on one cluster): each process
# suffixes its database names so that one run never drops another's database, and
# drops its own when it exits.
_RUN = secrets.token_hex(3)
_created: set[str] = set()


def _drop_created() -> None:
    for name in sorted(_created):
        subprocess.run([str(REPO / "scripts/postgres"), "dropdb", name],
                       capture_output=True, timeout=60, check=False)


def postgres_database(name: str) -> str:
    """An empty database ``name`` (made unique to this process) on the cluster of
    scripts/postgres; its URL. Dropped when the process exits.

    Skips unless GLIMPSE_TEST_POSTGRES=1; fails instead under CI.
    """
    if os.environ.get("GLIMPSE_TEST_POSTGRES") != "1":
        if os.environ.get("CI"):
            pytest.fail("CI runs must include PostgreSQL: GLIMPSE_TEST_POSTGRES is not 1")
        pytest.skip("PostgreSQL leg disabled (set GLIMPSE_TEST_POSTGRES=1 or use scripts/test)")
    script = str(REPO / "scripts/postgres")
    subprocess.run([script, "start"], check=True, capture_output=True, timeout=300)
    name = re.sub(r"[^a-z0-9_]", "_", f"{name}_{_RUN}".lower())[:63]
    url = subprocess.run(
        [script, "createdb", name], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()
    if not _created:
        atexit.register(_drop_created)
    _created.add(name)
    # Written as operators write it in glance-api.conf; Glimpse picks the async driver.
    return re.sub(r"^postgresql\+asyncpg:", "postgresql:", url)


def database_for(backend: str, name: str) -> str | None:
    """The [database] connection for a backend leg; None means SQLite in the data dir."""
    return postgres_database(name) if backend == "postgres" else None


class LiveServer:
    """One ``glimpse serve`` process; restartable on the same data dir and database."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str | None = None,
        auth_strategy: str = "noauth",
        tokens: Mapping[str, Mapping[str, object]] | None = None,
        options: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config_file = workdir / "glimpse-api.conf"
        self.log_file = workdir / "server.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        sections: dict[str, dict[str, str]] = {"DEFAULT": {"auth_strategy": auth_strategy}}
        if database_url:
            sections["database"] = {"connection": database_url}
        if auth_strategy == "tokens":
            token_file = workdir / "tokens.json"
            token_file.write_text(json.dumps({"tokens": dict(tokens or TOKENS)}))
            sections["glimpse"] = {"token_file": str(token_file)}
        for section, values in (options or {}).items():
            sections.setdefault(section, {}).update(values)
        self.config_file.write_text(
            "".join(
                f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
                for section, values in sections.items()
            )
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not started"
        return self.process.pid

    def command(self, host: str = "127.0.0.1") -> list[str]:
        return [
            tool("glimpse"), "serve", "--host", host, "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--config-file", str(self.config_file),
        ]

    def start(self, timeout: float = 60.0) -> LiveServer:
        """Start (or restart) on the same port if it is still free, and wait until healthy."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("server already running")
        for _attempt in range(3):
            if not self.port or not _port_free(self.port):
                self.port = free_port()
            with self.log_file.open("ab") as log:
                log.write(f"--- starting on port {self.port}\n".encode())
                self.process = subprocess.Popen(
                    self.command(), stdout=log, stderr=subprocess.STDOUT,
                    env=dict(os.environ), start_new_session=True,
                )
            if self._wait_healthy(timeout):
                return self
            if "address already in use" not in self.log().lower():
                break
            self.port = 0  # lost a race for the port: take another one
        raise RuntimeError(f"glimpse serve did not become healthy; its log:\n{self.log()}")

    def _wait_healthy(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/healthcheck", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.kill()
        return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by PID, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """The crash: SIGKILL by PID, no chance to clean up."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(15)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
