"""ReCamMaster's camera conditioning: any resolution, exact Wan at init, tiling like the official code."""

from pathlib import Path

import pytest
import torch

from lavr_core.errors import InputError, TrajectoryError
from lavr_core.wan.config import TINY
from lavr_core.wan.loading import build_model, initial_camera_state, model_from_state_dict
from lavr_core.wan.model import WanModel
from lavr_core.wan.recammaster import (ReCamMasterModel, add_camera_tokens, concat_target_source,
                                       target_half)

REF = Path(__file__).resolve().parents[3] / "shared" / "reference" / "recammaster"
if not REF.is_dir():
    REF = Path("/work/shared/reference/recammaster")


def _random_recammaster(seed=0) -> ReCamMasterModel:
    torch.manual_seed(seed)
    model = build_model(TINY)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _inputs(frames=2, h=12, w=20, seed=3):
    g = torch.Generator().manual_seed(seed)
    tgt = torch.randn(1, 4, frames, h, w, generator=g)
    src = torch.randn(1, 4, frames, h, w, generator=g)
    ctx = torch.randn(1, 6, 32, generator=g)
    cam = torch.randn(1, frames, 12, generator=g)
    return concat_target_source(tgt, src), torch.tensor([952.381]), ctx, cam


def _official_camera_tokens(h, c, hh, ww):
    """The official DiTBlock broadcast written out, with its hard-coded 30x52 replaced by hh x ww."""
    c = c.repeat(1, 2, 1)
    c = c.unsqueeze(2).unsqueeze(3).repeat(1, 1, hh, ww, 1)
    return h + c.reshape(c.shape[0], -1, c.shape[-1])


@pytest.mark.parametrize("grid", [(4, 30, 52), (4, 6, 10), (2, 3, 7)])
def test_camera_tokens_follow_the_latent_grid(grid):
    f, hh, ww = grid
    h = torch.randn(2, f * hh * ww, 8)
    c = torch.randn(2, f // 2, 8)
    ours = add_camera_tokens(h, c, grid)
    assert torch.equal(ours, _official_camera_tokens(h, c, hh, ww))
    # source frame j carries target camera j (tiling, not interleaving)
    per_frame = (ours - h).view(2, f, hh * ww, 8)
    assert torch.allclose(per_frame[:, f // 2], c[:, 0, None].expand(2, hh * ww, 8), atol=1e-6)
    if f >= 4:  # frame 1 carries camera 1
        assert torch.allclose(per_frame[:, 1], c[:, 1, None].expand(2, hh * ww, 8), atol=1e-6)


def test_camera_tokens_frame_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="same length"):
        add_camera_tokens(torch.zeros(1, 3 * 4, 8), torch.zeros(1, 2, 8), (3, 2, 2))


def test_camera_path_at_a_non_default_resolution():
    """Latent grid 6x10 (video 96x160, not 480x832): runs, the camera changes the output, and the
    change is the same whether the batch holds one camera or it is broadcast."""
    model = _random_recammaster()
    x, t, ctx, cam = _inputs(frames=2, h=12, w=20)
    with torch.no_grad():
        out = model(x, t, ctx, cam_emb=cam)
        out_other = model(x, t, ctx, cam_emb=cam.flip(1))
        out_batched = model(torch.cat([x, x]), t, torch.cat([ctx, ctx]), cam_emb=cam)
    assert out.shape == (1, 4, 4, 12, 20)
    assert torch.isfinite(out).all()
    assert (out - out_other).abs().max() > 1e-2
    assert torch.allclose(out_batched[1], out[0], atol=1e-5)
    assert target_half(out, 2).shape == (1, 4, 2, 12, 20)


def test_zero_encoder_identity_projector_is_plain_wan():
    model = _random_recammaster()
    model.reset_camera_layers()
    sd = model.state_dict()
    plain = model_from_state_dict({k: v for k, v in sd.items() if ".cam_encoder." not in k and ".projector." not in k},
                                  TINY.with_camera(False), dtype=torch.float32)
    assert type(plain) is WanModel
    x, t, ctx, cam = _inputs(frames=2, h=12, w=20)
    with torch.no_grad():
        ours = model(x, t, ctx, cam_emb=cam)
        wan = plain(x, t, ctx)
    assert torch.allclose(ours, wan, atol=1e-6, rtol=0)
    # ... and it is not so by accident: a non-zero camera encoder changes the result
    with torch.no_grad():
        model.blocks[0].cam_encoder.weight.normal_(0, 0.1)
        changed = model(x, t, ctx, cam_emb=cam)
    assert (changed - wan).abs().max() > 1e-3


def test_plain_wan_weights_load_with_initial_camera_layers():
    model = _random_recammaster()
    base = {k: v for k, v in model.state_dict().items() if ".cam_encoder." not in k and ".projector." not in k}
    from lavr_core.errors import CheckpointError
    with pytest.raises(CheckpointError, match="without ReCamMaster's camera layers"):
        model_from_state_dict(base, TINY)
    rcm = model_from_state_dict(base, TINY, allow_missing_camera=True)
    assert isinstance(rcm, ReCamMasterModel)
    init = initial_camera_state(TINY)
    assert torch.equal(rcm.blocks[1].projector.weight, init["blocks.1.projector.weight"])
    assert not rcm.blocks[0].cam_encoder.weight.any()
    plain = model_from_state_dict(base, TINY.with_camera(False))
    x, t, ctx, cam = _inputs(frames=1, h=6, w=8)
    with torch.no_grad():
        assert torch.allclose(rcm(x, t, ctx, cam_emb=cam), plain(x, t, ctx), atol=1e-6)


def test_camera_input_errors():
    model = _random_recammaster()
    x, t, ctx, cam = _inputs(frames=2, h=4, w=4)
    with pytest.raises(InputError, match=r"\[batch, latent frames, 12\]"):
        model(x, t, ctx, cam_emb=cam[..., :9])
    bad = cam.clone()
    bad[0, 1, 3] = float("nan")
    with pytest.raises(TrajectoryError, match="NaN"):
        model(x, t, ctx, cam_emb=bad)
    with pytest.raises(InputError, match="camera path has 3 latent frames"):
        model(x, t, ctx, cam_emb=torch.zeros(1, 3, 12))
    with pytest.raises(InputError, match="differ in shape"):
        concat_target_source(torch.zeros(1, 4, 2, 4, 4), torch.zeros(1, 4, 3, 4, 4))


def test_state_dict_layout_is_the_checkpoints():
    with torch.device("meta"):
        keys = list(build_model(TINY).state_dict())
    block0 = [k for k in keys if k.startswith("blocks.0.")]
    assert block0[0] == "blocks.0.modulation"
    assert block0[-4:] == ["blocks.0.cam_encoder.weight", "blocks.0.cam_encoder.bias",
                           "blocks.0.projector.weight", "blocks.0.projector.bias"]
    cfg = REF / "tiny" / "config.json"
    if cfg.is_file():
        import json
        assert keys == list(json.loads(cfg.read_text())["tensors"]["state_dict.safetensors"])
