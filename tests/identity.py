"""The real Keystone of scripts/keystone, for the tiers that authenticate against it.

scripts/keystone installs Keystone from PyPI (cached), runs it on loopback with SQLite
and fernet tokens and creates two projects, glimpse-a and glimpse-b, each with an
admin, a member and a reader user, and the image service user ``glance``. A module
that uses the ``keystone`` fixture imports it from here; without Keystone installable
it skips, unless CI is set: then it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts/keystone"
# A cold start installs Keystone into its own virtualenv first (a few minutes).
START_TIMEOUT = 900


def keystone_script(*args: str, timeout: float = 120) -> str:
    """scripts/keystone with ``args``; its stdout."""
    result = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/keystone {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def keystone() -> dict[str, Any]:
    """The running Keystone: URLs, the service user, the test users and projects."""
    started = time.monotonic()
    try:
        state: dict[str, Any] = json.loads(keystone_script("json", timeout=START_TIMEOUT))
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs must include Keystone: {exc}")
        pytest.skip(f"Keystone could not be installed or started: {exc}")
    print(f"keystone ready in {time.monotonic() - started:.1f}s")
    return state


def issue_token(state: dict[str, Any], user: str) -> str:
    """A project-scoped token of one of the test users (password auth)."""
    entry = state["users"][user]
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": entry["username"], "domain": {"id": "default"},
            "password": entry["password"]}}},
        "scope": {"project": {"id": entry["project_id"]}},
    }}
    response = httpx.post(f"{state['auth_url']}/auth/tokens", json=body, timeout=60)
    assert response.status_code == 201, response.text
    return response.headers["x-subject-token"]


def authtoken_options(state: dict[str, Any], **extra: str) -> dict[str, str]:
    """A ``[keystone_authtoken]`` section as in glance-api.conf: the service user
    validates callers' tokens."""
    service = state["service"]
    return {
        "www_authenticate_uri": state["www_authenticate_uri"],
        "auth_url": state["www_authenticate_uri"],
        "auth_type": "password",
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "project_name": service["project"],
        "username": service["username"],
        "password": service["password"],
        **extra,
    }
