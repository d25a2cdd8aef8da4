"""Fused view-time sparse attention (4Real-Video-V2): one self-attention over a grid of frames.

A multi-view video is a grid of ``views x times`` frames (rows = fixed viewpoints, columns = time
steps), each frame ``tokens_per_frame`` tokens. Token ``n`` of the flattened sequence is

    n = (v * times + t) * tokens_per_frame + s      (order [v, t, s]: view slowest, spatial fastest)

which is the (frame, row, column) order of Wan's patchified latents when the ``V*T`` frames are laid
out view by view (``frame = v * times + t``). A query attends to every key of the **same view or the
same time** (itself included), so one layer mixes a frame with its row and its column of the grid
and with nothing else. The fraction of (query, key) pairs kept is exactly

    density = (times + views - 1) / (times * views)

(each frame sees ``T`` frames of its view plus ``V - 1`` others at its time), so the ideal speed-up
over full attention is ``1 / density``.

Backends, all with one API (``fused_view_time_attention``) and softmax scale ``1/sqrt(head_dim)``:

* ``flex``: ``torch.nn.attention.flex_attention`` with a ``BlockMask`` (128 x 128 tiles) from the
  ``mask_mod`` ``same_view | same_time``; tiles with no kept pair are skipped, tiles with only kept
  pairs skip the mask. Compiled (``torch.compile(flex_attention)``) on CUDA, where it also trains.
  On CPU (torch 2.13, measured): the eager call works for the forward pass but is PyTorch's unfused
  reference (it materialises the full score matrix and ignores the block sparsity); the compiled call
  generates a fused C++ kernel that does skip tiles (first compile ~10-60 s, see
  ``bench/RESULTS_fused_attention.md``: 1.46x less CPU time than unmasked SDPA at 4 x 6 frames of
  15x26 tokens); there is **no CPU backward** in either mode, so ``flex`` on CPU raises when
  gradients are being recorded (under ``no_grad`` it detaches inputs that require grad).
* ``dense``: the same mask as a boolean ``[N, N]`` (query-chunked when large) for
  ``F.scaled_dot_product_attention``; exact, differentiable everywhere, O(N^2) time.
* ``naive``: ``softmax(Q K^T / sqrt(d) + mask) V`` written out in float64: the reference.

``auto`` picks flex (compiled) on CUDA when Triton is installed and dense otherwise (CPU included);
with one view or one time step the mask is all-true and ``auto`` runs plain unmasked SDPA.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError

BACKENDS = ("auto", "flex", "dense", "naive")
BLOCK_SIZE = 128  # FlexAttention's default tile; the block mask is built for it

# Dense SDPA with a boolean mask: the [rows, N] mask chunk stays under this many elements.
_DENSE_MASK_MAX_ELEMENTS = 1 << 27


@dataclass(frozen=True)
class ViewTimeLayout:
    """Shape of the token grid: ``views x times`` frames of ``tokens_per_frame`` tokens, order [v, t, s]."""

    views: int
    times: int
    tokens_per_frame: int

    def __post_init__(self):
        for name in ("views", "times", "tokens_per_frame"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"Fused view-time attention needs a positive whole number of {name}; got {value!r}.",
                                 "Give views, times and tokens_per_frame as integers >= 1.")

    @property
    def frames(self) -> int:
        return self.views * self.times

    @property
    def num_tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def is_full(self) -> bool:
        """One view or one time step: every token shares a view or a time with every other."""
        return self.views == 1 or self.times == 1


# ----------------------------------------------------------------------------- mask and density

def token_view_time(layout: ViewTimeLayout, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token view and time indices ``([N], [N])`` (int64) for the [v, t, s] order."""
    frame = torch.arange(layout.num_tokens, device=device) // layout.tokens_per_frame
    return frame // layout.times, frame % layout.times


def view_time_mask(views: int, times: int, tokens_per_frame: int, device=None,
                   rows: slice | None = None) -> torch.Tensor:
    """Boolean ``[N, N]`` mask (True = attend) of the fused layout; ``rows`` selects a range of queries."""
    layout = ViewTimeLayout(views, times, tokens_per_frame)
    view, time = token_view_time(layout, device)
    qv, qt = (view[rows], time[rows]) if rows is not None else (view, time)
    return (qv[:, None] == view[None, :]) | (qt[:, None] == time[None, :])


