"""VGGT4D: 3D/4D Gaussians from frames (the reconstruction half of 4Real-Video-V2) on our VGGT.

* ``VGGT4D(vggt, VGGT4DConfig())`` / ``load_vggt4d(vggt, weights)``: the model; ``model(grid)`` with
  a ``[V, T, 3, H, W]`` grid (view-major, see ``model``) returns a ``VGGT4DPrediction`` whose
  ``.gaussians()`` is a ``GaussianSequence`` (one set per timestep) and ``.trajectory()`` the cameras.
* ``init_free``: the training-free Gaussians (no head weights needed).
* ``gaussian_head``: the 14-channel DPT Gaussian head and how its channels act.
* ``temporal``: zero-initialised temporal attention and camera-token replacement.
* ``weights``: our safetensors layout for the head and temporal weights.
"""

from .gaussian_head import CHANNELS, GAUSSIAN_CHANNELS, GaussianHead, apply_head
from .init_free import InitConfig, PixelGaussians, training_free
from .model import GAUSSIAN_HEAD, TRAINING_FREE, VGGT4D, VGGT4DConfig, VGGT4DPrediction, frames_to_grid
from .temporal import TemporalAttention, TemporalLayers, replace_camera_tokens
from .weights import (FORMAT, FORMAT_VERSION, config_from_metadata, load_vggt4d, load_weights, read_metadata,
                      save_weights)

__all__ = [
    "CHANNELS", "FORMAT", "FORMAT_VERSION", "GAUSSIAN_CHANNELS", "GAUSSIAN_HEAD", "GaussianHead", "InitConfig",
    "PixelGaussians", "TRAINING_FREE", "TemporalAttention", "TemporalLayers", "VGGT4D", "VGGT4DConfig",
    "VGGT4DPrediction", "apply_head", "config_from_metadata", "frames_to_grid", "load_vggt4d", "load_weights",
    "read_metadata", "replace_camera_tokens", "save_weights", "training_free",
]
