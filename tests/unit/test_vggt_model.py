"""VGGT model behaviour beyond the golden: input checks, aggregator hooks, batching, tracking."""

import pytest
import torch
from torch import nn

from lavr_core.errors import InputError
from lavr_core.vggt import VGGT, VGGTConfig, load_vggt
from lavr_core.vggt.aggregator import TokenLayout
from lavr_core.vggt.rope import RoPE2D, patch_positions


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Move every parameter off its (often trivial) init so that mistakes show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return _randomise(VGGT(VGGTConfig.tiny(enable_track=True)))


@pytest.fixture(scope="module")
def frames():
    return torch.rand(3, 3, 42, 56, generator=torch.Generator().manual_seed(1))


def test_output_shapes(model, frames):
    with torch.no_grad():
        p = model(frames)
    assert p.pose_enc.shape == (1, 3, 9) and len(p.pose_enc_list) == 4 and p.pose_enc is p.pose_enc_list[-1]
    assert p.depth.shape == (1, 3, 42, 56, 1) and p.depth_conf.shape == (1, 3, 42, 56)
    assert p.world_points.shape == (1, 3, 42, 56, 3) and p.world_points_conf.shape == (1, 3, 42, 56)
    assert (p.depth > 0).all() and (p.depth_conf > 1).all() and (p.pose_enc[..., 7:] >= 0).all()
    assert p.track is None and p.aggregated_tokens is None
    extr, K = p.extrinsics_intrinsics()
    assert extr.shape == (1, 3, 3, 4) and K.shape == (1, 3, 3, 3) and K[0, 0, 0, 2] == 28
    assert set(p.as_dict()) == {"pose_enc", "pose_enc_list", "depth", "depth_conf", "world_points",
                                "world_points_conf", "images"}


