"""The re-render pipeline (ReCamMaster sampling on VAE latents) and the video-model loader, on tiny models."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from lavr_core.camera.builder import build_preset
from lavr_core.errors import CheckpointError, InputError, TrajectoryError
from lavr_core.wan.bundle import VideoModel, infer_vae_config, load_video_model, load_video_vae
from lavr_core.wan.rerender import camera_velocity, plan_frames, rerender, used_frame_count
from lavr_core.wan.sampling import SamplerSettings
from lavr_core.wan.vae import WAN21_VAE, WanVAE

_TINY = Path(__file__).resolve().parents[1] / "integration" / "tiny_wan.py"
_spec = importlib.util.spec_from_file_location("lavr_tiny_wan_for_unit_tests", _TINY)
tiny_wan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_wan)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("wan_models")
    dit, cam, vae = tiny_wan.write(d)
    return {"dit": dit, "cam": cam, "vae": vae, "dir": d}


@pytest.fixture(scope="module")
def recam(files):
    return load_video_model(files["dit"], files["vae"], recammaster_path=files["cam"], dit_dtype=torch.float32,
                            vae_dtype=torch.float32)


def _video(frames=17, size=(64, 64), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(frames, size[0], size[1], 3, generator=g)


def _traj(frames=17, w=64, h=64, preset="recammaster_arc_left"):
    return build_preset(preset, num_frames=frames, width=w, height=h, fov_deg=60.0, fps=16.0)


def _cond(n=7, width=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, n, width, generator=g), {"pooled_output": None}]]


# ----------------------------------------------------------------------------- frame plans

def test_used_frame_count():
    assert [used_frame_count(n) for n in (5, 6, 8, 9, 17, 20, 81, 83)] == [5, 5, 5, 9, 17, 17, 81, 81]


def test_plan_matching_counts_is_unchanged():
    traj = _traj(17, 832, 480)
    plan = plan_frames(_video(17), traj)
    assert (plan.num_frames, plan.num_latent_frames, plan.latent_hw) == (17, 5, (8, 8))
    assert plan.notes == ()
    assert torch.allclose(plan.trajectory.c2w, traj.c2w, atol=1e-12, rtol=0)
    assert (plan.trajectory.width, plan.trajectory.height) == (64, 64)  # intrinsics follow the video size
    assert torch.allclose(plan.trajectory.K[0, 0, 0], traj.K[0, 0, 0] * 64 / 832)


def test_plan_trims_video_and_same_length_trajectory_alike():
    traj = _traj(20)
    plan = plan_frames(_video(20), traj)
    assert plan.num_frames == 17 and plan.input_frames == 20
    assert torch.allclose(plan.trajectory.c2w, traj.c2w[:17], atol=1e-12, rtol=0)  # the same frames, not resampled
    assert any("first 17 of 20" in n for n in plan.notes) and any("Trimmed" in n for n in plan.notes)


def test_plan_resamples_other_lengths_or_refuses():
    traj = _traj(9)
    plan = plan_frames(_video(17), traj)
    assert plan.trajectory.num_frames == 17 and any("Resampled" in n for n in plan.notes)
    assert torch.allclose(plan.trajectory.c2w[0], traj.c2w[0]) and torch.allclose(plan.trajectory.c2w[-1], traj.c2w[-1])
    with pytest.raises(TrajectoryError, match="9 cameras but the video has 17") as e:
        plan_frames(_video(17), traj, trajectory_fit="error")
    assert "17" in e.value.hint and "frames" in e.value.hint


@pytest.mark.parametrize("frames,size,match", [
    (3, (64, 64), "3 frames; re-rendering needs at least 5"),
    (1, (64, 64), "1 frame;"),
    (17, (60, 64), "64x60 pixels"),
    (17, (64, 72), "multiples of 16"),
])
def test_bad_videos_are_refused(frames, size, match):
    with pytest.raises(InputError, match=match) as e:
        plan_frames(_video(frames, size), _traj(frames))
    assert e.value.hint


def test_odd_size_hint_names_a_size():
    with pytest.raises(InputError) as e:
        plan_frames(_video(17, (60, 100)), _traj(17))
    assert "96x48" in e.value.hint


def test_nan_video_and_nan_trajectory_are_refused():
    vid = _video(17)
    vid[3, 2, 2, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        plan_frames(vid, _traj(17))
    traj = _traj(17)
    bad = traj.c2w.clone()
    bad[4, 0, 3] = float("nan")
    object.__setattr__(traj, "c2w", bad)  # trajectories validate on construction; this one was tampered with
    with pytest.raises(TrajectoryError, match="NaN"):
        plan_frames(_video(17), traj)


# ----------------------------------------------------------------------------- sampling pieces

class _Recorder(torch.nn.Module):
    """A DiT stand-in that records its inputs and returns a velocity that differs per half and per branch."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, context, cam_emb=None, **kw):
        self.calls.append((x.clone(), t.clone(), context, cam_emb, kw))
        f = x.shape[2] // 2
        out = torch.zeros_like(x)
        out[:, :, :f] = context.mean() + 0.1 * x[:, :, :f]
        out[:, :, f:] = 1000.0  # the source half of the prediction must never reach the sample
        return out


