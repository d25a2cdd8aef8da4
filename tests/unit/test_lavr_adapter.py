"""LaVR scene-latent adapter: config, exact ReCamMaster without adapter, conditioning, weights layout."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lavr_core.errors import CheckpointError, InputError
from lavr_core.lavr import (FEATURES_KW, LATENTS_KW, LavrAdapter, LavrAdapterConfig, LavrModel, SceneTokens,
                            attach_adapter, frame_indices, read_adapter, save_adapter, snapshot_indices)
from lavr_core.wan.config import TINY
from lavr_core.wan.loading import build_model
from lavr_core.wan.recammaster import ReCamMasterModel, concat_target_source

pytestmark = pytest.mark.usefixtures("one_thread")

REF = Path("/work/shared/reference/recammaster/tiny")
S, D = 10, 24


def _base(seed=0) -> ReCamMasterModel:
    torch.manual_seed(seed)
    model = build_model(TINY)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _config(**kw) -> LavrAdapterConfig:
    return LavrAdapterConfig.for_model(TINY, state_dim=D, state_tokens=S, hidden=32, num_heads=2, num_layers=1,
                                       pos_freqs=4, **kw)


def _randomise(adapter: LavrAdapter, seed=5) -> LavrAdapter:
    """Give the zero-initialised output layers values, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in (adapter.out_proj, *adapter.source_out, *adapter.target_out):
            lin.weight.copy_(0.3 * torch.randn(lin.weight.shape, generator=g))
            lin.bias.copy_(0.1 * torch.randn(lin.bias.shape, generator=g))
    return adapter


def _scene(seed=0, frames=9, every=2) -> SceneTokens:
    g = torch.Generator().manual_seed(seed)
    kept = list(range(0, frames, every))
    c2w = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
    c2w[:, 0, 3] = torch.linspace(0, 0.5, frames, dtype=torch.float64)       # moving right
    return SceneTokens(torch.randn(len(kept), S, D, generator=g), kept, c2w)


