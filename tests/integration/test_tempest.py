"""Tempest's image API tests (from PyPI) against a real Glimpse and Keystone.

scripts/tempest installs tempest and glance-tempest-plugin into a cached virtualenv,
starts Keystone (scripts/keystone), a Glimpse server with keystone auth and a loopback
web server, writes tempest.conf and runs the tests; this test asserts its totals. The
whole image API regex runs (a few minutes once nothing waits for a timeout). Without a
Tempest that can be installed the test skips, unless CI is set: then it fails.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from tests.live_server import REPO

SCRIPT = REPO / "scripts/tempest"
REGEX = r"^tempest\.api\.image"
# 76 of 82 pass on the development machine (6 skipped: no Nova, the do_secure_hash=false
# variants, image format enforcement, a Tempest bug). A class whose setUpClass hits a
# Keystone 500 does not run its tests; allow one.
MIN_PASSED = 68
# Known failures, each explained in README.md (Tempest): left out so that a new failure
# shows. Remove an entry when its test passes.
KNOWN_FAILURES: list[str] = []
TIMEOUT = 1800


def _run(regex: str, **env: str) -> tuple[dict[str, str], list[str], str]:
    """Totals, failed test names and output of one scripts/tempest run."""
    if KNOWN_FAILURES:
        env["GLIMPSE_TEMPEST_EXCLUDE"] = "|".join(KNOWN_FAILURES)
    try:
        result = subprocess.run(
            [str(SCRIPT), "run", regex], capture_output=True, text=True, timeout=TIMEOUT,
            env={**os.environ, **env},
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/tempest did not finish in {TIMEOUT}s: {exc}")
    output = result.stdout + result.stderr
    if "pip could not install" in output or "needs Python 3.11" in output:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs must include Tempest:\n{output[-3000:]}")
        pytest.skip("tempest could not be installed")
    totals = dict(re.findall(r"^ - (Passed|Skipped|Failed): (\d+)$", output, re.MULTILINE))
    assert totals, f"no Tempest summary:\n{output[-5000:]}"
    failed = re.findall(r"^\{\d+\} (\S+) .*\.\.\. FAILED$", output, re.MULTILINE)
    return totals, failed, output


def test_tempest_image_api_passes() -> None:
    totals, failed, _ = _run(REGEX)
    # Class fixtures (setUpClass/tearDownClass) mostly create and delete Keystone users;
    # Keystone on SQLite has answered 500 to some of those under load. They are not image
    # API results: every image API test that fails is still a failure here.
    image_failures = [name for name in failed if name.startswith("tempest.")]
    assert image_failures == [], image_failures
    assert int(totals["Passed"]) >= MIN_PASSED, (totals, failed)


def test_tempest_location_import_without_secure_hash() -> None:
    """The do_secure_hash=false variants, which the main run skips: both Glimpse and
    Tempest configured without it."""
    totals, failed, output = _run(r"LocationImportTest", GLIMPSE_TEMPEST_SECURE_HASH="false")
    assert [name for name in failed if name.startswith("tempest.")] == []
    assert "test_add_location_with_do_secure_hash_false" in output
    assert int(totals["Passed"]) == 2, (totals, failed)