def test_velocity_sees_target_then_source_and_returns_target_half():
    dit = _Recorder()
    src = torch.randn(1, 16, 3, 2, 2)
    x = torch.randn(1, 16, 3, 2, 2)
    cam = torch.randn(1, 3, 12)
    pos, neg = torch.ones(1, 4, 8), -torch.ones(1, 4, 8)
    v = camera_velocity(dit, src, cam, pos, neg)(x, torch.tensor([500.0]), True)
    xin, _, ctx, cam_in, _ = dit.calls[0]
    assert xin.shape[2] == 6 and torch.equal(xin[:, :, :3], x) and torch.equal(xin[:, :, 3:], src)
    assert ctx is pos and cam_in is cam
    assert torch.allclose(v, 1.0 + 0.1 * x)
    camera_velocity(dit, src, cam, pos, neg)(x, torch.tensor([500.0]), False)
    assert dit.calls[1][2] is neg and dit.calls[1][3] is cam  # CFG's negative pass keeps source and camera


def _stub_model(dit, vae_calls):
    class StubVAE(torch.nn.Module):
        config = WAN21_VAE

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def encode(self, video):
            vae_calls.append("encode")
            t = (video.shape[2] - 1) // 4 + 1
            return torch.full((1, 16, t, video.shape[3] // 8, video.shape[4] // 8), 0.5)

        def decode(self, z):
            vae_calls.append("decode")
            return torch.zeros(1, 3, 4 * (z.shape[2] - 1) + 1, z.shape[3] * 8, z.shape[4] * 8)

    cfg = tiny_wan.dit_config(camera=True)
    return VideoModel(dit=dit, vae=StubVAE(), variant="recammaster", config=cfg, dit_dtype=torch.float32,
                      vae_dtype=torch.float32)


@pytest.mark.parametrize("cfg,calls_per_step", [(1.0, 1), (3.0, 2)])
def test_cfg_one_skips_the_negative_pass_and_source_stays_clean(cfg, calls_per_step):
    dit, vae_calls = _Recorder(), []
    model = _stub_model(dit, vae_calls)
    res = rerender(model, _video(9, (32, 32)), _traj(9, 32, 32), _cond(), _cond(seed=2),
                   SamplerSettings(steps=4, cfg=cfg))
    assert len(dit.calls) == 4 * calls_per_step
    assert vae_calls == ["encode", "decode"]
    for xin, t, ctx, cam, _ in dit.calls:
        assert torch.equal(xin[:, :, 3:], torch.full((1, 16, 3, 4, 4), 0.5))  # source latents, clean every step
        assert ctx.shape == (1, 512, 32) and cam.shape == (1, 3, 12)
        assert t.dtype == torch.float32 and t.item() == t.to(torch.bfloat16).float().item()  # bf16-rounded
    assert torch.isfinite(res.latents).all() and res.latents.abs().max() < 100  # the 1000s of the source half never leak
    assert res.images.shape == (9, 32, 32, 3)


def test_wrong_width_conditioning_fails_before_any_model_runs():
    dit, vae_calls = _Recorder(), []
    model = _stub_model(dit, vae_calls)
    with pytest.raises(InputError, match="48 wide") as e:
        rerender(model, _video(9, (32, 32)), _traj(9, 32, 32), _cond(width=48), _cond(), SamplerSettings(steps=2))
    assert "CLIPLoader" in e.value.hint and "wan" in e.value.hint
    assert vae_calls == [] and dit.calls == []
    with pytest.raises(InputError, match="negative"):
        rerender(model, _video(9, (32, 32)), _traj(9, 32, 32), _cond(), _cond(width=4096), SamplerSettings(steps=2))


def test_plain_wan_is_refused_with_the_loader_fix(files):
    model = load_video_model(files["dit"], files["vae"], dit_dtype=torch.float32)
    assert model.variant == "wan_t2v" and not model.has_camera
    with pytest.raises(InputError, match="camera-controlled") as e:
        rerender(model, _video(9, (32, 32)), _traj(9, 32, 32), _cond(), _cond(), SamplerSettings(steps=1))
    assert "recammaster_ckpt" in e.value.hint


# ----------------------------------------------------------------------------- the whole pipeline

def _reference(model, images, traj, pos, neg, steps, cfg, shift, seed):
    """ReCamMaster inference written out by hand (DiffSynth's pipeline semantics), without the shared loop."""
    dit, vae = model.dit, model.vae
    video = images.permute(3, 0, 1, 2)[None] * 2 - 1
    src = vae.encode(video)
    f = src.shape[2]
    c2w = traj.c2w
    rel = torch.linalg.inv(c2w[0]) @ c2w[::4]
    rel[0] = torch.eye(4, dtype=rel.dtype)
    cam = rel[:, :3, :].reshape(1, f, 12).float()
    ctx_p = torch.zeros(1, 512, 32)
    ctx_p[:, : pos.shape[1]] = pos
    ctx_n = torch.zeros(1, 512, 32)
    ctx_n[:, : neg.shape[1]] = neg
    s = torch.linspace(1.0, 0.0, steps + 1)[:-1]
    s = shift * s / (1 + (shift - 1) * s)
    x = torch.randn(src.shape, generator=torch.Generator().manual_seed(seed))
    for i in range(steps):
        t = (s[i] * 1000).to(torch.bfloat16).float().reshape(1)
        vp = dit(torch.cat([x, src], 2), t, ctx_p, cam_emb=cam)[:, :, :f]
        vn = dit(torch.cat([x, src], 2), t, ctx_n, cam_emb=cam)[:, :, :f]
        v = vn + cfg * (vp - vn)
        nxt = s[i + 1] if i + 1 < steps else torch.tensor(0.0)
        x = x + v * (nxt - s[i])
    return x, vae.decode(x)


def test_rerender_equals_hand_written_reference(recam):
    images, traj = _video(17), _traj(17)
    pos, neg = _cond(7), _cond(5, seed=3)
    settings = SamplerSettings(steps=3, cfg=2.5, shift=5.0, seed=11)
    with torch.inference_mode():
        res = rerender(recam, images, traj, pos, neg, settings)
        ref_lat, ref_video = _reference(recam, images, traj, pos[0][0], neg[0][0], 3, 2.5, 5.0, 11)
    assert res.latents.shape == (1, 16, 5, 8, 8)
    assert torch.allclose(res.latents, ref_lat, atol=1e-5, rtol=1e-5), (res.latents - ref_lat).abs().max()
    ref_images = ((ref_video[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)
    assert torch.allclose(res.images, ref_images, atol=1e-5)
    assert res.images.shape == (17, 64, 64, 3) and res.trajectory.num_frames == 17


def test_camera_path_and_seed_change_the_result(recam):
    images = _video(9, (32, 32))
    settings = SamplerSettings(steps=2, cfg=1.0, seed=0)
    with torch.inference_mode():
        a = rerender(recam, images, _traj(9, 32, 32, "recammaster_arc_left"), _cond(), _cond(), settings).latents
        b = rerender(recam, images, _traj(9, 32, 32, "recammaster_arc_right"), _cond(), _cond(), settings).latents
        c = rerender(recam, images, _traj(9, 32, 32, "recammaster_arc_left"), _cond(), _cond(), settings).latents
        d = rerender(recam, images, _traj(9, 32, 32, "recammaster_arc_left"), _cond(), _cond(),
                     SamplerSettings(steps=2, cfg=1.0, seed=1)).latents
    assert torch.equal(a, c)
    assert (a - b).abs().max() > 1e-3 and (a - d).abs().max() > 1e-2


def test_denoise_starts_from_the_source(recam):
    images = _video(9, (32, 32))
    with torch.inference_mode():
        src = recam.vae.encode(images.permute(3, 0, 1, 2)[None] * 2 - 1)
        low = rerender(recam, images, _traj(9, 32, 32), _cond(), _cond(), SamplerSettings(steps=4, cfg=1.0, denoise=0.05))
        full = rerender(recam, images, _traj(9, 32, 32), _cond(), _cond(), SamplerSettings(steps=4, cfg=1.0))
    assert (low.latents - src).abs().mean() < 0.5 * (full.latents - src).abs().mean()


def test_place_is_used_for_each_stage_in_order(recam):
    order = []

    @contextlib.contextmanager
    def place(part):
        order.append(part)
        yield recam.part(part)

    with torch.inference_mode():
        rerender(recam, _video(9, (32, 32)), _traj(9, 32, 32), _cond(), _cond(), SamplerSettings(steps=1),
                 place=place, scene=object())
    assert order == ["vae", "dit", "vae"]  # never DiT and VAE at once


def test_scene_latent_note_without_adapter(recam):
    with torch.inference_mode():
        res = rerender(recam, _video(9, (32, 32)), _traj(9, 32, 32), _cond(), _cond(), SamplerSettings(steps=1),
                       scene=object())
    assert any("scene latent is not used" in n for n in res.notes)


# ----------------------------------------------------------------------------- loading

def test_complete_recammaster_checkpoint_is_used_alone(files, recam):
    _, full = tiny_wan.dit_state_dicts()
    assert recam.variant == "recammaster" and recam.has_camera and recam.text_dim == 32
    assert any("were not needed" in n for n in recam.notes)
    sd = recam.dit.state_dict()
    for k in ("blocks.1.cam_encoder.weight", "blocks.0.projector.weight", "head.head.weight"):
        ref = full[k].to(torch.bfloat16 if ".cam_encoder." not in k and ".projector." not in k else torch.float32)
        assert torch.equal(sd[k], ref.float()), k
    assert recam.files == {"dit": tiny_wan.DIT_FILE, "vae": tiny_wan.VAE_FILE, "recammaster": "step20000.ckpt"}


def test_partial_recammaster_checkpoint_goes_over_the_base(files, tmp_path):
    ckpt = torch.load(files["cam"], weights_only=True)
    part = {k: v for k, v in ckpt.items() if ".cam_encoder." in k or ".projector." in k or ".self_attn." in k}
    torch.save(part, tmp_path / "partial.ckpt")
    m = load_video_model(files["dit"], files["vae"], recammaster_path=tmp_path / "partial.ckpt", dit_dtype=torch.float32)
    assert m.variant == "recammaster" and any("rest come from" in n for n in m.notes)
    sd = m.dit.state_dict()
    assert torch.equal(sd["blocks.0.self_attn.q.weight"], ckpt["blocks.0.self_attn.q.weight"].float())
    from safetensors.torch import load_file
    base = load_file(str(files["dit"]))
    assert torch.equal(sd["blocks.0.ffn.0.weight"], base["blocks.0.ffn.0.weight"].float())


def test_prefixed_and_fp8_base_files_load(files, tmp_path):
    from safetensors.torch import load_file, save_file

    base = load_file(str(files["dit"]))
    save_file({f"model.diffusion_model.{k}": v for k, v in base.items()}, str(tmp_path / "prefixed.safetensors"))
    m = load_video_model(tmp_path / "prefixed.safetensors", files["vae"], dit_dtype=torch.float32)
    assert torch.equal(m.dit.state_dict()["head.head.weight"], base["head.head.weight"].float())
    save_file({k: v.to(torch.float8_e4m3fn) for k, v in base.items()}, str(tmp_path / "fp8.safetensors"))
    m8 = load_video_model(tmp_path / "fp8.safetensors", files["vae"])
    assert m8.dit_dtype == torch.bfloat16 and m8.variant == "wan_t2v"
    w = m8.dit.state_dict()["blocks.0.ffn.0.weight"].float()
    assert torch.allclose(w, base["blocks.0.ffn.0.weight"].float(), atol=0.02, rtol=0.13)


def test_wrong_files_name_the_fix(files, tmp_path):
    with pytest.raises(CheckpointError, match="the Wan VAE") as e:
        load_video_model(files["vae"], files["vae"])
    assert "diffusion_models" in e.value.hint
    with pytest.raises(CheckpointError, match="ReCamMaster checkpoint") as e:
        load_video_model(files["cam"], files["vae"])
    assert "recammaster_ckpt" in e.value.hint
    with pytest.raises(CheckpointError, match="no camera layers"):
        load_video_model(files["dit"], files["vae"], recammaster_path=files["dit"])
    with pytest.raises(CheckpointError, match="not a Wan2.1 VAE|not a Wan"):
        load_video_model(files["dit"], files["dit"])
    from safetensors.torch import load_file, save_file

    i2v = load_file(str(files["dit"]))
    i2v["blocks.0.cross_attn.k_img.weight"] = torch.zeros(128, 128, dtype=torch.float16)
    save_file(i2v, str(tmp_path / "i2v.safetensors"))
    with pytest.raises(CheckpointError, match="image-to-video"):
        load_video_model(tmp_path / "i2v.safetensors", files["vae"])
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(files["cam"].read_bytes()[:2000])
    with pytest.raises(CheckpointError):
        load_video_model(files["dit"], files["vae"], recammaster_path=cut)


def test_vae_config_is_inferred():
    with torch.device("meta"):
        real = WanVAE(WAN21_VAE)
    assert infer_vae_config(real.state_dict()) is WAN21_VAE
    cfg = infer_vae_config(tiny_wan.vae_state_dict())
    assert (cfg.dim, cfg.num_res_blocks, cfg.z_dim) == (8, 1, 16)


def test_vae_round_trip_shapes(files):
    vae = load_video_vae(files["vae"], dtype=torch.float32)
    with torch.inference_mode():
        z = vae.encode(torch.rand(1, 3, 9, 32, 48) * 2 - 1)
        assert z.shape == (1, 16, 3, 4, 6)
        assert vae.decode(z).shape == (1, 3, 9, 32, 48)


# ----------------------------------------------------------------------------- LaVR adapter

def test_adapter_plumbing_with_a_stand_in_module(files, monkeypatch):
    """The loader imports ``lavr_core.lavr`` lazily and the pipeline passes ``condition_kwargs`` to the DiT.
    A stand-in module checks that contract (the real adapter has its own tests)."""
    seen = {}

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def condition_kwargs(self, scene, cam_emb, num_latent_frames, latent_hw):
            seen["args"] = (scene, cam_emb.shape, num_latent_frames, latent_hw)
            return {"scene_bias": torch.tensor(0.25)}

        def forward(self, x, timestep, context, cam_emb=None, scene_bias=None):
            seen["bias"] = scene_bias
            return self.inner(x, timestep, context, cam_emb=cam_emb) + scene_bias

    fake = types.ModuleType("lavr_core.lavr")
    fake.attach_adapter = lambda model, path: (seen.setdefault("path", Path(path)), Wrapped(model))[1]
    monkeypatch.setitem(sys.modules, "lavr_core.lavr", fake)
    m = load_video_model(files["dit"], files["vae"], recammaster_path=files["cam"], adapter_path=files["dit"],
                         dit_dtype=torch.float32, vae_dtype=torch.float32)
    assert m.variant == "lavr" and seen["path"] == files["dit"]
    with pytest.raises(InputError, match="scene latent"):
        rerender(m, _video(9, (32, 32)), _traj(9, 32, 32), _cond(), _cond(), SamplerSettings(steps=1))

    class Scene:
        num_frames = 9

    with torch.inference_mode():
        rerender(m, _video(9, (32, 32)), _traj(9, 32, 32), _cond(), _cond(), SamplerSettings(steps=1), scene=Scene)
    assert seen["args"][0] is Scene and seen["args"][1:] == ((1, 3, 12), 3, (4, 4))
    assert float(seen["bias"]) == 0.25
    Scene.num_frames = 17
    with pytest.raises(InputError, match="encoded from 17 frames"):
        rerender(m, _video(9, (32, 32)), _traj(9, 32, 32), _cond(), _cond(), SamplerSettings(steps=1), scene=Scene)


def test_adapter_without_lavr_code_is_a_clear_error(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "lavr_core.lavr", None)  # import fails as when the package is absent
    with pytest.raises(CheckpointError, match="no LaVR adapter code") as e:
        load_video_model(files["dit"], files["vae"], recammaster_path=files["cam"], adapter_path=files["dit"])
    assert "lavr_adapter to none" in e.value.hint


def test_real_lavr_adapter_file_loads_and_conditions_the_render(files, recam, tmp_path):
    if importlib.util.find_spec("lavr_core.lavr") is None:
        pytest.skip("lavr_core.lavr (the LaVR adapter, another work package) is not in this checkout yet")
    from lavr_core.lavr import LavrAdapterConfig, SceneTokens, attach_adapter, save_adapter

    cfg = LavrAdapterConfig.for_model(recam.config, state_dim=16, state_tokens=8, hidden=32, num_heads=2,
                                      num_layers=1, pos_freqs=4)
    lavr = attach_adapter(recam.dit, None, config=cfg)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a trained adapter's outputs are not zero: give this one random weights
        for p in lavr.adapter.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    path = save_adapter(lavr, tmp_path / "lavr_tiny.safetensors")
    m = load_video_model(files["dit"], files["vae"], recammaster_path=files["cam"], adapter_path=path,
                         dit_dtype=torch.float32, vae_dtype=torch.float32)
    assert m.variant == "lavr" and m.files["adapter"] == "lavr_tiny.safetensors"
    scene = SceneTokens(state_tokens=torch.randn(3, 8, 16, generator=g), state_frames=[0, 4, 8],
                        source_c2w=torch.eye(4, dtype=torch.float64).expand(9, 4, 4).clone())
    args = (_video(9, (32, 32)), _traj(9, 32, 32), _cond(), _cond())
    settings = SamplerSettings(steps=2, cfg=1.0)
    with torch.inference_mode():
        with_scene = rerender(m, *args, settings, scene=scene)
        plain = rerender(recam, *args, settings)
    assert with_scene.images.shape == plain.images.shape == (9, 32, 32, 3)
    assert torch.isfinite(with_scene.latents).all()
    assert (with_scene.latents - plain.latents).abs().max() > 1e-4  # the scene reaches the DiT
