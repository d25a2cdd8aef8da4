"""Loading CUT3R checkpoints in the official layout through the safe path."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lavr_core.checkpoint_io import cast_floating
from lavr_core.cut3r.config import config_from_kwargs
from lavr_core.cut3r.load import load_cut3r, read_checkpoint, save_pth, save_safetensors
from lavr_core.cut3r.model import Cut3rModel
from lavr_core.errors import CheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = Path(__file__).resolve().parents[2].parent / "shared/reference/cut3r/tiny"
needs_tiny = pytest.mark.skipif(not TINY.is_dir(), reason=f"CUT3R tiny golden not found at {TINY}")


def _tiny_kwargs():
    cfg = json.loads((TINY / "config.json").read_text())
    kw = dict(cfg["ARCroco3DStereoConfig_kwargs"])
    kw["dpt_feature_dim"] = cfg["dpt"]["feature_dim"]
    kw["dpt_layer_dims"] = tuple(cfg["dpt"]["layer_dims"])
    return kw


def _constructor(kw):
    """Official-style text, written by hand the way the training config spells it."""
    def lit(v):
        if isinstance(v, (list, tuple)):
            return "(" + ", ".join(lit(x) for x in v) + ")"
        if isinstance(v, str) and v in ("inf", "-inf"):
            return v
        return repr(v)
    return "ARCroco3DStereo(ARCroco3DStereoConfig(" + ", ".join(f"{k}={lit(v)}" for k, v in kw.items()) + "))"


def _run(model, n=3):
    inputs = load_file(str(TINY / "inputs.safetensors"))
    outs, _ = model([inputs[f"view{i}.img"] for i in range(n)])
    return outs


@needs_tiny
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_official_pth_layout_loads_and_matches_golden(tmp_path, dtype):
    kw = _tiny_kwargs()
    sd = cast_floating(load_file(str(TINY / "weights.safetensors")), dtype)
    path = tmp_path / "cut3r_tiny.pth"
    torch.save({"model": sd, "args": argparse.Namespace(model=_constructor(kw), lr=1e-4, epochs=10),
                "epoch": 10, "best_so_far": 0.5}, path)
    ckpt = read_checkpoint(path)
    assert ckpt.config == config_from_kwargs(kw)
    assert ckpt.constructor.startswith("ARCroco3DStereo(")
    model = load_cut3r(path)  # float32 model whatever the file's dtype
    assert model.pose_token.dtype == torch.float32 and not model.training
    ref = load_file(str(TINY / "outputs.safetensors"))
    with torch.inference_mode():
        outs = _run(model)
    tol = 1e-4 if dtype == torch.float32 else 0.2  # bf16 weights are a rounded model
    for i, o in enumerate(outs):
        for k, v in o.items():
            assert (v - ref[f"view{i}.{k}"]).abs().max() <= tol, (i, k)


def test_linear_model_round_trips_through_pth_and_safetensors(tmp_path):
    torch.manual_seed(0)
    cfg = config_from_kwargs(dict(head_type="linear", output_mode="pts3d+pose", pose_head=True, rgb_head=True,
                                  pos_embed="RoPE100", img_size=(32, 32), patch_size=8, enc_embed_dim=64,
                                  enc_depth=1, enc_num_heads=4, dec_embed_dim=32, dec_depth=2, dec_num_heads=2,
                                  state_size=12, local_mem_size=4, state_dec_num_heads=2, ray_enc_depth=1))
    model = Cut3rModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    imgs = [torch.rand(1, 3, 24, 32) * 2 - 1 for _ in range(2)]
    with torch.inference_mode():
        ref, _ = model(imgs)
    for path, save in ((tmp_path / "lin.pth", save_pth), (tmp_path / "lin.safetensors", save_safetensors)):
        save(model, path)
        loaded = load_cut3r(path)
        assert loaded.cfg == cfg
        with torch.inference_mode():
            outs, _ = loaded(imgs)
        for a, b in zip(outs, ref):
            for k in b:
                assert torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-6), (path.suffix, k)


@needs_tiny
def test_safetensors_without_config_is_rejected_unless_released(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_file(load_file(str(TINY / "weights.safetensors")), str(path))
    with pytest.raises(CheckpointError, match="neither released"):
        read_checkpoint(path)


@needs_tiny
def test_wrong_model_file_lists_the_differences(tmp_path):
    kw = dict(_tiny_kwargs(), state_size=30, dec_depth=3)
    path = tmp_path / "wrong.pth"
    torch.save({"model": load_file(str(TINY / "weights.safetensors")),
                "args": argparse.Namespace(model=_constructor(kw))}, path)
    with pytest.raises(CheckpointError) as ei:
        load_cut3r(path)
    msg = str(ei.value)
    assert "wrong.pth" in msg and "unexpected: dec_blocks.3." in msg
    assert "register_tokens.weight (file [20, 64] vs model [30, 64])" in msg


def test_not_a_cut3r_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "args": argparse.Namespace(model="Dust3R()")}, path)
    with pytest.raises(CheckpointError, match="not a CUT3R checkpoint"):
        read_checkpoint(path)
    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a CUT3R checkpoint"):
        read_checkpoint(plain)


@needs_tiny
def test_malicious_args_in_an_otherwise_valid_checkpoint(tmp_path):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"model": load_file(str(TINY / "weights.safetensors")), "args": Payload()}, path)
    with pytest.raises(CheckpointError, match="refuses"):
        load_cut3r(path)
    assert not marker.exists()


@needs_tiny
def test_truncated_official_checkpoint(tmp_path):
    path = tmp_path / "cut3r_512_dpt_4_64.pth"
    torch.save({"model": load_file(str(TINY / "weights.safetensors")),
                "args": argparse.Namespace(model=_constructor(_tiny_kwargs()))}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(CheckpointError, match="cut3r_512_dpt_4_64.pth.*truncated or corrupt"):
        load_cut3r(path)
