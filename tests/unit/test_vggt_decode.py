"""VGGT Gaussian Decode's core (lavr_core.vggt4d.decode): frame preparation and mapping, static and 4D
decoding, Gaussian limits and the errors bad input gets. The model's own maths (VGGT conformance, fresh
temporal layers == plain VGGT per timestep) is tested in test_vggt_model / test_vggt4d; here it is reused."""

import sys
from pathlib import Path

import pytest
import torch

from lavr_core.errors import InputError
from lavr_core.gaussians.types import GaussianSequence, Gaussians
from lavr_core.grid import GridLayout
from lavr_core.vggt.preprocess import preprocess_comfy_images
from lavr_core.vggt4d import VGGT4D, VGGT4DConfig, load_vggt4d
from lavr_core.vggt4d.decode import FrameMap, decode_frames, decode_steps, limit_gaussians, prepare_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from tiny_vggt import build_vggt, build_vggt4d  # noqa: E402  (the tiny golden VGGT the workflows run on)

pytestmark = pytest.mark.usefixtures("one_thread")
RES = 42  # model input 42 x 28 for the 3:2 frames below: fast on the CPU


@pytest.fixture(scope="module")
def vggt():
    return build_vggt()


@pytest.fixture(scope="module")
def plain(vggt):
    return load_vggt4d(vggt)  # no head, no temporal layers: VGGT with training-free Gaussians


