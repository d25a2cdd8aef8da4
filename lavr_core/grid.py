"""The layout of a V x T grid of frames (views x timesteps), as the Fused 4D Sampler makes it and
VGGT Gaussian Decode reads it.

Frames travel as one ComfyUI ``IMAGE`` batch ``[V*T, H, W, 3]`` in **view-major** order: frame
``v * T + t`` is view ``v`` at timestep ``t`` (all of view 0's timesteps first). Row ``v`` of the
grid is a fixed-viewpoint video; column ``t`` is a freeze-time sweep across the views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .camera.trajectory import CameraTrajectory
from .errors import InputError


@dataclass(frozen=True)
class GridLayout:
    """How a batch of ``views * times`` frames forms a grid.

    Attributes:
        views: V >= 1, number of fixed viewpoints (grid rows).
        times: T >= 1, number of timesteps (grid columns).
        fps: frame rate of each row, in frames per second (> 0).
        view_cameras: optional ``CameraTrajectory`` with one frame per view (OpenCV c2w): the
            viewpoints when the producer knows them (e.g. a freeze-time column rendered along a
            target path). ``None`` when unknown; VGGT then estimates them.
        meta: JSON-serialisable provenance (``{"source": "fused4d", "reference": "row+column"}``).
    """

    views: int
    times: int
    fps: float = 16.0
    view_cameras: CameraTrajectory | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("views", "times"):
            n = getattr(self, name)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise InputError(f"A grid needs a positive whole number of {name}, got {n!r}.",
                                 "Give views and times of at least 1.")
        if not (isinstance(self.fps, (int, float)) and self.fps > 0):
            raise InputError(f"Grid fps {self.fps!r} must be positive.", "Use the source video's frame rate.")
        if self.view_cameras is not None and len(self.view_cameras) != self.views:
            raise InputError(f"The grid has {self.views} views but {len(self.view_cameras)} view cameras.",
                             "Give one camera per view (grid row), or none.")

    @property
    def num_frames(self) -> int:
        return self.views * self.times

    def index(self, view: int, time: int) -> int:
        """Batch index of (view, time)."""
        if not (0 <= view < self.views and 0 <= time < self.times):
            raise IndexError(f"({view}, {time}) is outside a {self.views} x {self.times} grid")
        return view * self.times + time

    def check_frames(self, frames: torch.Tensor, what: str = "frames") -> None:
        """Raise a clear error unless ``frames`` (``[N, ...]``) has exactly ``views * times`` entries."""
        n = int(frames.shape[0]) if frames.ndim else 0
        if n != self.num_frames:
            raise InputError(f"The {what} hold {n} frames but the layout is {self.views} views x {self.times} "
                             f"timesteps = {self.num_frames}.",
                             "Connect the grid and the layout from the same Fused 4D Sampler, or set views x "
                             "times to the frame count (view-major order).")

    def to_grid(self, frames: torch.Tensor) -> torch.Tensor:
        """``[V*T, ...]`` -> ``[V, T, ...]``."""
        self.check_frames(frames)
        return frames.reshape(self.views, self.times, *frames.shape[1:])

    def from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """``[V, T, ...]`` -> ``[V*T, ...]`` view-major."""
        if tuple(grid.shape[:2]) != (self.views, self.times):
            raise InputError(f"A grid of shape {tuple(grid.shape[:2])} is not {self.views} x {self.times}.",
                             "Pass the tensor in [views, times, ...] order.")
        return grid.reshape(self.num_frames, *grid.shape[2:])

    def row(self, frames: torch.Tensor, view: int) -> torch.Tensor:
        """View ``view``'s video ``[T, ...]``."""
        return self.to_grid(frames)[view]

    def column(self, frames: torch.Tensor, time: int) -> torch.Tensor:
        """Timestep ``time``'s freeze-time sweep ``[V, ...]``."""
        return self.to_grid(frames)[:, time]

    def summary(self) -> str:
        cams = "known cameras" if self.view_cameras is not None else "cameras to estimate"
        return f"{self.views} views x {self.times} timesteps at {self.fps:g} fps, {cams}"

    @staticmethod
    def single_view(times: int, fps: float = 16.0) -> "GridLayout":
        """A plain video as a 1 x T grid."""
        return GridLayout(views=1, times=times, fps=fps)