def _inputs(F=3, h=8, w=12, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = concat_target_source(torch.randn(1, 4, F, h, w, generator=g), torch.randn(1, 4, F, h, w, generator=g))
    return x, torch.tensor([952.381]), torch.randn(1, 6, 32, generator=g), torch.randn(1, F, 12, generator=g)


# ------------------------------------------------------------------------------------------- config

def test_config_json_round_trip_and_validation():
    cfg = _config(query_stride=2, frames=5)
    assert LavrAdapterConfig.from_json(cfg.to_json()) == cfg
    assert json.loads(cfg.to_json())["version"] == 1
    assert (cfg.model_dim, cfg.model_layers, cfg.latent_channels, cfg.pose_dim) == (64, 2, 4, 12)
    default = LavrAdapterConfig()
    assert (default.latent_channels, default.pose_dim, default.state_dim, default.model_layers) == (16, 12, 768, 30)
    with pytest.raises(InputError, match="hidden"):
        LavrAdapterConfig(hidden=30, num_heads=4)
    with pytest.raises(InputError, match="frames=-1"):
        LavrAdapterConfig(frames=-1)
    with pytest.raises(CheckpointError, match="unknown fields"):
        LavrAdapterConfig.from_dict({**cfg.to_dict(), "extra": 1})
    with pytest.raises(CheckpointError, match="version"):
        LavrAdapterConfig.from_dict({**cfg.to_dict(), "version": 9})


def test_snapshot_and_frame_selection():
    # 81 frames, states every 4 frames, 21 latent frames: adapter frame j <- snapshot at frame 4j
    kept = list(range(0, 81, 4))
    assert snapshot_indices(kept, 81, 21) == list(range(21))
    assert frame_indices(81, 21) == list(range(0, 81, 4))
    # states every frame: still frame 4j; every 8 frames: the nearest kept one (earlier on ties)
    assert [list(range(81))[i] for i in snapshot_indices(list(range(81)), 81, 21)] == list(range(0, 81, 4))
    every8 = list(range(0, 81, 8))
    assert [every8[i] for i in snapshot_indices(every8, 81, 21)][:4] == [0, 0, 8, 8]
    assert snapshot_indices([0, 4, 8], 9, 1) == [0]


# ------------------------------------------------------------------------------- equality, shapes

def test_without_adapter_lavr_is_recammaster_bit_for_bit():
    base = _base()
    x, t, ctx, cam = _inputs()
    with torch.no_grad():
        ref = base(x, t, ctx, cam)
        plain = LavrModel.from_base(base)
        assert plain.adapter is None and plain.condition_kwargs(_scene(), cam, 3, (8, 12)) == {}
        assert torch.equal(plain(x, t, ctx, cam, **plain.condition_kwargs(_scene(), cam, 3, (8, 12))), ref)
        with_adapter = attach_adapter(base, _config())
        assert with_adapter.condition_kwargs(None, cam, 3, (8, 12)) == {}
        assert torch.equal(with_adapter(x, t, ctx, cam), ref)
    # the base keys are ReCamMaster's: its checkpoint loads strictly, and nothing was copied
    assert set(plain.state_dict()) == set(base.state_dict())
    assert plain.blocks[0].self_attn.q.weight is base.blocks[0].self_attn.q.weight
    assert type(base) is ReCamMasterModel and type(base.blocks[0]).__name__ == "ReCamMasterBlock"


@pytest.mark.skipif(not (REF / "weights.safetensors").is_file(), reason="ReCamMaster reference golden not present")
def test_recammaster_golden_through_lavr_model():
    """The public ReCamMaster golden, loaded strictly into the base of a LavrModel (no adapter)."""
    from lavr_core.wan.loading import model_from_state_dict

    base = model_from_state_dict(load_file(str(REF / "weights.safetensors")), TINY, dtype=torch.float32)
    model = LavrModel.from_base(base)
    i = load_file(str(REF / "inputs.safetensors"))
    with torch.no_grad():
        out = model(torch.cat([i["noisy_target_latents"], i["source_latents"]], 2), i["timestep"], i["context"],
                    i["cam_emb"])
    torch.testing.assert_close(out, load_file(str(REF / "outputs.safetensors"))["output"], atol=1e-4, rtol=1e-4)


def test_fresh_adapter_adds_zero_features_and_ignores_the_scene():
    base = _base()
    model = attach_adapter(base, _config())
    x, t, ctx, cam = _inputs()
    with torch.no_grad():
        kw = model.condition_kwargs(_scene(0), cam, 3, (8, 12))
        kw2 = model.condition_kwargs(_scene(1), cam, 3, (8, 12))
        assert kw[LATENTS_KW].shape == (1, 4, 3, 8, 12) and kw[FEATURES_KW].shape == (2, 1, 9, 64)
        assert not kw[LATENTS_KW].any() and not kw[FEATURES_KW].any()
        out = model(x, t, ctx, cam, **kw)
        assert out.shape == x.shape
        assert torch.equal(out, model(x, t, ctx, cam, **kw2))       # zero outputs: the scene cannot matter yet
        # The adapter frames are extra tokens, so this is ReCamMaster's prediction only approximately.
        ref = base(x, t, ctx, cam)
    assert 0 < float((out - ref).abs().max()) < 0.5


def test_trained_adapter_uses_state_tokens_and_poses():
    model = attach_adapter(_base(), _randomise(LavrAdapter(_config())))
    x, t, ctx, cam = _inputs()
    a = _scene(0)
    b = SceneTokens(_scene(1).state_tokens, a.state_frames, a.source_c2w)
    c = SceneTokens(a.state_tokens, a.state_frames, a.source_c2w.clone())
    c.source_c2w[1:, 1, 3] += 0.3
    with torch.no_grad():
        out = {k: model(x, t, ctx, cam, **model.condition_kwargs(s, cam, 3, (8, 12))) for k, s in
               (("a", a), ("b", b), ("c", c))}
        again = model(x, t, ctx, cam, **model.condition_kwargs(a, cam, 3, (8, 12)))
    assert torch.equal(out["a"], again)
    assert (out["a"] - out["b"]).abs().max() > 1e-3          # state tokens matter
    assert (out["a"] - out["c"]).abs().max() > 1e-3          # source poses matter
    assert out["a"].shape == x.shape


def test_adapter_frame_policies_and_query_stride():
    base = _base()
    for frames, stride, n in ((0, 1, 3), (5, 2, 5), (1, 4, 1)):
        model = attach_adapter(base, _randomise(LavrAdapter(_config(frames=frames, query_stride=stride))))
        x, t, ctx, cam = _inputs()
        with torch.no_grad():
            kw = model.condition_kwargs(_scene(), cam, 3, (8, 12))
            assert kw[LATENTS_KW].shape == (1, 4, n, 8, 12)
            assert kw[FEATURES_KW].shape[2] == 6 + n
            assert model(x, t, ctx, cam, **kw).shape == x.shape
    with pytest.raises(InputError, match="query stride 5"):
        attach_adapter(base, _config(query_stride=5)).condition_kwargs(_scene(), cam, 3, (8, 12))


def test_conditioning_is_differentiable():
    model = attach_adapter(_base(), _config())
    x, t, ctx, cam = _inputs()
    opt = torch.optim.Adam(model.adapter.parameters(), lr=1e-2)
    loss = model(x, t, ctx, cam, **model.condition_kwargs(_scene(), cam, 3, (8, 12))).square().mean()
    loss.backward()
    assert model.adapter.out_proj.weight.grad.abs().sum() > 0
    assert model.adapter.target_out[0].weight.grad.abs().sum() > 0
    opt.step()
    with torch.no_grad():
        kw = model.condition_kwargs(_scene(), cam, 3, (8, 12))
    assert kw[LATENTS_KW].any() and kw[FEATURES_KW].any()


def test_bad_inputs_give_clear_errors():
    model = attach_adapter(_base(), _config())
    x, t, ctx, cam = _inputs()
    wrong = SceneTokens(torch.randn(2, S + 1, D), [0, 4], torch.eye(4).double().repeat(9, 1, 1))
    with pytest.raises(InputError, match=f"{S + 1} tokens of width {D}"):
        model.condition_kwargs(wrong, cam, 3, (8, 12))
    with pytest.raises(InputError, match="3 target latent frames"):
        model.condition_kwargs(_scene(), cam[:, :2], 3, (8, 12))
    with pytest.raises(InputError, match="NaN"):
        SceneTokens(torch.full((1, S, D), float("nan")), [0], torch.eye(4).double()[None])
    with pytest.raises(InputError, match="snapshot"):
        SceneTokens(torch.randn(2, S, D), [0], torch.eye(4).double()[None])

    class NoState:
        state_tokens = None

    with pytest.raises(InputError, match="state_every"):
        model.condition_kwargs(NoState(), cam, 3, (8, 12))
    kw = model.condition_kwargs(_scene(), cam, 3, (8, 12))
    with pytest.raises(InputError, match="both"):
        model(x, t, ctx, cam, lavr_latents=kw[LATENTS_KW])
    with pytest.raises(InputError, match="frame count"):
        model(x[:, :, :4], t, ctx, cam[:, :2], **kw)


# ----------------------------------------------------------------------------------------- weights

def test_weights_round_trip_strictness_and_base_overrides(tmp_path):
    base = _base()
    model = attach_adapter(base, _randomise(LavrAdapter(_config())))
    with torch.no_grad():
        model.blocks[1].self_attn.q.weight.add_(0.0)                 # shared with base until overridden
    retrained = "blocks.1.self_attn.q.weight"
    new_q = torch.randn(64, 64)
    model_over = LavrModel.from_base(base, model.adapter, {retrained: new_q})
    assert torch.equal(model_over.blocks[1].self_attn.q.weight, new_q)
    assert not torch.equal(base.blocks[1].self_attn.q.weight, new_q)   # the base is untouched
    path = save_adapter(model_over, tmp_path / "lavr.safetensors", base_keys=[retrained], info={"step": 3})
    cfg, tensors, meta = read_adapter(path)
    assert cfg == model.adapter.config and meta["info"] == {"step": 3} and "Wan2.1" in meta["base_model"]
    assert all(k.startswith(("adapter.", "base.")) for k in tensors) and f"base.{retrained}" in tensors
    assert "adapter.out_proj.weight" in tensors and "adapter.source_out.1.weight" in tensors
    loaded = attach_adapter(base, path)
    x, t, ctx, cam = _inputs()
    with torch.no_grad():
        a = model_over(x, t, ctx, cam, **model_over.condition_kwargs(_scene(), cam, 3, (8, 12)))
        b = loaded(x, t, ctx, cam, **loaded.condition_kwargs(_scene(), cam, 3, (8, 12)))
    assert torch.equal(a, b)
    assert not torch.equal(base.blocks[1].self_attn.q.weight, new_q)

    # strict: a missing and an unexpected tensor are named
    broken = dict(tensors)
    broken.pop("adapter.out_proj.bias")
    broken["adapter.extra.weight"] = torch.zeros(2)
    save_file(broken, str(tmp_path / "broken.safetensors"), metadata={"format": "lavr_adapter", "format_version": "1",
                                                                      "config": cfg.to_json()})
    with pytest.raises(CheckpointError, match=r"missing: out_proj\.bias.*unexpected: extra\.weight"):
        attach_adapter(base, tmp_path / "broken.safetensors")
    stray = {**tensors, "blocks.0.self_attn.q.weight": torch.zeros(64, 64)}
    save_file(stray, str(tmp_path / "stray.safetensors"), metadata={"format": "lavr_adapter", "format_version": "1",
                                                                    "config": cfg.to_json()})
    with pytest.raises(CheckpointError, match="outside 'adapter.'"):
        attach_adapter(base, tmp_path / "stray.safetensors")
    bad_base = {**tensors, "base.blocks.9.self_attn.q.weight": torch.zeros(64, 64)}
    with pytest.raises(CheckpointError, match="blocks.9"):
        attach_adapter(base, bad_base, config=cfg)


def test_weights_errors_name_the_problem(tmp_path):
    base = _base()
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a LaVR adapter"):
        attach_adapter(base, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        attach_adapter(base, tmp_path / "missing.safetensors")
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a .safetensors"):
        attach_adapter(base, tmp_path / "w.ckpt")
    with pytest.raises(CheckpointError, match="another video model"):
        attach_adapter(base, LavrAdapterConfig(state_dim=D, state_tokens=S, hidden=32, num_heads=2))
    with pytest.raises(CheckpointError, match="ReCamMaster model"):
        attach_adapter(torch.nn.Linear(2, 2), _config())
    with pytest.raises(CheckpointError, match="config"):
        attach_adapter(base)


def test_scene_latent_from_tiny_cut3r_conditions_the_model():
    """The real path: CUT3R state tokens of a procedural source video -> SceneLatent -> adapter -> DiT."""
    from lavr_core.cut3r.conformance import fixture_model
    from lavr_core.cut3r.streaming import StreamOptions, encode_video
    from lavr_core.scene import SceneLatent
    from lavr_core.train.data_multicam import procedural_multicam_scene

    fixture = Path("/work/shared/reference/cut3r/tiny")
    if not (fixture / "weights.safetensors").is_file():
        pytest.skip("CUT3R tiny fixture not present")
    cut3r = fixture_model(fixture)
    video = procedural_multicam_scene(0, cameras=2, frames=5, height=64, width=64).videos["cam00"]
    seq = encode_video(cut3r, video.permute(0, 2, 3, 1), StreamOptions(state_every=2), size=224)
    scene = SceneLatent.from_cut3r(seq, fps=16.0)
    K, S_, D_ = scene.state_tokens.shape
    assert scene.state_frames == [0, 2, 4]
    cfg = LavrAdapterConfig.for_model(TINY, state_dim=D_, state_tokens=S_, hidden=32, num_heads=2, num_layers=1)
    model = attach_adapter(_base(), _randomise(LavrAdapter(cfg)))
    x, t, ctx, cam = _inputs(F=2, h=8, w=8)
    with torch.no_grad():
        kw = model.condition_kwargs(scene, cam, 2, (8, 8))
        out = model(x, t, ctx, cam, **kw)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(kw[FEATURES_KW][:, :, 2], kw[FEATURES_KW][:, :, 4])   # source frame 0 = snapshot 0's pose
