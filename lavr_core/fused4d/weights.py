"""Self-attention fine-tunes and LoRAs of the Fused 4D model (no new parameters: only Wan's own
``blocks.N.self_attn.*`` change).

Two file layouts, both ``.safetensors`` with Wan's key names (an optional ``diffusion_model.`` /
``model.diffusion_model.`` prefix is accepted):

* **fine-tune**: ``blocks.N.self_attn.{q,k,v,o,norm_q,norm_k}.{weight,bias}`` replacing the base
  tensors (any subset of the self-attention tensors; nothing else).
* **LoRA**: ``blocks.N.self_attn.{q,k,v,o}.lora_A.weight [r, in]`` + ``lora_B.weight [out, r]``
  (PEFT names; ``lora_down`` / ``lora_up`` also read) and an optional scalar ``.alpha``:
  ``W' = W + strength * (alpha / r) * B @ A``.

The weights are applied for the duration of a run (``apply_self_attention``) and the base tensors
restored afterwards, so a model cached by ComfyUI is never changed for other nodes.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import CheckpointError

#: ``format`` tag in the safetensors metadata of files written by ``python -m lavr_core.train fused4d``.
FORMAT = "lavr-fused4d"

_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.")
_FULL_RE = re.compile(r"^blocks\.(\d+)\.self_attn\.(q|k|v|o|norm_q|norm_k)\.(weight|bias)$")
_LORA_RE = re.compile(r"^(blocks\.\d+\.self_attn\.(?:q|k|v|o))\.(lora_A|lora_B|lora_down|lora_up|alpha)(?:\.weight)?$")
_LORA_TARGETS = ("q", "k", "v", "o")


def _strip(sd: dict) -> dict:
    for p in _PREFIXES:
        if sd and all(k.startswith(p) for k in sd):
            return {k[len(p):]: v for k, v in sd.items()}
    return dict(sd)


def read_self_attention_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a fine-tune or LoRA file (prefix removed); a file with other keys is refused."""
    from ..checkpoint_io import find_state_dict, load_file_any

    p = Path(path)
    sd = _strip(find_state_dict(load_file_any(p, what="Fused 4D self-attention weights"), path=p,
                                what="Fused 4D self-attention weights"))
    other = [k for k in sd if not (_FULL_RE.match(k) or _LORA_RE.match(k))]
    if other:
        raise CheckpointError(f"{p.name} is not a Fused 4D self-attention fine-tune or LoRA: it has "
                              f"{len(other)} other tensors (e.g. {', '.join(sorted(other)[:3])}).",
                              "Pick a file written by `python -m lavr_core.train fused4d` (or a Wan LoRA that "
                              "only touches blocks.N.self_attn.q/k/v/o).")
    return sd


@torch.no_grad()
def resolve_updates(model: nn.Module, sd: dict[str, torch.Tensor], strength: float = 1.0,
                    what: str = "The weights file") -> dict[str, torch.Tensor]:
    """New values ``{parameter name: tensor}`` for ``model`` from a fine-tune or LoRA state dict.

    Raises ``CheckpointError`` naming keys the model lacks or shapes that differ (a LoRA for another
    model size, a 14B fine-tune on 1.3B).
    """
    params = dict(model.named_parameters())
    updates: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        m = _LORA_RE.match(k)
        if m:
            lora.setdefault(m.group(1), {})[m.group(2)] = v
            continue
        if k not in params:
            raise CheckpointError(f"{what} has {k}, which this model does not have.",
                                  "Use weights trained for this Wan model (same number of blocks).")
        if tuple(v.shape) != tuple(params[k].shape):
            raise CheckpointError(f"{what} has {k} of shape {tuple(v.shape)}; the model's is {tuple(params[k].shape)}.",
                                  "Use weights trained for this Wan model size.")
        base = params[k]
        updates[k] = base + strength * (v.to(base) - base) if strength != 1.0 else v.to(base)
    for module, parts in lora.items():
        a = parts.get("lora_A", parts.get("lora_down"))
        b = parts.get("lora_B", parts.get("lora_up"))
        name = f"{module}.weight"
        if a is None or b is None:
            raise CheckpointError(f"{what} has an incomplete LoRA pair for {module}.", "Re-export the LoRA.")
        if name not in params:
            raise CheckpointError(f"{what} has a LoRA for {module}, which this model does not have.",
                                  "Use a LoRA trained for this Wan model.")
        w = params[name]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1] or (b.shape[0], a.shape[1]) != tuple(w.shape):
            raise CheckpointError(f"{what}: the LoRA of {module} ({tuple(b.shape)} x {tuple(a.shape)}) does not fit "
                                  f"its weight {tuple(w.shape)}.", "Use a LoRA trained for this Wan model size.")
        rank = a.shape[0]
        alpha = float(parts["alpha"]) if "alpha" in parts else float(rank)
        delta = (b.float() @ a.float()) * (alpha / rank) * strength
        updates[name] = (updates.get(name, w).float() + delta.to(w.device)).to(w.dtype)
    return updates


