"""Gen3R's camera control input: Plücker rays packed to the latent frames, duplicated along width.

Per video frame, ``[o x d, d]`` at every pixel (rays through pixel centres, unit directions, poses
relative to frame 0; ``lavr_core.camera.plucker``), then Wan-Fun's packing (frame 0 four times, four
frames per latent frame stacked on channels ``c*4 + j``) and one copy per latent half (appearance |
geometry): ``[B, 24, 1 + (T-1)//4, H, 2W]``. The DiT's camera adapter reads it.
"""

from __future__ import annotations

import torch

from ..camera.plucker import pack_plucker_frames, plucker_for_trajectory


def control_camera_latents(plucker: torch.Tensor, frames_per_latent: int = 4) -> torch.Tensor:
    """Plücker video ``[T, 6, H, W]`` or ``[B, T, 6, H, W]`` -> ``[B, 24, 1 + (T-1)//4, H, 2W]``."""
    packed = pack_plucker_frames(plucker, frames_per_latent)
    return torch.cat([packed, packed], dim=-1)


def control_camera_from_trajectory(trajectory, height: int, width: int,
                                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The camera control for a video-rate ``CameraTrajectory`` (``4k + 1`` poses) rendered at ``height`` x ``width``.

    Poses are taken relative to the first (Gen3R's ``preprocess_poses``); ``K`` is rescaled from the
    trajectory's image size to ``width`` x ``height``.
    """
    return control_camera_latents(plucker_for_trajectory(trajectory, height, width, dtype=dtype))
