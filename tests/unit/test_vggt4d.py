"""VGGT4D: the 4D extension equals plain VGGT when untrained; Gaussian head and training-free init."""

import pytest
import torch

from lavr_core.errors import InputError
from lavr_core.gaussians.types import GaussianSequence, Gaussians, sh_dc_to_rgb
from lavr_core.vggt import VGGT, VGGTConfig
from lavr_core.vggt4d import (CHANNELS, GAUSSIAN_CHANNELS, InitConfig, TemporalAttention, VGGT4D, VGGT4DConfig,
                              apply_head, frames_to_grid, replace_camera_tokens, training_free)
from lavr_core.vggt4d.gaussian_head import MAX_LOG_SCALE, POSITION_SCALE

pytestmark = pytest.mark.usefixtures("one_thread")

V, T, H, W = 3, 3, 42, 56
ATOL = 1e-6  # batched vs per-timestep matmuls may differ in the last float32 bits; nothing more


def tiny_vggt(seed: int = 0) -> VGGT:
    """A tiny VGGT with every weight moved off its init (so slips show) and sane fields of view."""
    torch.manual_seed(seed)
    model = VGGT(VGGTConfig.tiny())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        model.camera_head.pose_branch.fc2.bias[7:9] += 0.4  # random heads may predict FoV 0 (ReLU)
    return model.eval()


@pytest.fixture(scope="module")
def vggt():
    return tiny_vggt()


@pytest.fixture(scope="module")
def grid():
    # Every timestep different, so per-timestep equality cannot pass by accident.
    return torch.rand(V, T, 3, H, W, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def fresh(vggt, grid):
    torch.manual_seed(3)
    model = VGGT4D(vggt, VGGT4DConfig()).eval()
    with torch.no_grad():
        return model, model(grid)


def _close(a, b, what):
    err = (a - b).abs().max().item()
    assert err <= ATOL + ATOL * b.abs().max().item(), f"{what}: max abs error {err:.3e}"
    return err


def test_fresh_temporal_layers_equal_plain_vggt_per_timestep(vggt, grid, fresh):
    model, pred = fresh
    assert pred.depth.shape == (1, V, T, H, W, 1) and pred.pose_enc.shape == (1, V, T, 9)
    assert pred.world_points.shape == (1, V, T, H, W, 3) and pred.gaussian_raw.shape == (1, V, T, H, W, 14)
    with torch.no_grad():
        plain = [vggt(grid[:, t]) for t in range(T)]
    errs = []
    for t in range(T):
        for name in ("depth", "depth_conf", "world_points", "world_points_conf"):
            errs.append(_close(getattr(pred, name)[0, :, t], getattr(plain[t], name)[0], f"{name} t={t}"))
        # Camera-token replacement: every timestep's cameras are timestep 0's.
        errs.append(_close(pred.pose_enc[0, :, t], plain[0].pose_enc[0], f"pose_enc t={t}"))
    # The timesteps really differ, so the checks above compare different things per t.
    assert (plain[1].depth - plain[0].depth).abs().max() > 1e-3
    assert (plain[1].pose_enc - plain[0].pose_enc).abs().max() > 1e-3
    assert max(errs) <= ATOL


def test_without_camera_token_replacement_cameras_follow_each_timestep(vggt, grid):
    model = VGGT4D(vggt, VGGT4DConfig(replace_camera_tokens=False, gaussian_head=False)).eval()
    with torch.no_grad():
        pred = model(grid, with_points=False)
        for t in range(T):
            _close(pred.pose_enc[0, :, t], vggt(grid[:, t]).pose_enc[0], f"pose_enc t={t}")
    assert pred.world_points is None and pred.gaussian_raw is None


def test_trained_temporal_layers_change_outputs(vggt, grid, fresh):
    model, pred = fresh
    torch.manual_seed(5)
    moved = VGGT4D(vggt, VGGT4DConfig(gaussian_head=False)).eval()
    with torch.no_grad():
        for layer in [*moved.temporal.frame, *moved.temporal.global_]:
            torch.nn.init.normal_(layer.proj.weight, std=0.2)
        out = moved(grid, with_points=False)
    assert (out.depth - pred.depth).abs().max() > 1e-3
    # A token's update mixes its own view and position across time only: changing timestep 2's
    # frames changes timestep 0's depth through the temporal layers (and not without them).
    other = grid.clone()
    other[:, 2] = torch.rand_like(other[:, 2])
    with torch.no_grad():
        d_moved = moved(other, with_points=False).depth[0, :, 0] - out.depth[0, :, 0]
        fresh_a = model(grid, with_points=False).depth[0, :, 0]
        fresh_b = model(other, with_points=False).depth[0, :, 0]
    assert d_moved.abs().max() > 1e-4
    assert torch.equal(fresh_a, fresh_b)


def test_temporal_attention_is_identity_when_fresh_and_respects_order():
    torch.manual_seed(0)
    layer = TemporalAttention(32, 2)
    x = torch.randn(5, 4, 32)
    assert torch.equal(layer(x), x)
    torch.nn.init.normal_(layer.proj.weight, std=0.3)
    y = layer(x)
    assert (y - x).abs().max() > 1e-3
    # The time rotary embedding makes the layer order-aware: reversing time is not just a reorder.
    assert (layer(x.flip(1)).flip(1) - y).abs().max() > 1e-4


def test_replace_camera_tokens_copies_only_token_zero_of_timestep_zero():
    B, TT, VV, P, C = 2, 3, 2, 6, 4
    x = torch.randn(B * TT, VV, P, C)
    (y,) = replace_camera_tokens([x], B, TT)
    g, gy = x.view(B, TT, VV, P, C), y.view(B, TT, VV, P, C)
    for t in range(TT):
        assert torch.equal(gy[:, t, :, 0], g[:, 0, :, 0])
    assert torch.equal(gy[..., 1:, :], g[..., 1:, :])


def test_grid_layout_is_view_major_and_bad_grids_are_refused(vggt):
    frames = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 3, 2, 2)
    grid = frames_to_grid(frames, views=2, times=3)
    assert grid[1, 0, 0, 0, 0] == 3 and grid[0, 2, 0, 0, 0] == 2  # frame = v*T + t
    with pytest.raises(InputError, match="views x 4 timesteps"):
        frames_to_grid(frames, views=2, times=4)
    with pytest.raises(InputError, match="positive whole number"):
        frames_to_grid(frames, views=0, times=6)
    model = VGGT4D(vggt, VGGT4DConfig(gaussian_head=False, temporal=False))
    with pytest.raises(InputError, match="grid of frames"):
        model(torch.rand(4, 3, H, W))
    with pytest.raises(InputError, match="multiple of VGGT"):
        model(torch.rand(2, 2, 3, 40, 56))


