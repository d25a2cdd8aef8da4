"""Conformance runner for CUT3R (see ``lavr_core.conformance`` for the contract).

Fixture (``kind: "cut3r"``): ``config.json`` gives ``ARCroco3DStereoConfig_kwargs`` and, for tiny
DPT heads, ``dpt: {feature_dim, layer_dims}``; ``weights.safetensors`` the state dict;
``inputs.safetensors`` ``view{i}.img`` ``[1, 3, H, W]`` in [-1, 1]. We run the frames in order from
the initial state, as the official ``inference`` does, and return ``view{i}.<official output name>``
plus ``view{i}.camera_pose_c2w``, all float32 on the CPU.

Manifest: a released checkpoint's state-dict manifest names its constructor string; we parse it
(no eval), build the model on the meta device and list names and shapes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint_io import load_safetensors, strict_load
from .config import config_from_kwargs, parse_constructor
from .geometry import pose_to_c2w
from .model import Cut3rModel

KINDS = ("cut3r",)


def fixture_config(config: dict):
    kw = dict(config["ARCroco3DStereoConfig_kwargs"])
    dpt = config.get("dpt")
    if dpt:
        kw["dpt_feature_dim"] = int(dpt["feature_dim"])
        kw["dpt_layer_dims"] = tuple(int(x) for x in dpt["layer_dims"])
    return config_from_kwargs(kw)


def fixture_model(fixture_dir: Path, config: dict | None = None) -> Cut3rModel:
    """The seeded CUT3R of a fixture folder (its ``config.json`` and ``weights.safetensors``), in eval mode."""
    import json

    d = Path(fixture_dir)
    if config is None:
        config = json.loads((d / "config.json").read_text())
    model = Cut3rModel(fixture_config(config)).eval()
    strict_load(model, load_safetensors(d / "weights.safetensors", what="fixture weights"), what="CUT3R fixture model")
    return model


def run_fixture(fixture_dir: Path, config: dict) -> dict[str, torch.Tensor]:
    d = Path(fixture_dir)
    model = fixture_model(d, config)
    inputs = load_safetensors(d / "inputs.safetensors", what="fixture inputs")
    n = len([k for k in inputs if k.startswith("view") and k.endswith(".img")])
    ours: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        state = model.init_state(1)
        for i in range(n):
            step = model.step(state, inputs[f"view{i}.img"].float())
            state = step.state
            for k, v in step.outputs.items():
                ours[f"view{i}.{k}"] = v.float().cpu()
            ours[f"view{i}.camera_pose_c2w"] = pose_to_c2w(step.outputs["camera_pose"]).float().cpu()
    return ours


def manifest_matches(manifest: dict, path: Path) -> bool:
    text = str(manifest.get("constructor_as_evaluated_by_load_model") or manifest.get("model_string_in_config") or "")
    return "ARCroco3DStereo" in text


def build_meta_state_dict(manifest: dict) -> dict[str, tuple[int, ...]]:
    text = manifest.get("constructor_as_evaluated_by_load_model") or manifest["model_string_in_config"]
    cfg = parse_constructor(text)
    with torch.device("meta"):
        model = Cut3rModel(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
