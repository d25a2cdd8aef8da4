"""WanModel pieces against independent formulas, configs, and input errors."""

import math

import pytest
import torch

from lavr_core.errors import CheckpointError, InputError
from lavr_core.wan.config import (PRESETS, RECAMMASTER_1_3B, TINY, WAN21_I2V_14B, WAN21_T2V_1_3B, WAN21_T2V_14B,
                                  WanConfig, infer_config)
from lavr_core.wan.model import (WanModel, apply_rope, pad_context, rope_for_grid, rope_tables,
                                 sinusoidal_embedding)

PLAIN_TINY = TINY.with_camera(False)


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _inputs(f=2, h=12, w=20, cfg=PLAIN_TINY, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, cfg.in_dim, f, h, w, generator=g)
    ctx = torch.randn(1, 7, cfg.text_dim, generator=g)
    return x, torch.tensor([937.5]), ctx


def test_config_presets_and_rope_split():
    assert WAN21_T2V_1_3B.head_dim == 128 and WAN21_T2V_1_3B.rope_dims == (44, 42, 42)
    assert WAN21_T2V_14B.rope_dims == (44, 42, 42)
    assert TINY.rope_dims == (12, 10, 10) and sum(TINY.rope_dims) == TINY.head_dim
    assert RECAMMASTER_1_3B.camera and not WAN21_T2V_1_3B.camera
    assert set(PRESETS) >= {"wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "recammaster-wan2.1-t2v-1.3b", "tiny"}
    assert WanConfig.from_dict({"model_type": "i2v", "dim": 64, "in_dim": 36, "ffn_dim": 128, "out_dim": 16,
                                "num_heads": 2, "num_layers": 1}).has_image_input


@pytest.mark.parametrize("preset", [WAN21_T2V_1_3B, WAN21_T2V_14B, WAN21_I2V_14B, RECAMMASTER_1_3B])
def test_infer_config_from_shapes(preset):
    with torch.device("meta"):
        from lavr_core.wan.loading import build_model
        sd = build_model(preset).state_dict()
    assert infer_config(sd) == preset
    assert infer_config({k: tuple(v.shape) for k, v in sd.items()}) == preset


def test_infer_config_rejects_non_wan():
    with pytest.raises(CheckpointError, match="not a Wan2.1 diffusion model"):
        infer_config({"encoder.conv1.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="num_heads"):
        infer_config({"patch_embedding.weight": (100, 16, 1, 2, 2), "text_embedding.0.weight": (100, 8),
                      "time_embedding.0.weight": (100, 8), "blocks.0.ffn.0.weight": (200, 100),
                      "head.head.weight": (64, 100)})


def test_sinusoidal_embedding_is_float64_cos_sin():
    t = torch.tensor([0.0, 952.3810424804688])
    e = sinusoidal_embedding(8, t)
    assert e.dtype == torch.float64 and e.shape == (2, 8)
    freqs = [10000 ** (-i / 4) for i in range(4)]
    expect = [math.cos(952.3810424804688 * f) for f in freqs] + [math.sin(952.3810424804688 * f) for f in freqs]
    assert torch.allclose(e[1], torch.tensor(expect, dtype=torch.float64), atol=1e-12)
    assert torch.equal(e[0], torch.tensor([1.0] * 4 + [0.0] * 4, dtype=torch.float64))


def test_rope_matches_the_real_rotation_formula():
    """RoPE written out in real arithmetic: pair i of the frame section (12 of 32 dims in TINY)
    turns by f * 10000^(-2i/12), of the row section by h * 10000^(-2i/10), columns likewise."""
    heads, grid = 2, (3, 4, 5)
    rot = rope_for_grid(rope_tables(TINY), grid)
    x = torch.randn(2, math.prod(grid), heads * TINY.head_dim, dtype=torch.float64)
    ours = apply_rope(x, rot, heads)
    f, h, w = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in grid), indexing="ij")
    angles = []
    for pos, d in zip((f, h, w), TINY.rope_dims):
        inv = torch.tensor([10000.0 ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64)
        angles.append(pos.reshape(-1, 1) * inv)
    ang = torch.cat(angles, 1)[:, None]  # [L, 1, head_dim/2]
    xh = x.unflatten(2, (heads, TINY.head_dim))
    x1, x2 = xh[..., 0::2], xh[..., 1::2]
    ref = torch.stack([x1 * ang.cos() - x2 * ang.sin(), x1 * ang.sin() + x2 * ang.cos()], dim=-1).flatten(-2)
    assert ours.shape == (2, 60, heads, TINY.head_dim)
    assert torch.allclose(ours, ref, atol=1e-12)
    assert rot.dtype == torch.complex128
    # the frame section rotates with the frame index only, rows/columns with theirs
    assert not torch.allclose(rot[0], rot[4 * 5]) and torch.allclose(rot[0, :, 6:], rot[4 * 5, :, 6:])


def test_batch_of_two_equals_two_batches_of_one():
    torch.manual_seed(0)
    model = _randomize(WanModel(PLAIN_TINY))
    x, t, ctx = _inputs()
    x2, _, ctx2 = _inputs(seed=5)
    with torch.no_grad():
        both = model(torch.cat([x, x2]), torch.tensor([937.5, 500.0]), torch.cat([ctx, ctx2]))
        one = model(x, t, ctx)
        two = model(x2, torch.tensor([500.0]), ctx2)
    assert torch.allclose(both[0], one[0], atol=1e-5) and torch.allclose(both[1], two[0], atol=1e-5)


def test_bf16_runs_close_to_fp32():
    torch.manual_seed(0)
    model = _randomize(WanModel(PLAIN_TINY))
    x, t, ctx = _inputs()
    with torch.no_grad():
        ref = model(x, t, ctx)
        out = model.to(torch.bfloat16)(x, t, ctx)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_i2v_branch_keys_and_forward():
    cfg = WanConfig(dim=64, in_dim=8, ffn_dim=128, out_dim=4, num_heads=2, num_layers=1, text_dim=32,
                    freq_dim=32, has_image_input=True, image_dim=48)
    model = _randomize(WanModel(cfg))
    keys = set(model.state_dict())
    assert {"img_emb.proj.0.weight", "img_emb.proj.1.weight", "img_emb.proj.3.weight", "img_emb.proj.4.bias",
            "blocks.0.cross_attn.k_img.weight", "blocks.0.cross_attn.norm_k_img.weight"} <= keys
    x, t, ctx = _inputs(cfg=cfg)
    y = torch.randn(1, 4, 2, 12, 20)
    clip = torch.randn(1, 257, 48)
    with torch.no_grad():
        out = model(x[:, :4], t, ctx, clip_feature=clip, y=y)
        out2 = model(x[:, :4], t, ctx, clip_feature=clip * 2, y=y)
    assert out.shape == (1, 4, 2, 12, 20) and not torch.allclose(out, out2)
    with pytest.raises(InputError, match="image-to-video"):
        model(x[:, :4], t, ctx)


def test_input_errors_are_actionable():
    model = WanModel(PLAIN_TINY).eval()
    x, t, ctx = _inputs()
    with pytest.raises(InputError, match="umT5"):
        model(x, t, torch.randn(1, 7, 48))  # conditioning from another text encoder
    with pytest.raises(InputError, match="divisible by 16"):
        model(x[..., :11, :], t, ctx)  # odd latent height
    with pytest.raises(InputError, match="16 latent channels"):
        model(x[:, :3], t, ctx)


def test_pad_context():
    ctx = torch.randn(1, 5, 8)
    p = pad_context(ctx, 12)
    assert p.shape == (1, 12, 8) and torch.equal(p[:, :5], ctx) and not p[:, 5:].any()
    assert pad_context(p, 12) is p
    with pytest.raises(InputError):
        pad_context(torch.zeros(1, 13, 8), 12)


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    model = _randomize(WanModel(PLAIN_TINY)).train()
    x, t, ctx = _inputs(h=4, w=6)
    model(x, t, ctx).square().mean().backward()
    g = model.blocks[0].self_attn.q.weight.grad.clone()
    model.zero_grad()
    model.gradient_checkpointing = True
    model(x, t, ctx).square().mean().backward()
    assert torch.allclose(model.blocks[0].self_attn.q.weight.grad, g, atol=1e-6)