def test_batches_and_chunks_do_not_change_results(model, frames):
    other = torch.rand_like(frames)
    with torch.no_grad():
        a = model(frames)
        b = model(other)
        ab = model(torch.stack([frames, other]))
        chunked = model(frames, frames_chunk_size=2)
        all_tokens = model(frames, return_tokens=True)
    for name in ("pose_enc", "depth", "world_points", "world_points_conf"):
        torch.testing.assert_close(getattr(ab, name)[:1], getattr(a, name), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(getattr(ab, name)[1:], getattr(b, name), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(getattr(chunked, name), getattr(a, name), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(getattr(all_tokens, name), getattr(a, name), atol=0, rtol=0)
    assert all(t is not None and t.shape == (1, 3, 17, 64) for t in all_tokens.aggregated_tokens)


def test_frame_zero_is_the_reference(model, frames):
    """Reordering frames 1..S-1 permutes their outputs; moving a frame into slot 0 changes everything."""
    perm = torch.tensor([0, 2, 1])
    with torch.no_grad():
        a = model(frames)
        b = model(frames[perm])
        c = model(frames[torch.tensor([1, 0, 2])])
    torch.testing.assert_close(b.depth[0], a.depth[0][perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.pose_enc[0], a.pose_enc[0][perm], atol=1e-5, rtol=1e-5)
    assert (c.pose_enc[0, 0] - a.pose_enc[0, 1]).abs().max() > 1e-3
    assert (c.depth[0, 0] - a.depth[0, 1]).abs().max() > 1e-5


def test_hooks_see_every_block_and_can_extend_it(model, frames):
    calls = []

    def record(kind, layer, tokens, layout):
        assert isinstance(layout, TokenLayout) and tokens.shape == (layout.B, layout.S, layout.P, layout.C)
        assert (layout.B, layout.S, layout.P, layout.C, layout.grid_h, layout.grid_w) == (1, 3, 17, 32, 3, 4)
        calls.append((kind, layer))
        return tokens

    # A zero-initialised residual layer (what the 4D temporal attention is) leaves outputs unchanged.
    extra = nn.Linear(32, 32)
    nn.init.zeros_(extra.weight)
    nn.init.zeros_(extra.bias)

    def zero_residual(kind, layer, tokens, layout):
        return tokens + extra(tokens)

    def swap_camera(kind, layer, tokens, layout):
        if kind == "global" and layer == 3:
            tokens = tokens.clone()
            tokens[:, :, 0] = tokens[:, :1, 0]
        return tokens

    with torch.no_grad():
        ref = model(frames)
        hooked = model(frames, hooks=[record, zero_residual])
        swapped = model(frames, hooks=[swap_camera])
    assert calls == [(k, i) for i in range(4) for k in ("frame", "global")]
    for name in ("pose_enc", "depth", "world_points"):
        torch.testing.assert_close(getattr(hooked, name), getattr(ref, name), atol=0, rtol=0)
    assert (swapped.pose_enc[0, 1:] - ref.pose_enc[0, 1:]).abs().max() > 1e-4  # the hook's result is used
    torch.testing.assert_close(swapped.depth, ref.depth, atol=0, rtol=0)  # DPT reads patch tokens only


def test_rope_rotates_pairs_by_row_then_column():
    rope = RoPE2D(100.0)
    D = 8  # halves of 4: (y part, x part), pairs (i, i+2) in each half, frequencies 1 and 1/10
    x = torch.zeros(1, 1, 2, D)
    x[..., 0] = 1.0  # first feature of the y half
    x[..., 4] = 1.0  # first feature of the x half
    pos = torch.tensor([[[0, 0], [2, 3]]])
    out = rope(x, pos)
    torch.testing.assert_close(out[0, 0, 0], x[0, 0, 0])  # position (0, 0): no rotation
    y_angle, x_angle = torch.tensor(2.0), torch.tensor(3.0)
    torch.testing.assert_close(out[0, 0, 1, [0, 2]], torch.stack([y_angle.cos(), y_angle.sin()]))
    torch.testing.assert_close(out[0, 0, 1, [4, 6]], torch.stack([x_angle.cos(), x_angle.sin()]))
    p = patch_positions(2, 2, 3, 5, "cpu")
    assert p.shape == (2, 11, 2) and p[0, :5].abs().sum() == 0
    assert p[0, 5].tolist() == [1, 1] and p[0, 7].tolist() == [1, 3] and p[0, 8].tolist() == [2, 1]


def test_tracks_start_at_the_queries(model, frames):
    q = torch.tensor([[5.0, 7.0], [30.5, 20.25], [55.0, 41.0]])
    with torch.no_grad():
        p = model(frames, query_points=q)
    assert len(p.track_list) == 4 and p.track.shape == (1, 3, 3, 2)
    assert p.vis.shape == (1, 3, 3) and p.conf.shape == (1, 3, 3)
    assert ((p.vis > 0) & (p.vis < 1)).all() and ((p.conf > 0) & (p.conf < 1)).all()
    torch.testing.assert_close(p.track[0, 0], q, atol=1e-5, rtol=0)  # the query frame is given
    assert (p.track[0, 1:] - q).abs().max() > 1e-3  # other frames are predicted
    assert "track" in p.as_dict()
    with pytest.raises(InputError, match="Query points"):
        model(frames, query_points=torch.zeros(2, 3, 3))


def test_bad_frames_are_clear_errors(model, frames):
    with pytest.raises(InputError, match="multiple"):
        model(torch.rand(2, 3, 40, 56))
    with pytest.raises(InputError, match="channels-last"):
        model(torch.rand(2, 42, 56, 3))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        model(frames * 255)
    with pytest.raises(InputError, match="NaN"):
        model(torch.full((2, 3, 42, 56), float("nan")))
    with pytest.raises(InputError, match="floats"):
        model((frames * 255).to(torch.uint8))
    no_track = VGGT(VGGTConfig.tiny()).eval()
    with pytest.raises(InputError, match="no tracking head"):
        no_track(frames, query_points=torch.zeros(1, 2))


def test_tiny_checkpoint_with_track_head_round_trips(model, frames, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "vggt.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = load_vggt(path)
    assert loaded.config.enable_track and loaded.aggregator._mean.device.type == "cpu"
    q = torch.tensor([[10.0, 10.0]])
    with torch.no_grad():
        a = model(frames, query_points=q)
        b = loaded(frames, query_points=q)
    for name in ("pose_enc", "depth", "world_points", "track", "vis"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), atol=0, rtol=0)
