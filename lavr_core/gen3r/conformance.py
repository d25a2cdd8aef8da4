"""Conformance runner for Gen3R (plug-in of ``lavr_core.conformance``).

Fixtures (``reference/gen3r``):

* ``gen3r_geometry_adapter`` (``tiny/``): the official ``GeometryAdapter`` at a tiny width; outputs
  ``encode_raw`` (normalised mean | log-variance), ``latent_mean``, ``latent_logvar`` (clamped),
  ``decoded_from_mean`` (and ``decoded_from_extra_z`` when the fixture has ``extra_z``).
* ``gen3r_dit`` (``tiny_dit/``): the official ``WanTransformer3DModel`` with the camera adapter,
  side-by-side RoPE and ``y`` concatenation; output ``output``.
* ``gen3r_plucker`` (``tiny_plucker/``): rays of given ``c2ws``/``K``, outputs ``plucker`` and the
  packed, width-duplicated ``control_camera_latents``.

Manifests: ``geometry_adapter_state_dict.json`` and ``gen3r_dit_state_dict.json`` (our modules built on
the meta device at the manifest's ``config``).
"""

from __future__ import annotations

from pathlib import Path

import torch

KINDS = ("gen3r_geometry_adapter", "gen3r_dit", "gen3r_plucker")


def _weights_file(fixture_dir: Path) -> Path:
    p = fixture_dir / "weights.safetensors"
    return p if p.is_file() else fixture_dir / "state_dict.safetensors"  # the name config.json uses


def _inputs(fixture_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v.clone() for k, v in load_file(str(fixture_dir / "inputs.safetensors")).items()}


def load_fixture_adapter(fixture_dir: Path, config: dict):
    from safetensors.torch import load_file

    from .geometry_adapter import GeometryAdapterConfig, adapter_from_state_dict

    weights = _weights_file(fixture_dir)
    return adapter_from_state_dict(load_file(str(weights)), GeometryAdapterConfig.from_dict(config["model"]),
                                   dtype=torch.float32, what=f"The fixture weights {weights.name}")


def load_fixture_dit(fixture_dir: Path, config: dict):
    from safetensors.torch import load_file

    from .dit import Gen3RDiTConfig, dit_from_state_dict

    weights = _weights_file(fixture_dir)
    expected = Gen3RDiTConfig.from_dict(config["model"], name=config.get("name", "fixture"))
    return dit_from_state_dict(load_file(str(weights)), expected, dtype=torch.float32,
                               what=f"The fixture weights {weights.name}")


@torch.no_grad()
def _run_adapter(fixture_dir: Path, config: dict) -> dict[str, torch.Tensor]:
    adapter = load_fixture_adapter(fixture_dir, config)
    inp = _inputs(fixture_dir)
    raw = adapter.encode_raw(inp["tokens"])
    post = adapter.encode(inp["tokens"])
    out = {"encode_raw": raw, "latent_mean": post.mean, "latent_logvar": post.logvar,
           "decoded_from_mean": adapter.decode(post.mean)}
    if "extra_z" in inp:
        out["decoded_from_extra_z"] = adapter.decode(inp["extra_z"])
    return out


@torch.no_grad()
def _run_dit(fixture_dir: Path, config: dict) -> dict[str, torch.Tensor]:
    model = load_fixture_dit(fixture_dir, config)
    inp = _inputs(fixture_dir)
    out = model(inp["x"], inp["t"], inp["context"], y=inp.get("y"), clip_feature=inp.get("clip_fea"),
                y_camera=inp.get("y_camera"))
    return {"output": out}


def _run_plucker(fixture_dir: Path, config: dict) -> dict[str, torch.Tensor]:
    from ..camera.plucker import plucker_embedding
    from .camera import control_camera_latents

    inp = _inputs(fixture_dir)
    h, w = int(config["args"]["h"]), int(config["args"]["w"])
    # The fixture's poses are already relative to frame 0 (Gen3R's preprocess_poses ran before).
    plucker = plucker_embedding(inp["c2ws"], inp["K"], w, h, h, w)
    return {"plucker": plucker, "control_camera_latents": control_camera_latents(plucker)}


def run_fixture(fixture_dir: Path, config: dict) -> dict[str, torch.Tensor]:
    """Our outputs for a Gen3R fixture, named as in its ``outputs.safetensors``."""
    fixture_dir = Path(fixture_dir)
    kind = config.get("kind")
    run = {"gen3r_geometry_adapter": _run_adapter, "gen3r_dit": _run_dit, "gen3r_plucker": _run_plucker}[kind]
    return run(fixture_dir, config)


# ----------------------------------------------------------------------------- manifests

def _names(manifest: dict) -> list[str]:
    from ..conformance import manifest_entries

    try:
        return list(manifest_entries(manifest))
    except (KeyError, TypeError, IndexError):
        return []


def _is_adapter(manifest: dict) -> bool:
    cfg = manifest.get("config")
    return (isinstance(cfg, dict) and {"hidden_dim", "input_dim", "output_dim", "resample_scale"} <= set(cfg)
            and "model.encoder.init_block.resample.1.weight" in _names(manifest))


def _is_dit(manifest: dict) -> bool:
    cfg = manifest.get("config")
    return (isinstance(cfg, dict) and {"dim", "in_dim", "num_heads", "num_layers"} <= set(cfg)
            and bool(cfg.get("add_control_adapter")) and "control_adapter.conv.weight" in _names(manifest))


def manifest_matches(manifest: dict, path: Path) -> bool:
    return _is_adapter(manifest) or _is_dit(manifest)


def build_meta_state_dict(manifest: dict) -> dict[str, tuple[int, ...]]:
    """Names and shapes of our module built on the meta device from the manifest's ``config`` (shapes
    are not read from the manifest's tensor list)."""
    from .dit import Gen3RDiT, Gen3RDiTConfig
    from .geometry_adapter import GeometryAdapter, GeometryAdapterConfig

    with torch.device("meta"):
        if _is_adapter(manifest):
            module = GeometryAdapter(GeometryAdapterConfig.from_dict(manifest["config"]))
        else:
            module = Gen3RDiT(Gen3RDiTConfig.from_dict(manifest["config"]))
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}
