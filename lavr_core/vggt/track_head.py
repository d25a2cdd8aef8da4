"""Tracking head: follows query pixels of the first frame through every frame.

A DPT feature extractor (no positional embedding, half resolution) turns aggregator layers into
feature maps; a CoTracker-style predictor then refines all tracks a few times: it correlates each
track's feature with a pyramid of feature maps around the current estimate, and a transformer
alternating attention over time (per track) and over tracks (through a few learned "virtual"
tracks) predicts coordinate and feature updates. Names follow the released checkpoint, including
its ``virual_tracks`` spelling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .config import TrackHeadConfig
from .dpt_head import DPTHead
from .layers import Mlp


def sample_bilinear(fmap: Tensor, xy: Tensor, padding_mode: str = "border") -> Tensor:
    """Sample ``fmap`` ``[N, C, H, W]`` at pixel coordinates ``xy`` ``[N, Ho, Wo, 2]`` (x, y; pixel
    centres at integers, aligned corners). Returns ``[N, C, Ho, Wo]``."""
    H, W = fmap.shape[-2:]
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], dtype=fmap.dtype, device=fmap.device)
    grid = xy.to(fmap.dtype) * scale - 1
    return F.grid_sample(fmap, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def sample_points(fmap: Tensor, xy: Tensor) -> Tensor:
    """Features ``[N, R, C]`` of ``fmap`` ``[N, C, H, W]`` at points ``xy`` ``[N, R, 2]`` (border padding)."""
    return sample_bilinear(fmap, xy[:, :, None]).squeeze(-1).transpose(1, 2)


def grid_sincos_embedding(dim: int, grid_h: int, grid_w: int) -> Tensor:
    """``[1, dim, grid_h, grid_w]``: column index on the first ``dim/2`` channels, row index on the
    rest, each as ``[sin, cos]`` with frequencies ``10000**(-i/(dim/4))``."""
    def one(values: Tensor, d: int) -> Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        ang = values.reshape(-1).to(torch.float64)[:, None] * omega[None]
        return torch.cat([ang.sin(), ang.cos()], dim=1)

    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float32), torch.arange(grid_w, dtype=torch.float32),
                                indexing="ij")
    emb = torch.cat([one(cols, dim // 2), one(rows, dim // 2)], dim=1).float()
    return emb.view(1, grid_h, grid_w, dim).permute(0, 3, 1, 2)


def flow_embedding(xy: Tensor, channels: int) -> Tensor:
    """``[..., 2*channels]``: x then y, each interleaved ``sin, cos`` at frequencies ``k*1000/channels``
    for ``k = 0, 2, 4, ...`` (the linear, not geometric, spacing is what the weights expect)."""
    freqs = torch.arange(0, channels, 2, device=xy.device, dtype=torch.float32) * (1000.0 / channels)
    out = []
    for c in (xy[..., 0:1], xy[..., 1:2]):
        ang = c.float() * freqs
        out.append(torch.stack([ang.sin(), ang.cos()], dim=-1).flatten(-2))
    return torch.cat(out, dim=-1)


class AttnBlock(nn.Module):
    """Self-attention block of the update transformer. Note its residual starts from the *normed*
    input (``x = norm1(x); x = x + attn(x)``), as in the official module.

    The attention runs on ``nn.MultiheadAttention``'s explicit path (weights requested, as the
    official code calls it): the iterative tracker amplifies rounding differences, and the fused
    kernel's different summation order would move tracks by up to ~0.04 px after 4 iterations.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x)
        x = x + self.attn(x, x, x)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    """Cross-attention block (queries ``x``, keys/values ``context``), residual from the normed ``x``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = self.norm1(x)
        context = self.norm_context(context)
        x = x + self.cross_attn(x, context, context)[0]
        return x + self.mlp(self.norm2(x))


class UpdateFormer(nn.Module):
    """Tokens ``[B, N, S, D_in]`` (N tracks, S frames) -> updates ``[B, N, S, D_out]``."""

    def __init__(self, depth: int, input_dim: int, hidden: int, num_heads: int, output_dim: int,
                 num_virtual_tracks: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden)
        self.output_norm = nn.LayerNorm(hidden)
        self.flow_head = nn.Linear(hidden, output_dim)
        self.virual_tracks = nn.Parameter(torch.zeros(1, num_virtual_tracks, 1, hidden))
        self.time_blocks = nn.ModuleList(AttnBlock(hidden, num_heads, mlp_ratio) for _ in range(depth))
        self.space_virtual_blocks = nn.ModuleList(AttnBlock(hidden, num_heads, mlp_ratio) for _ in range(depth))
        self.space_point2virtual_blocks = nn.ModuleList(CrossAttnBlock(hidden, num_heads, mlp_ratio)
                                                        for _ in range(depth))
        self.space_virtual2point_blocks = nn.ModuleList(CrossAttnBlock(hidden, num_heads, mlp_ratio)
                                                        for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.input_transform(self.input_norm(x))
        init = tokens
        B, N, T, C = tokens.shape
        tokens = torch.cat([tokens, self.virual_tracks.expand(B, -1, T, -1)], dim=1)
        M = tokens.shape[1]
        every = len(self.time_blocks) // len(self.space_virtual_blocks)
        j = 0
        for i, tblock in enumerate(self.time_blocks):
            tokens = tblock(tokens.reshape(B * M, T, C)).view(B, M, T, C)
            if i % every == 0:
                space = tokens.permute(0, 2, 1, 3).reshape(B * T, M, C)
                points, virtual = space[:, :N], space[:, N:]
                virtual = self.space_virtual2point_blocks[j](virtual, points)
                virtual = self.space_virtual_blocks[j](virtual)
                points = self.space_point2virtual_blocks[j](points, virtual)
                tokens = torch.cat([points, virtual], dim=1).view(B, T, M, C).permute(0, 2, 1, 3)
                j += 1
        tokens = tokens[:, :N] + init
        return self.flow_head(self.output_norm(tokens))


class CorrPyramid:
    """Correlation of track features with a pyramid of feature maps, sampled around each estimate.

    Level ``l`` is the feature map average-pooled ``l`` times by 2. For a track at ``(x, y)`` the
    sample at window cell ``(a, b)`` is taken at ``(x/2^l + d_a, y/2^l + d_b)`` with
    ``d = -r .. r``; the window is flattened with ``a`` (the x offset) as the slow index, the order
    the released MLP weights expect.
    """

    def __init__(self, fmaps: Tensor, num_levels: int, radius: int):
        self.radius = radius
        self.levels = [fmaps]
        for _ in range(num_levels - 1):
            B, S, C, H, W = self.levels[-1].shape
            pooled = F.avg_pool2d(self.levels[-1].reshape(B * S, C, H, W), kernel_size=2, stride=2)
            self.levels.append(pooled.reshape(B, S, C, *pooled.shape[-2:]))
        d = torch.linspace(-radius, radius, 2 * radius + 1, device=fmaps.device, dtype=fmaps.dtype)
        self.delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1)  # [2r+1, 2r+1, 2]

    def sample(self, feats: Tensor, coords: Tensor) -> Tensor:
        """``feats`` ``[B, S, N, C]``, ``coords`` ``[B, S, N, 2]`` -> ``[B, S, N, levels*(2r+1)^2]``."""
        B, S, N, C = feats.shape
        k = 2 * self.radius + 1
        out = []
        for lvl, fm in enumerate(self.levels):
            H, W = fm.shape[-2:]
            corr = torch.matmul(feats, fm.reshape(B, S, C, H * W)) / math.sqrt(C)
            xy = coords.reshape(B * S * N, 1, 1, 2) / (2 ** lvl) + self.delta.to(coords.dtype).view(1, k, k, 2)
            sampled = sample_bilinear(corr.reshape(B * S * N, 1, H, W), xy, padding_mode="zeros")
            out.append(sampled.view(B, S, N, k * k))
        return torch.cat(out, dim=-1)


class TrackPredictor(nn.Module):
    """Iterative track refinement on feature maps ``[B, S, C, h, w]`` (see module docstring)."""

    def __init__(self, cfg: TrackHeadConfig):
        super().__init__()
        c = cfg.features
        self.stride = cfg.stride
        self.latent_dim = c
        self.corr_levels = cfg.corr_levels
        self.corr_radius = cfg.corr_radius
        self.max_scale = cfg.max_scale
        self.predict_conf = cfg.predict_conf
        self.transformer_dim = 3 * c + 4
        self.corr_mlp = Mlp(cfg.corr_levels * (2 * cfg.corr_radius + 1) ** 2, cfg.hidden_size, c)
        # Index 0 marks the query frame, index 1 every other frame.
        self.query_ref_token = nn.Parameter(torch.zeros(1, 2, self.transformer_dim))
        self.updateformer = UpdateFormer(cfg.depth, self.transformer_dim, cfg.hidden_size, cfg.num_heads, c + 2,
                                         cfg.num_virtual_tracks)
        self.fmap_norm = nn.LayerNorm(c)
        self.ffeat_norm = nn.GroupNorm(1, c)
        self.ffeat_updater = nn.Sequential(nn.Linear(c, c), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(c, 1))
        if cfg.predict_conf:
            self.conf_predictor = nn.Sequential(nn.Linear(c, 1))

    def forward(self, query_points: Tensor, fmaps: Tensor, iters: int) -> tuple[list[Tensor], Tensor, Tensor | None]:
        B, N, _ = query_points.shape
        S, C, h, w = fmaps.shape[1:]
        smallest = 2 ** (self.corr_levels - 1)
        if min(h, w) < smallest:
            px = smallest * self.stride
            raise InputError(f"Tracking needs frames of at least {px}x{px} pixels ({self.corr_levels} correlation "
                             f"levels); these give {h}x{w} feature maps.", "Track on larger frames (518 px wide).")
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        coords = (query_points / float(self.stride)).reshape(B, 1, N, 2).repeat(1, S, 1, 1)
        query = coords[:, 0].clone()
        feats = sample_points(fmaps[:, 0], query)[:, None].repeat(1, S, 1, 1)  # [B, S, N, C]
        corr = CorrPyramid(fmaps, self.corr_levels, self.corr_radius)
        pos = sample_points(grid_sincos_embedding(self.transformer_dim, h, w).to(fmaps.device).expand(B, -1, -1, -1),
                            query).reshape(B * N, 1, -1)
        ref = torch.cat([self.query_ref_token[:, :1], self.query_ref_token[:, 1:2].expand(-1, S - 1, -1)], dim=1)
        preds = []
        for _ in range(iters):
            coords = coords.detach()
            fc = self.corr_mlp(corr.sample(feats, coords).permute(0, 2, 1, 3).reshape(B * N, S, -1))
            flows = (coords - coords[:, :1]).permute(0, 2, 1, 3).reshape(B * N, S, 2)
            femb = torch.cat([flow_embedding(flows, C // 2), flows / self.max_scale, flows / self.max_scale], dim=-1)
            feats_ = feats.permute(0, 2, 1, 3).reshape(B * N, S, C)
            x = torch.cat([femb, fc, feats_], dim=2) + pos + ref.to(fmaps.dtype)
            delta = self.updateformer(x.view(B, N, S, -1)).reshape(B * N, S, -1)
            feats_ = self.ffeat_updater(self.ffeat_norm(delta[..., 2:].reshape(-1, C))) + feats_.reshape(-1, C)
            feats = feats_.reshape(B, N, S, C).permute(0, 2, 1, 3)
            coords = coords + delta[..., :2].reshape(B, N, S, 2).permute(0, 2, 1, 3)
            coords[:, 0] = query  # the query frame's position is given, never predicted
            preds.append(coords * self.stride)
        vis = torch.sigmoid(self.vis_predictor(feats).squeeze(-1))
        conf = torch.sigmoid(self.conf_predictor(feats).squeeze(-1)) if self.predict_conf else None
        return preds, vis, conf


class TrackHead(nn.Module):
    """``forward(layers, image_hw, patch_start_idx, query_points [B, N, 2] pixels)`` ->
    ``(tracks: list of [B, S, N, 2] pixels per iteration, vis [B, S, N], conf [B, S, N])``."""

    def __init__(self, dim_in: int, patch_size: int, cfg: TrackHeadConfig):
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = DPTHead(dim_in, patch_size=patch_size, features=cfg.features,
                                         out_channels=cfg.out_channels,
                                         intermediate_layer_idx=cfg.intermediate_layer_idx, pos_embed=False,
                                         feature_only=True, down_ratio=2)
        self.tracker = TrackPredictor(cfg)

    def forward(self, layers: list[Tensor | None], image_hw: tuple[int, int], patch_start_idx: int,
                query_points: Tensor, iters: int | None = None):
        fmaps = self.feature_extractor(layers, image_hw, patch_start_idx)
        return self.tracker(query_points, fmaps, self.cfg.iters if iters is None else iters)