def ideal_density(views: int, times: int) -> float:
    """Fraction of (query, key) pairs the mask keeps: ``(T + V - 1) / (T V)`` (independent of frame size)."""
    ViewTimeLayout(views, times, 1)
    return (times + views - 1) / (times * views)


def mask_density(views: int, times: int, tokens_per_frame: int) -> float:
    """The kept fraction counted on the token-level ``[N, N]`` mask (in row chunks; O(N^2) time).

    A cross-check of ``ideal_density`` rather than something to call at full video size.
    """
    n = ViewTimeLayout(views, times, tokens_per_frame).num_tokens
    rows = max(1, _DENSE_MASK_MAX_ELEMENTS // n)
    kept = sum(int(view_time_mask(views, times, tokens_per_frame, rows=slice(i, i + rows)).sum())
               for i in range(0, n, rows))
    return kept / (n * n)


def block_counts(views: int, times: int, tokens_per_frame: int,
                 block_size: int = BLOCK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(non_empty, full)`` boolean ``[nb, nb]`` tile maps of the mask, ``nb = ceil(N / block_size)``.

    Counted from the frame layout, never the ``N x N`` mask: ``C[i, f]`` is the number of tokens of
    frame ``f`` in tile ``i``, so ``C M C^T`` (``M`` the frame-level mask) counts the kept pairs of
    every tile pair. A tile pair is non-empty when that count is > 0 and full when it is
    ``block_size^2``; tiles that overhang the end of the sequence are never full, as in
    ``create_block_mask`` (which pads the mask with False).
    """
    layout = ViewTimeLayout(views, times, tokens_per_frame)
    n, nb = layout.num_tokens, -(-layout.num_tokens // block_size)
    tile = torch.arange(n) // block_size
    frame = torch.arange(n) // tokens_per_frame
    counts = torch.zeros(nb, layout.frames, dtype=torch.float64)
    counts.index_put_((tile, frame), torch.ones(n, dtype=torch.float64), accumulate=True)
    kept = counts @ view_time_mask(views, times, 1).to(torch.float64) @ counts.T  # exact: < 2^53
    return kept > 0, kept == block_size * block_size


def block_density(views: int, times: int, tokens_per_frame: int, block_size: int = BLOCK_SIZE) -> float:
    """Fraction of ``block_size`` tiles a block-sparse kernel computes (>= the mask density).

    Tiles straddling frame boundaries are computed whole, so the speed-up a tiled kernel can reach is
    ``1 / block_density``; it approaches ``1 / ideal_density`` as frames grow past the tile size.
    """
    non_empty, _ = block_counts(views, times, tokens_per_frame, block_size)
    return non_empty.to(torch.float64).mean().item()


# ----------------------------------------------------------------------------- flex

def _mask_mod(layout: ViewTimeLayout, device):
    """FlexAttention ``mask_mod``: same view or same time, looked up per token.

    Lookup tables rather than ``idx // tokens_per_frame`` arithmetic: integer division has no SIMD
    instruction, and the division version of this mask took 1.45x the CPU time of this one in the
    compiled CPU kernel (4 x 6 frames of 104 tokens, where nearly every tile needs the mask).
    The tables run to the end of the last tile with views -1 / times -2 for the padding, so a key
    past the sequence never matches a real query whatever index a kernel evaluates there.
    """
    n = layout.num_tokens
    padded = -(-n // BLOCK_SIZE) * BLOCK_SIZE
    idx = torch.arange(padded, device=device)
    frame = idx // layout.tokens_per_frame
    real = idx < n
    view_of = torch.where(real, frame // layout.times, -1)
    time_of = torch.where(real, frame % layout.times, -2)

    def same_view_or_time(b, h, q_idx, kv_idx):
        return (view_of[q_idx] == view_of[kv_idx]) | (time_of[q_idx] == time_of[kv_idx])

    return same_view_or_time


def _block_mask_from_counts(layout: ViewTimeLayout, mask_mod, device):
    from torch.nn.attention.flex_attention import BlockMask

    non_empty, full = block_counts(layout.views, layout.times, layout.tokens_per_frame)
    partial = non_empty & ~full

    def ordered(tiles: torch.Tensor):
        # Indices of the True columns first, ascending (stable sort), as flex expects.
        num = tiles.sum(-1).to(torch.int32)
        idx = torch.argsort((~tiles).to(torch.int8), dim=-1, stable=True).to(torch.int32)
        return num[None, None].to(device), idx[None, None].contiguous().to(device)

    kv_num, kv_idx = ordered(partial)
    full_num, full_idx = ordered(full)
    n = layout.num_tokens
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE, mask_mod, seq_lengths=(n, n))


def build_block_mask(views: int, times: int, tokens_per_frame: int, device=None, method: str = "auto"):
    """The ``BlockMask`` of the fused layout (batch and heads broadcast).

    Both methods give the same tiles (asserted in the tests) and the same ``mask_mod``, which flex
    evaluates inside the tiles that are neither empty nor full:

    * ``"create"``: ``create_block_mask(mask_mod, ...)``, which evaluates the mask_mod on all ``N^2``
      pairs at once: 0.2-2.7 s at 2.5k tokens on 2 CPU cores, and an ``N x N`` bool tensor (~40 GB
      at the Wan-1.3B 8 x 16 grid, unless itself compiled);
    * ``"counts"`` (``"auto"``): the tiles counted from the frame layout (``block_counts``, ~1 ms)
      and handed to ``BlockMask.from_kv_blocks``.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    layout = ViewTimeLayout(views, times, tokens_per_frame)
    device = torch.device("cpu" if device is None else device)
    mask_mod = _mask_mod(layout, device)
    if method == "create":
        n = layout.num_tokens
        return create_block_mask(mask_mod, None, None, n, n, device=device, BLOCK_SIZE=BLOCK_SIZE)
    if method in ("auto", "counts"):
        return _block_mask_from_counts(layout, mask_mod, device)
    raise InputError(f"Unknown block-mask method {method!r}.", "Use 'auto', 'create' or 'counts'.")


# Reusing one BlockMask (and so one mask_mod object) per layout lets the compiled kernel be reused
# across denoising steps and layers instead of being re-traced.
_BLOCK_MASKS: OrderedDict = OrderedDict()
_BLOCK_MASK_CACHE_SIZE = 8
_COMPILED_FLEX = None


def _cached_block_mask(layout: ViewTimeLayout, device: torch.device):
    key = (layout, str(device))
    if key in _BLOCK_MASKS:
        _BLOCK_MASKS.move_to_end(key)
    else:
        _BLOCK_MASKS[key] = build_block_mask(layout.views, layout.times, layout.tokens_per_frame, device)
        while len(_BLOCK_MASKS) > _BLOCK_MASK_CACHE_SIZE:
            _BLOCK_MASKS.popitem(last=False)
    return _BLOCK_MASKS[key]


def _flex_fn(compile: bool):
    from torch.nn.attention.flex_attention import flex_attention

    global _COMPILED_FLEX
    if not compile:
        return flex_attention
    if _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
    return _COMPILED_FLEX


def _flex(q, k, v, layout: ViewTimeLayout, compile: bool | None):
    if q.device.type == "cpu" and any(x.requires_grad for x in (q, k, v)):
        if not torch.is_grad_enabled():
            # No graph is being recorded, so detaching changes nothing; torch's CPU flex refuses
            # inputs that require grad even under no_grad (e.g. a model's projections at inference).
            return _flex(q.detach(), k.detach(), v.detach(), layout, compile)
        raise InputError("FlexAttention has no backward pass on CPU (torch 2.13), and these inputs require grad.",
                         "Use backend='dense' (or 'auto', which picks it on CPU) for training on CPU, "
                         "or run under torch.no_grad() for inference.")
    if compile is None:
        compile = q.device.type == "cuda"
    block_mask = _cached_block_mask(layout, q.device)
    return _flex_fn(compile)(q, k, v, block_mask=block_mask)


# ----------------------------------------------------------------------------- dense and naive

_DENSE_MASKS: OrderedDict = OrderedDict()
_DENSE_MASK_CACHE_SIZE = 2  # at most 2 x 128 MB; a sampler or a training loop reuses one layout


def _cached_dense_mask(layout: ViewTimeLayout, device: torch.device) -> torch.Tensor:
    key = (layout, str(device))
    if key in _DENSE_MASKS:
        _DENSE_MASKS.move_to_end(key)
    else:
        _DENSE_MASKS[key] = view_time_mask(layout.views, layout.times, layout.tokens_per_frame, device)
        while len(_DENSE_MASKS) > _DENSE_MASK_CACHE_SIZE:
            _DENSE_MASKS.popitem(last=False)
    return _DENSE_MASKS[key]


def _dense(q, k, v, layout: ViewTimeLayout):
    n = layout.num_tokens
    rows = max(1, _DENSE_MASK_MAX_ELEMENTS // n)
    if rows >= n:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_cached_dense_mask(layout, q.device))
    # Query chunks bound the mask (and SDPA's score workspace) to rows x N; autograd sees a cat.
    out = []
    for start in range(0, n, rows):
        sl = slice(start, min(start + rows, n))
        mask = view_time_mask(layout.views, layout.times, layout.tokens_per_frame, q.device, rows=sl)
        out.append(F.scaled_dot_product_attention(q[:, :, sl], k, v, attn_mask=mask))
    return torch.cat(out, dim=2)


def _naive(q, k, v, layout: ViewTimeLayout):
    mask = view_time_mask(layout.views, layout.times, layout.tokens_per_frame, q.device)
    q64, k64, v64 = q.to(torch.float64), k.to(torch.float64), v.to(torch.float64)
    scores = q64 @ k64.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, dim=-1) @ v64).to(q.dtype)


