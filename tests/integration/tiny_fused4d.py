"""A tiny Fused 4D self-attention LoRA for the tiny Wan T2V DiT of ``tiny_wan`` (width 128, 2 blocks),
written to ``models/lavr/fused4d_tiny_lora.safetensors`` with the format tag the sampler's list
filters on. Seeded: the same file every run."""

from __future__ import annotations

from pathlib import Path

import torch

LORA_FILE = "fused4d_tiny_lora.safetensors"


def lora_state_dict(seed: int = 3, rank: int = 2) -> dict[str, torch.Tensor]:
    from tiny_wan import dit_config

    cfg = dit_config()
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(cfg.num_layers):
        for name in ("q", "k", "v", "o"):
            key = f"blocks.{i}.self_attn.{name}"
            sd[f"{key}.lora_A.weight"] = 0.1 * torch.randn(rank, cfg.dim, generator=g)
            sd[f"{key}.lora_B.weight"] = 0.1 * torch.randn(cfg.dim, rank, generator=g)
            sd[f"{key}.alpha"] = torch.tensor(float(rank))
    return sd


def write(models_dir: Path) -> list[Path]:
    from safetensors.torch import save_file

    from lavr_core.fused4d.weights import FORMAT

    out = Path(models_dir) / "lavr" / LORA_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(lora_state_dict(), str(out), metadata={"format": FORMAT, "kind": "lora"})
    return [out]
