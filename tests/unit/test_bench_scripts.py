"""Smoke tests of the side-by-side benchmarks against the official code (bench/bench_cut3r.py,
bench/bench_vggt.py).

The official trees are never in this repository; tests that need them skip unless they exist at
``/tmp/official/{cut3r,vggt}`` (or ``LAVR_OFFICIAL_ROOT/{cut3r,vggt}``). Importing the official
CUT3R code installs module stand-ins (transformers, accelerate, torchvision) in ``sys.modules``, so
those checks run the scripts' ``--check-only`` mode in a subprocess, never in the test process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import _official  # noqa: E402

OFFICIAL = Path(os.environ.get("LAVR_OFFICIAL_ROOT", "/tmp/official"))


def test_missing_tree_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _official.require_tree("cut3r", tmp_path / "nowhere")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "git clone https://github.com/CUT3R/CUT3R" in err and "--official" in err


def test_kernel_formula_rope_matches_ours_and_handles_negative_positions():
    from lavr_core.cut3r.rope import RopePositions, apply_rope

    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 3, 5, 16, generator=g)
    pos = torch.randint(-1, 7, (2, 5, 2), generator=g)
    pos[:, 0] = -1  # the pose token's position in CUT3R
    got = _official.KernelFormulaRoPE2D(100.0)(tokens, pos)
    want = apply_rope(tokens, RopePositions(pos, 100.0).table(16))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    # position 0 is the identity, and the result keeps the input dtype
    zero = _official.KernelFormulaRoPE2D(100.0)(tokens.half(), torch.zeros_like(pos))
    assert zero.dtype == torch.float16 and torch.equal(zero, tokens.half())


def test_storage_accounting_counts_shared_storage_once():
    a = torch.zeros(1000)
    b = torch.zeros(10)
    found = _official.tensor_storages({"x": [a, a[:10]], "y": (b,), "z": a.view(10, 100)}, {_official.storage_key(b)})
    assert list(found.values()) == [4000]


_CHECKS = """
import sys
sys.path[:0] = [{bench!r}]
import bench_cut3r, bench_vggt
for mod, tree in ((bench_cut3r, {cut3r!r}), (bench_vggt, {vggt!r})):
    if tree and mod.main(["--check-only", "--official", tree]) != 0:
        raise SystemExit(1)
"""


def test_check_only_against_official():
    """Both scripts' ``--check-only``: the official code (with the shims) reproduces the reference
    goldens and agrees with ours on the benchmark configs. One subprocess keeps the stand-in
    modules out of this process and pays the torch import once."""
    trees = {}
    for name in ("cut3r", "vggt"):
        try:
            trees[name] = str(_official.find_tree(name, OFFICIAL / name))
        except _official.OfficialTreeMissing:
            trees[name] = ""
    if not any(trees.values()):
        pytest.skip(f"no official tree under {OFFICIAL}")
    code = _CHECKS.format(bench=str(REPO / "bench"), **trees)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("outputs agree") == sum(bool(t) for t in trees.values())
