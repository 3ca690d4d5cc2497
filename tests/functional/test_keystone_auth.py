"""auth_strategy = keystone through the API, in-process, where no Keystone is needed.

Real Keystone tokens are tested in tests/integration/test_keystone.py.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import client_for

from glimpse.config import Settings


def _config(tmp_path: Path) -> Path:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed: Keystone is down
    path = tmp_path / "glimpse-api.conf"
    path.write_text(
        "[paste_deploy]\nflavor = keystone\n"
        "[keystone_authtoken]\n"
        "www_authenticate_uri = http://keystone.example:5000/\n"
        f"auth_url = http://127.0.0.1:{port}\n"
        "auth_type = password\nusername = glance\npassword = secret\n"
        "project_name = service\nuser_domain_name = Default\nproject_domain_name = Default\n"
        "http_request_max_retries = 0\n"
    )
    return path


async def test_keystone_flavor_challenges_and_reports_keystone_down(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    path = _config(tmp_path)
    settings = make_settings(path.read_text())
    assert settings.auth_strategy == "keystone"  # Glance's [paste_deploy] flavor selects it
    node = await make_node(settings)
    async with client_for(node) as anonymous:
        response = await anonymous.get("/v2/images")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == (
            'Keystone uri="http://keystone.example:5000/"'
        )
        assert (await anonymous.get("/versions")).status_code == 200
    async with client_for(node, "some-token") as caller:
        response = await caller.get("/v2/images")
        assert response.status_code == 503, response.text
