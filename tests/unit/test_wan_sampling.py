"""The shared flow-matching loop and ComfyUI CONDITIONING handling of the Wan samplers."""

import pytest
import torch

from lavr_core.errors import InputError
from lavr_core.wan.conditioning import text_context
from lavr_core.wan.sampling import SamplerSettings, flow_sample, initial_noise, round_timestep


def test_exact_velocity_recovers_data_in_one_step():
    x0 = torch.randn(1, 4, 2, 3, 3)
    noise = initial_noise(x0.shape, seed=3)
    # the true velocity of the straight path from x0 to this noise is noise - x0 everywhere
    out = flow_sample(lambda x, t, pos: noise - x0, noise, SamplerSettings(steps=1, cfg=1.0, timestep_dtype=None))
    assert torch.allclose(out, x0, atol=1e-6)


def test_cfg_combines_branches_and_skips_negative_at_one():
    calls = []

    def fn(x, t, pos):
        calls.append(pos)
        return torch.full_like(x, 1.0 if pos else 0.0)

    noise = torch.zeros(1, 1, 1, 1, 1)
    out = flow_sample(fn, noise, SamplerSettings(steps=4, cfg=3.0, timestep_dtype=None))
    assert calls == [True, False] * 4
    assert torch.allclose(out, torch.full_like(noise, -3.0))  # v = 0 + 3 (1 - 0) integrated over sigma 1 -> 0
    calls.clear()
    flow_sample(fn, noise, SamplerSettings(steps=4, cfg=1.0))
    assert calls == [True] * 4


def test_timestep_rounding_and_seeded_noise():
    assert round_timestep(torch.tensor(999.3), torch.bfloat16).item() == 1000.0
    assert round_timestep(torch.tensor(999.3), None).item() == pytest.approx(999.3, abs=1e-4)
    assert torch.equal(initial_noise((2, 3), 7), initial_noise((2, 3), 7))
    assert not torch.equal(initial_noise((2, 3), 7), initial_noise((2, 3), 8))


def test_denoise_needs_matching_init():
    noise = torch.randn(1, 2, 1, 2, 2)
    with pytest.raises(InputError, match="needs latents"):
        flow_sample(lambda x, t, p: x, noise, SamplerSettings(steps=2, cfg=1.0, denoise=0.5))
    x0 = torch.randn_like(noise)
    out = flow_sample(lambda x, t, p: noise - x0, noise, SamplerSettings(steps=3, cfg=1.0, denoise=0.5,
                                                                        timestep_dtype=None), init_latent=x0)
    assert torch.allclose(out, x0, atol=1e-5)


@pytest.mark.parametrize("bad", [dict(steps=0), dict(cfg=0.5), dict(shift=0), dict(denoise=0.0), dict(denoise=1.5)])
def test_settings_refuse_bad_values(bad):
    with pytest.raises(InputError):
        SamplerSettings(**bad)


def test_text_context_pads_and_checks_width():
    cond = [[torch.randn(1, 7, 16), {"pooled_output": None}]]
    ctx = text_context(cond, 16, text_len=12)
    assert ctx.shape == (1, 12, 16) and torch.equal(ctx[:, :7], cond[0][0]) and not ctx[:, 7:].any()
    with pytest.raises(InputError, match="768 wide"):
        text_context([[torch.randn(1, 77, 768), {}]], 4096)
    with pytest.raises(InputError, match="2 prompts"):
        text_context(cond * 2, 16)
    with pytest.raises(InputError, match="NaN"):
        text_context([[torch.full((1, 3, 16), float("nan")), {}]], 16)
    with pytest.raises(InputError):
        text_context([], 16)
