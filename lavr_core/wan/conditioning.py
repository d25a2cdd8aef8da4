"""Text conditioning for the Wan video models, from ComfyUI's ``CONDITIONING`` values.

ComfyUI's ``CLIPTextEncode`` with Wan's umT5-XXL text encoder (``CLIPLoader``, type ``wan``) gives
``[[cond, extras], ...]`` with ``cond [B, L, 4096]`` float: the encoder's last hidden state, padding
tokens already zeroed. Wan's own prompter returns the real tokens and zero-pads to 512
(``pad_context``); both are the same tensor once padded, so this module only validates and pads.

This module knows nothing of ComfyUI beyond that list-of-pairs shape, so ``lavr_core`` stays
importable without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError
from .model import pad_context

#: Hidden width of umT5-XXL, the text encoder of every Wan2.1 model.
UMT5_XXL_WIDTH = 4096
#: Token count the Wan2.1 DiTs were trained with (``text_len``).
WAN_TEXT_LEN = 512

_FIX = ("Encode the prompt with ComfyUI's CLIPTextEncode on Wan's text encoder: CLIPLoader with "
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors (or umt5_xxl_fp16) from ComfyUI/models/text_encoders/, type 'wan'.")


def conditioning_tensor(conditioning, what: str = "positive") -> torch.Tensor:
    """The one ``[B, L, D]`` tensor of a ComfyUI CONDITIONING (or a bare tensor, for scripts).

    Several entries (``ConditioningCombine``, area prompts) have no meaning for a whole-video model
    and are refused rather than silently using the first.
    """
    if isinstance(conditioning, torch.Tensor):
        cond = conditioning
    else:
        if not isinstance(conditioning, Sequence) or isinstance(conditioning, (str, bytes)) or not conditioning:
            raise InputError(f"The {what} conditioning is empty or not a ComfyUI CONDITIONING value.", _FIX)
        if len(conditioning) != 1:
            raise InputError(f"The {what} conditioning holds {len(conditioning)} prompts (from Conditioning "
                             "Combine or area nodes); this sampler takes one prompt for the whole video.",
                             "Use Conditioning (Concat) to join prompts, or connect a single CLIPTextEncode.")
        entry = conditioning[0]
        cond = entry[0] if isinstance(entry, (list, tuple)) and entry else entry
        if not isinstance(cond, torch.Tensor):
            raise InputError(f"The {what} conditioning does not hold a tensor (got {type(cond).__name__}).", _FIX)
    if cond.ndim == 2:
        cond = cond[None]
    if cond.ndim != 3:
        raise InputError(f"The {what} conditioning has shape {tuple(cond.shape)}; expected [batch, tokens, width].",
                         _FIX)
    if not torch.isfinite(cond).all():
        raise InputError(f"The {what} conditioning holds NaN or infinite values.",
                         "Re-encode the prompt; check the text encoder's dtype (fp8 files need ComfyUI's loader).")
    return cond


def text_context(conditioning, text_dim: int = UMT5_XXL_WIDTH, *, text_len: int = WAN_TEXT_LEN,
                 what: str = "positive", dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Wan's ``context [B, text_len, text_dim]`` from a CONDITIONING, zero-padded like Wan's prompter.

    Raises ``InputError`` naming the fix when the width is not the model's (a CLIP-L or T5-XXL prompt
    from another model's loader is the usual cause).
    """
    cond = conditioning_tensor(conditioning, what)
    if cond.shape[-1] != text_dim:
        guess = {768: "CLIP-L (SD1.5)", 1280: "CLIP-G", 2048: "CLIP-L+G (SDXL)", 4096: "a 4096-wide T5"}.get(
            int(cond.shape[-1]), "another model's text encoder")
        raise InputError(f"The {what} conditioning is {cond.shape[-1]} wide ({guess}); this video model needs "
                         f"{text_dim}-wide umT5 features.", _FIX)
    return pad_context(cond.to(device=device, dtype=dtype), text_len)


def empty_context(batch: int, text_dim: int = UMT5_XXL_WIDTH, text_len: int = WAN_TEXT_LEN,
                  dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """All-zero context: what a missing negative prompt means to the sampler (all padding)."""
    return torch.zeros(batch, text_len, text_dim, dtype=dtype, device=device)
