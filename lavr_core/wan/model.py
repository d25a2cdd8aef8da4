"""The Wan2.1 video diffusion transformer, with the original Wan module names.

Parameter names are those of the official Wan code, DiffSynth and ComfyUI (``patch_embedding.*``,
``blocks.N.self_attn.q.weight``, ``head.head.weight`` ...), so their single-file weights load key for
key. Attention goes through diffusers' attention dispatcher and the norms are diffusers' FP32 layer
norm; the pieces diffusers lays out differently (module names, the float64 RoPE and timestep
embedding of the released models) are written here.

Shapes: latents ``[B, C, F, H, W]`` (F latent frames, H x W latent cells, 1/8 of the pixels for the
Wan VAE); tokens ``[B, L, dim]`` with ``L = f * h * w`` in (frame, row, column) order where
``(f, h, w) = (F, H, W) / patch_size``; text context ``[B, Lc, text_dim]`` (umT5 features, zero-padded
to ``text_len``); timesteps in the scheduler's 0..1000 range.

Subclasses add conditioning through two hooks of ``WanBlock`` (``condition_attention_input`` and
``condition_attention_output``) and a ``block_cond`` value that ``WanModel.forward`` hands to every
block unchanged; ReCamMaster's camera layers (``recammaster.py``) are built that way.

Two more hooks let a caller change *how* tokens attend without new parameters (the Fused 4D
sampler's view-time grid, ``lavr_core.fused4d``):

* ``rope_positions [L, 3]`` (``forward`` argument): per-token (frame, row, column) RoPE positions in
  place of the plain grid's; subclasses may instead override ``WanModel.rope(grid, device)``.
* ``self_attn_fn`` (``forward`` argument, or the ``WanModel.self_attn_fn`` attribute): the function
  every block's self-attention calls instead of ``attention``: ``fn(q, k, v)`` with
  ``[B, L, heads, head_dim]`` inputs and a ``[B, L, heads*head_dim]`` result. It is handed to the
  blocks as an argument (never stored on them), so gradient checkpointing recomputes with it.
Left at ``None`` both give exactly the plain model.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.normalization import FP32LayerNorm

from ..errors import InputError
from .config import WanConfig

Grid = tuple[int, int, int]


# ----------------------------------------------------------------------------- embeddings

def sinusoidal_embedding(dim: int, timestep: torch.Tensor) -> torch.Tensor:
    """``[B, dim]`` float64 ``[cos | sin]`` embedding of timesteps ``[B]`` (frequencies 10000^(-i/half)).

    Computed in float64 like the released models: at t ~ 1000 the float32 phase error is ~1e-4 rad,
    visible after the time MLP. (diffusers' ``get_timestep_embedding`` works in float32.)
    """
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=timestep.device).div(half))
    angles = torch.outer(timestep.reshape(-1).to(torch.float64), freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def rope_tables(config: WanConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Complex128 rotations ``[rope_max_len, d/2]`` for the frame, height and width sections of a head.

    Section widths are ``config.rope_dims`` (44/42/42 at head width 128); pair ``i`` of a section of
    real width ``d`` turns by ``pos * theta^(-2i/d)``. Float64 as in the official code.
    """
    out = []
    pos = torch.arange(config.rope_max_len, dtype=torch.float64)
    for d in config.rope_dims:
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64)[: d // 2] / d))
        angles = torch.outer(pos, inv_freq)
        out.append(torch.polar(torch.ones_like(angles), angles))
    return tuple(out)


def rope_for_grid(tables, grid: Grid, device=None, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """``[f*h*w, 1, head_dim/2]`` complex rotations for a token grid in (frame, row, column) order.

    Positions run 0..f-1, 0..h-1, 0..w-1; ReCamMaster's target|source concatenation therefore gives
    target frames 0..F-1 and source frames F..2F-1, exactly as in its training.
    """
    f, h, w = grid
    tf, th, tw = tables
    for n, t, axis in ((f, tf, "frames"), (h, th, "rows"), (w, tw, "columns")):
        if n > t.shape[0]:
            raise InputError(f"The latent grid has {n} token {axis}; the RoPE table covers {t.shape[0]}.",
                             "Use fewer frames or a smaller resolution.")
    rot = torch.cat([tf[:f].view(f, 1, 1, -1).expand(f, h, w, -1),
                     th[:h].view(1, h, 1, -1).expand(f, h, w, -1),
                     tw[:w].view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1)
    return rot.reshape(f * h * w, 1, -1).to(device=device, dtype=dtype)


def apply_rope(x: torch.Tensor, rope: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rotate ``x [B, L, heads*head_dim]`` (consecutive pairs are complex numbers); returns ``[B, L, heads, head_dim]``.

    The product is taken in ``rope``'s precision (complex128 by default, as the official code does),
    then cast back to ``x.dtype``.
    """
    b, n = x.shape[:2]
    real = torch.float64 if rope.dtype == torch.complex128 else torch.float32
    xc = torch.view_as_complex(x.to(real).reshape(b, n, num_heads, -1, 2))
    return torch.view_as_real(xc * rope).flatten(3).to(x.dtype)


def rope_for_positions(tables, positions: torch.Tensor, device=None,
                       dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """``[L, 1, head_dim/2]`` complex rotations for explicit per-token positions ``[L, 3]`` (frame, row, column).

    With the positions of a plain ``(f, h, w)`` grid this equals ``rope_for_grid``.
    """
    if positions.ndim != 2 or positions.shape[1] != 3 or positions.dtype.is_floating_point or positions.is_complex():
        raise InputError(f"RoPE positions must be an integer tensor [tokens, 3] (frame, row, column); got "
                         f"{positions.dtype} {tuple(positions.shape)}.",
                         "Build them with lavr_core.attention.fused_rope_positions(...).")
    pos = positions.to("cpu", torch.long)
    for col, (table, axis) in enumerate(zip(tables, ("frame", "row", "column"))):
        if pos.numel() and (int(pos[:, col].min()) < 0 or int(pos[:, col].max()) >= table.shape[0]):
            raise InputError(f"A RoPE {axis} position is outside 0..{table.shape[0] - 1} "
                             f"(got {int(pos[:, col].min())}..{int(pos[:, col].max())}).",
                             "Use fewer views or frames, or a smaller resolution.")
    rot = torch.cat([table[pos[:, col]] for col, table in enumerate(tables)], dim=-1)
    return rot.unsqueeze(1).to(device=device, dtype=dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Multi-head attention of ``[B, L, heads, head_dim]`` tensors -> ``[B, L, heads*head_dim]``.

    Uses diffusers' dispatcher, so its backend selection (``attention_backend(...)`` or
    ``DIFFUSERS_ATTN_BACKEND``: SDPA by default, flash/sage when installed) applies here too.
    """
    return dispatch_attention_fn(q, k, v).flatten(2)


# ----------------------------------------------------------------------------- layers

class WanRMSNorm(nn.Module):
    """RMS norm over the last axis, normalised in float32 and cast back before the weight (as Wan does)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype) * self.weight


class WanSelfAttention(nn.Module):
    """Self-attention with RMS-normalised q/k (over all heads) and 3-D RoPE."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = WanRMSNorm(dim, eps)
        self.norm_k = WanRMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, attn_fn=None) -> torch.Tensor:
        """``attn_fn``: replaces ``attention`` (same contract) when given, e.g. a masked attention."""
        q = apply_rope(self.norm_q(self.q(x)), rope, self.num_heads)
        k = apply_rope(self.norm_k(self.k(x)), rope, self.num_heads)
        v = self.v(x).unflatten(2, (self.num_heads, -1))
        return self.o((attn_fn or attention)(q, k, v))


class WanCrossAttention(nn.Module):
    """Cross-attention to the text context (no mask: padded text tokens take part, as in training),
    plus, for I2V models, a second attention to the CLIP image tokens whose result is added."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6, has_image_input: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = WanRMSNorm(dim, eps)
        self.norm_k = WanRMSNorm(dim, eps)
        if has_image_input:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = WanRMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_img: torch.Tensor | None = None) -> torch.Tensor:
        heads = self.num_heads
        q = self.norm_q(self.q(x)).unflatten(2, (heads, -1))
        k = self.norm_k(self.k(context)).unflatten(2, (heads, -1))
        v = self.v(context).unflatten(2, (heads, -1))
        out = attention(q, k, v)
        if context_img is not None:
            k_img = self.norm_k_img(self.k_img(context_img)).unflatten(2, (heads, -1))
            v_img = self.v_img(context_img).unflatten(2, (heads, -1))
            out = out + attention(q, k_img, v_img)
        return self.o(out)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (x.float() * (1 + scale) + shift).to(x.dtype)


class WanBlock(nn.Module):
    """One DiT block: modulated self-attention, cross-attention, modulated FFN.

    The six modulation vectors (shift/scale/gate for attention and FFN) are ``modulation + t_mod``,
    computed in float32. ``norm3`` (affine) is the cross-attention pre-norm and ``norm2`` the FFN
    pre-norm; the numbering is the original code's, kept for the key names.
    """

    def __init__(self, config: WanConfig):
        super().__init__()
        dim = config.dim
        self.self_attn = WanSelfAttention(dim, config.num_heads, config.eps)
        self.cross_attn = WanCrossAttention(dim, config.num_heads, config.eps, config.has_image_input)
        self.norm1 = FP32LayerNorm(dim, config.eps, elementwise_affine=False)
        self.norm2 = FP32LayerNorm(dim, config.eps, elementwise_affine=False)
        self.norm3 = FP32LayerNorm(dim, config.eps, elementwise_affine=True)
        self.ffn = nn.Sequential(nn.Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(config.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    # Hooks for conditioning subclasses; the plain Wan block leaves the attention input/output alone.
    def condition_attention_input(self, h: torch.Tensor, grid: Grid, cond) -> torch.Tensor:
        return h

    def condition_attention_output(self, a: torch.Tensor, cond) -> torch.Tensor:
        return a

    def forward(self, x: torch.Tensor, context: torch.Tensor, t_mod: torch.Tensor, rope: torch.Tensor,
                grid: Grid, block_cond=None, context_img: torch.Tensor | None = None,
                attn_fn=None) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = (self.modulation.float() + t_mod.float()).chunk(6, dim=1)
        h = _modulate(self.norm1(x), shift_a, scale_a)
        h = self.condition_attention_input(h, grid, block_cond)
        a = self.condition_attention_output(self.self_attn(h, rope, attn_fn), block_cond)
        x = x + (a.float() * gate_a).to(x.dtype)
        x = x + self.cross_attn(self.norm3(x), context, context_img)
        h = _modulate(self.norm2(x), shift_f, scale_f)
        return x + (self.ffn(h).float() * gate_f).to(x.dtype)


class WanHead(nn.Module):
    """Final modulated norm + linear to ``out_dim * prod(patch_size)`` values per token.

    Its modulation uses the time embedding ``t`` itself (not the 6-way ``t_mod``)."""

    def __init__(self, config: WanConfig):
        super().__init__()
        self.norm = FP32LayerNorm(config.dim, config.eps, elementwise_affine=False)
        self.head = nn.Linear(config.dim, config.out_dim * math.prod(config.patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, config.dim) / config.dim ** 0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation.float() + t.float().unsqueeze(1)).chunk(2, dim=1)
        return self.head(_modulate(self.norm(x), shift, scale))


class WanImageEmbedding(nn.Module):
    """I2V: CLIP image features ``[B, 257, image_dim]`` -> context tokens ``[B, 257, dim]`` (key ``img_emb.proj.*``)."""

    def __init__(self, image_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(image_dim), nn.Linear(image_dim, image_dim), nn.GELU(),
                                  nn.Linear(image_dim, dim), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


# ----------------------------------------------------------------------------- model

class WanModel(nn.Module):
    """Wan2.1 DiT. ``forward(x, timestep, context)`` predicts the flow-matching velocity ``noise - x0``.

    Build on the meta device and load a state dict with ``assign=True`` (or ``to_empty`` + copy) to
    skip the random init of 1.3B parameters. The RoPE tables are not parameters (so not in the
    state dict); they are built on first use. ``rope_dtype`` (complex128 by default, like the
    released code) may be set to ``torch.complex64`` to halve RoPE memory at ~1e-7 relative error.
    """

    block_class = WanBlock

    def __init__(self, config: WanConfig):
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embedding = nn.Conv3d(config.in_dim, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList([self.block_class(config) for _ in range(config.num_layers)])
        self.head = WanHead(config)
        if config.has_image_input:
            self.img_emb = WanImageEmbedding(config.image_dim, dim)
        self.rope_dtype = torch.complex128
        self.gradient_checkpointing = False
        #: Default self-attention override for every block (``None``: Wan's full attention); a
        #: ``forward(self_attn_fn=...)`` argument takes precedence for that call.
        self.self_attn_fn = None
        self._rope_tables = None
        self._rope_cache = None
        self._positions_rope_cache = None

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    # -- pieces of the forward pass (also used by the conformance runner and the sampler)
    def embed_time(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps ``[B]`` (or one shared ``[1]``) -> time embedding ``t [B, dim]`` and ``t_mod [B, 6, dim]``.

        The timestep's own value is used as given: ReCamMaster's pipeline rounds it to bf16 first.
        """
        timestep = torch.as_tensor(timestep, device=self.patch_embedding.weight.device).reshape(-1)
        w = self.time_embedding[0].weight
        t = self.time_embedding(sinusoidal_embedding(self.config.freq_dim, timestep).to(w.dtype))
        return t, self.time_projection(t).unflatten(1, (6, self.config.dim))

    def embed_text(self, context: torch.Tensor) -> torch.Tensor:
        """umT5 features ``[B, Lc, text_dim]`` -> ``[B, Lc, dim]``."""
        if context.ndim != 3 or context.shape[-1] != self.config.text_dim:
            raise InputError(f"The text conditioning has shape {tuple(context.shape)}; this model needs "
                             f"[batch, tokens, {self.config.text_dim}] features.",
                             "Encode the prompt with Wan's umT5-XXL text encoder (CLIPLoader type 'wan') "
                             "in ComfyUI, not with another model's text encoder.")
        return self.text_embedding(context.to(self.text_embedding[0].weight.dtype))

    def patchify(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """Latents ``[B, in_dim, F, H, W]`` -> tokens ``[B, f*h*w, dim]`` and the grid ``(f, h, w)``."""
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_dim:
            raise InputError(f"The latents have shape {tuple(x.shape)}; this model needs "
                             f"[batch, {c.in_dim}, frames, height, width].",
                             "Encode the video with the Wan2.1 VAE (16 latent channels).")
        for n, p, axis in zip(x.shape[2:], c.patch_size, ("frames", "height", "width")):
            if n % p:
                raise InputError(f"Latent {axis} {n} is not a multiple of the patch size {p}.",
                                 "Use video sizes divisible by 16 pixels (8x VAE, 2x patch).")
        tokens = self.patch_embedding(x.to(self.patch_embedding.weight.dtype))
        grid = tuple(tokens.shape[2:])
        # contiguous: a strided residual stream makes every add slow and every LayerNorm copy
        return tokens.flatten(2).transpose(1, 2).contiguous(), grid

    def unpatchify(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Head output ``[B, f*h*w, pt*ph*pw*out_dim]`` (patch offsets before channels) -> ``[B, out_dim, F, H, W]``."""
        f, h, w = grid
        pt, ph, pw = self.config.patch_size
        x = tokens.reshape(tokens.shape[0], f, h, w, pt, ph, pw, -1)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(tokens.shape[0], -1, f * pt, h * ph, w * pw)

    def rope(self, grid: Grid, device) -> torch.Tensor:
        """RoPE rotations for a grid, cached for the last (grid, device, dtype): a sampler asks ~100 times."""
        key = (tuple(grid), torch.device(device), self.rope_dtype)
        if self._rope_cache is None or self._rope_cache[0] != key:
            if self._rope_tables is None:
                self._rope_tables = rope_tables(self.config)
            self._rope_cache = (key, rope_for_grid(self._rope_tables, grid, device=device, dtype=self.rope_dtype))
        return self._rope_cache[1]

    def rope_at(self, positions: torch.Tensor, device) -> torch.Tensor:
        """RoPE rotations for explicit per-token positions ``[L, 3]``, cached for the last positions
        (a sampler passes the same ones at every step)."""
        positions = positions.detach()
        cached = self._positions_rope_cache
        key = (tuple(positions.shape), torch.device(device), self.rope_dtype)
        if cached is None or cached[0] != key or not torch.equal(cached[1], positions.to(cached[1].device)):
            if self._rope_tables is None:
                self._rope_tables = rope_tables(self.config)
            rot = rope_for_positions(self._rope_tables, positions, device=device, dtype=self.rope_dtype)
            self._positions_rope_cache = cached = (key, positions.to("cpu", torch.long).clone(), rot)
        return cached[2]

    def condition_tokens(self, tokens: torch.Tensor, grid: Grid, token_cond) -> torch.Tensor:
        """Hook for subclasses: change the patch embeddings ``[B, L, dim]`` before the blocks (Gen3R
        adds its camera adapter's features here). The plain model leaves them alone."""
        return tokens

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor, *,
                clip_feature: torch.Tensor | None = None, y: torch.Tensor | None = None,
                block_cond=None, token_cond=None, rope_positions: torch.Tensor | None = None,
                self_attn_fn=None) -> torch.Tensor:
        """Velocity prediction ``[B, out_dim, F, H, W]``.

        Args:
            x: noisy latents ``[B, C, F, H, W]`` (``C = in_dim``, or ``in_dim - y channels`` for I2V).
            timestep: ``[B]`` or ``[1]`` in 0..1000 (one value for the whole sequence).
            context: umT5 features ``[B, Lc, text_dim]`` (see ``pad_context``).
            clip_feature: I2V only: CLIP image features ``[B, 257, image_dim]``.
            y: I2V only: conditioning latents concatenated to ``x`` along channels.
            block_cond: passed unchanged to every block's conditioning hooks (ReCamMaster: ``cam_emb``).
            token_cond: passed to ``condition_tokens`` after the patch embedding when not ``None``.
            rope_positions: optional ``[f*h*w, 3]`` integer (frame, row, column) RoPE position of every
                token (after patchifying, in token order); ``None`` uses ``self.rope(grid)``.
            self_attn_fn: optional replacement of every block's self-attention kernel
                (``fn(q, k, v)``, ``[B, L, heads, head_dim]`` -> ``[B, L, heads*head_dim]``);
                ``None`` uses ``self.self_attn_fn`` (itself ``None`` = full attention).
        """
        t, t_mod = self.embed_time(timestep)
        context = self.embed_text(context)
        context_img = None
        if self.config.has_image_input:
            if clip_feature is None or y is None:
                raise InputError("This is an image-to-video Wan model; it needs the start image's CLIP "
                                 "features and conditioning latents.",
                                 "Use a text-to-video Wan2.1 model, or give the image conditioning.")
            x = torch.cat([x, y.to(x.dtype)], dim=1)
            context_img = self.img_emb(clip_feature.to(self.dtype))
        tokens, grid = self.patchify(x)
        if token_cond is not None:
            tokens = self.condition_tokens(tokens, grid, token_cond)
        if rope_positions is None:
            rope = self.rope(grid, tokens.device)
        else:
            if rope_positions.shape[0] != tokens.shape[1]:
                raise InputError(f"{rope_positions.shape[0]} RoPE positions were given for {tokens.shape[1]} tokens.",
                                 "Give one (frame, row, column) position per token of the patchified latents.")
            rope = self.rope_at(rope_positions, tokens.device)
        attn_fn = self_attn_fn if self_attn_fn is not None else self.self_attn_fn
        # Only passed when set, so block subclasses with the original signature keep working.
        extra = {} if attn_fn is None else {"attn_fn": attn_fn}
        for block in self.blocks:
            args = (tokens, context, t_mod, rope, grid, block_cond, context_img)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False, **extra)
            else:
                tokens = block(*args, **extra)
        return self.unpatchify(self.head(tokens, t), grid)


def pad_context(context: torch.Tensor, text_len: int = 512) -> torch.Tensor:
    """Zero-pad umT5 features ``[B, Lc, D]`` to ``text_len`` tokens, as Wan's prompter does.

    The padded rows matter: cross-attention has no mask, and the text MLP maps a zero row to a
    non-zero token that the released models were trained to attend to.
    """
    n = context.shape[1]
    if n > text_len:
        raise InputError(f"The text conditioning has {n} tokens; Wan was trained with at most {text_len}.",
                         "Shorten the prompt.")
    return F.pad(context, (0, 0, 0, text_len - n)) if n < text_len else context
