"""The conformance command's own behaviour (model fixtures are tested by each model's tests)."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from lavr_core.conformance import compare_outputs, manifest_entries

REPO = Path(__file__).resolve().parents[2]


def test_compare_outputs_tolerance_and_missing():
    ref = {"a": torch.ones(3), "b": torch.zeros(2), "c": torch.ones(1)}
    ours = {"a": torch.ones(3) + 5e-5, "b": torch.tensor([0.0, 2e-4]), "c": torch.ones(2)}
    rep = {r.name: r for r in compare_outputs(ours, ref)}
    assert rep["a"].ok and abs(rep["a"].max_abs_err - 5e-5) < 1e-6
    assert not rep["b"].ok and abs(rep["b"].max_abs_err - 2e-4) < 1e-6
    assert not rep["c"].ok  # shape mismatch
    assert not compare_outputs({}, {"x": torch.ones(1)})[0].ok


def test_manifest_entries_layouts():
    assert manifest_entries({"state_dict": [["w", [2, 3], "float32"]]}) == {"w": (2, 3)}
    assert manifest_entries({"state_dict": {"w": {"shape": [4]}}}) == {"w": (4,)}


def test_cli_errors_on_unknown_kind(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"kind": "no_such_model"}))
    r = subprocess.run([sys.executable, "-m", "lavr_core.conformance", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no_such_model" in r.stdout


def test_cli_needs_an_argument():
    r = subprocess.run([sys.executable, "-m", "lavr_core.conformance"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2
