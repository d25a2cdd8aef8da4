"""Fused 4D sampler core: grid token layout, reference cells, the sampling pipeline, weights files."""

import pytest
import torch

from lavr_core.attention import fused_rope_positions
from lavr_core.errors import CheckpointError, InputError
from lavr_core.fused4d import Fused4DSettings, GridTokens, build_reference, generate, latent_times, sample_grid
from lavr_core.fused4d.pipeline import velocity_function, view_cameras_for
from lavr_core.fused4d.reference import encode_fixed_view, encode_freeze_time, pick_views
from lavr_core.fused4d.weights import (LoRALinear, apply_self_attention, attach_lora, lora_state_dict,
                                       resolve_updates, self_attention_state_dict)
from lavr_core.camera.trajectory import CameraTrajectory
from lavr_core.wan.config import TINY
from lavr_core.wan.model import WanModel
from lavr_core.wan.sampling import SamplerSettings
from lavr_core.wan.vae import WanVAE, WanVAEConfig

PLAIN = TINY.with_camera(False)


@pytest.fixture(scope="module")
def dit(one_thread):
    torch.manual_seed(0)
    m = WanModel(PLAIN)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m.eval()


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(1)
    return WanVAE(WanVAEConfig(dim=8, z_dim=4, latents_mean=(0.0,) * 4, latents_std=(1.0,) * 4, name="tiny")).eval()


def test_frame_mapping_and_layout():
    assert latent_times(1) == 1 and latent_times(5) == 2 and latent_times(81) == 21
    for bad in (0, 4, 6, 2.0):
        with pytest.raises(InputError):
            latent_times(bad)
    g = GridTokens(views=3, times=2, height=4, width=6)
    assert g.frames == 6 and g.token_grid == (2, 3) and g.tokens_per_frame == 6 and g.num_tokens == 36
    assert g.video_frames == 5 and g.density == pytest.approx((2 + 3 - 1) / 6)
    rows = torch.randn(3, 4, 2, 4, 6)  # [V, C, T, H, W]
    packed = g.pack(rows)
    assert packed.shape == (1, 4, 6, 4, 6)
    # frame v*T + t holds view v, time t
    assert torch.equal(packed[0, :, 1 * 2 + 1], rows[1, :, 1])
    assert torch.equal(g.unpack(packed)[0], rows)
    # RoPE: view-major frames at v*T_max + t, rows/columns of the token grid
    pos = GridTokens(3, 2, 4, 6, t_max=5).rope_positions()
    assert torch.equal(pos, fused_rope_positions(3, 2, 5, 2, 3))
    assert pos[2 * 6 * 1 + 6 * 1, 0] == 1 * 5 + 1  # first token of cell (1, 1)
    with pytest.raises(InputError, match="T_max"):
        GridTokens(2, 3, 4, 4, t_max=2)
    with pytest.raises(InputError, match="multiple"):
        GridTokens(2, 3, 5, 4)


def test_reference_cells_and_frame_consistency(vae):
    g = GridTokens(views=3, times=2, height=4, width=4)
    video = torch.rand(7, 32, 32, 3)
    sweep = torch.rand(5, 32, 32, 3)
    row = encode_fixed_view(vae, video, 5)
    col = encode_freeze_time(vae, sweep, 3)
    assert row.shape == (4, 2, 4, 4) and col.shape == (4, 3, 4, 4)
    assert pick_views(5, 3) == [0, 2, 4]
    # the causal VAE: latent frame 0 of a video is its first frame encoded alone, so column 0 and the
    # row's first cell agree when they show the same image
    single = encode_freeze_time(vae, video[:1].expand(3, -1, -1, -1), 3)
    torch.testing.assert_close(single[:, 0], row[:, 0], atol=1e-5, rtol=1e-5)
    ref = build_reference(g, 4, row, col)
    assert ref.known.tolist() == [[True, True], [True, False], [True, False]] and ref.describe() == "row+column"
    cells = g.unpack(ref.latents)[0]  # [V, C, T, H, W]
    assert torch.equal(cells[0, :, 1], row[:, 1]) and torch.equal(cells[0, :, 0], row[:, 0])  # video wins (0, 0)
    assert torch.equal(cells[2, :, 0], col[:, 2]) and not cells[1, :, 1].any()
    with pytest.raises(InputError, match="frames"):
        encode_fixed_view(vae, video[:3], 5)
    with pytest.raises(InputError, match="divisible by 16"):
        encode_fixed_view(vae, torch.rand(5, 24, 32, 3), 5)
    with pytest.raises(InputError, match="NaN"):
        encode_freeze_time(vae, torch.full((3, 32, 32, 3), float("nan")), 3)
    with pytest.raises(InputError, match="one frame per view"):
        encode_freeze_time(vae, sweep[:2], 3)


