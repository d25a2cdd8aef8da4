"""Loading Wan DiT single files: prefixes, dtypes, fp8, pickles, and clear errors for the wrong model."""

import pytest
import torch
from safetensors.torch import save_file

from lavr_core.errors import CheckpointError
from lavr_core.wan.config import RECAMMASTER_1_3B, TINY, WAN21_I2V_14B, WAN21_T2V_1_3B, WAN21_T2V_14B
from lavr_core.wan.loading import (build_model, dequantize, load_wan_model, model_from_state_dict,
                                   read_state_dict, strip_prefix)
from lavr_core.wan.recammaster import ReCamMasterModel


def _tiny_state_dict(seed=0):
    torch.manual_seed(seed)
    model = build_model(TINY)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _meta_state_dict(config):
    with torch.device("meta"):
        return build_model(config).state_dict()


def _forward(model):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 4, 2, 4, 6, generator=g)
    ctx = torch.randn(1, 3, 32, generator=g)
    cam = torch.randn(1, 1, 12, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([500.0]), ctx, cam_emb=cam).float()


def test_comfyui_full_checkpoint_prefix_and_half_precision(tmp_path):
    sd = _tiny_state_dict()
    ref = _forward(model_from_state_dict(sd, TINY, dtype=torch.float32))
    full = {f"model.diffusion_model.{k}": v.to(torch.float16) for k, v in sd.items()}
    full["first_stage_model.decoder.conv1.weight"] = torch.zeros(2, 2)  # other sub-models are ignored
    path = tmp_path / "wan_full.safetensors"
    save_file(full, str(path))
    model = load_wan_model(path, TINY)
    assert isinstance(model, ReCamMasterModel) and model.dtype == torch.float16 and not model.training
    assert (_forward(model.float()) - ref).abs().max() < 5e-3
    bf16 = load_wan_model(path, "tiny", dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    assert model.config.name == "tiny"


def test_mixed_dtype_pickle_checkpoint_like_step20000(tmp_path):
    """step20000.ckpt is torch.save(state_dict) with bf16 Wan weights and fp32 camera layers."""
    sd = {k: (v if (".cam_encoder." in k or ".projector." in k) else v.to(torch.bfloat16))
          for k, v in _tiny_state_dict().items()}
    path = tmp_path / "step20000.ckpt"
    torch.save(sd, path)
    model = load_wan_model(path, TINY)
    assert model.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert torch.equal(model.blocks[0].self_attn.q.weight, sd["blocks.0.self_attn.q.weight"])


def test_fp8_files_are_dequantized(tmp_path):
    if not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("no float8 in this torch")
    sd = _tiny_state_dict()
    fp8 = {}
    for k, v in sd.items():
        if k.endswith(".weight") and v.ndim == 2:
            scale = v.abs().max() / 448.0
            fp8[k] = (v / scale).to(torch.float8_e4m3fn)
            fp8[k[: -len("weight")] + "scale_weight"] = scale.reshape(1)
        else:
            fp8[k] = v
    fp8["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    path = tmp_path / "wan_fp8_scaled.safetensors"
    save_file(fp8, str(path))
    loaded = read_state_dict(path)
    assert "scaled_fp8" not in loaded and not any(k.endswith("scale_weight") for k in loaded)
    w, ref = loaded["blocks.1.ffn.0.weight"].float(), sd["blocks.1.ffn.0.weight"]
    assert (w - ref).abs().max() < 0.07 * ref.abs().max()  # e4m3 keeps ~2 significant digits
    model = load_wan_model(path, TINY, dtype=torch.float32)
    assert model.dtype == torch.float32
    # unscaled fp8 also loads
    assert dequantize({"a.weight": torch.ones(2).to(torch.float8_e5m2)})["a.weight"].dtype == torch.bfloat16


@pytest.mark.parametrize("config, message", [
    (WAN21_T2V_14B, "Wan2.1 T2V 14B"),
    (WAN21_I2V_14B, "image-to-video"),
    (WAN21_T2V_1_3B, "without ReCamMaster's camera layers"),
])
def test_wrong_wan_model_names_the_model_and_the_fix(config, message):
    with pytest.raises(CheckpointError, match=message) as e:
        model_from_state_dict(_meta_state_dict(config), RECAMMASTER_1_3B, what="The file x.safetensors")
    assert "step20000.ckpt" in str(e.value) and "x.safetensors" in str(e.value)


def test_recammaster_where_plain_wan_is_expected():
    with pytest.raises(CheckpointError, match="ReCamMaster checkpoint"):
        model_from_state_dict(_meta_state_dict(RECAMMASTER_1_3B), WAN21_T2V_1_3B)


def test_other_variants_and_foreign_files():
    fun = {k: v for k, v in _meta_state_dict(WAN21_T2V_1_3B).items()}
    fun["patch_embedding.weight"] = torch.empty(1536, 48, 1, 2, 2, device="meta")
    with pytest.raises(CheckpointError, match="in_dim 48 \\(need 16\\)"):
        model_from_state_dict(fun, WAN21_T2V_1_3B)
    cases = {
        "the Wan VAE": {"encoder.conv1.weight": torch.zeros(1), "decoder.conv1.weight": torch.zeros(1)},
        "diffusers' layout": {"blocks.0.attn1.to_q.weight": torch.zeros(1),
                              "condition_embedder.time_embedder.linear_1.weight": torch.zeros(1)},
        "a text encoder": {"shared.weight": torch.zeros(1), "encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(1)},
        "a LoRA": {"blocks.0.self_attn.q.lora_A.weight": torch.zeros(1)},
    }
    for what, sd in cases.items():
        with pytest.raises(CheckpointError, match=what):
            model_from_state_dict(sd, TINY)


def test_damaged_files_and_partial_state_dicts(tmp_path):
    sd = _tiny_state_dict()
    del sd["blocks.1.ffn.2.bias"]
    with pytest.raises(CheckpointError, match="1 missing: blocks.1.ffn.2.bias"):
        model_from_state_dict(sd, TINY)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(CheckpointError):
        load_wan_model(path, TINY)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_wan_model(tmp_path / "missing.safetensors", TINY)


def test_strip_prefix():
    assert set(strip_prefix({"model.diffusion_model.a": 1, "vae.b": 2})) == {"a"}
    assert set(strip_prefix({"diffusion_model.a": 1})) == {"a"}
    assert set(strip_prefix({"a": 1, "b": 2})) == {"a", "b"}
