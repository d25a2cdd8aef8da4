"""The flow-matching scheduler against the official timesteps, sigmas and training weights."""

import json
from pathlib import Path

import pytest
import torch

from lavr_core.errors import InputError
from lavr_core.wan.scheduler import FlowMatchScheduler, shift_sigmas

REF = Path(__file__).resolve().parents[3] / "shared" / "reference" / "recammaster" / "scheduler.json"
if not REF.is_file():
    REF = Path("/work/shared/reference/recammaster/scheduler.json")
needs_ref = pytest.mark.skipif(not REF.is_file(), reason="reference data not present")


@needs_ref
def test_inference_schedule_matches_official():
    ref = json.loads(REF.read_text())
    s = FlowMatchScheduler(shift=5.0)
    ts = s.set_timesteps(50)
    assert len(ts) == 50
    assert torch.equal(ts, torch.tensor(ref["inference_timesteps"], dtype=torch.float32))
    assert torch.equal(s.sigmas, torch.tensor(ref["inference_sigmas"], dtype=torch.float32))
    assert ts[10].item() == pytest.approx(952.3810424804688, abs=0)  # the tiny golden's timestep


@needs_ref
def test_training_schedule_and_weights_match_official():
    ref = json.loads(REF.read_text())
    s = FlowMatchScheduler(shift=5.0)
    s.set_timesteps(1000, training=True)
    assert torch.equal(s.timesteps, torch.tensor(ref["training_timesteps"], dtype=torch.float32))
    w = torch.tensor(ref["training_weights"], dtype=torch.float32)
    assert (s.training_weights - w).abs().max() < 1e-6
    assert s.training_weight(0) == 0.0 and s.training_weights.mean().item() == pytest.approx(1.0, abs=1e-4)


def test_shift_formula_and_denoise():
    s = FlowMatchScheduler(shift=3.0)
    s.set_timesteps(4, denoise=0.5)
    base = torch.tensor([0.5, 0.375, 0.25, 0.125])
    assert torch.allclose(s.sigmas, 3 * base / (1 + 2 * base))
    assert torch.allclose(s.timesteps, 1000 * s.sigmas)
    assert torch.allclose(shift_sigmas(torch.tensor([0.0, 1.0]), 5.0), torch.tensor([0.0, 1.0]))
    s.set_timesteps(4, shift=1.0)
    assert torch.allclose(s.sigmas, torch.tensor([1.0, 0.75, 0.5, 0.25]))


def test_euler_with_the_exact_velocity_lands_on_the_data():
    """For a straight flow x_s = (1-s) x0 + s n the velocity n - x0 is constant, so Euler is exact."""
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    s = FlowMatchScheduler(shift=5.0)
    s.set_timesteps(7)
    x = noise.clone()
    for i in range(7):
        assert torch.allclose(x, s.add_noise(x0, noise, i), atol=1e-5)
        x = s.step(s.training_target(x0, noise), i, x)
    assert torch.allclose(x, x0, atol=1e-5)
    assert s.sigma_next(6).item() == 0.0
    assert s.index_of(s.timesteps[3].item() + 0.01) == 3


def test_bad_settings_are_input_errors():
    s = FlowMatchScheduler()
    for kw in ({"num_steps": 0}, {"num_steps": 2.5}, {"num_steps": 10, "denoise": 0.0},
               {"num_steps": 10, "denoise": 1.5}, {"num_steps": 10, "shift": -1.0}):
        with pytest.raises(InputError):
            s.set_timesteps(**kw)
    with pytest.raises(RuntimeError):
        FlowMatchScheduler().step(torch.zeros(1), 0, torch.zeros(1))
