"""WanModel's additive hooks: per-token RoPE positions and an injectable self-attention function."""

import pytest
import torch

from lavr_core.attention import fused_rope, fused_rope_positions, view_time_mask, wan_attention_fn
from lavr_core.errors import InputError
from lavr_core.wan.config import TINY
from lavr_core.wan.model import WanModel, attention, rope_for_grid, rope_for_positions, rope_tables
from lavr_core.wan.recammaster import ReCamMasterModel

PLAIN = TINY.with_camera(False)


def _model(cls=WanModel, cfg=PLAIN, seed=0):
    torch.manual_seed(seed)
    m = cls(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m.eval()


def _inputs(f=4, h=4, w=6, seed=1, cfg=PLAIN):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, cfg.in_dim, f, h, w, generator=g), torch.tensor([700.0]),
            torch.randn(1, 5, cfg.text_dim, generator=g))


def test_rope_for_positions_matches_grid_and_fused_rope():
    tables = rope_tables(PLAIN)
    grid = (4, 3, 5)
    f, h, w = torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij")
    pos = torch.stack([f, h, w], -1).reshape(-1, 3)
    assert torch.equal(rope_for_positions(tables, pos), rope_for_grid(tables, grid))
    # the attention package's own fused rotations agree with the model's lookup
    fpos = fused_rope_positions(2, 2, 5, 3, 5)
    assert torch.equal(rope_for_positions(tables, fpos), fused_rope(tables, 2, 2, 5, 3, 5))
    with pytest.raises(InputError, match="outside"):
        rope_for_positions(tables, torch.tensor([[PLAIN.rope_max_len, 0, 0]]))
    with pytest.raises(InputError, match="integer"):
        rope_for_positions(tables, torch.zeros(3, 3))


@pytest.mark.parametrize("cls", [WanModel, ReCamMasterModel])
def test_hooks_left_unset_or_neutral_give_the_plain_model_exactly(cls):
    cfg = TINY if cls is ReCamMasterModel else PLAIN
    m = _model(cls, cfg)
    x, t, ctx = _inputs(cfg=cfg)
    with torch.no_grad():
        ref = m(x, t, ctx)
        # positions of the plain grid and Wan's own attention passed explicitly: identical
        pos = fused_rope_positions(1, 4, 4, 2, 3)
        same = m(x, t, ctx, rope_positions=pos, self_attn_fn=attention)
    assert torch.equal(ref, same)


def test_positions_and_attention_change_the_output_and_are_used():
    m = _model()
    x, t, ctx = _inputs()
    calls = []

    def spy(q, k, v):
        calls.append(q.shape)
        return attention(q, k, v)

    with torch.no_grad():
        ref = m(x, t, ctx)
        spread = m(x, t, ctx, rope_positions=fused_rope_positions(2, 2, 7, 2, 3))  # views 7 frames apart
        spied = m(x, t, ctx, self_attn_fn=spy)
        masked = m(x, t, ctx, self_attn_fn=wan_attention_fn(2, 2, 6, "dense"))
    assert len(calls) == PLAIN.num_layers and calls[0] == (1, 24, PLAIN.num_heads, PLAIN.head_dim)
    assert torch.equal(spied, ref)
    assert (spread - ref).abs().max() > 1e-3
    assert (masked - ref).abs().max() > 1e-3
    # the model attribute is the default; the argument wins over it
    m.self_attn_fn = wan_attention_fn(2, 2, 6, "dense")
    with torch.no_grad():
        assert torch.equal(m(x, t, ctx), masked)
        assert torch.equal(m(x, t, ctx, self_attn_fn=attention), ref)


def test_masked_attention_hook_equals_an_explicit_masked_reference():
    """The hook's masked model equals one whose attention is written out with the same mask."""
    m = _model()
    x, t, ctx = _inputs()
    mask = view_time_mask(2, 2, 6)

    def explicit(q, k, v):
        q, k, v = (a.transpose(1, 2).double() for a in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
        out = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v
        return out.transpose(1, 2).flatten(2).float()

    with torch.no_grad():
        a = m(x, t, ctx, self_attn_fn=wan_attention_fn(2, 2, 6, "naive"))
        b = m(x, t, ctx, self_attn_fn=explicit)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_recomputes_with_the_same_attention():
    m = _model()
    x, t, ctx = _inputs()
    fn = wan_attention_fn(2, 2, 6, "dense")
    grads = []
    for ckpt in (False, True):
        m.zero_grad()
        m.gradient_checkpointing = ckpt
        m.train()
        m(x, t, ctx, self_attn_fn=fn).square().mean().backward()
        grads.append(m.blocks[0].self_attn.q.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_wrong_position_count_is_refused():
    m = _model()
    x, t, ctx = _inputs()
    with pytest.raises(InputError, match="RoPE positions"):
        m(x, t, ctx, rope_positions=torch.zeros(5, 3, dtype=torch.long))
