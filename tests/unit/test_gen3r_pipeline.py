"""Gen3R pipeline on tiny random models: schedule, control inputs, CFG, camera, offloading, files, errors."""

import json
import sys
from pathlib import Path

import pytest
import torch

from lavr_core.camera import CameraTrajectory
from lavr_core.errors import CheckpointError, InputError, TrajectoryError
from lavr_core.gen3r.files import find_gen3r_files, load_gen3r
from lavr_core.gen3r.heads import heads_from_state_dict
from lavr_core.gen3r.pipeline import (ModelPlacer, camera_control, check_images, control_mask, control_video,
                                      gen3r_settings, generate, square_trajectory)
from lavr_core.gen3r.schedule import DiffusersFlowMatchScheduler
from lavr_core.wan.scheduler import FlowMatchScheduler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from tiny_gen3r import tiny_models, tiny_parts, write_folder  # noqa: E402

GEN3R = Path(__file__).resolve().parents[2].parent / "shared/reference" / "gen3r"
FRAMES = 9  # 3 latent frames
SIZE = 112  # the tiny adapter's 8 x 8 token grid


@pytest.fixture(scope="module")
def models(one_thread):
    return tiny_models(seed=0)


def _traj(n=FRAMES, width=832, height=480):
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    c2w[:, 0, 3] = torch.linspace(0, 0.5, n, dtype=torch.float64)
    K = torch.tensor([[400.0, 0, width / 2], [0, 400.0, height / 2], [0, 0, 1]], dtype=torch.float64)
    return CameraTrajectory(c2w=c2w, K=K, width=width, height=height)


def _record_dit(models, monkeypatch):
    calls = []
    forward = type(models.dit).forward

    def spy(self, x, t, context, **kw):
        calls.append({"context": context.clone(), "t": float(t.reshape(-1)[0]), **{k: v for k, v in kw.items()}})
        return forward(self, x, t, context, **kw)

    monkeypatch.setattr(type(models.dit), "forward", spy)
    return calls


# ----------------------------------------------------------------------------- schedule

@pytest.mark.skipif(not GEN3R.is_dir(), reason="Gen3R reference data not present")
def test_schedule_matches_reference_and_differs_from_diffsynth():
    ref = json.loads((GEN3R / "scheduler.json").read_text())
    s = DiffusersFlowMatchScheduler(shift=2.0)
    s.set_timesteps(50)
    torch.testing.assert_close(s.timesteps, torch.tensor(ref["timesteps"]), rtol=0, atol=1e-4)
    torch.testing.assert_close(s.sigmas, torch.tensor(ref["sigmas_incl_terminal_0"][:-1]), rtol=0, atol=1e-7)
    assert float(s.sigma_next(49)) == 0.0
    w = FlowMatchScheduler(shift=2.0)
    w.set_timesteps(50)
    assert (w.timesteps - s.timesteps).abs().max() > 30  # DiffSynth's grid is not Gen3R's


def test_schedule_matches_diffusers_for_other_counts():
    from diffusers import FlowMatchEulerDiscreteScheduler

    d = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
    s = DiffusersFlowMatchScheduler(shift=3.0)
    for n in (1, 7, 30):
        d.set_timesteps(n)
        s.set_timesteps(n)
        torch.testing.assert_close(s.timesteps, d.timesteps, rtol=0, atol=0)
    s.set_timesteps(10, denoise=0.5)
    assert len(s.timesteps) == 5
    with pytest.raises(InputError):
        s.set_timesteps(0)


# ----------------------------------------------------------------------------- control inputs

def test_control_mask_first_and_first_last():
    m1 = control_mask(1, FRAMES, 2, 3)
    assert m1.shape == (1, 4, 3, 2, 6)
    assert (m1[0, :, 0, :, :3] == 1).all() and (m1[0, :, 0, :, 3:] == 0).all()  # frame 0 four times, left only
    assert m1[0, :, 1:].sum() == 0
    m2 = control_mask(2, FRAMES, 2, 3)
    # the last frame (8) is latent frame 2, channel 3 (frames 5..8 fold into latent frame 2)
    assert (m2[0, 3, 2, :, :3] == 1).all() and m2[0, :3, 2].sum() == 0 and (m2[0, :, 2, :, 3:] == 0).all()
    assert torch.equal(m2[0, :, :2], m1[0, :, :2])


def test_control_video_puts_images_at_first_and_last():
    imgs = torch.rand(2, 3, 16, 16)
    v = control_video(imgs, FRAMES)
    assert v.shape == (1, 3, FRAMES, 16, 16)
    torch.testing.assert_close(v[0, :, 0], imgs[0] * 2 - 1)
    torch.testing.assert_close(v[0, :, -1], imgs[1] * 2 - 1)
    assert (v[0, :, 1:-1] == -1).all()  # black, as the official zeros in [0, 1]