# ------------------------------------------------------------------------------ Gaussians

def test_training_free_init_produces_valid_gaussians(fresh):
    _, pred = fresh
    assert pred.gaussian_source == "gaussian_head"
    seq = pred.gaussians(use_head=False)
    assert isinstance(seq, GaussianSequence) and len(seq) == T
    c2w, K = pred.cameras()
    for t, g in enumerate(seq.frames):
        assert isinstance(g, Gaussians) and g.num == V * H * W and g.meta["gaussians"] == "training_free"
        assert torch.isfinite(g.means).all() and (g.scales > 0).all()
        assert ((g.opacities > 0) & (g.opacities < 1)).all()
        assert torch.equal(g.rotations, torch.tensor([1.0, 0, 0, 0]).expand(g.num, 4))
        # colours = the pixels (view-major, row-major order)
        rgb = pred.images[0, :, t].permute(0, 2, 3, 1).reshape(-1, 3)
        torch.testing.assert_close(sh_dc_to_rgb(g.sh[:, 0]), rgb, atol=1e-6, rtol=0)
        # opacity = 1 - 1/confidence; isotropic scale = 0.5 * depth / focal
        conf = pred.depth_conf[0, :, t].reshape(-1)
        torch.testing.assert_close(g.opacities, (1 - 1 / conf).clamp(0.01, 0.99))
        f = (K[0, :, t, 0, 0] * K[0, :, t, 1, 1]).sqrt().float()
        want = 0.5 * pred.depth[0, :, t, ..., 0] / f[:, None, None]
        torch.testing.assert_close(g.scales[:, 0], want.reshape(-1), rtol=1e-5, atol=0)
        assert torch.equal(g.scales[:, 0], g.scales[:, 2])
    # Centres: unprojected depth at pixel centres: reprojecting gives back (u+0.5, v+0.5) and depth.
    g0 = seq.frames[0]
    w2c = torch.linalg.inv(c2w[0, 1, 0])
    pts = g0.means[H * W:2 * H * W].double()                    # view 1, timestep 0
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    uv = cam[:, :2] / cam[:, 2:] @ K[0, 1, 0, :2, :2].T + K[0, 1, 0, :2, 2]
    vv, uu = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    torch.testing.assert_close(uv, torch.stack([uu, vv], -1).reshape(-1, 2).double() + 0.5, atol=1e-3, rtol=0)
    torch.testing.assert_close(cam[:, 2].float(), pred.depth[0, 1, 0, ..., 0].reshape(-1), atol=1e-5, rtol=1e-5)


