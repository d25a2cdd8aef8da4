"""Conformance runner for VGGT (plug-in of ``lavr_core.conformance``).

* Fixtures of kind ``vggt`` (``../shared/reference/vggt/tiny``): our model at the fixture's sizes,
  the fixture's weights loaded strictly, ``model(images)`` in float32 on the CPU, outputs under the
  official names (``pose_enc``, ``pose_enc_list.{i}``, ``depth``, ...).
* The VGGT-1B state-dict manifest: our ``VGGT()`` built on the meta device.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import VGGTConfig
from .model import VGGT

KINDS = ("vggt",)


def build_fixture_model(fixture_dir: Path, config: dict) -> VGGT:
    from safetensors.torch import load_file

    model = VGGT(VGGTConfig.from_fixture_config(config)).eval()
    state = load_file(str(Path(fixture_dir) / "weights.safetensors"))
    model.load_state_dict(state, strict=True)
    return model


def run_fixture(fixture_dir: Path, config: dict) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    model = build_fixture_model(fixture_dir, config)
    images = load_file(str(Path(fixture_dir) / "inputs.safetensors"))["images"].float()
    with torch.no_grad():
        pred = model(images)
    out = {k: v for k, v in pred.as_dict().items() if isinstance(v, torch.Tensor) and k != "images"}
    for i, p in enumerate(pred.pose_enc_list):
        out[f"pose_enc_list.{i}"] = p
    return out


def manifest_matches(manifest: dict, path: Path) -> bool:
    return (manifest.get("source_repo") == "facebookresearch/vggt"
            or str(manifest.get("model", "")).startswith("VGGT"))


def build_meta_state_dict(manifest: dict) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = VGGT(VGGTConfig.vggt_1b())
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
