"""DPT dense-prediction adapter (the ``dpt_self`` / ``dpt_cross`` / ``dpt_rgb`` heads of CUT3R).

Four token maps (the encoder output and three decoder layers, ``[B, h*w, C_i]`` on a ``h x w``
patch grid) are reassembled into an image pyramid at strides 4, 8, 16 and 32 (relative to the
input; transposed convolutions up, a strided convolution down), projected to ``feature_dim``
channels, fused coarse-to-fine by RefineNet blocks (each upsamples x2, bilinear with aligned
corners) and turned into ``num_channels`` per pixel by the output convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))``; the ReLUs are not in place, so the skip adds the raw ``x``."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """RefineNet stage: add the (refined) skip input, refine, upsample x2, 1x1 conv."""

    def __init__(self, ch: int):
        super().__init__()
        self.out_conv = nn.Conv2d(ch, ch, 1)
        self.resConfUnit1 = ResidualConvUnit(ch)
        self.resConfUnit2 = ResidualConvUnit(ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class _Scratch(nn.Module):
    """Container named as in the checkpoints: ``layerK_rn`` (and the alias list ``layer_rn``), ``refinenetK``."""

    def __init__(self, layer_dims, feature_dim: int):
        super().__init__()
        for i, d in enumerate(layer_dims):
            setattr(self, f"layer{i + 1}_rn", nn.Conv2d(d, feature_dim, 3, padding=1, bias=False))
        # the same four convolutions again under a second name: the official state dicts hold both
        self.layer_rn = nn.ModuleList([getattr(self, f"layer{i + 1}_rn") for i in range(4)])
        for i in range(4):
            setattr(self, f"refinenet{i + 1}", FusionBlock(feature_dim))


class DPTAdapter(nn.Module):
    """``forward(tokens, (H, W)) -> [B, num_channels, H, W]`` for an ``H x W`` input image.

    ``tokens``: four ``[B, (H/p)*(W/p), dim_tokens[i]]`` maps (patch ``p = 16``).
    """

    def __init__(self, num_channels: int, dim_tokens, feature_dim: int = 256,
                 layer_dims=(96, 192, 384, 768), last_dim: int | None = None, patch_size: int = 16):
        super().__init__()
        last_dim = feature_dim // 2 if last_dim is None else last_dim
        self.patch_size = patch_size
        l0, l1, l2, l3 = layer_dims
        self.act_postprocess = nn.ModuleList([
            nn.Sequential(nn.Conv2d(dim_tokens[0], l0, 1), nn.ConvTranspose2d(l0, l0, 4, stride=4)),
            nn.Sequential(nn.Conv2d(dim_tokens[1], l1, 1), nn.ConvTranspose2d(l1, l1, 2, stride=2)),
            nn.Sequential(nn.Conv2d(dim_tokens[2], l2, 1)),
            nn.Sequential(nn.Conv2d(dim_tokens[3], l3, 1), nn.Conv2d(l3, l3, 3, stride=2, padding=1)),
        ])
        self.scratch = _Scratch(layer_dims, feature_dim)
        self.head = nn.Sequential(
            nn.Conv2d(feature_dim, feature_dim // 2, 3, padding=1),
            _Upsample2x(),
            nn.Conv2d(feature_dim // 2, last_dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(last_dim, num_channels, 1),
        )

    def forward(self, tokens: list[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        h, w = image_size[0] // self.patch_size, image_size[1] // self.patch_size
        maps = []
        for i, t in enumerate(tokens):
            # channels-last, as the official code's tensors end up: its convolutions run ~15% faster
            # that way, and a token tensor's own strides are not recognised as channels-last
            grid = t.reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2).contiguous(
                memory_format=torch.channels_last)
            maps.append(self.scratch.layer_rn[i](self.act_postprocess[i](grid)))
        s = self.scratch
        # the stride-32 map is ceil(h/2) high; its x2 upsampling is cropped back to the stride-16 size
        p4 = s.refinenet4(maps[3])[:, :, : maps[2].shape[2], : maps[2].shape[3]]
        p3 = s.refinenet3(p4, maps[2])
        p2 = s.refinenet2(p3, maps[1])
        p1 = s.refinenet1(p2, maps[0])
        return self.head(p1)


class _Upsample2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
