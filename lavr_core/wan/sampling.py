"""Rectified-flow sampling loop shared by every Wan-based sampler in the pack (LaVR/ReCamMaster,
Fused 4D, Gen3R): the model-specific part is a velocity function; noise, schedule, CFG, denoise,
timestep rounding, progress and interruption live here once.

Conventions (``lavr_core.wan.scheduler``): ``x_sigma = (1 - sigma) x0 + sigma * noise``, velocity
``v = noise - x0``, timestep ``1000 * sigma``. Noise comes from a CPU ``torch.Generator`` seeded with
``seed`` (as DiffSynth's pipelines do), so a seed gives the same video on every device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import InputError
from .scheduler import FlowMatchScheduler

#: ``velocity_fn(x, timestep, positive) -> v``: ``x`` the current latents, ``timestep [1]`` already
#: rounded as the model family expects, ``positive`` False for the CFG's negative branch.
VelocityFn = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]
#: ``callback(step, total, x, x0_estimate)``; raise in it to stop (ComfyUI's interrupt does).
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class SamplerSettings:
    """User-facing sampling settings.

    ``timestep_dtype``: ReCamMaster's and Wan's pipelines cast the timestep to the model dtype
    (bf16) before the time embedding; fp32 keeps it exact. ``None`` = leave it float32.
    """

    steps: int = 50
    cfg: float = 5.0
    shift: float = 5.0
    seed: int = 0
    denoise: float = 1.0
    timestep_dtype: torch.dtype | None = torch.bfloat16

    def __post_init__(self):
        if int(self.steps) != self.steps or self.steps < 1:
            raise InputError(f"steps={self.steps!r} must be a positive whole number.", "Use e.g. 50 (30 for drafts).")
        if not (self.cfg >= 1.0) or self.cfg != self.cfg:
            raise InputError(f"cfg={self.cfg!r} must be at least 1.", "Use 1 to turn guidance off, 5 as Wan does.")
        if not (self.shift > 0):
            raise InputError(f"shift={self.shift!r} must be positive.", "ReCamMaster and Wan T2V use 5.")
        if not (0.0 < self.denoise <= 1.0):
            raise InputError(f"denoise={self.denoise!r} must be in (0, 1].", "Use 1.0 to start from pure noise.")
        if not 0 <= int(self.seed) < 2**64:
            raise InputError(f"seed={self.seed!r} is outside 0..2^64-1.", "Pick another seed.")


def initial_noise(shape, seed: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise from a seeded CPU generator (device-independent), moved to ``device``."""
    g = torch.Generator("cpu").manual_seed(int(seed) % 2**64)
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32).to(device=device, dtype=dtype)


def round_timestep(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The timestep as the model family feeds it: rounded through ``dtype`` then back to float32."""
    t = t.reshape(1).float()
    return t if dtype is None else t.to(dtype).float()


def flow_sample(velocity_fn: VelocityFn, noise: torch.Tensor, settings: SamplerSettings, *,
                init_latent: torch.Tensor | None = None, scheduler: FlowMatchScheduler | None = None,
                callback: StepCallback | None = None) -> torch.Tensor:
    """Euler rectified-flow sampling; returns the clean latents (same shape as ``noise``).

    ``init_latent`` with ``denoise < 1`` starts from it re-noised to the first sigma (video-to-video
    strength); with ``denoise = 1`` it is ignored. CFG ``v = v_neg + cfg (v_pos - v_neg)`` is skipped
    (one model call a step) when ``cfg == 1``.
    """
    sched = scheduler or FlowMatchScheduler(shift=settings.shift)
    sched.set_timesteps(settings.steps, denoise=settings.denoise, shift=settings.shift)
    if settings.denoise < 1.0:
        if init_latent is None:
            raise InputError(f"denoise={settings.denoise} needs latents to start from.",
                             "Set denoise to 1.0, or give the sampler an initial video.")
        if init_latent.shape != noise.shape:
            raise InputError(f"The initial latents {tuple(init_latent.shape)} do not match the output "
                             f"{tuple(noise.shape)}.", "Use an initial video with the output's size and length.")
        x = sched.add_noise(init_latent.to(noise), noise, 0)
    else:
        x = noise
    total = len(sched.timesteps)
    for i in range(total):
        t = round_timestep(sched.timesteps[i], settings.timestep_dtype).to(x.device)
        v = velocity_fn(x, t, True).to(x.dtype)
        if settings.cfg != 1.0:
            v_neg = velocity_fn(x, t, False).to(x.dtype)
            v = v_neg + settings.cfg * (v - v_neg)
        if callback is not None:
            x0 = x - float(sched.sigmas[i]) * v
            callback(i, total, x, x0)
        x = sched.step(v, i, x)
    return x
