"""Frame-by-frame scene-latent encoding: same numbers as the whole-video run, flat memory, callbacks."""

from __future__ import annotations

import weakref
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lavr_core.cut3r.conformance import fixture_model
from lavr_core.cut3r.geometry import estimate_focal, pixel_centres, pose_to_c2w
from lavr_core.cut3r.streaming import Cut3rStreamer, StreamOptions, encode_frames, encode_video
from lavr_core.errors import InputError

TINY = Path(__file__).resolve().parents[2].parent / "shared/reference/cut3r/tiny"
pytestmark = [pytest.mark.skipif(not TINY.is_dir(), reason=f"CUT3R tiny golden not found at {TINY}"), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def tiny():
    model = fixture_model(TINY)
    inputs = load_file(str(TINY / "inputs.safetensors"))
    return model, torch.cat([inputs[f"view{i}.img"] for i in range(3)]), inputs


def test_stream_matches_golden_and_keeps_every_kth_state(tiny):
    model, imgs, _ = tiny
    ref = load_file(str(TINY / "outputs.safetensors"))
    states = load_file(str(TINY / "states.safetensors"))
    calls = []
    seq = encode_frames(model, imgs, StreamOptions(state_every=2, keep_rgb=True),
                        callback=lambda fr, i, n: calls.append((i, n, fr.pts3d_world.device.type)))
    assert calls == [(0, 3, "cpu"), (1, 3, "cpu"), (2, 3, "cpu")]
    assert seq.num_frames == 3 and seq.image_size == (48, 64)
    assert seq.state_frames == [0, 2] and seq.state_tokens.shape == (2, 20, 16)
    assert torch.allclose(seq.state_tokens[0], states["state.1.state_feat"][0], atol=1e-5)
    assert torch.allclose(seq.state_tokens[1], states["state.3.state_feat"][0], atol=1e-5)
    for i in range(3):
        assert (seq.pts3d_world[i] - ref[f"view{i}.pts3d_in_other_view"][0]).abs().max() < 1e-4
        assert (seq.conf_world[i] - ref[f"view{i}.conf"][0]).abs().max() < 1e-4
        assert (seq.pts3d_self[i] - ref[f"view{i}.pts3d_in_self_view"][0]).abs().max() < 1e-4
        assert (seq.depth[i] - ref[f"view{i}.pts3d_in_self_view"][0, ..., 2]).abs().max() < 1e-4
        assert (seq.c2w[i] - ref[f"view{i}.camera_pose_c2w"][0]).abs().max() < 1e-5
        assert (seq.camera_pose[i] - ref[f"view{i}.camera_pose"][0]).abs().max() < 1e-5
        assert (seq.rgb[i] - (ref[f"view{i}.rgb"][0] + 1) / 2).abs().max() < 1e-4
    assert seq.K.shape == (3, 3, 3) and seq.pose_tokens.shape == (3, 16)


def test_pose_world_points_follow_the_pose(tiny):
    model, imgs, _ = tiny
    seq = encode_frames(model, imgs, StreamOptions(world_points="pose", state_every=0))
    assert seq.state_tokens is None and seq.state_frames == []
    R, t = seq.c2w[:, :3, :3], seq.c2w[:, :3, 3]
    expect = torch.einsum("tij,thwj->thwi", R, seq.pts3d_self) + t[:, None, None]
    assert torch.allclose(seq.pts3d_world, expect, atol=1e-5)
    assert torch.equal(seq.conf_world, seq.conf_self)


def test_interrupt_between_frames(tiny):
    model, imgs, _ = tiny

    class Stop(Exception):
        pass

    done = []

    def cb(frame, i, n):
        done.append(i)
        if i == 1:
            raise Stop

    with pytest.raises(Stop):
        encode_frames(model, imgs, callback=cb)
    assert done == [0, 1]


def test_device_memory_does_not_grow_with_length(tiny):
    """Nothing computed for frame i is still referenced two frames later (state and outputs included)."""
    model, imgs, _ = tiny
    frames = imgs.repeat(2, 1, 1, 1)  # 6 frames
    refs = []
    real_step = model.step

    def spy(*a, **k):
        res = real_step(*a, **k)
        refs.append([weakref.ref(t) for t in list(res.outputs.values()) + [res.state.tokens, res.state.mem,
                                                                              res.pose_token]])
        return res

    model.step = spy
    try:
        streamer = Cut3rStreamer(model, StreamOptions(state_every=1), total=frames.shape[0])
        for i, f in enumerate(frames):
            streamer.push(f)
            # (no gc.collect: tensors must be freed by reference counting alone, no cycles)
            if i >= 2:
                alive = [r for r in refs[i - 2] if r() is not None]
                assert not alive, f"frame {i - 2} still holds {len(alive)} tensors"
        seq = streamer.finish()
    finally:
        del model.step
    assert seq.state_tokens.shape[0] == 6 and seq.state_tokens.data_ptr() != 0


def test_streamer_incremental_and_bad_frames(tiny):
    model, imgs, _ = tiny
    s = Cut3rStreamer(model)
    fr = s.push(imgs[0])
    assert fr.index == 0 and fr.state_tokens.shape == (20, 16)
    with pytest.raises(InputError, match="same size"):
        s.push(torch.zeros(1, 3, 32, 64))
    with pytest.raises(InputError, match=r"\[1, 3, h, w\]"):
        s.push(torch.zeros(2, 3, 48, 64))
    assert s.finish().num_frames == 1
    with pytest.raises(InputError, match="No frames"):
        Cut3rStreamer(model).finish()
    with pytest.raises(InputError, match="no frames"):
        encode_frames(model, torch.zeros(0, 3, 48, 64))
    with pytest.raises(InputError):
        StreamOptions(world_points="nope")


def test_encode_video_from_comfy_images(tiny):
    model, _, inputs = tiny
    frames = inputs["img_uint8"].float() / 255  # [3, 48, 64, 3] in [0, 1]
    seq = encode_video(model, frames[:1], size=224)  # a single frame is a valid video
    assert seq.num_frames == 1 and seq.image_size == (224, 224)
    assert seq.crop.input_size == (64, 48)
    K_in = seq.crop.intrinsics_to_input(seq.K)
    assert K_in.shape == (1, 3, 3) and torch.isfinite(K_in).all()
    depth_in = seq.crop.map_to_input(seq.depth[:, None])
    assert depth_in.shape == (1, 1, 48, 64)
    # point colours are the model-input pixels
    assert seq.colors.shape == (1, 224, 224, 3) and seq.colors.dtype == torch.uint8
    traj = seq.trajectory(fps=8)
    assert (traj.width, traj.height) == (64, 48) and torch.allclose(traj.c2w.float(), seq.c2w, atol=1e-5)
    cloud = seq.point_cloud(min_conf=1.5, pixel_stride=2)
    n = int((seq.conf_world[:, ::2, ::2] >= 1.5).sum())
    assert len(cloud) == n and cloud.rgb.shape == (n, 3) and bool((cloud.conf >= 1.5).all())


def test_model_state_controls(tiny):
    model, imgs, _ = tiny
    with torch.inference_mode():
        st0 = model.init_state(1)
        st1 = model.step(st0, imgs[:1]).state
        kept = model.step(st1, imgs[1:2], update=False).state
        assert torch.equal(kept.tokens, st1.tokens) and torch.equal(kept.mem, st1.mem)
        assert kept.frames_seen == 2
        reset = model.step(st1, imgs[1:2], reset=True).state
        assert torch.equal(reset.tokens, st0.tokens)
        ray = torch.randn(1, 6, 48, 64)
        out = model.query_ray_map(st1, ray)
        assert out["pts3d_in_self_view"].shape == (1, 48, 64, 3)
        # a ray-map-only frame reads the state but (as in the official demo) does not update it
        st2 = model.step(st1, ray_map=ray).state
        assert torch.equal(st2.tokens, st1.tokens)


def test_half_precision_trunk_runs_and_stays_close(tiny):
    model, imgs, _ = tiny
    ref = encode_frames(model, imgs)
    import copy
    half = copy.deepcopy(model).set_dtype(torch.bfloat16)
    assert half.enc_blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert half.downstream_head.dpt_self.head[0].weight.dtype == torch.float32
    seq = encode_frames(half, imgs)
    assert seq.pts3d_world.dtype == torch.float32 and torch.isfinite(seq.pts3d_world).all()
    assert (seq.pts3d_world - ref.pts3d_world).abs().max() < 0.5


def test_focal_estimate_recovers_a_pinhole():
    h, w, f = 30, 40, 35.0
    uv = pixel_centres(h, w)
    z = torch.rand(h, w) + 0.5
    pts = torch.stack(((uv[..., 0] - w / 2) / f * z, (uv[..., 1] - h / 2) / f * z, z), -1)[None]
    clean = estimate_focal(pts)[0].item()
    assert abs(clean - f) < 1e-3
    pts[0, :3] += torch.randn(3, w, 3) * 0.3  # 10% of the points off their rays
    pts[0, 3, :5, 2] = 1e-4  # and a few at almost zero depth
    assert abs(estimate_focal(pts)[0].item() - f) < 0.5
    c2w = pose_to_c2w(torch.tensor([[1.0, 2.0, 3.0, 1.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(c2w[0], torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]]))
