"""Gen3R's sampling schedule: diffusers' ``FlowMatchEulerDiscreteScheduler`` with ``shift = 2``.

Gen3R (``gen3r/config/gen3r.yaml``, ``Gen3RPipeline.__call__``) samples with diffusers' Euler
flow-matching scheduler, not DiffSynth's. Both use ``x_sigma = (1 - sigma) x0 + sigma noise``, a
velocity ``noise - x0`` and the same shift warp, but the grids differ:

* DiffSynth (``lavr_core.wan.scheduler.FlowMatchScheduler``): ``linspace(1, 0, N + 1)[:-1]``, then
  shifted. With shift 2 and 50 steps the last sigma is 0.0392.
* diffusers: the *shifted* training sigmas bound the grid: ``sigma_max = shift(1) = 1`` and
  ``sigma_min = shift(1/1000)``; ``linspace(1000 sigma_max, 1000 sigma_min, N) / 1000`` is shifted
  **again**, then a terminal 0 is appended. With shift 2 and 50 steps the last sigma is 0.00399.

The two agree on the first step only (max difference over the 50 timesteps: ~35 of 1000), so Gen3R
gets this subclass; the Euler step, ``add_noise`` and everything else are inherited. The timesteps
the model sees are ``1000 sigma`` in float32, fed to the float64 time embedding unrounded (Gen3R
does not round them through bf16 as ReCamMaster does): use ``SamplerSettings(timestep_dtype=None)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..wan.scheduler import FlowMatchScheduler, check_schedule_args, shift_sigmas

#: Gen3R's sampling defaults (``infer.py``: guidance 5; ``gen3r.yaml``: shift 2; the pipeline: 50 steps).
GEN3R_STEPS = 50
GEN3R_CFG = 5.0
GEN3R_SHIFT = 2.0


@dataclass
class DiffusersFlowMatchScheduler(FlowMatchScheduler):
    """diffusers' ``FlowMatchEulerDiscreteScheduler`` (``use_dynamic_shifting=False``) as a
    ``FlowMatchScheduler``, so ``lavr_core.wan.sampling.flow_sample`` can drive it.

    ``denoise < 1`` keeps the last ``int(steps * denoise)`` steps of the full schedule, as diffusers'
    image-to-image pipelines do with ``strength``.
    """

    shift: float = GEN3R_SHIFT

    def _bounds(self) -> tuple[float, float]:
        # The training sigmas, shifted in float32 as diffusers' constructor does; their ends bound the grid.
        n = self.num_train_timesteps
        train = torch.linspace(1, n, n, dtype=torch.float64).flip(0).to(torch.float32) / n
        train = shift_sigmas(train, self.shift)
        return float(train[0]), float(train[-1])

    def set_timesteps(self, num_steps: int, denoise: float = 1.0, shift: float | None = None,
                      training: bool = False) -> torch.Tensor:
        if training:
            raise InputError("Gen3R's diffusers schedule is for inference only.",
                             "Use lavr_core.wan.scheduler.FlowMatchScheduler for training.")
        num_steps = check_schedule_args(num_steps, denoise, shift, "Gen3R uses 2.0.")
        if shift is not None:
            self.shift = float(shift)
        n = self.num_train_timesteps
        sigma_max, sigma_min = self._bounds()
        t = torch.linspace(sigma_max * n, sigma_min * n, num_steps, dtype=torch.float64)
        sigmas = shift_sigmas(t / n, self.shift).to(torch.float32)
        keep = min(int(num_steps * denoise), num_steps)
        if keep < 1:
            raise InputError(f"Denoise {denoise} of {num_steps} steps leaves no step to run.",
                             "Raise denoise or the step count.")
        self.sigmas = sigmas[num_steps - keep:]
        self.timesteps = self.sigmas * n
        self.training_weights = None
        return self.timesteps


__all__ = ["DiffusersFlowMatchScheduler", "GEN3R_CFG", "GEN3R_SHIFT", "GEN3R_STEPS"]
