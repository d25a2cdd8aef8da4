"""The real frontend in Debian's headless Chromium, driven by playwright-core (tests/e2e/*.e2e.mjs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "tests" / "e2e"
SCRIPTS = sorted(p for p in E2E.glob("*.e2e.mjs") if not p.name.startswith("splat_"))  # splat_*: test_splat_browser.py


def _chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_frontend(comfy, script, tmp_path):
    if not _chromium():
        pytest.fail("Debian's chromium is not installed: run scripts/setup.sh (apt-get install chromium).")
    if not (E2E / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is not installed: run scripts/setup.sh (npm install in tests/e2e).")
    shots = REPO / "out" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, COMFY_URL=comfy.url, CHROMIUM=_chromium(),
               WORKFLOW=str(REPO / "workflows" / "camera_trajectory_editor.json"),
               SHOT=str(shots / f"{script.stem}.png"), OUT=str(tmp_path / "report.json"),
               COMFY_OUTPUT=str(comfy.base / "output"))
    proc = subprocess.run(["node", str(script)], cwd=E2E, env=env, capture_output=True, text=True, timeout=600)
    print(proc.stdout[-6000:])
    print(proc.stderr[-3000:])
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert Path(env["SHOT"]).stat().st_size > 10_000, "screenshot missing or blank"
