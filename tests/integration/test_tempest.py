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
# Reached on the development machine (52 of 74 with nothing excluded); raise it when
# more tests pass.
# A class whose setUpClass hits a Keystone 500 does not run its tests; allow one.
MIN_PASSED = 36
# Known failures, each explained in README.md (Tempest): left out so that a new failure
# shows. Remove an entry when its test passes.
KNOWN_FAILURES = "|".join([
    r"MultiStoresImagesTest\.test_delete_image_from_specific_store",
    r"ImportCopyImagesTest\.test_image_copy_image_import",
])
TIMEOUT = 1800


def test_tempest_image_api_passes() -> None:
    try:
        result = subprocess.run(
            [str(SCRIPT), "run", REGEX], capture_output=True, text=True, timeout=TIMEOUT,
            env={**os.environ, "GLIMPSE_TEMPEST_EXCLUDE": KNOWN_FAILURES},
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
    # Class fixtures (setUpClass/tearDownClass) mostly create and delete Keystone users;
    # Keystone on SQLite answers 500 to some of those under load. They are not image API
    # results: every image API test that fails is still a failure here.
    image_failures = [name for name in failed if name.startswith("tempest.")]
    assert image_failures == [], image_failures
    assert int(totals["Passed"]) >= MIN_PASSED, (totals, failed)
