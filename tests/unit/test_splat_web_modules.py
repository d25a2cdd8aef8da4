"""The splat preview's JS modules under node's own test runner (no browser): the browser parsers must
read what lavr_core writes value for value (tests/e2e/splat_web.test.mjs calls lavr_core for that)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_splat_js_modules_match_backend():
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed for the splat preview's JS tests (apt-get install nodejs).")
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run([node, "--test", str(REPO / "tests" / "e2e" / "splat_web.test.mjs")], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout and "# pass " in r.stdout
