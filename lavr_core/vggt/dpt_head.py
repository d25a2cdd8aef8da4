"""DPT dense head (depth, points, or features for tracking) on four aggregator layers.

Patch tokens of four layers are normalised, projected to four widths, given a sinusoidal UV
embedding, brought to four scales (x4, x2, x1, x1/2 of the patch grid), fused coarse-to-fine by
RefineNet blocks and upsampled to the image size. Module names follow the released checkpoint
(``projects``, ``resize_layers``, ``scratch.layer1_rn``, ``scratch.refinenet1`` ...).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .camera_head import activate


def uv_grid(width: int, height: int, aspect_ratio: float, dtype, device) -> Tensor:
    """``[height, width, 2]`` (u, v) cell centres spanning an aspect-correct rectangle of unit diagonal."""
    diag = (aspect_ratio ** 2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    xs = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width, dtype=dtype, device=device)
    ys = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, height, dtype=dtype,
                        device=device)
    u, v = torch.meshgrid(xs, ys, indexing="xy")
    return torch.stack([u, v], dim=-1)


def sincos_1d(values: Tensor, dim: int, omega_0: float = 100.0) -> Tensor:
    """``[M, dim]`` = ``[sin(v*w_i), cos(v*w_i)]`` with ``w_i = omega_0**(-i/(dim/2))``, in float64."""
    omega = torch.arange(dim // 2, dtype=torch.float64, device=values.device) / (dim / 2.0)
    omega = 1.0 / omega_0 ** omega
    angles = values.reshape(-1).to(torch.float64)[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def uv_embedding(channels: int, height: int, width: int, aspect_ratio: float, dtype, device) -> Tensor:
    """``[channels, height, width]``: u on the first half of the channels, v on the second."""
    grid = uv_grid(width, height, aspect_ratio, dtype, device).reshape(-1, 2)
    emb = torch.cat([sincos_1d(grid[:, 0], channels // 2), sincos_1d(grid[:, 1], channels // 2)], dim=-1)
    return emb.float().view(height, width, channels).permute(2, 0, 1)


class ResidualConvUnit(nn.Module):
    """``conv2(relu(conv1(relu(x)))) + relu(x)``.

    The skip adds ``relu(x)``, not ``x``: the official unit applies an in-place ReLU to its input
    before the skip connection reads it, and the released weights were trained that way.
    """

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FusionBlock(nn.Module):
    """RefineNet fusion: ``out_conv(up(rcu2(x + rcu1(skip))))``, bilinear with aligned corners."""

    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.has_residual = has_residual
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, size: Sequence[int] | None = None) -> Tensor:
        if self.has_residual and skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """Dense predictions from aggregator layers.

    ``forward(layers, image_hw, patch_start_idx)`` returns, for images of ``H x W`` (multiples of
    the patch size) and tokens of ``B`` sequences of ``S`` frames:

    * ``feature_only``: features ``[B, S, features, H/down_ratio, W/down_ratio]``;
    * otherwise ``(values [B, S, H, W, output_dim-1], confidence [B, S, H, W])`` with ``activation``
      on the values and ``conf_activation`` ("expp1": ``1 + exp``) on the last channel.
    """

    def __init__(self, dim_in: int, patch_size: int = 14, output_dim: int = 4, activation: str = "inv_log",
                 conf_activation: str = "expp1", features: int = 256,
                 out_channels: Sequence[int] = (256, 512, 1024, 1024),
                 intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23), pos_embed: bool = True,
                 feature_only: bool = False, down_ratio: int = 1):
        super().__init__()
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.intermediate_layer_idx = tuple(intermediate_layer_idx)
        oc = list(out_channels)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
        ])
        scratch = nn.Module()
        for i, c in enumerate(oc, start=1):
            setattr(scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        scratch.refinenet1 = FusionBlock(features)
        scratch.refinenet2 = FusionBlock(features)
        scratch.refinenet3 = FusionBlock(features)
        scratch.refinenet4 = FusionBlock(features, has_residual=False)
        if feature_only:
            scratch.output_conv1 = nn.Conv2d(features, features, 3, padding=1)
        else:
            scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
            scratch.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(),
                                                 nn.Conv2d(32, output_dim, 1))
        self.scratch = scratch

    def _add_pos(self, x: Tensor, image_w: int, image_h: int) -> Tensor:
        pe = uv_embedding(x.shape[1], x.shape[-2], x.shape[-1], image_w / image_h, x.dtype, x.device)
        return x + 0.1 * pe.to(x.dtype)[None]

    def _fuse(self, feats: list[Tensor]) -> Tensor:
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i + 1}_rn")(f) for i, f in enumerate(feats))
        out = s.refinenet4(l4, size=l3.shape[2:])
        out = s.refinenet3(out, l3, size=l2.shape[2:])
        out = s.refinenet2(out, l2, size=l1.shape[2:])
        out = s.refinenet1(out, l1)
        return s.output_conv1(out)

    def _forward_frames(self, layers: list[Tensor | None], image_hw: tuple[int, int], patch_start_idx: int,
                        frames: slice) -> Tensor | tuple[Tensor, Tensor]:
        H, W = image_hw
        gh, gw = H // self.patch_size, W // self.patch_size
        feats = []
        for j, li in enumerate(self.intermediate_layer_idx):
            t = layers[li]
            if t is None:
                raise ValueError(f"aggregator layer {li} was not kept; the DPT head needs it")
            t = t[:, frames, patch_start_idx:]
            B, S = t.shape[:2]
            x = self.norm(t.reshape(B * S, gh * gw, t.shape[-1]))
            x = x.transpose(1, 2).reshape(B * S, -1, gh, gw)
            x = self.projects[j](x)
            if self.pos_embed:
                x = self._add_pos(x, W, H)
            feats.append(self.resize_layers[j](x))
        out = self._fuse(feats)
        out = F.interpolate(out, size=(int(gh * self.patch_size / self.down_ratio),
                                       int(gw * self.patch_size / self.down_ratio)),
                            mode="bilinear", align_corners=True)
        if self.pos_embed:
            out = self._add_pos(out, W, H)
        if self.feature_only:
            return out.view(B, S, *out.shape[1:])
        out = self.scratch.output_conv2(out).permute(0, 2, 3, 1)  # [B*S, H, W, C]
        values = activate(out[..., :-1], self.activation)
        conf = out[..., -1]
        if self.conf_activation == "expp1":
            conf = 1 + conf.exp()
        elif self.conf_activation == "expp0":
            conf = conf.exp()
        elif self.conf_activation == "sigmoid":
            conf = torch.sigmoid(conf)
        else:
            raise ValueError(f"unknown confidence activation {self.conf_activation!r}")
        return values.reshape(B, S, *values.shape[1:]), conf.reshape(B, S, *conf.shape[1:])

    def forward(self, layers: list[Tensor | None], image_hw: tuple[int, int], patch_start_idx: int,
                frames_chunk_size: int | None = 8) -> Tensor | tuple[Tensor, Tensor]:
        """See the class docstring. Frames go through in chunks of ``frames_chunk_size`` to bound
        memory; each frame's result does not depend on the chunking."""
        S = next(t for t in layers if t is not None).shape[1]
        if not frames_chunk_size or frames_chunk_size >= S:
            return self._forward_frames(layers, image_hw, patch_start_idx, slice(None))
        parts = [self._forward_frames(layers, image_hw, patch_start_idx, slice(s, s + frames_chunk_size))
                 for s in range(0, S, frames_chunk_size)]
        if self.feature_only:
            return torch.cat(parts, dim=1)
        return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)