def test_camera_free_is_zero_and_trajectory_is_cropped():
    free = camera_control(None, FRAMES, SIZE)
    assert free.shape == (1, 24, 3, SIZE, 2 * SIZE) and not free.any()
    cam = camera_control(_traj(), FRAMES, SIZE)
    assert cam.shape == free.shape and cam.abs().sum() > 0
    torch.testing.assert_close(cam[..., :SIZE], cam[..., SIZE:])  # one copy per half
    sq = square_trajectory(_traj(), SIZE)
    assert (sq.width, sq.height) == (SIZE, SIZE)
    rw = round(832 * SIZE / 480)  # the width the images are resized to before the centre crop
    want = [[400 * rw / 832, 0, 416 * rw / 832 - (rw - SIZE) // 2], [0, 400 * SIZE / 480, SIZE / 2], [0, 0, 1]]
    torch.testing.assert_close(sq.K[0], torch.tensor(want, dtype=torch.float64))
    with pytest.raises(TrajectoryError, match="5 frames; the video has 9"):
        camera_control(_traj(5), FRAMES, SIZE)


def test_check_images_errors():
    assert check_images(torch.rand(1, 30, 40, 3), torch.rand(1, 30, 40, 3)).shape == (2, 30, 40, 3)
    with pytest.raises(InputError, match="same size"):
        check_images(torch.rand(1, 30, 40, 3), torch.rand(1, 40, 30, 3))
    with pytest.raises(InputError, match="holds 3 frames"):
        check_images(torch.rand(3, 30, 40, 3))
    with pytest.raises(InputError, match="NaN"):
        check_images(torch.full((1, 30, 40, 3), float("nan")))


# ----------------------------------------------------------------------------- generate

def test_generate_outputs_free_camera_and_cfg(models, monkeypatch):
    calls = _record_dit(models, monkeypatch)
    ctx, neg = torch.randn(1, 5, 32), torch.randn(1, 3, 32)
    img = torch.rand(1, 60, 80, 3)
    r = generate(models, img, ctx, negative_context=neg, num_frames=FRAMES, settings=gen3r_settings(steps=2, seed=3))
    assert r.frames.shape == (FRAMES, SIZE, SIZE, 3) and 0 <= r.frames.min() and r.frames.max() <= 1
    assert r.depth.shape == (FRAMES, SIZE, SIZE) and (r.depth > 0).all()
    assert r.points.shape == (FRAMES, SIZE, SIZE, 3) and r.point_mask.any()
    assert r.c2w.shape == (FRAMES, 4, 4) and r.K.shape == (FRAMES, 3, 3) and torch.isfinite(r.K).all()
    assert r.latents.shape == (1, 16, 3, 14, 28)
    assert r.trajectory(12.0).num_frames == FRAMES
    cloud = r.point_cloud(max_points=500)
    assert len(cloud) == 500 and cloud.rgb is not None
    assert len(r.gaussians(max_gaussians=300)) == 300
    # CFG: two calls per step, positive then negative context, the same control for both
    assert len(calls) == 4
    assert torch.equal(calls[0]["context"][:, :5], ctx) and torch.equal(calls[1]["context"][:, :3], neg)
    torch.testing.assert_close(calls[0]["t"], 1000.0) and torch.testing.assert_close(calls[2]["t"], calls[3]["t"])
    for c in calls:
        assert c["y_camera"] is not None and not c["y_camera"].any()  # "free": zeros, not absent
        y = c["y"]
        assert y.shape == (1, 20, 3, 14, 28)
        assert not y[:, :16, :, :, 14:].any()  # no geometry control
        assert y[:, :16, 0, :, :14].abs().sum() > 0  # the first image's latent
        torch.testing.assert_close(y[:, 16:], control_mask(1, FRAMES, 14, 14))
    again = generate(models, img, ctx, negative_context=neg, num_frames=FRAMES,
                     settings=gen3r_settings(steps=2, seed=3))
    torch.testing.assert_close(again.frames, r.frames, rtol=0, atol=0)


def test_generate_with_trajectory_first_last_and_no_cfg(models, monkeypatch):
    calls = _record_dit(models, monkeypatch)
    img = torch.rand(2, 48, 64, 3)
    steps = []
    generate(models, img, torch.randn(1, 4, 32), trajectory=_traj(), num_frames=FRAMES,
             settings=gen3r_settings(steps=2, cfg=1.0), on_progress=lambda d, n: steps.append((d, n)))
    assert len(calls) == 2  # cfg 1: no negative branch
    assert calls[0]["y_camera"].abs().sum() > 0
    torch.testing.assert_close(calls[0]["y"][:, 16:], control_mask(2, FRAMES, 14, 14))
    assert steps[-1] == (6, 6) and len(steps) == 6  # encode, 2 steps, 3 decode stages


def test_generate_errors(models):
    img, ctx = torch.rand(1, 48, 64, 3), torch.randn(1, 4, 32)
    with pytest.raises(TrajectoryError, match="frames"):
        generate(models, img, ctx, trajectory=_traj(13), num_frames=FRAMES, settings=gen3r_settings(steps=1))
    with pytest.raises(InputError, match="4k\\+1"):
        generate(models, img, ctx, num_frames=10, settings=gen3r_settings(steps=1))
    with pytest.raises(InputError, match="umT5"):
        generate(models, img, torch.randn(1, 4, 4096), num_frames=FRAMES, settings=gen3r_settings(steps=1))


def test_i2v_dit_needs_clip_features(one_thread):
    models = tiny_models(seed=1, image_dim=16)
    img, ctx = torch.rand(1, 48, 64, 3), torch.randn(1, 4, 32)
    with pytest.raises(InputError, match="CLIPVisionEncode"):
        generate(models, img, ctx, num_frames=5, settings=gen3r_settings(steps=1))
    with pytest.raises(InputError, match="clip_vision_h"):
        generate(models, img, ctx, clip_feature=torch.randn(1, 257, 1280), num_frames=5,
                 settings=gen3r_settings(steps=1))
    r = generate(models, img, ctx, clip_feature=torch.randn(1, 257, 16), num_frames=5, settings=gen3r_settings(steps=1))
    assert r.frames.shape == (5, SIZE, SIZE, 3)


# ----------------------------------------------------------------------------- offloading

def test_placer_one_part_at_a_time_unless_they_fit(models):
    parts = models.parts()
    lone = ModelPlacer()
    for name in ("vae", "dit", "vae", "adapter", "heads"):
        with lone.use(name, parts[name]):
            assert list(lone.resident) == [name]
    assert lone.max_resident == 1
    lone.release()
    assert not lone.resident and lone.history[-1] == ("offload", "heads")
    roomy = ModelPlacer(budget_bytes=10**12)
    for name in ("vae", "dit", "vae", "adapter", "heads"):
        with roomy.use(name, parts[name]):
            pass
    assert roomy.max_resident == 4 and not [h for h in roomy.history if h[0] == "offload"]
    roomy.release()
    assert len([h for h in roomy.history if h[0] == "offload"]) == 4


# ----------------------------------------------------------------------------- files

def test_folder_layout_loads_and_names_missing_files(tmp_path, one_thread):
    root = tmp_path / "Gen3R"
    write_folder(root, seed=2, image_dim=None)
    files = find_gen3r_files(root)
    m = load_gen3r(files)
    assert m.size == SIZE and not m.needs_clip and m.dit.config.num_heads == 2
    dit, adapter, vae, vggt = tiny_parts(seed=2, image_dim=None)
    for k, v in dit.state_dict().items():
        assert torch.equal(m.dit.state_dict()[k], v), k
    assert torch.equal(m.heads.depth_head.scratch.output_conv1.weight, vggt.depth_head.scratch.output_conv1.weight)
    (root / "vggt" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="vggt/model.safetensors"):
        find_gen3r_files(root)
    with pytest.raises(CheckpointError, match="does not exist"):
        find_gen3r_files(tmp_path / "nowhere")


def test_heads_are_vggts_own(one_thread):
    _, _, _, vggt = tiny_parts(seed=3)
    heads = heads_from_state_dict(vggt.state_dict())
    layers = [torch.randn(1, 2, 5 + 4, 64) for _ in range(4)]
    torch.testing.assert_close(heads.camera_head(layers)[-1], vggt.camera_head(layers)[-1])
    sd = {k: v for k, v in vggt.state_dict().items() if not k.startswith("depth_head.")}
    with pytest.raises(CheckpointError, match="depth_head"):
        heads_from_state_dict(sd)


def test_camera_features_are_computed_once_per_control_and_match_uncached():
    import torch

    from lavr_core.gen3r.conformance import load_fixture_dit
    import json
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[3] / "shared" / "reference" / "gen3r" / "tiny_dit"
    if not fixture.is_dir():
        import pytest
        pytest.skip("shared reference fixtures missing")
    dit = load_fixture_dit(fixture, json.loads((fixture / "config.json").read_text()))
    calls = []
    dit.control_adapter.register_forward_hook(lambda *a: calls.append(1))
    cam = torch.randn(1, 2, 2, 32, 64)
    tokens = torch.zeros(1, 16, dit.config.dim)
    grid = (2, 2, 4)
    with torch.inference_mode():
        a = dit.condition_tokens(tokens, grid, cam)
        b = dit.condition_tokens(tokens, grid, cam)
        assert len(calls) == 1 and torch.equal(a, b)
        c = dit.condition_tokens(tokens, grid, cam.clone() * 2)
        assert len(calls) == 2 and not torch.equal(a, c)
    with torch.no_grad():
        next(dit.control_adapter.parameters()).mul_(2)  # new weights must invalidate the cache
        d = dit.condition_tokens(tokens, grid, cam)
    assert len(calls) == 3 and not torch.equal(a, d)
