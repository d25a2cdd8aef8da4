"""ReCamMaster's camera conditioning on Wan2.1-T2V-1.3B (KwaiVGI/ReCamMaster, ``step20000.ckpt``).

What it adds to Wan (see ``reference/recammaster/README.md``):

* Source and noisy target latents are concatenated along **frames** (target first) into one
  sequence; RoPE frame positions therefore run 0..F-1 for the target and F..2F-1 for the source.
  Only the target half of the prediction is used; the source stays clean at every step.
* Every block gets ``cam_encoder = Linear(12, dim)`` and ``projector = Linear(dim, dim)``. The camera
  embedding ``cam_emb [B, F, 12]`` (one relative 3x4 c2w per target latent frame) is encoded, tiled
  over the frames (source frame j gets target camera j) and broadcast over every token of its
  frame, then added to the modulated self-attention input; the projector follows self-attention.
  With ``cam_encoder = 0`` and ``projector = I`` a block is exactly Wan's.

Unlike the official code, the broadcast follows the actual latent grid instead of a hard-coded
30x52, so any resolution divisible by 16 works.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..camera.trajectory import CameraTrajectory
from ..errors import InputError, TrajectoryError
from .config import WanConfig
from .model import Grid, WanBlock, WanModel

#: Latent frames per raw frame step of the Wan VAE: 4k+1 video frames -> k+1 latent frames.
VAE_TEMPORAL_STRIDE = 4


def add_camera_tokens(h: torch.Tensor, cam: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Add a per-frame camera feature to every token of its frame.

    Args:
        h: tokens ``[B, f*h*w, D]`` in (frame, row, column) order.
        cam: encoded cameras ``[B or 1, Fc, D]``; ``f`` must be a multiple of ``Fc``. The cameras are
            tiled along frames (``f = 2 Fc`` for ReCamMaster: target cams, then the same for source).
    """
    f, hh, ww = grid
    fc = cam.shape[1]
    if fc == 0 or f % fc:
        raise InputError(f"The camera path has {fc} latent frames but the latent sequence has {f}.",
                         "Give one camera per target latent frame (video frames 0, 4, 8, ...): "
                         "the target and source videos must have the same length.")
    cam = cam.repeat(1, f // fc, 1).to(h.dtype)
    b, _, d = h.shape
    return (h.view(b, f, hh * ww, d) + cam[:, :, None]).view(b, f * hh * ww, d)


class ReCamMasterBlock(WanBlock):
    """Wan block + ``cam_encoder`` / ``projector`` (added after Wan's own layers, as in the checkpoint)."""

    def __init__(self, config: WanConfig):
        super().__init__(config)
        self.cam_encoder = nn.Linear(config.cam_dim, config.dim)
        self.projector = nn.Linear(config.dim, config.dim)

    def condition_attention_input(self, h: torch.Tensor, grid: Grid, cam_emb) -> torch.Tensor:
        if cam_emb is None:
            return h
        return add_camera_tokens(h, self.cam_encoder(cam_emb.to(self.cam_encoder.weight.dtype)), grid)

    def condition_attention_output(self, a: torch.Tensor, cam_emb) -> torch.Tensor:
        return self.projector(a)

    @torch.no_grad()
    def reset_camera_layers(self) -> None:
        """ReCamMaster's training init: ``cam_encoder = 0``, ``projector = I`` (the block is then Wan's)."""
        self.cam_encoder.weight.zero_()
        self.cam_encoder.bias.zero_()
        self.projector.weight.copy_(torch.eye(self.projector.weight.shape[0]))
        self.projector.bias.zero_()


class ReCamMasterModel(WanModel):
    """Wan2.1 DiT with ReCamMaster's camera layers. ``config.camera`` must be true."""

    block_class = ReCamMasterBlock

    def __init__(self, config: WanConfig):
        if not config.camera:
            config = config.with_camera(True)
        super().__init__(config)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                cam_emb: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Velocity for ``x = cat([noisy_target, source], dim=2)`` ``[B, 16, 2F, H, W]``.

        ``cam_emb [B or 1, F, 12]``: relative target cameras (``camera_embedding``). ``None`` skips the
        camera features (projectors still apply), which is only meaningful for tests.
        """
        if cam_emb is not None:
            if cam_emb.ndim == 2:
                cam_emb = cam_emb[None]
            if cam_emb.ndim != 3 or cam_emb.shape[-1] != self.config.cam_dim:
                raise InputError(f"cam_emb has shape {tuple(cam_emb.shape)}; ReCamMaster needs "
                                 f"[batch, latent frames, {self.config.cam_dim}].",
                                 "Build it with lavr_core.wan.recammaster.camera_embedding(trajectory).")
            if not torch.isfinite(cam_emb).all():
                raise TrajectoryError("The camera embedding holds NaN or infinity.",
                                      "Fix the target trajectory; every pose must be finite.")
        return super().forward(x, timestep, context, block_cond=cam_emb, **kwargs)

    def reset_camera_layers(self) -> None:
        for block in self.blocks:
            block.reset_camera_layers()


# ----------------------------------------------------------------------------- inputs

def concat_target_source(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``cat([target, source], dim=2)``: ``[B, C, F, H, W]`` x2 -> ``[B, C, 2F, H, W]`` (target first)."""
    if target.shape != source.shape:
        raise InputError(f"Target latents {tuple(target.shape)} and source latents {tuple(source.shape)} "
                         "differ in shape.",
                         "Render the target at the source video's size and frame count.")
    return torch.cat([target, source.to(target.dtype)], dim=2)


def target_half(prediction: torch.Tensor, num_target_frames: int) -> torch.Tensor:
    """The target part ``[:, :, :F]`` of a prediction over the concatenated sequence."""
    return prediction[:, :, :num_target_frames]


def latent_frame_count(num_frames: int, stride: int = VAE_TEMPORAL_STRIDE) -> int:
    """Latent frames of a ``num_frames`` video under the Wan VAE (``4k+1 -> k+1``)."""
    if num_frames < 1 or (num_frames - 1) % stride:
        raise InputError(f"A {num_frames}-frame video does not fit the Wan VAE, which needs "
                         f"{stride}k+1 frames.", f"Use e.g. {stride * ((max(num_frames, 2) - 1) // stride) + 1} "
                         "or 81 frames.")
    return (num_frames - 1) // stride + 1


def camera_embedding(trajectory: CameraTrajectory, temporal_stride: int = VAE_TEMPORAL_STRIDE,
                     num_latent_frames: int | None = None, reference_c2w: torch.Tensor | None = None,
                     translation_scale: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """ReCamMaster's ``cam_emb [1, F, 12]`` for a target trajectory (batch axis added for the model).

    The arithmetic is the camera format's (``lavr_core.camera.formats.recammaster_cam_emb``): frames
    ``0, s, 2s, ...`` (``s = temporal_stride``: 4 for a video-rate path of ``4k+1`` frames, 1 when it
    already has one pose per latent frame) as ``inv(ref) @ c2w_i``, top 3x4 flattened row-major, with
    ``ref`` the path's first pose (inference: the target is assumed to start at the source's first
    camera) or ``reference_c2w`` (training: the source's first pose). OpenCV axes.

    Translations are multiplied by ``translation_scale``: ReCamMaster was trained in metres, so a
    path from a reconstruction of unknown scale may need it. ``num_latent_frames`` (the source
    video's) is checked when given.
    """
    from ..camera.formats import recammaster_cam_emb

    if temporal_stride < 1:
        raise TrajectoryError(f"Temporal stride {temporal_stride} must be at least 1.", "Use 4 (Wan VAE) or 1.")
    emb = recammaster_cam_emb(trajectory, stride=temporal_stride, reference_c2w=reference_c2w)
    if num_latent_frames is not None and emb.shape[0] != num_latent_frames:
        raise TrajectoryError(f"The target trajectory gives {emb.shape[0]} latent-frame cameras; the source "
                              f"video has {num_latent_frames} latent frames.",
                              "Resample the trajectory to the source video's frame count.")
    if translation_scale != 1.0:
        emb = emb.clone()
        emb[:, 3::4] *= translation_scale
    return emb[None].to(dtype)
