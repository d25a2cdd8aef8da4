"""The Wan/ReCamMaster DiT against the official tiny golden and the released state-dict manifest."""

import json
from pathlib import Path

import pytest
import torch

from lavr_core.conformance import check_fixture, check_manifest, compare_outputs
from lavr_core.conformance.__main__ import main as conformance_main
from lavr_core.wan import conformance as wan_conformance

REF = Path(__file__).resolve().parents[3] / "shared" / "reference"
if not REF.is_dir():
    REF = Path("/work/shared/reference")
TINY = REF / "recammaster" / "tiny"
MANIFEST = REF / "recammaster" / "recammaster_dit_state_dict.json"

pytestmark = pytest.mark.skipif(not TINY.is_dir(), reason="reference data not present")


def _reference_outputs():
    from safetensors.torch import load_file
    return load_file(str(TINY / "outputs.safetensors"))


def test_tiny_golden_every_output_within_1e4():
    reports = check_fixture(TINY)
    names = {r.name for r in reports}
    assert names == {"output", "time_embedding", "t_mod", "context_embedded"}
    for r in reports:
        assert r.ok, r
        assert r.max_abs_err < 1e-5, r  # measured ~1e-6; 1e-4 is the contract


def test_conformance_cli_passes(capsys):
    assert conformance_main([str(TINY), "--manifest", str(MANIFEST)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out


def test_golden_comparison_can_fail():
    """The same run with the camera ignored, or the RoPE frame positions of the source shifted, is
    far outside tolerance: the golden really pins the camera path and the positions."""
    config = json.loads((TINY / "config.json").read_text())
    ref = _reference_outputs()
    model = wan_conformance._load_fixture_model(TINY, config)
    from safetensors.torch import load_file
    inp = load_file(str(TINY / "inputs.safetensors"))
    x = torch.cat([inp["noisy_target_latents"], inp["source_latents"]], 2)
    with torch.no_grad():
        no_cam = model(x, inp["timestep"], inp["context"], cam_emb=None)
        other_cam = model(x, inp["timestep"], inp["context"], cam_emb=inp["cam_emb"] * 0.5)
        swapped = model(torch.cat([inp["source_latents"], inp["noisy_target_latents"]], 2),
                        inp["timestep"], inp["context"], cam_emb=inp["cam_emb"]).flip(2)
    for wrong in (no_cam, other_cam, swapped):
        (rep,) = [r for r in compare_outputs({"output": wrong}, {"output": ref["output"]})]
        assert not rep.ok and rep.max_abs_err > 1e-3


def test_manifest_matches_key_for_key():
    rep = check_manifest(MANIFEST)
    assert rep.ok, (rep.missing[:5], rep.unexpected[:5], rep.mismatched[:5])
    assert rep.num_entries == 945
    manifest = json.loads(MANIFEST.read_text())
    shapes = wan_conformance.build_meta_state_dict(manifest)
    total = sum(torch.Size(s).numel() for s in shapes.values())
    assert total == manifest["num_params"] == 1_490_420_800
    new = sum(torch.Size(s).numel() for k, s in shapes.items() if ".cam_encoder." in k or ".projector." in k)
    assert new == manifest["num_params_new"]


def test_manifest_check_detects_a_wrong_config():
    manifest = json.loads(MANIFEST.read_text())
    manifest["config"] = dict(manifest["config"], ffn_dim=4096)
    shapes = wan_conformance.build_meta_state_dict(manifest)
    assert shapes["blocks.0.ffn.0.weight"] == (4096, 1536)
    assert shapes["blocks.0.ffn.0.weight"] != tuple(dict((e[0], e[1]) for e in manifest["state_dict"])
                                                    ["blocks.0.ffn.0.weight"])


def test_other_models_manifests_are_not_claimed():
    gen3r = REF / "gen3r" / "gen3r_dit_state_dict.json"
    if gen3r.is_file():  # Wan layout plus a control adapter: the Gen3R runner's job
        assert not wan_conformance.manifest_matches(json.loads(gen3r.read_text()), gen3r)
    assert not wan_conformance.manifest_matches({"config": {"dim": 1}, "state_dict": [["encoder.w", [1], "f"]]},
                                                Path("x.json"))
