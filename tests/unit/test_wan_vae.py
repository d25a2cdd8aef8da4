"""The Wan2.1 VAE (lavr_core.wan.vae): shapes, causal chunking, the official key layout, loading."""

import pytest
import torch

from lavr_core.errors import CheckpointError, InputError
from lavr_core.wan.vae import (WAN21_LATENTS_MEAN, WAN21_VAE, WanVAE, WanVAEConfig, load_wan_vae,
                               vae_from_state_dict)

#: A tiny Wan2.1-shaped VAE (same stages and temporal pattern, width 8, 4 latent channels).
TINY = WanVAEConfig(dim=8, z_dim=4, latents_mean=(0.1, 0.2, -0.3, 0.0), latents_std=(1.0, 2.0, 0.5, 1.5), name="tiny")

#: Names and shapes of the official Wan2.1 VAE checkpoint (``Wan2.1_VAE.pth`` /
#: ``wan_2.1_vae.safetensors``), read from the official ``wan/modules/vae.py`` (``WanVAE_`` with
#: dim 96, z_dim 16, dim_mult [1,2,4,4], 2 res blocks, temperal_downsample [False, True, True]).
#: The totals were cross-checked once against diffusers' ``AutoencoderKLWan`` through its single-file
#: converter from the original names (194 tensors, 126,892,531 parameters, all shapes equal).
OFFICIAL_COUNT = 194
OFFICIAL_PARAMS = 126_892_531
OFFICIAL_SAMPLE = {
    "encoder.conv1.weight": (96, 3, 3, 3, 3),
    "encoder.downsamples.0.residual.0.gamma": (96, 1, 1, 1),
    "encoder.downsamples.0.residual.2.weight": (96, 96, 3, 3, 3),
    "encoder.downsamples.0.residual.6.bias": (96,),
    "encoder.downsamples.2.resample.1.weight": (96, 96, 3, 3),   # stage 0 -> 1: spatial only (ZeroPad at .0)
    "encoder.downsamples.3.shortcut.weight": (192, 96, 1, 1, 1),
    "encoder.downsamples.5.resample.1.bias": (192,),
    "encoder.downsamples.5.time_conv.weight": (192, 192, 3, 1, 1),
    "encoder.downsamples.8.time_conv.weight": (384, 384, 3, 1, 1),
    "encoder.downsamples.10.residual.6.weight": (384, 384, 3, 3, 3),
    "encoder.middle.1.norm.gamma": (384, 1, 1),
    "encoder.middle.1.to_qkv.weight": (1152, 384, 1, 1),
    "encoder.middle.1.proj.weight": (384, 384, 1, 1),
    "encoder.middle.2.residual.3.gamma": (384, 1, 1, 1),
    "encoder.head.0.gamma": (384, 1, 1, 1),
    "encoder.head.2.weight": (32, 384, 3, 3, 3),
    "conv1.weight": (32, 32, 1, 1, 1),
    "conv2.weight": (16, 16, 1, 1, 1),
    "decoder.conv1.weight": (384, 16, 3, 3, 3),
    "decoder.middle.0.residual.2.weight": (384, 384, 3, 3, 3),
    "decoder.upsamples.3.time_conv.weight": (768, 384, 3, 1, 1),
    "decoder.upsamples.3.resample.1.weight": (192, 384, 3, 3),   # Upsample at .0
    "decoder.upsamples.4.residual.2.weight": (384, 192, 3, 3, 3),
    "decoder.upsamples.4.shortcut.weight": (384, 192, 1, 1, 1),
    "decoder.upsamples.7.time_conv.bias": (768,),
    "decoder.upsamples.11.resample.1.weight": (96, 192, 3, 3),
    "decoder.upsamples.14.residual.6.weight": (96, 96, 3, 3, 3),
    "decoder.head.0.gamma": (96, 1, 1, 1),
    "decoder.head.2.weight": (3, 96, 3, 3, 3),
}
#: Module kinds that exist only in other layouts or variants; none may appear.
NOT_OFFICIAL = ("conv_in", "conv_out", "mid_block", "down_blocks", "up_blocks", "quant_conv",
                "decoder.upsamples.11.time_conv", "encoder.downsamples.2.time_conv", "init_block", "out_block")


def _perturbed(config: WanVAEConfig, seed: int = 0) -> WanVAE:
    torch.manual_seed(seed)
    model = WanVAE(config).eval()
    with torch.no_grad():  # default init zeroes nothing, but make sure every weight matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def tiny():
    return _perturbed(TINY)


def test_official_key_names_and_shapes():
    with torch.device("meta"):
        model = WanVAE(WAN21_VAE)
    sd = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(sd) == OFFICIAL_COUNT
    assert sum(torch.Size(s).numel() for s in sd.values()) == OFFICIAL_PARAMS
    for k, shape in OFFICIAL_SAMPLE.items():
        assert sd.get(k) == shape, k
    assert not [k for k in sd if any(bad in k for bad in NOT_OFFICIAL)]
    assert {k.split(".")[0] for k in sd} == {"encoder", "conv1", "conv2", "decoder"}