def test_fresh_gaussian_head_reproduces_training_free_gaussians(fresh):
    _, pred = fresh
    assert torch.equal(pred.gaussian_raw, torch.zeros_like(pred.gaussian_raw))
    a, b = pred.pixel_gaussians(), pred.pixel_gaussians(use_head=False)
    for name in ("means", "scales", "rotations", "rgb"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    torch.testing.assert_close(a.opacities, b.opacities, atol=1e-6, rtol=0)


def test_head_channels_act_as_documented():
    torch.manual_seed(0)
    F_, h, w = (2,), 3, 4
    depth = 1 + torch.rand(*F_, h, w)
    conf = 1 + torch.rand(*F_, h, w) * 4
    rgb = torch.rand(*F_, h, w, 3)
    c2w = torch.eye(4).expand(*F_, 4, 4).clone()
    c2w[1, :3, :3] = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])      # view 1 turned 90 deg about z
    K = torch.tensor([[5.0, 0, 2], [0, 5, 1.5], [0, 0, 1]]).expand(*F_, 3, 3)
    base = training_free(depth, conf, rgb, c2w, K, InitConfig())
    raw = torch.zeros(*F_, h, w, GAUSSIAN_CHANNELS)
    raw[..., 0] = 1.0                                                       # +x in camera axes
    raw[..., 3] = 2.0
    raw[..., 4:7] = 1e3                                                     # clamps to e^MAX_LOG_SCALE
    raw[..., 8] = 1.0                                                       # rotation delta on x
    raw[..., 11:14] = torch.tensor([0.1, -0.2, 0.3])
    out = apply_head(raw, base, depth, c2w)
    step = POSITION_SCALE * depth
    torch.testing.assert_close(out.means[0] - base.means[0], torch.stack([step[0], 0 * step[0], 0 * step[0]], -1))
    torch.testing.assert_close(out.means[1] - base.means[1], torch.stack([0 * step[1], step[1], 0 * step[1]], -1))
    logit = torch.log(base.opacities) - torch.log1p(-base.opacities)
    torch.testing.assert_close(out.opacities, torch.sigmoid(logit + 2))
    torch.testing.assert_close(out.scales, base.scales * torch.exp(torch.tensor(MAX_LOG_SCALE)))
    torch.testing.assert_close(out.rotations, torch.tensor([1.0, 1, 0, 0]).expand_as(out.rotations) / 2 ** 0.5)
    torch.testing.assert_close(out.rgb, base.rgb + torch.tensor([0.1, -0.2, 0.3]))
    assert set(CHANNELS) == {"position", "opacity", "scale", "rotation", "color"}


def test_gaussian_sequence_confidence_filter_and_errors(fresh):
    _, pred = fresh
    conf = pred.depth_conf[0, :, 0]
    thr = float(conf.median())
    seq = pred.gaussians(min_confidence=thr)
    assert seq.frames[0].num == int((conf >= thr).sum()) < V * H * W
    with pytest.raises(InputError, match="filtered out"):
        pred.gaussians(min_confidence=float(pred.depth_conf.max()) + 1)
    assert pred.static_gaussians().num == T * V * H * W
    traj = pred.trajectory()
    assert traj.num_frames == V and traj.width == W and traj.height == H


def test_decode_without_head_weights_uses_training_free(vggt, grid):
    model = VGGT4D(vggt, VGGT4DConfig(gaussian_head=False, temporal=False))
    seq, pred = model.decode(grid[:, :2], fps=8.0)
    assert pred.gaussian_source == "training_free" and seq.meta["gaussians"] == "training_free"
    assert len(seq) == 2 and torch.allclose(seq.times, torch.tensor([0.0, 0.125], dtype=torch.float64))
    assert not seq.frames[0].means.requires_grad


def test_degenerate_predicted_camera_gives_clear_error(vggt, grid):
    model = VGGT4D(vggt, VGGT4DConfig(gaussian_head=False, temporal=False)).eval()
    with torch.no_grad():
        pred = model(grid[:, :1], with_points=False)
    pred.pose_enc = pred.pose_enc.clone()
    pred.pose_enc[..., 7:] = 0.0                         # FoV 0: what a ReLU head gives with wrong weights
    with pytest.raises(InputError, match="field of view"):
        pred.gaussians()