def test_velocity_uses_fused_attention_positions_and_reference(dit):
    """A one-block model: a cell sees only its row and column, so a change in cell (0, 0) reaches
    cell (0, 1) and (1, 0) but not (1, 1) with fused attention; with full attention it reaches all."""
    one = WanModel(PLAIN.__class__(**{**PLAIN.to_dict(), "num_layers": 1, "patch_size": (1, 2, 2)}))
    one.load_state_dict({k: v for k, v in dit.state_dict().items() if not k.startswith("blocks.1.")})
    one.eval()
    g = GridTokens(views=2, times=2, height=4, width=4)
    ctx = torch.randn(1, 8, PLAIN.text_dim)
    noise = torch.randn(1, 4, 4, 4, 4)
    x = torch.randn(1, 4, 4, 4, 4)
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # cell (0, 0)
    t = torch.tensor([500.0])
    for attention, reached in (("dense", [True, True, True, False]), ("full", [True, True, True, True])):
        fn = velocity_function(one, g, ctx, None, noise, None, attention)
        with torch.no_grad():
            d = (fn(x2, t, True) - fn(x, t, True)).abs().amax(dim=(0, 1, 3, 4))
        assert [bool(v > 1e-6) for v in d] == reached, attention
    # known cells: exact straight-path velocity; "add" feeds x + reference there, "replace" does not
    known = torch.tensor([[True, False], [False, False]])
    ref_lat = torch.zeros(1, 4, 4, 4, 4)
    ref_lat[:, :, 0] = torch.randn(1, 4, 4, 4)
    seen = []

    class Spy(torch.nn.Module):
        config = PLAIN

        def forward(self, x, t, ctx, **kw):
            seen.append(x.clone())
            return torch.zeros_like(x)

    from lavr_core.fused4d.reference import GridReference
    for mode in ("add", "replace"):
        seen.clear()
        fn = velocity_function(Spy(), g, ctx, None, noise, GridReference(ref_lat, known, mode), "dense")
        v = fn(x, t, True)
        assert torch.equal(v[:, :, 0], (noise - ref_lat)[:, :, 0]) and not v[:, :, 1:].any()
        expect = x + ref_lat if mode == "add" else x
        assert torch.equal(seen[0], expect)


def test_sample_grid_keeps_references_and_is_seeded(dit):
    g = GridTokens(views=2, times=2, height=4, width=4)
    ctx = torch.randn(1, 8, PLAIN.text_dim)
    row = torch.randn(4, 2, 4, 4)
    ref = build_reference(g, 4, fixed_view=row)
    s = SamplerSettings(steps=3, cfg=1.0, seed=5, timestep_dtype=None)
    a = sample_grid(dit, g, ctx, s, reference=ref, attention="dense")
    b = sample_grid(dit, g, ctx, s, reference=ref, attention="naive")
    c = sample_grid(dit, g, ctx, SamplerSettings(steps=3, cfg=1.0, seed=6, timestep_dtype=None),
                    reference=ref, attention="dense")
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)  # the backends agree end to end
    assert torch.equal(g.unpack(a)[0, 0], row)  # row 0 is the reference
    assert (a - c).abs().max() > 1e-3  # another seed, another sample
    # without the exact velocity override the reference row would move: it is kept on its path
    # at every step, so the Euler steps end on it with no correction needed
    stepped = []
    sample_grid(dit, g, ctx, s, reference=ref, attention="dense",
                callback=lambda i, n, x, x0: stepped.append(torch.allclose(g.unpack(x0)[0, 0], row, atol=1e-5)))
    assert stepped == [True] * 3
    with pytest.raises(InputError, match="negative"):
        sample_grid(dit, g, ctx, SamplerSettings(steps=1, cfg=3.0), reference=ref)


