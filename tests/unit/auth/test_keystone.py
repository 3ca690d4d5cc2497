"""The keystone adapter without a Keystone: what it makes of auth_token's answers.

Real tokens are tested in tests/integration/test_keystone.py; here keystonemiddleware
runs for real too, but only on paths that need no identity server (no token, Keystone
down) and on the mapping of its headers to a RequestContext.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from glimpse.auth.keystone import KeystoneAuth, context_from_environ
from glimpse.domain.errors import IdentityUnavailable, Unauthenticated


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket closes


def write_config(tmp_path: Path, **extra: str) -> str:
    port = closed_port()
    options = {
        "www_authenticate_uri": "http://keystone.example:5000",
        "auth_url": f"http://127.0.0.1:{port}",
        "auth_type": "password",
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "project_name": "service",
        "username": "glance",
        "password": "secret",
        "http_request_max_retries": "0",
        **extra,
    }
    path = tmp_path / "glimpse-api.conf"
    path.write_text("[DEFAULT]\nauth_strategy = keystone\n[keystone_authtoken]\n"
                    + "".join(f"{k} = {v}\n" for k, v in options.items()))
    return str(path)


def test_headers_map_to_the_context() -> None:
    ctx = context_from_environ({
        "HTTP_X_IDENTITY_STATUS": "Confirmed",
        "HTTP_X_USER_ID": "u1",
        "HTTP_X_PROJECT_ID": "p1",
        "HTTP_X_ROLES": "member, reader,admin",
        "HTTP_X_DOMAIN_ID": "d1",
        "HTTP_OPENSTACK_SYSTEM_SCOPE": "all",
        "HTTP_X_SERVICE_ROLES": "service",
        "HTTP_X_AUTH_TOKEN": "tok",
    }, "req-1")
    assert (ctx.user_id, ctx.project_id, ctx.domain_id) == ("u1", "p1", "d1")
    assert ctx.roles == ("member", "reader", "admin") and ctx.is_admin
    assert ctx.system_scope == "all" and ctx.service_roles == ("service",)
    assert ctx.auth_token == "tok" and ctx.request_id == "req-1"
    bare = context_from_environ({"HTTP_X_USER_ID": "u", "HTTP_X_ROLES": ""}, "r")
    assert bare.roles == () and bare.project_id is None and not bare.is_admin


def test_a_missing_section_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "glimpse-api.conf"
    path.write_text("[DEFAULT]\nauth_strategy = keystone\n")
    with pytest.raises(ValueError, match="keystone_authtoken"):
        KeystoneAuth([str(path)])


@pytest.mark.parametrize("delay", ["false", "true"])
async def test_no_token_is_unauthenticated_with_the_challenge(tmp_path: Path, delay: str) -> None:
    auth = KeystoneAuth([write_config(tmp_path, delay_auth_decision=delay)])
    with pytest.raises(Unauthenticated) as raised:
        await auth.authenticate({}, "req-1")
    assert raised.value.challenge == 'Keystone uri="http://keystone.example:5000"'


async def test_keystone_down_is_identity_unavailable(tmp_path: Path) -> None:
    auth = KeystoneAuth([write_config(tmp_path)])
    started = time.monotonic()
    with pytest.raises(IdentityUnavailable):
        await auth.authenticate({"x-auth-token": "some-token"}, "req-1")
    assert time.monotonic() - started < 30


async def test_keystone_down_with_delayed_decision_is_unauthenticated(tmp_path: Path) -> None:
    # auth_token marks the token invalid and lets the service decide: 401, as in Glance.
    auth = KeystoneAuth([write_config(tmp_path, delay_auth_decision="true")])
    with pytest.raises(Unauthenticated):
        await auth.authenticate({"x-auth-token": "some-token"}, "req-1")
