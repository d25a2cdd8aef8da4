"""Gaussian splats in headless Chromium (issue 4): an independent npm viewer shows a .ply written by
lavr_core, and the pack's in-node preview (web/lavr_splat_preview.js) shows splats in the real frontend.

Both drive Debian's chromium with playwright-core (tests/e2e/splat_*.e2e.mjs; WebGL2 on SwiftShader)
and save screenshots to out/screenshots/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "tests" / "e2e"
SHOTS = REPO / "out" / "screenshots"
sys.path.insert(0, str(E2E))


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Debian's chromium is not installed: run scripts/setup.sh (apt-get install chromium).")
    return path


def _need_npm(*packages: str) -> None:
    missing = [p for p in packages if not (E2E / "node_modules" / p / "package.json").is_file()]
    if missing:
        pytest.fail(f"npm packages {', '.join(missing)} are not installed in tests/e2e: run scripts/setup.sh "
                    "(npm ci in tests/e2e).")


def _run(script: str, env: dict, timeout: int = 240) -> dict:
    proc = subprocess.run(["node", str(E2E / script)], cwd=E2E, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)
    print(proc.stdout[-6000:])
    print(proc.stderr[-3000:])
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert "0 failed" in proc.stdout
    return json.loads(Path(env["OUT"]).read_text())


def test_independent_viewer_renders_lavr_ply(tmp_path):
    """Spark (npm @sparkjsdev/spark on three.js) draws our .ply: not blank, R G B left to right, Y on top."""
    from splat_test_scene import write_scene

    _need_npm("playwright-core", "three", "@sparkjsdev/spark")
    ply = write_scene(tmp_path / "scene.ply", per_disc=1000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "splat_viewer.png"
    report = _run("splat_viewer.e2e.mjs", {"CHROMIUM": _chromium(), "SPLAT_FILE": str(ply), "SPLAT_COUNT": "4000",
                                            "SPLAT_SHOT": str(shot), "OUT": str(tmp_path / "report.json")}, timeout=180)
    assert shot.stat().st_size > 10_000, "screenshot missing or blank"
    discs = report["analysis"]["discs"]
    assert report["analysis"]["drawnFraction"] > 0.05
    assert discs["red"]["x"] < discs["green"]["x"] < discs["blue"]["x"] and discs["yellow"]["y"] < discs["green"]["y"]


def test_in_node_splat_preview(comfy, tmp_path):
    """The preview panel in the real frontend: .ply/.splat/.spz/sequence, mouse orbit, both renderers."""
    _need_npm("playwright-core")
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "splat_preview.png"
    env = {"CHROMIUM": _chromium(), "COMFY_URL": comfy.url, "COMFY_OUTPUT": str(comfy.base / "output"),
           "SPLAT_PREVIEW_SHOT": str(shot), "OUT": str(tmp_path / "report.json"), "PYTHON": sys.executable}
    workflow = REPO / "workflows" / "vggt_gaussians.json"
    if workflow.is_file():
        env["SPLAT_WORKFLOW"] = str(workflow)  # queued from the page once the server has LaVRSaveSplat
    report = _run("splat_preview.e2e.mjs", env, timeout=400)
    assert shot.stat().st_size > 10_000, "screenshot missing or blank"
    names = [c["name"] for c in report["checks"] if c["ok"]]
    assert any("Vue node renderer" in n for n in names)
