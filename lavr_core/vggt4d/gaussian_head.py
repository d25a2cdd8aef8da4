"""The Gaussian head (4Real-Video-V2): a DPT head on the VGGT aggregator tokens whose 14 output
channels per pixel refine the training-free Gaussians (``lavr_core.vggt4d.init_free``).

Architecture: our ``DPTHead`` (same four aggregator layers, projections, RefineNet fusion and UV
embeddings as VGGT's depth head, sized by the model's ``DPTConfig``) in ``feature_only`` mode, then
``out`` = 3x3 conv (features -> 32), ReLU, 1x1 conv (32 -> 14). The last conv starts at exactly
zero, so an untrained head outputs 0 everywhere and its Gaussians are the training-free ones.

Channels of the raw output ``r`` ``[..., H, W, 14]`` and how they act on a pixel's training-free
Gaussian (depth ``d``, camera-to-world rotation ``R``, initial opacity ``o0``, scale ``s0``,
rotation ``q0`` and colour ``c0``):

=======  ================  ===========================================================================
r[...]   what              Gaussian
=======  ================  ===========================================================================
0:3      position          ``mean = mean0 + R @ (POSITION_SCALE * d * r[0:3])`` (camera axes, a
                           fraction of the depth, so it is scale-free)
3        opacity           ``sigmoid(logit(o0) + r[3])``
4:7      scale             ``s0 * exp(MAX_LOG_SCALE * tanh(r[4:7] / MAX_LOG_SCALE))`` (a smooth clamp
                           to ``e^+-MAX_LOG_SCALE`` times the pixel-footprint scale)
7:11     rotation          ``normalise(q0 + r[7:11])`` (wxyz, world axes; q0 is the identity)
11:14    colour            ``c0 + r[11:14]`` (RGB offset from the pixel's colour, stored as SH DC)
=======  ================  ===========================================================================
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..vggt.dpt_head import DPTHead
from .init_free import PixelGaussians

GAUSSIAN_CHANNELS = 14
CHANNELS = {"position": slice(0, 3), "opacity": slice(3, 4), "scale": slice(4, 7), "rotation": slice(7, 11),
            "color": slice(11, 14)}
#: Position refinement per unit of raw output, as a fraction of the pixel's depth.
POSITION_SCALE = 0.05
#: Largest log-factor by which the head may shrink or grow a Gaussian's footprint scale.
MAX_LOG_SCALE = 3.0
#: Hidden width of the output convs (the same as VGGT's depth head).
HIDDEN = 32


class GaussianHead(nn.Module):
    """``forward(layers, image_hw, patch_start_idx)`` -> raw parameters ``[B, S, H, W, 14]``."""

    def __init__(self, dim_in: int, patch_size: int = 14, features: int = 256,
                 out_channels: Sequence[int] = (256, 512, 1024, 1024),
                 intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23), pos_embed: bool = True):
        super().__init__()
        self.dpt = DPTHead(dim_in, patch_size=patch_size, features=features, out_channels=out_channels,
                           intermediate_layer_idx=intermediate_layer_idx, pos_embed=pos_embed, feature_only=True)
        self.out = nn.Sequential(nn.Conv2d(features, HIDDEN, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(HIDDEN, GAUSSIAN_CHANNELS, 1))
        self.reset_output()

    @property
    def intermediate_layer_idx(self) -> tuple[int, ...]:
        return self.dpt.intermediate_layer_idx

    def reset_output(self) -> None:
        """Zero the last conv: the head then reproduces the training-free initialisation."""
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, layers: list[Tensor | None], image_hw: tuple[int, int], patch_start_idx: int,
                frames_chunk_size: int | None = 8) -> Tensor:
        feats = self.dpt(layers, image_hw, patch_start_idx, frames_chunk_size)   # [B, S, features, H, W]
        B, S = feats.shape[:2]
        raw = self.out(feats.flatten(0, 1))                                       # [B*S, 14, H, W]
        return raw.permute(0, 2, 3, 1).reshape(B, S, *raw.shape[2:], GAUSSIAN_CHANNELS)


def apply_head(raw: Tensor, base: PixelGaussians, depth: Tensor, c2w: Tensor) -> PixelGaussians:
    """Refine training-free Gaussians with the head's raw output (table in the module docstring).

    ``raw`` ``[*F, H, W, 14]``; ``base`` maps over the same ``[*F, H, W]``; ``depth`` ``[*F, H, W]``
    (the one ``base`` was made from); ``c2w`` ``[*F, 4, 4]``.
    """
    raw = raw.to(base.means.dtype)
    R = c2w[..., :3, :3].to(raw.dtype)
    offset_cam = POSITION_SCALE * depth.to(raw.dtype)[..., None] * raw[..., CHANNELS["position"]]
    means = base.means + torch.einsum("...ij,...hwj->...hwi", R, offset_cam)
    o0 = base.opacities
    opacities = torch.sigmoid(torch.log(o0) - torch.log1p(-o0) + raw[..., 3])
    scales = base.scales * torch.exp(MAX_LOG_SCALE * torch.tanh(raw[..., CHANNELS["scale"]] / MAX_LOG_SCALE))
    rotations = F.normalize(base.rotations + raw[..., CHANNELS["rotation"]], dim=-1, eps=1e-8)
    rgb = base.rgb + raw[..., CHANNELS["color"]]
    return PixelGaussians(means, scales, rotations, opacities, rgb)
