"""Loading VGGT weights: the released ``facebook/VGGT-1B`` (``model.pt`` or ``model.safetensors``)
or any checkpoint in the same layout (the tiny test models).

The model is built on the meta device and the file's tensors are adopted directly, so loading the
1.26 B-parameter model needs one copy of the weights in memory, not two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ..errors import CheckpointError
from .config import VGGTConfig
from .model import VGGT


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensor dict of a VGGT checkpoint file, read without executing code."""
    from .. import checkpoint_io as cio  # imported here: it is optional until a weights file is loaded

    if hasattr(cio, "load_state_dict"):
        return dict(cio.load_state_dict(path, what="VGGT checkpoint"))
    obj = cio.load_file_any(path, what="VGGT checkpoint")
    return cio.strip_prefix(cio.find_state_dict(obj, path=path, what="VGGT checkpoint"))


def config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> VGGTConfig:
    """The configuration a state dict was saved from: VGGT-1B or the tiny test size, with each head
    enabled exactly when the file holds its weights. Other sizes need an explicit ``VGGTConfig``."""
    tok = sd.get("aggregator.camera_token")
    if tok is None or tok.ndim != 4:
        raise CheckpointError("The file is not a VGGT checkpoint (no aggregator.camera_token).",
                              "Select the VGGT-1B weights (model.pt or model.safetensors from facebook/VGGT-1B).")
    heads = {name: any(k.startswith(f"{name}.") for k in sd)
             for name in ("camera_head", "point_head", "depth_head", "track_head")}
    flags = dict(enable_camera=heads["camera_head"], enable_point=heads["point_head"],
                 enable_depth=heads["depth_head"], enable_track=heads["track_head"])
    width = tok.shape[-1]
    for base in (VGGTConfig.vggt_1b(), VGGTConfig.tiny()):
        if base.embed_dim == width:
            from dataclasses import replace
            return replace(base, **flags)
    raise CheckpointError(f"This VGGT checkpoint is {width} wide; only VGGT-1B (1024) and the tiny test size "
                          "(32) are recognised automatically.", "Pass the matching VGGTConfig to load_vggt.")


def load_vggt(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
              config: VGGTConfig | None = None) -> VGGT:
    """A VGGT in eval mode with the weights of ``path``, every key matched (``CheckpointError`` if not).

    ``dtype`` applies to all weights; float32 is the official inference precision (on CUDA the
    official demo runs only the aggregator under bf16/fp16 autocast: pass
    ``aggregator_autocast=torch.bfloat16`` to ``VGGT.forward`` for the same).
    """
    from .. import checkpoint_io as cio

    sd = read_state_dict(path)
    cfg = config or config_from_state_dict(sd)
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    with torch.device("meta"):
        model = VGGT(cfg)
    cio.strict_load(model, sd, what=f"VGGT model ({Path(path).name})", assign=True,
                    hint="Select the VGGT-1B weights (facebook/VGGT-1B model.pt or model.safetensors), "
                         "or pass the VGGTConfig the file was saved from.")
    model.aggregator.reset_buffers()
    return model.to(device).eval()