@contextmanager
def apply_self_attention(model: nn.Module, updates: dict[str, torch.Tensor]):
    """Use ``updates`` in place of the model's tensors inside the block; the originals come back after."""
    params = dict(model.named_parameters())
    saved = {k: params[k].data for k in updates}
    try:
        with torch.no_grad():
            for k, v in updates.items():
                params[k].data = v.to(device=params[k].device, dtype=params[k].dtype)
        yield model
    finally:
        for k, v in saved.items():
            params[k].data = v


def self_attention_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The fine-tune file's tensors: every ``blocks.N.self_attn.*`` parameter (LoRA wrappers unwrapped)."""
    out = {}
    for k, v in model.state_dict().items():
        k = k.replace(".base.", ".")
        if _FULL_RE.match(k):
            out[k] = v.detach().cpu().contiguous()
    return out


# ----------------------------------------------------------------------------- LoRA training

class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(x))`` with ``B`` zero-initialised (the wrapped model starts exact)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None):
        super().__init__()
        self.base = base
        self.rank = rank
        self.alpha = float(rank if alpha is None else alpha)
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, device=base.weight.device)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, device=base.weight.device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.lora_B(self.lora_A(x.to(self.lora_A.weight.dtype))) * (self.alpha / self.rank)
        return self.base(x) + delta.to(x.dtype)


def attach_lora(model: nn.Module, rank: int, alpha: float | None = None) -> list[nn.Parameter]:
    """Wrap every block's ``self_attn.{q,k,v,o}`` in a ``LoRALinear``; returns the new trainable parameters."""
    if rank < 1:
        raise ValueError("LoRA rank must be >= 1")
    params = []
    for block in model.blocks:
        attn = block.self_attn
        for name in _LORA_TARGETS:
            lin = getattr(attn, name)
            if isinstance(lin, LoRALinear):
                raise ValueError("LoRA is already attached")
            wrapped = LoRALinear(lin, rank, alpha)
            setattr(attn, name, wrapped)
            params += [wrapped.lora_A.weight, wrapped.lora_B.weight]
    return params


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA file's tensors (``...lora_A.weight``, ``...lora_B.weight``, ``...alpha``)."""
    out = {}
    for i, block in enumerate(model.blocks):
        for name in _LORA_TARGETS:
            lin = getattr(block.self_attn, name)
            if isinstance(lin, LoRALinear):
                key = f"blocks.{i}.self_attn.{name}"
                out[f"{key}.lora_A.weight"] = lin.lora_A.weight.detach().cpu().contiguous()
                out[f"{key}.lora_B.weight"] = lin.lora_B.weight.detach().cpu().contiguous()
                out[f"{key}.alpha"] = torch.tensor(lin.alpha)
    return out
