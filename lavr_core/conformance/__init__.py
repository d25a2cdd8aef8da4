"""Conformance against the official models: golden fixtures and state-dict manifests.

``python -m lavr_core.conformance DIR`` runs our model on a fixture folder (``config.json`` with its
``kind``, ``weights.safetensors``, ``inputs.safetensors``, ``outputs.safetensors``) and compares every
output with the official one; ``python -m lavr_core.conformance --manifest FILE`` builds our model at
the released configuration on the meta device and compares state-dict names and shapes.

Each model family plugs in a *runner* module (see ``RUNNERS``) that defines:

* ``KINDS``: the fixture ``kind`` values it handles;
* ``run_fixture(fixture_dir: Path, config: dict) -> dict[str, torch.Tensor]``: our outputs under the
  same names as the fixture's ``outputs.safetensors`` (float32, CPU);
* ``manifest_matches(manifest: dict, path: Path) -> bool`` and
  ``build_meta_state_dict(manifest: dict) -> dict[str, tuple[int, ...]]``: names and shapes of our
  model built (on the meta device) at the configuration the manifest describes.

Runners are imported lazily so that a broken or heavy model never slows down the others.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

#: Runner modules, tried in order. A runner that is not written yet is simply absent.
RUNNERS = (
    "lavr_core.cut3r.conformance",
    "lavr_core.vggt.conformance",
    "lavr_core.wan.conformance",
    "lavr_core.gen3r.conformance",
)

ATOL = 1e-4
RTOL = 1e-4


class ConformanceError(RuntimeError):
    """The fixture or manifest cannot be checked at all (unknown kind, missing file)."""


def _runners():
    for name in RUNNERS:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is None or not name.startswith(e.name):
                raise  # a real import error inside a runner must surface


def find_runner_for_kind(kind: str):
    for mod in _runners():
        if kind in getattr(mod, "KINDS", ()):
            return mod
    raise ConformanceError(f"No conformance runner handles fixture kind {kind!r}.")


def find_runner_for_manifest(manifest: dict, path: Path):
    for mod in _runners():
        if mod.manifest_matches(manifest, path):
            return mod
    raise ConformanceError(f"No model in lavr_core recognises the manifest {path}.")


@dataclass
class OutputReport:
    name: str
    shape: tuple
    max_abs_err: float
    max_allowed_excess: float  # max(|a-b| - (atol + rtol*|b|)); <= 0 means within tolerance
    ok: bool


def compare_outputs(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor],
                    atol: float = ATOL, rtol: float = RTOL) -> list[OutputReport]:
    """One report per reference output; a missing or mis-shaped output is a failure."""
    reports = []
    for name, b in ref.items():
        a = ours.get(name)
        if a is None:
            reports.append(OutputReport(name, tuple(b.shape), float("inf"), float("inf"), False))
            continue
        a = a.detach().to("cpu", torch.float64)
        b = b.detach().to("cpu", torch.float64)
        if a.shape != b.shape:
            reports.append(OutputReport(name, tuple(a.shape), float("inf"), float("inf"), False))
            continue
        if b.numel() == 0:
            reports.append(OutputReport(name, tuple(b.shape), 0.0, 0.0, True))
            continue
        diff = (a - b).abs()
        both_nonfinite = ~torch.isfinite(b) & (a == b)
        diff = torch.where(both_nonfinite, torch.zeros_like(diff), diff)
        excess = (diff - (atol + rtol * b.abs().nan_to_num(0.0))).max().item()
        err = diff.max().item()
        reports.append(OutputReport(name, tuple(b.shape), err, excess, bool(excess <= 0)))
    return reports


def check_fixture(fixture_dir: str | Path, atol: float = ATOL, rtol: float = RTOL) -> list[OutputReport]:
    from safetensors.torch import load_file

    d = Path(fixture_dir)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise ConformanceError(f"{d} has no config.json; a fixture folder holds config.json, "
                               "weights.safetensors, inputs.safetensors and outputs.safetensors.")
    config = json.loads(cfg_path.read_text())
    runner = find_runner_for_kind(config.get("kind", "<missing>"))
    if not (d / "outputs.safetensors").is_file():
        raise ConformanceError(f"{d} has no outputs.safetensors.")
    ours = runner.run_fixture(d, config)
    ref = load_file(str(d / "outputs.safetensors"))
    return compare_outputs(ours, ref, atol, rtol)


@dataclass
class ManifestReport:
    missing: list[str]      # in the manifest, not in our model
    unexpected: list[str]   # in our model, not in the manifest
    mismatched: list[tuple[str, tuple, tuple]]  # (name, ours, manifest)
    num_entries: int

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def manifest_entries(manifest: dict) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` from any of the reference manifest layouts (list of [name, shape, dtype])."""
    sd = manifest.get("state_dict")
    if isinstance(sd, dict):
        return {k: tuple(v["shape"] if isinstance(v, dict) else v) for k, v in sd.items()}
    return {e[0]: tuple(e[1]) for e in sd}


def check_manifest(path: str | Path) -> ManifestReport:
    p = Path(path)
    manifest = json.loads(p.read_text())
    runner = find_runner_for_manifest(manifest, p)
    ours = runner.build_meta_state_dict(manifest)
    ref = manifest_entries(manifest)
    missing = [k for k in ref if k not in ours]
    unexpected = [k for k in ours if k not in ref]
    mismatched = [(k, tuple(ours[k]), ref[k]) for k in ref if k in ours and tuple(ours[k]) != ref[k]]
    return ManifestReport(missing, unexpected, mismatched, len(ref))
