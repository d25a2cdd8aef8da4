"""Temporal attention for the 4D VGGT (4Real-Video-V2's "dynamic layers").

The aggregator runs each timestep's ``V`` views as one VGGT sequence (its batch axis holds the
``B x T`` timesteps, ordered ``b * T + t``). After every frame block and every global block a
``TemporalAttention`` layer lets each token attend to the tokens **of the same view and the same
token position at every other timestep** of its sample: tokens ``[B*T, V, P, C]`` are regrouped to
``[B*V*P, T, C]`` sequences of length ``T``, attended, and put back.

Each layer is a pre-norm residual branch ``x + proj(attn(norm(x)))`` with a 1D rotary embedding of
the timestep index on queries and keys (so attention knows temporal order and offsets, for any
``T``). ``proj`` starts at exactly zero (weight and bias), so a freshly built layer returns its input
unchanged bit for bit and the untrained 4D model equals plain VGGT; training moves ``proj`` off zero
first and the rest of the branch follows (the ControlNet zero-module idea).

With ``T == 1`` a trained layer still runs (attention over a single timestep is the value path),
so one set of weights means one function for any clip length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from ..vggt.aggregator import LayerHook, TokenLayout

#: Rotary base of the timestep embedding. Clips are short (tens of timesteps), so a small base
#: spreads the rotation frequencies over the offsets that actually occur.
TIME_ROPE_BASE = 100.0


def rope_1d(x: Tensor, positions: Tensor, base: float = TIME_ROPE_BASE) -> Tensor:
    """Rotate ``x`` ``[..., T, D]`` (D even) by positions ``[T]``: pair ``(i, i + D/2)`` turns by
    ``pos * base**(-2i/D)``. Computed in float32, returned in ``x``'s dtype."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"1D RoPE needs an even head width, got {d}")
    inv_freq = base ** (-torch.arange(0, d // 2, device=x.device, dtype=torch.float32) / (d // 2))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None]          # [T, D/2]
    cos = torch.cat([angles.cos(), angles.cos()], -1).to(x.dtype)
    sin = torch.cat([angles.sin(), angles.sin()], -1).to(x.dtype)
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-b, a], dim=-1) * sin


class TemporalAttention(nn.Module):
    """Residual self-attention along time: ``[N, T, C] -> [N, T, C]``.

    Submodules (their names are the weights file's keys, see ``lavr_core.vggt4d.weights``):
    ``norm`` (LayerNorm, eps 1e-5), ``qkv`` (Linear C -> 3C), ``q_norm``/``k_norm`` (per-head
    LayerNorm), ``proj`` (Linear C -> C, zero-initialised).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2:
            raise ValueError(f"temporal attention width {dim} needs {num_heads} heads of even width")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim)
        self.k_norm = nn.LayerNorm(self.head_dim)
        self.proj = nn.Linear(dim, dim)
        self.reset_output()

    def reset_output(self) -> None:
        """Zero the output projection: the layer becomes the identity again."""
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        N, T, C = x.shape
        if positions is None:
            positions = torch.arange(T, device=x.device)
        q, k, v = self.qkv(self.norm(x)).view(N, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = rope_1d(self.q_norm(q), positions), rope_1d(self.k_norm(k), positions)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, T, C)
        return x + self.proj(out)


class TemporalLayers(nn.Module):
    """One ``TemporalAttention`` after each of the aggregator's frame blocks (``frame.{i}``) and each
    of its global blocks (``global_.{i}``; ``global`` is a Python keyword)."""

    def __init__(self, dim: int, depth: int, num_heads: int):
        super().__init__()
        self.dim, self.depth, self.num_heads = dim, depth, num_heads
        self.frame = nn.ModuleList(TemporalAttention(dim, num_heads) for _ in range(depth))
        self.global_ = nn.ModuleList(TemporalAttention(dim, num_heads) for _ in range(depth))

    def layer(self, kind: str, index: int) -> TemporalAttention:
        return (self.frame if kind == "frame" else self.global_)[index]

    def reset_outputs(self) -> None:
        """Zero every output projection (the untrained state: the model equals plain VGGT)."""
        for m in [*self.frame, *self.global_]:
            m.reset_output()

    def hook(self, batch: int, times: int) -> LayerHook:
        """The aggregator hook for ``batch`` samples of ``times`` timesteps (aggregator batch ``b*T + t``)."""

        def apply(kind: str, index: int, tokens: Tensor, layout: TokenLayout) -> Tensor:
            BT, V, P, C = tokens.shape
            if BT != batch * times:
                raise InputError(f"The aggregator ran {BT} sequences but the grid has {batch} x {times} timesteps.",
                                 "Pass frames as [V, T, 3, H, W] (or [B, V, T, 3, H, W]) to VGGT4D.")
            x = tokens.view(batch, times, V, P, C).permute(0, 2, 3, 1, 4).reshape(batch * V * P, times, C)
            layer = self.layer(kind, index)
            x = layer(x.to(layer.proj.weight.dtype)).to(tokens.dtype)  # a half-precision VGGT, float32 layers
            return x.view(batch, V, P, times, C).permute(0, 3, 1, 2, 4).reshape(BT, V, P, C)

        return apply


def replace_camera_tokens(layers: list[Tensor | None], batch: int, times: int) -> list[Tensor | None]:
    """Camera-token replacement: token 0 of every aggregator layer ``[B*T, V, P, 2C]`` at every timestep
    becomes timestep 0's, so the camera head predicts one camera per view for the whole clip (the
    views are fixed cameras; their estimate should not drift with the scene's motion). Patch and
    register tokens are untouched, so depth, points and Gaussians still follow each timestep."""
    out: list[Tensor | None] = []
    for t in layers:
        if t is None:
            out.append(None)
            continue
        BT, V, P, C2 = t.shape
        g = t.view(batch, times, V, P, C2)
        cam = g[:, :1, :, :1].expand(batch, times, V, 1, C2)
        out.append(torch.cat([cam, g[:, :, :, 1:]], dim=3).reshape(BT, V, P, C2))
    return out
