"""Smoke tests of the sampler benchmarks against the official code (bench/bench_recammaster.py,
bench/bench_gen3r.py).

The official trees are never in this repository; the agreement checks skip unless they exist at
``/tmp/official/{recammaster,gen3r}`` (or ``LAVR_OFFICIAL_ROOT/...``). Importing the official code
installs module stand-ins (torchvision, a blocked transformers) in ``sys.modules``, so everything
runs the scripts in a subprocess, never in the test process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = Path(os.environ.get("LAVR_OFFICIAL_ROOT", "/tmp/official"))
SCRIPTS = {"recammaster": REPO / "bench" / "bench_recammaster.py", "gen3r": REPO / "bench" / "bench_gen3r.py"}
MARKER = {"recammaster": "diffsynth/models/wan_video_dit.py", "gen3r": "gen3r/models/videoxfun_wan/wan_transformer3d.py"}


def _run(script: Path, *argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_missing_official_tree_exits_2(name, tmp_path):
    proc = _run(SCRIPTS[name], "--official", str(tmp_path / "nowhere"), "--check-only")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "git clone" in proc.stderr and MARKER[name] in proc.stderr


@pytest.mark.parametrize("name,argv", [
    ("recammaster", ["--layers", "1", "--frames", "1"]),
    ("gen3r", ["--layers", "1", "--frames", "5", "--size", "64"]),
])
def test_agrees_with_official(name, argv, tmp_path):
    tree = OFFICIAL / name
    if not (tree / MARKER[name]).is_file():
        pytest.skip(f"official {name} tree not at {tree}")
    proc = _run(SCRIPTS[name], "--official", str(tree), "--check-only", "--workdir", str(tmp_path), *argv)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "-> OK" in proc.stdout