# ----------------------------------------------------------------------------- API

def _check_inputs(q, k, v, layout: ViewTimeLayout, backend: str):
    if backend not in BACKENDS:
        raise InputError(f"Unknown fused-attention backend {backend!r}.", f"Use one of {', '.join(BACKENDS)}.")
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise InputError(f"Fused view-time attention needs q, k, v of one shape [batch, heads, tokens, head_dim]; "
                         f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}.",
                         "Transpose [B, L, heads, head_dim] tensors with .transpose(1, 2) first.")
    if q.shape[2] != layout.num_tokens:
        raise InputError(f"The sequence has {q.shape[2]} tokens but {layout.views} views x {layout.times} times x "
                         f"{layout.tokens_per_frame} tokens per frame = {layout.num_tokens}.",
                         "Pass the views, times and tokens_per_frame the tokens were laid out with ([v, t, s] order).")


def _has_triton() -> bool:
    # Compiled flex needs Triton on CUDA; some ComfyUI installs (Windows portable) lack it.
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def fused_view_time_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, views: int, times: int,
                              tokens_per_frame: int, backend: str = "auto",
                              compile: bool | None = None) -> torch.Tensor:
    """Attention of every token to the tokens of its own view or its own time step.

    Args:
        q, k, v: ``[B, heads, N, head_dim]`` with ``N = views * times * tokens_per_frame`` in [v, t, s]
            order (see the module docstring).
        views, times: grid size; ``tokens_per_frame``: tokens of one frame (any size: tiles that
            straddle frames, and a last tile past the end, are handled inside).
        backend: ``"auto"`` | ``"flex"`` | ``"dense"`` | ``"naive"`` (module docstring).
        compile: flex only: use ``torch.compile(flex_attention)``; default True on CUDA, False on CPU.

    Returns:
        ``[B, heads, N, head_dim]`` in ``q``'s dtype; softmax scale ``1/sqrt(head_dim)``.
    """
    layout = ViewTimeLayout(views, times, tokens_per_frame)
    _check_inputs(q, k, v, layout, backend)
    if backend == "auto":
        if layout.is_full:
            return F.scaled_dot_product_attention(q, k, v)
        backend = "flex" if q.device.type == "cuda" and _has_triton() else "dense"
    if backend == "flex":
        return _flex(q, k, v, layout, compile)
    if backend == "dense":
        return _dense(q, k, v, layout)
    return _naive(q, k, v, layout)


def wan_attention_fn(views: int, times: int, tokens_per_frame: int, backend: str = "auto"):
    """A drop-in for ``lavr_core.wan.model.attention``: q/k/v ``[B, L, heads, head_dim]`` -> ``[B, L, heads*head_dim]``.

    For a Wan self-attention over ``views * times`` latent frames stacked view by view.
    """
    ViewTimeLayout(views, times, tokens_per_frame)

    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = fused_view_time_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                        views, times, tokens_per_frame, backend=backend)
        return out.transpose(1, 2).flatten(2)

    return attention