def test_encode_decode_shapes(tiny):
    for batch, frames in ((2, 1), (1, 9)):
        x = torch.rand(batch, 3, frames, 8, 16) * 2 - 1
        with torch.no_grad():
            mean, logvar = tiny.encode_moments(x)
            assert mean.shape == logvar.shape == (batch, 4, 1 + (frames - 1) // 4, 1, 2)
            video = tiny.decode(mean)
        assert video.shape == (batch, 3, frames, 8, 16)
        assert video.abs().max() <= 1.0  # RGB output is clamped
        assert TINY.latent_frames(frames) == mean.shape[2] and TINY.video_frames(mean.shape[2]) == frames


def test_chunked_causal_pass_equals_full_pass(tiny):
    torch.manual_seed(1)
    x = torch.rand(1, 3, 9, 8, 16) * 2 - 1
    z = torch.randn(1, 4, 3, 1, 2)
    with torch.no_grad():
        enc_chunked, enc_full = tiny.encode_raw(x), tiny.encode_raw(x, chunked=False)
        dec_chunked, dec_full = tiny.decode(z), tiny.decode(z, chunked=False)
    torch.testing.assert_close(enc_chunked, enc_full, rtol=0, atol=2e-5)
    torch.testing.assert_close(dec_chunked, dec_full, rtol=0, atol=2e-5)
    # Causality: later frames never change earlier latents / outputs.
    x2 = x.clone()
    x2[:, :, 5:] = torch.rand_like(x2[:, :, 5:])
    z2 = z.clone()
    z2[:, :, 2:] = torch.randn_like(z2[:, :, 2:])
    with torch.no_grad():
        torch.testing.assert_close(tiny.encode_raw(x2)[:, :, :2], enc_chunked[:, :, :2], rtol=0, atol=1e-6)
        assert not torch.allclose(tiny.encode_raw(x2)[:, :, 2], enc_chunked[:, :, 2])
        torch.testing.assert_close(tiny.decode(z2)[:, :, :5], dec_chunked[:, :, :5], rtol=0, atol=1e-6)


def test_latent_normalisation(tiny):
    x = torch.rand(1, 3, 5, 8, 8) * 2 - 1
    with torch.no_grad():
        raw = tiny.encode_raw(x)
        mean, logvar = tiny.encode_moments(x)
    m = torch.tensor(TINY.latents_mean).view(1, -1, 1, 1, 1)
    s = torch.tensor(TINY.latents_std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(mean, (raw[:, :4] - m) / s)
    torch.testing.assert_close(logvar, raw[:, 4:])  # the log-variance is not rescaled
    dist = tiny.encode_distribution(x)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(dist.sample(g1), dist.sample(g2))
    assert not torch.equal(dist.sample(), dist.mean)
    assert len(WAN21_LATENTS_MEAN) == 16 and WAN21_VAE.spatial_compression == 8 and WAN21_VAE.temporal_compression == 4


def test_bad_inputs_raise_clear_errors(tiny):
    with pytest.raises(InputError, match="4k\\+1"):
        tiny.encode(torch.zeros(1, 3, 6, 16, 16))
    with pytest.raises(InputError, match="multiple of 8"):
        tiny.encode(torch.zeros(1, 3, 5, 20, 16))
    with pytest.raises(InputError, match="channels-first"):
        tiny.encode(torch.zeros(1, 5, 16, 16, 3))
    with pytest.raises(InputError, match="latents"):
        tiny.decode(torch.zeros(1, 16, 2, 4, 4))


def test_load_state_dict_key_for_key(tiny, tmp_path):
    sd = {f"first_stage_model.{k}": v.clone() for k, v in tiny.state_dict().items()}
    loaded = vae_from_state_dict(sd, TINY)
    x = torch.rand(1, 3, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), tiny.encode(x), rtol=0, atol=0)
    broken = {k: v for k, v in tiny.state_dict().items() if "decoder.upsamples.3.time_conv" not in k}
    with pytest.raises(CheckpointError, match="missing"):
        vae_from_state_dict(broken, TINY)
    diffusers_like = {"encoder.conv_in.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="diffusers"):
        vae_from_state_dict(diffusers_like, TINY)
    with pytest.raises(CheckpointError, match="latent channels"):
        vae_from_state_dict(tiny.state_dict(), WAN21_VAE)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(tmp_path / "vae.safetensors"))
    from_file = load_wan_vae(tmp_path / "vae.safetensors", TINY)
    with torch.no_grad():
        torch.testing.assert_close(from_file.encode(x), tiny.encode(x), rtol=0, atol=1e-6)