def test_generate_end_to_end(dit, vae):
    video = torch.rand(5, 32, 48, 3)
    sweep = torch.rand(3, 32, 48, 3)
    ctx = torch.randn(1, 8, PLAIN.text_dim)
    neg = torch.zeros(1, 8, PLAIN.text_dim)
    steps = []
    cams = CameraTrajectory(c2w=torch.eye(4).repeat(3, 1, 1), K=torch.tensor([[40.0, 0, 24], [0, 40, 16], [0, 0, 1]]
                                                                            ).repeat(3, 1, 1), width=48, height=32)
    res = generate(dit, vae, ctx, Fused4DSettings(views=3, frames=5, attention="dense", fps=12.0),
                   SamplerSettings(steps=2, cfg=2.0, seed=1), negative=neg, fixed_view=video, freeze_time=sweep,
                   view_trajectory=cams, callback=lambda *a: steps.append(a[0]))
    assert steps == [0, 1]
    assert res.images.shape == (3 * 5, 32, 48, 3) and 0 <= res.images.min() and res.images.max() <= 1
    lay = res.layout
    assert (lay.views, lay.times, lay.fps) == (3, 5, 12.0) and lay.view_cameras is not None
    assert lay.meta["reference"] == "row+column" and lay.meta["latent_times"] == 2
    lay.check_frames(res.images)
    with pytest.raises(InputError, match="different sizes"):
        generate(dit, vae, ctx, Fused4DSettings(views=3, frames=5), SamplerSettings(steps=1, cfg=1.0),
                 fixed_view=video, freeze_time=torch.rand(3, 48, 48, 3))
    with pytest.raises(InputError, match="cameras for 3 views"):
        view_cameras_for(cams.subset([0, 1]), 3, 5, 48, 32)


def test_settings_validation():
    with pytest.raises(InputError):
        Fused4DSettings(views=0, frames=5)
    with pytest.raises(InputError):
        Fused4DSettings(views=2, frames=6)
    with pytest.raises(InputError):
        Fused4DSettings(views=2, frames=5, attention="sparse")
    with pytest.raises(InputError):
        Fused4DSettings(views=2, frames=5, reference_mode="concat")


def test_finetune_and_lora_files_apply_and_restore(dit):
    x = torch.randn(1, 4, 2, 4, 4)
    t, ctx = torch.tensor([300.0]), torch.randn(1, 8, PLAIN.text_dim)
    with torch.no_grad():
        base = dit(x, t, ctx)
    # a fine-tune: every self-attention tensor changed
    sd = {k: v + 0.01 for k, v in self_attention_state_dict(dit).items()}
    assert sd and all(".self_attn." in k for k in sd) and len(sd) == 2 * 10  # q,k,v,o weight+bias, norm_q, norm_k
    with apply_self_attention(dit, resolve_updates(dit, sd)), torch.no_grad():
        tuned = dit(x, t, ctx)
    with torch.no_grad():
        assert torch.equal(dit(x, t, ctx), base)  # restored
    assert (tuned - base).abs().max() > 1e-4
    # a LoRA: merged weights equal the wrapped model
    import copy
    wrapped = copy.deepcopy(dit)
    attach_lora(wrapped, rank=2, alpha=4.0)
    with torch.no_grad():
        for m in wrapped.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.weight.normal_(0, 0.05)
        want = wrapped(x, t, ctx)
    lsd = lora_state_dict(wrapped)
    assert set(k.rsplit(".", 2)[-2] for k in lsd if k.endswith("weight")) == {"lora_A", "lora_B"}
    with apply_self_attention(dit, resolve_updates(dit, lsd)), torch.no_grad():
        got = dit(x, t, ctx)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # strength 0 is the base model
    with apply_self_attention(dit, resolve_updates(dit, lsd, strength=0.0)), torch.no_grad():
        torch.testing.assert_close(dit(x, t, ctx), base, atol=1e-6, rtol=0)
    with pytest.raises(CheckpointError, match="does not have"):
        resolve_updates(dit, {"blocks.9.self_attn.q.weight": torch.zeros(64, 64)})
    with pytest.raises(CheckpointError, match="shape"):
        resolve_updates(dit, {"blocks.0.self_attn.q.weight": torch.zeros(32, 64)})
    with pytest.raises(CheckpointError, match="incomplete"):
        resolve_updates(dit, {"blocks.0.self_attn.q.lora_A.weight": torch.zeros(2, 64)})


def test_weights_file_with_foreign_keys_is_refused(tmp_path, dit):
    from safetensors.torch import save_file

    from lavr_core.fused4d.weights import read_self_attention_file
    p = tmp_path / "x.safetensors"
    save_file({"diffusion_model.blocks.0.ffn.0.weight": torch.zeros(2, 2)}, str(p))
    with pytest.raises(CheckpointError, match="not a Fused 4D"):
        read_self_attention_file(p)
    save_file({f"diffusion_model.{k}": v for k, v in self_attention_state_dict(dit).items()}, str(p))
    assert set(read_self_attention_file(p)) == set(self_attention_state_dict(dit))
