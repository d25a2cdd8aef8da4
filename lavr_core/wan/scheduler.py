"""The flow-matching schedule and Euler sampler of Wan2.1 / ReCamMaster (DiffSynth's ``FlowMatchScheduler``).

Convention: ``x_sigma = (1 - sigma) * x0 + sigma * noise`` with sigma from 1 (noise) to 0 (data); the
model predicts the velocity ``v = noise - x0`` at ``timestep = 1000 * sigma``. The schedule is
``linspace(sigma_start, sigma_min, N + 1)[:-1]`` (the extra endpoint is dropped, so the last step
goes to sigma 0), warped by ``shift``: ``sigma' = shift * s / (1 + (shift - 1) * s)``. Everything
is float32, as in the official code, so the timesteps the model sees are bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import InputError


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Time shift of flow-matching sigmas (``shift > 1`` spends more steps at high noise)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def check_schedule_args(num_steps, denoise: float, shift: float | None, shift_hint: str) -> int:
    """Validate a schedule request (every flow scheduler in the pack); returns the step count."""
    if int(num_steps) != num_steps or num_steps < 1:
        raise InputError(f"Steps {num_steps!r} is not a positive whole number.", "Use e.g. 50.")
    if not 0.0 < denoise <= 1.0:
        raise InputError(f"Denoise {denoise!r} is outside (0, 1].", "Use 1.0 to start from pure noise.")
    if shift is not None and not shift > 0:
        raise InputError(f"Shift {shift!r} must be positive.", shift_hint)
    return int(num_steps)


@dataclass
class FlowMatchScheduler:
    """Wan's flow-matching scheduler.

    ReCamMaster inference: ``FlowMatchScheduler(shift=5.0)`` then ``set_timesteps(50)``; training:
    ``set_timesteps(1000, training=True)`` and a uniformly random index per step.

    Attributes after ``set_timesteps``: ``sigmas [N]`` and ``timesteps [N]`` (float32, descending),
    and for training ``training_weights [N]``.
    """

    shift: float = 5.0
    num_train_timesteps: int = 1000
    sigma_max: float = 1.0
    sigma_min: float = 0.0
    extra_one_step: bool = True
    sigmas: torch.Tensor = field(default=None, repr=False)
    timesteps: torch.Tensor = field(default=None, repr=False)
    training_weights: torch.Tensor | None = field(default=None, repr=False)

    def set_timesteps(self, num_steps: int, denoise: float = 1.0, shift: float | None = None,
                      training: bool = False) -> torch.Tensor:
        """Build the schedule; returns the timesteps.

        ``denoise`` in (0, 1] starts the schedule at ``sigma = denoise`` (before the shift), i.e.
        partial re-noising of an input; 1 starts from pure noise.
        """
        num_steps = check_schedule_args(num_steps, denoise, shift, "ReCamMaster uses 5.0.")
        if shift is not None:
            self.shift = float(shift)
        start = self.sigma_min + (self.sigma_max - self.sigma_min) * denoise
        if self.extra_one_step:
            sigmas = torch.linspace(start, self.sigma_min, num_steps + 1)[:-1]
        else:
            sigmas = torch.linspace(start, self.sigma_min, num_steps)
        self.sigmas = shift_sigmas(sigmas, self.shift)
        self.timesteps = self.sigmas * self.num_train_timesteps
        self.training_weights = self._training_weights(num_steps) if training else None
        return self.timesteps

    def _training_weights(self, num_steps: int) -> torch.Tensor:
        # A Gaussian bump over the timesteps centred at N/2 (DiffSynth's "bsmntw" weighting), shifted
        # to be zero at the farthest timestep and normalised to mean 1.
        y = torch.exp(-2 * ((self.timesteps - num_steps / 2) / num_steps) ** 2)
        y = y - y.min()
        return y * (num_steps / y.sum())

    def _check(self, i: int):
        if self.sigmas is None:
            raise RuntimeError("Call set_timesteps first.")
        if not 0 <= i < len(self.sigmas):
            raise IndexError(f"step {i} outside 0..{len(self.sigmas) - 1}")

    def sigma_next(self, i: int) -> torch.Tensor:
        """Sigma after step ``i`` (0-dim float32; the last step lands on 0)."""
        self._check(i)
        return self.sigmas[i + 1] if i + 1 < len(self.sigmas) else torch.zeros((), dtype=self.sigmas.dtype)

    def step(self, velocity: torch.Tensor, i: int, sample: torch.Tensor) -> torch.Tensor:
        """Euler step ``i``: ``x + v * (sigma_next - sigma)`` (the difference taken in float32)."""
        delta = (self.sigma_next(i) - self.sigmas[i]).to(sample.device)
        return sample + velocity * delta

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, i: int) -> torch.Tensor:
        """``(1 - sigma_i) x0 + sigma_i noise``."""
        self._check(i)
        s = float(self.sigmas[i])
        return (1 - s) * x0 + s * noise

    @staticmethod
    def training_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The velocity the model learns: ``noise - x0``."""
        return noise - x0

    def training_weight(self, i: int) -> float:
        self._check(i)
        if self.training_weights is None:
            raise RuntimeError("Call set_timesteps(..., training=True) first.")
        return float(self.training_weights[i])

    def index_of(self, timestep: float) -> int:
        """Index of the schedule timestep nearest to ``timestep``."""
        self._check(0)
        return int(torch.argmin((self.timesteps - float(timestep)).abs()))