@pytest.fixture(scope="module")
def frames():
    """Six 48 x 32 frames of a coloured pattern shifting right (a static scene seen by a moving camera)."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(32, 80, 3, generator=g)
    base = torch.nn.functional.avg_pool2d(base.permute(2, 0, 1)[None], 3, 1, 1)[0].permute(1, 2, 0)
    return torch.stack([base[:, 4 * i:4 * i + 48] for i in range(6)])


# ------------------------------------------------------------------------------ preparation and mapping

@pytest.mark.parametrize("mode,hw", [("crop", (30, 50)), ("crop", (61, 40)), ("pad", (61, 40)), ("pad", (30, 51))])
def test_resized_path_equals_the_official_preprocessing_at_518(mode, hw):
    imgs = torch.rand(2, *hw, 3, generator=torch.Generator().manual_seed(1))
    ours, fmap = prepare_frames(imgs, mode, 518)
    official = preprocess_comfy_images(imgs, mode)
    assert ours.shape == official.shape and tuple(ours.shape[-2:]) == fmap.model_hw
    assert torch.equal(ours, official)
    # other working sizes follow the same plan (prepare_frames also asserts this internally)
    small, fmap56 = prepare_frames(imgs, mode, 56)
    assert tuple(small.shape[-2:]) == fmap56.model_hw and max(fmap56.model_hw) == 56


def test_frame_map_resamples_and_moves_intrinsics_consistently():
    # A tall frame cropped (rows lost) and padded (columns added): maps and intrinsics follow.
    for mode in ("crop", "pad"):
        fmap = FrameMap.plan(70, 28, mode, 56)
        H, W = fmap.model_hw
        v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
        coords = torch.stack([u, v])                                   # model pixel centres
        back, valid = fmap.maps_to_input(coords)
        A = fmap.input_to_model()
        y, x = torch.meshgrid(torch.arange(70) + 0.5, torch.arange(28) + 0.5, indexing="ij")
        expect_u, expect_v = x * A[0, 0] + A[0, 2], y * A[1, 1] + A[1, 2]
        inner = valid[0] & (expect_u > 0.5) & (expect_u < W - 0.5) & (expect_v > 0.5) & (expect_v < H - 0.5)
        assert inner.sum() > 100
        assert torch.allclose(back[0][inner], expect_u[inner].float(), atol=1e-4)
        assert torch.allclose(back[1][inner], expect_v[inner].float(), atol=1e-4)
        if mode == "crop":
            assert not valid[0].all() and valid[0].any()          # the cropped rows were never seen
        else:
            assert valid[0].all() and not fmap.content_mask().all()  # padding is not input
        # A point projected by the model's K lands where the input-frame K puts it, moved by A.
        K = torch.tensor([[40.0, 0, W / 2], [0, 38.0, H / 2], [0, 0, 1]], dtype=torch.float64)
        X = torch.tensor([0.3, -0.2, 2.0], dtype=torch.float64)
        p_model, p_in = K @ X, fmap.intrinsics_to_input(K) @ X
        assert torch.allclose(A @ (p_in / p_in[2]), p_model / p_model[2])


def test_prepare_frames_rejects_bad_input():
    ok = torch.rand(2, 28, 42, 3)
    with pytest.raises(InputError, match="NaN"):
        prepare_frames(torch.full((2, 28, 42, 3), float("nan")), "crop", RES)
    with pytest.raises(InputError, match="multiple of 14"):
        prepare_frames(ok, "crop", 50)
    with pytest.raises(InputError, match="mode"):
        prepare_frames(ok, "stretch", RES)
    with pytest.raises(InputError, match="empty"):
        prepare_frames(torch.rand(0, 28, 42, 3), "crop", RES)
    with pytest.raises(InputError, match="elongated"):
        prepare_frames(torch.rand(1, 2, 400, 3), "crop", RES)


# ------------------------------------------------------------------------------ decoding

def test_static_scene_outputs(plain, frames):
    steps = []
    r = decode_frames(plain, frames, resolution=RES, min_confidence=1.0, max_gaussians=10**6, fps=12.0,
                      step=lambda: steps.append(1))
    assert isinstance(r.gaussians, Gaussians) and (r.views, r.times) == (6, 1)
    assert r.gaussians.num == 6 * 28 * 42 and r.source == "training_free"
    assert len(steps) == decode_steps(plain, 6)
    traj = r.trajectory
    assert len(traj) == 6 and (traj.width, traj.height) == (48, 32) and traj.fps == 12.0
    assert torch.allclose(traj.c2w[0], torch.eye(4, dtype=torch.float64), atol=1e-9)  # view 0 = world origin
    assert r.depth_preview.shape == (6, 32, 48, 3) and r.render_preview.shape == (6, 32, 48, 3)
    for img in (r.depth_preview, r.render_preview):
        assert img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1 and img.std() > 0.05
    # Rendered from its own camera, frame 0's splats fall where its pixels were: the preview correlates
    # with the input frame far above chance.
    a, b = r.render_preview[0].flatten(), frames[0].flatten()
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1]
    assert corr > 0.5, corr
    assert "init: training_free" in r.summary()


def test_one_frame_works(plain, frames):
    r = decode_frames(plain, frames[:1], resolution=RES, max_gaussians=500)
    assert isinstance(r.gaussians, Gaussians) and r.gaussians.num == 500 and len(r.trajectory) == 1
    assert r.render_preview.shape == (1, 32, 48, 3)


def test_grid_with_fresh_temporal_layers_matches_per_timestep_static_decodes(vggt, plain, frames):
    # Fresh temporal layers are the identity (tested in test_vggt4d), so decoding a 2 x 3 grid gives, per
    # timestep, the depth of plain VGGT on that timestep's 2 views, and timestep 0 its Gaussians.
    fresh = VGGT4D(vggt, VGGT4DConfig(gaussian_head=False, temporal=True)).eval()
    r = decode_frames(fresh, frames, views=2, resolution=RES, min_confidence=1.0, max_gaussians=10**6, fps=8.0)
    assert isinstance(r.gaussians, GaussianSequence) and len(r.gaussians) == 3 and (r.views, r.times) == (2, 3)
    assert torch.allclose(r.gaussians.times, torch.arange(3, dtype=torch.float64) / 8.0)
    assert len(r.trajectory) == 2 and r.render_preview.shape[0] == 6
    for t in range(3):
        col = frames[[t, 3 + t]]                      # view-major: frame v*T + t
        s = decode_frames(plain, col, resolution=RES, min_confidence=1.0, max_gaussians=10**6, render=False)
        assert torch.allclose(r.depth[[t, 3 + t]], s.depth, atol=1e-5)
        if t == 0:
            g, sg = r.gaussians.frames[0], s.gaussians
            assert g.num == sg.num and torch.allclose(g.means, sg.means, atol=1e-5)


def test_head_weights_change_the_gaussians(vggt, frames):
    model = build_vggt4d(vggt)
    head = decode_frames(model, frames[:2], resolution=RES, min_confidence=1.0, render=False)
    model.gaussian_head.reset_output()  # zero output layer: the head reproduces training-free Gaussians
    try:
        zero = decode_frames(model, frames[:2], resolution=RES, min_confidence=1.0, render=False)
    finally:
        del model
    assert head.source == "gaussian_head" and "init: gaussian_head" in head.summary()
    assert (head.gaussians.means - zero.gaussians.means).abs().max() > 1e-4


def test_layout_and_views_errors(plain, frames):
    with pytest.raises(InputError, match="6 frames but the layout is 4 views x 2"):
        decode_frames(plain, frames, layout=GridLayout(4, 2), resolution=RES)
    with pytest.raises(InputError, match="do not split into 4 views"):
        decode_frames(plain, frames, views=4, resolution=RES)
    with pytest.raises(InputError, match="views is 3 but the connected grid layout has 2"):
        decode_frames(plain, frames, views=3, layout=GridLayout(2, 3), resolution=RES)
    r = decode_frames(plain, frames, layout=GridLayout(3, 2, fps=5.0), resolution=RES, render=False)
    assert len(r.gaussians) == 2 and r.gaussians.times[1] == 0.2  # the layout's fps wins


def test_other_errors(plain, vggt, frames):
    with pytest.raises(InputError, match="VGGT4D"):
        decode_frames(vggt, frames, resolution=RES)  # a bare VGGT, not the 4D wrapper the loader makes
    with pytest.raises(InputError, match="NaN"):
        bad = frames.clone()
        bad[2, 3, 4, 0] = float("nan")
        decode_frames(plain, bad, resolution=RES)
    with pytest.raises(InputError, match="confidence"):
        decode_frames(plain, frames[:2], resolution=RES, min_confidence=1e6)
    with pytest.raises(InputError, match="IMAGE"):
        decode_frames(plain, frames[0], resolution=RES)


def test_interrupt_from_step_stops_the_decode(plain, frames):
    class Stop(Exception):
        pass

    calls = []

    def step():
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        decode_frames(plain, frames[:2], resolution=RES, step=step)
    agg = plain.vggt.aggregator  # the progress hooks are removed again
    assert not any(b._forward_hooks for b in [*agg.frame_blocks, *agg.global_blocks])


def test_limit_gaussians_keeps_a_seeded_subset_and_grows_scales():
    n = 1000
    g = Gaussians.from_rgb(torch.randn(n, 3), torch.full((n, 3), 0.01), torch.tensor([[1.0, 0, 0, 0]]).expand(n, 4),
                           torch.full((n,), 0.5), torch.rand(n, 3))
    a, b = limit_gaussians(g, 250), limit_gaussians(g, 250)
    assert a.num == 250 and torch.equal(a.means, b.means)
    assert torch.allclose(a.scales, torch.full((250, 3), 0.02))  # sqrt(1000 / 250) = 2
    assert a.meta["subsampled_from"] == n
    assert limit_gaussians(g, 5000) is g
    with pytest.raises(InputError):
        limit_gaussians(g, 0)


def test_half_precision_aggregator_and_autocast_stay_close_to_fp32(plain, frames):
    # What Load VGGT does for dtype bf16 (aggregator weights cast, heads fp32) and for auto on a GPU
    # (fp32 weights, aggregator under autocast): outputs stay float32 and near the fp32 result.
    ref = decode_frames(plain, frames[:3], resolution=RES, min_confidence=1.0, render=False)
    half = build_vggt()
    half.aggregator.to(torch.bfloat16)
    runs = [decode_frames(load_vggt4d(half), frames[:3], resolution=RES, min_confidence=1.0, render=False),
            decode_frames(plain, frames[:3], resolution=RES, min_confidence=1.0, render=False, autocast=torch.bfloat16)]
    for r in runs:
        assert r.gaussians.means.dtype == torch.float32 and r.depth.dtype == torch.float32
        rel = ((r.depth - ref.depth).abs().max() / ref.depth.abs().max()).item()
        assert 0 < rel < 0.03, rel  # bf16 really ran (not exactly equal) and stayed close
