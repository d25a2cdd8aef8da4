"""The LaVR adapter network: CUT3R state tokens -> latent frames, camera poses -> per-block features.

Two branches, both computed once per video (they depend on neither the noise nor the timestep):

* **Scene latent frames.** For each adapter latent frame, the chosen state snapshot ``[S, D]`` goes
  through ``state_norm`` + ``state_mlp`` (D -> hidden -> hidden). A query transformer with one query
  per cell of the target latent grid (``query_stride`` policy, ``config.py``) attends to it
  (``layers.{i}``: pre-norm self-attention over the queries, cross-attention to the state, FFN),
  and ``out_norm`` + ``out_proj`` map every query to the latent channels: ``[C, F_a, H, W]``
  frames that the DiT reads like the source latents. ``out_proj`` starts at zero.
* **Camera features.** ``source_pose`` and ``target_pose`` (each MLP pose_dim -> hidden -> hidden)
  embed the 12-number relative poses of the source (from CUT3R) and target cameras; per DiT block
  ``source_out.{i}`` / ``target_out.{i}`` (hidden -> model_dim) give that block's features, added to
  the block's self-attention input on every token of the frame (the way ReCamMaster adds its camera).
  These output layers start at zero (weight and bias), so the features are exactly 0 at init.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from .config import LavrAdapterConfig


def snapshot_indices(state_frames: list[int], num_video_frames: int, count: int) -> list[int]:
    """For ``count`` evenly spaced source frames ``round(j (T - 1) / (count - 1))``, the index into
    ``state_frames`` of the kept snapshot nearest to each (the earlier one on a tie)."""
    if not state_frames:
        raise InputError("The scene latent has no state tokens.", "Encode the scene latent with state_every >= 1.")
    T = max(int(num_video_frames), 1)
    out = []
    for j in range(count):
        want = round(j * (T - 1) / (count - 1)) if count > 1 else 0
        out.append(min(range(len(state_frames)), key=lambda i: (abs(state_frames[i] - want), state_frames[i])))
    return out


def frame_indices(num_video_frames: int, count: int) -> list[int]:
    """Source video frames ``round(j (T - 1) / (count - 1))`` for ``j < count`` (0, 4, 8 ... when T = 4(count-1)+1)."""
    T = max(int(num_video_frames), 1)
    return [round(j * (T - 1) / (count - 1)) if count > 1 else 0 for j in range(count)]


def relative_pose_12(c2w: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """``[N, 4, 4]`` c2w -> ``[N, 12]``: ``inv(reference) @ c2w`` (default: the first pose), top 3x4
    flattened row-major, float32 (ReCamMaster's camera layout)."""
    from ..camera.transforms import invert_pose

    c2w = c2w.double()
    ref = c2w[0] if reference is None else reference.double()
    rel = invert_pose(ref) @ c2w
    return rel[:, :3, :].reshape(-1, 12).float()


def fourier_positions(h: int, w: int, freqs: int, device=None) -> torch.Tensor:
    """``[h*w, 4*freqs]`` sin/cos features of the cell centres in [-1, 1] (row-major cells)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    bands = (2.0 ** torch.arange(freqs, device=device, dtype=torch.float32)) * (math.pi / 2)
    ang = torch.cat([yy.reshape(-1, 1) * bands, xx.reshape(-1, 1) * bands], dim=1)
    return torch.cat([ang.sin(), ang.cos()], dim=1)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        def split(t):
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(memory)), split(self.v(memory)))
        return self.o(out.transpose(1, 2).flatten(2))


class QueryLayer(nn.Module):
    """Pre-norm: self-attention over the queries, cross-attention to the state tokens, GELU FFN."""

    def __init__(self, dim: int, heads: int, ffn_mult: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = _Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim * ffn_mult), nn.GELU(), nn.Linear(dim * ffn_mult, dim))

    def forward(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        h = self.norm1(q)
        q = q + self.self_attn(h, h)
        q = q + self.cross_attn(self.norm2(q), memory)
        return q + self.ffn(self.norm3(q))


def _pose_mlp(cfg: LavrAdapterConfig) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cfg.pose_dim, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU())


class LavrAdapter(nn.Module):
    """See the module docstring. Built zero-initialised where it feeds the DiT (``reset_outputs``)."""

    def __init__(self, config: LavrAdapterConfig):
        super().__init__()
        self.config = c = config
        self.state_norm = nn.LayerNorm(c.state_dim)
        self.state_mlp = nn.Sequential(nn.Linear(c.state_dim, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.hidden))
        self.query_embed = nn.Parameter(torch.randn(c.hidden) * 0.02)
        self.query_pos = nn.Sequential(nn.Linear(4 * c.pos_freqs, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden))
        self.layers = nn.ModuleList([QueryLayer(c.hidden, c.num_heads, c.ffn_mult) for _ in range(c.num_layers)])
        self.out_norm = nn.LayerNorm(c.hidden)
        self.out_proj = nn.Linear(c.hidden, c.latent_channels * c.query_stride ** 2)
        self.source_pose = _pose_mlp(c)
        self.target_pose = _pose_mlp(c)
        self.source_out = nn.ModuleList([nn.Linear(c.hidden, c.model_dim) for _ in range(c.model_layers)])
        self.target_out = nn.ModuleList([nn.Linear(c.hidden, c.model_dim) for _ in range(c.model_layers)])
        self.reset_outputs()

    @torch.no_grad()
    def reset_outputs(self) -> None:
        """Zero every layer that feeds the DiT: the latent projection and the per-block pose outputs."""
        for lin in (self.out_proj, *self.source_out, *self.target_out):
            lin.weight.zero_()
            lin.bias.zero_()

    @property
    def dtype(self) -> torch.dtype:
        return self.out_proj.weight.dtype

    def scene_frames(self, states: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
        """State snapshots ``[N, S, D]`` -> adapter latent frames ``[latent_channels, N, H, W]``."""
        c = self.config
        H, W = (int(v) for v in latent_hw)
        s = c.query_stride
        if H % s or W % s:
            raise InputError(f"The latent grid {H}x{W} is not a multiple of the LaVR adapter's query stride {s}.",
                             f"Use a video size whose latent grid (1/8 of the pixels) divides by {s}.")
        if states.ndim != 3:
            raise InputError(f"State tokens have shape {tuple(states.shape)}; expected [snapshots, tokens, width].",
                             "Pass a scene latent from Encode Scene Latent.")
        c.check_scene(states.shape[1], states.shape[2])
        memory = self.state_mlp(self.state_norm(states.to(self.dtype)))
        hq, wq = H // s, W // s
        pos = fourier_positions(hq, wq, c.pos_freqs, device=memory.device).to(self.dtype)
        q = (self.query_embed + self.query_pos(pos))[None].expand(states.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, memory)
        out = self.out_proj(self.out_norm(q))                                   # [N, hq*wq, C*s*s]
        out = out.transpose(1, 2).reshape(states.shape[0], -1, hq, wq)
        if s > 1:
            out = F.pixel_shuffle(out, s)
        return out.transpose(0, 1)                                               # [C, N, H, W]

    def pose_features(self, source_pose: torch.Tensor, target_pose: torch.Tensor | None) -> torch.Tensor:
        """Per-block frame features ``[model_layers, B, F_t + F_s, model_dim]``.

        ``target_pose [B, F_t, 12]`` (``None``: zeros for those frames, i.e. no target features) and
        ``source_pose [B, F_s, 12]``; frames come out target first, then source, the order of the
        DiT's frames.
        """
        sf = self.source_pose(source_pose.to(self.dtype))
        src = [lin(sf) for lin in self.source_out]
        if target_pose is None:
            return torch.stack(src)
        tf = self.target_pose(target_pose.to(self.dtype))
        b = max(tf.shape[0], sf.shape[0])
        return torch.stack([torch.cat([lin(tf).expand(b, -1, -1), s.expand(b, -1, -1)], dim=1)
                            for lin, s in zip(self.target_out, src)])
