"""Reading CUT3R checkpoints safely and building the model from them.

Accepted files:

* the official ``.pth`` layout ``{"model": state_dict, "args": <object with .model = constructor string>}``
  (``args`` may be an ``argparse.Namespace`` or any other object; it is read as inert data and the
  constructor string is parsed, never evaluated);
* ``.safetensors`` holding the same state dict, with the constructor string (or our config as JSON)
  in the header metadata; without metadata, a file whose names and shapes equal one of the released
  checkpoints is accepted as that checkpoint.

Weights may be float32, bfloat16 or float16; the model is built on the meta device and adopts the
file's tensors (no second copy), then moves to the requested device and dtype.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint_io import (InertObject, compare_state_dict, find_state_dict, is_safetensors, load_pickle_checkpoint,
                             load_safetensors, safetensors_metadata, strict_load, strip_prefix)
from ..errors import CheckpointError
from .config import RELEASED_CHECKPOINTS, WEIGHTS_SOURCE, Cut3rConfig, config_from_kwargs, parse_constructor
from .model import Cut3rModel

#: safetensors metadata keys we read (and :func:`save_safetensors` writes).
META_CONSTRUCTOR = "cut3r_constructor"
META_CONFIG = "lavr_cut3r_config"

_NOT_CUT3R = ("Select a CUT3R checkpoint (cut3r_512_dpt_4_64.pth or cut3r_224_linear_4.pth, from "
              f"{WEIGHTS_SOURCE}) in the cut3r model folder.")


@dataclass
class Cut3rCheckpoint:
    """A checkpoint read from disk: its configuration, weights (CPU) and where it came from."""

    config: Cut3rConfig
    state_dict: dict[str, torch.Tensor]
    path: Path
    constructor: str | None = None


def _find_constructor(obj: Any, depth: int = 0, seen: set | None = None) -> str | None:
    """The first string in ``obj`` that looks like a CUT3R constructor (searches inert objects too)."""
    if depth > 8:
        return None
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    if isinstance(obj, str):
        return obj if obj.lstrip().startswith("ARCroco3DStereo(") else None
    if isinstance(obj, torch.Tensor):
        return None
    children: list = []
    if isinstance(obj, dict):
        if "model" in obj and isinstance(obj["model"], str):
            children.append(obj["model"])
        children += [v for k, v in obj.items() if k != "model" or not isinstance(v, dict)]
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    elif isinstance(obj, InertObject):
        children = [obj.__dict__.get("state"), obj.__dict__.get("args")]
    elif hasattr(obj, "__dict__"):
        children = [getattr(obj, "model", None), vars(obj)]
    for c in children:
        found = _find_constructor(c, depth + 1, seen)
        if found:
            return found
    return None


def _alias_of(key: str) -> str | None:
    """The second name of a DPT ``scratch`` convolution weight (``layerK_rn`` <-> ``layer_rn.{K-1}``)."""
    m = re.search(r"\.scratch\.layer_rn\.(\d)\.", key)
    if m:
        return key.replace(m.group(0), f".scratch.layer{int(m.group(1)) + 1}_rn.")
    m = re.search(r"\.scratch\.layer(\d)_rn\.", key)
    if m:
        return key.replace(m.group(0), f".scratch.layer_rn.{int(m.group(1)) - 1}.")
    return None


def fill_aliases(state_dict: dict[str, torch.Tensor], model_keys) -> dict[str, torch.Tensor]:
    """The DPT head holds four convolutions under two names each; supply a name the file omitted.

    (safetensors writers keep only one of two tensors that share memory.)
    """
    sd = dict(state_dict)
    for k in model_keys:
        if k not in sd:
            twin = _alias_of(k)
            if twin is not None and twin in sd:
                sd[k] = sd[twin]
    return sd


def _meta_state_dict_shapes(cfg: Cut3rConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        m = Cut3rModel(cfg)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def _config_for_state_dict(sd: dict[str, torch.Tensor], path: Path) -> Cut3rConfig:
    """A released configuration whose names and shapes equal ``sd`` (for metadata-less safetensors)."""
    for cfg in RELEASED_CHECKPOINTS.values():
        shapes = _meta_state_dict_shapes(cfg)
        missing, unexpected, bad = compare_state_dict(shapes, fill_aliases(sd, shapes))
        if not (missing or unexpected or bad):
            return cfg
    raise CheckpointError(f"{path.name} has no CUT3R configuration in its metadata and its weights match neither "
                          "released CUT3R checkpoint.", _NOT_CUT3R)


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> Cut3rCheckpoint:
    """Read a CUT3R checkpoint without executing anything from it. Raises CheckpointError.

    ``mmap`` maps a zip-format ``.pth`` instead of reading it (use it when the weights go on to a
    GPU right away; a CPU model should own its memory rather than depend on the file).
    """
    p = Path(path)
    constructor = None
    if is_safetensors(p):
        sd = load_safetensors(p, what="CUT3R checkpoint")
        try:
            meta = safetensors_metadata(p)
        except Exception:  # pragma: no cover - load_safetensors already validated the header
            meta = {}
        if META_CONFIG in meta:
            try:
                cfg = config_from_kwargs(json.loads(meta[META_CONFIG]))
            except (ValueError, TypeError) as e:
                raise CheckpointError(f"{p.name} has an unreadable CUT3R configuration in its metadata ({e}).",
                                      _NOT_CUT3R) from e
        elif META_CONSTRUCTOR in meta:
            constructor = meta[META_CONSTRUCTOR]
            cfg = parse_constructor(constructor)
        else:
            cfg = None
    else:
        obj = load_pickle_checkpoint(p, what="CUT3R checkpoint", mmap=mmap)
        constructor = _find_constructor(obj.get("args") if isinstance(obj, dict) else obj) \
            or _find_constructor(obj)
        if constructor is None:
            keys = ", ".join(list(obj)[:6]) if isinstance(obj, dict) else type(obj).__name__
            raise CheckpointError(f"{p.name} is not a CUT3R checkpoint: it stores no ARCroco3DStereo model "
                                  f"description (top-level entries: {keys}).", _NOT_CUT3R)
        cfg = parse_constructor(constructor)
        sd = find_state_dict(obj, ("model", "state_dict"), path=p, what="CUT3R checkpoint")
    sd = strip_prefix(sd, ("module.",))
    if cfg is None:
        cfg = _config_for_state_dict(sd, p)
    cfg.validate()
    return Cut3rCheckpoint(cfg, sd, p, constructor)


def check_device_dtype(device: str | torch.device, dtype: torch.dtype) -> torch.device:
    """The device, if it exists and can run CUT3R in ``dtype``; else an InputError saying what to pick."""
    from ..errors import InputError

    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise InputError(f"CUT3R cannot run in {dtype}.", "Choose float32, bfloat16 or float16.")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"Unknown device {device!r}.", "Use 'cpu', 'cuda', 'cuda:N' or 'mps'.") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("CUDA was requested but no CUDA GPU is available to torch.", "Choose the CPU device.")
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        if idx >= torch.cuda.device_count():
            raise InputError(f"There is no GPU cuda:{idx} (found {torch.cuda.device_count()}).", "Pick an existing GPU.")
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise InputError(f"GPU {torch.cuda.get_device_name(idx)} cannot compute in bfloat16.",
                             "Choose float16 or float32.")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("The MPS device was requested but is not available.", "Choose the CPU device.")
    return dev


def build_model(ckpt: Cut3rCheckpoint, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> Cut3rModel:
    """The model with the checkpoint's weights, in eval mode, on ``device`` in ``dtype``.

    The heads stay in float32 when ``dtype`` is a half type (as the official inference does).
    """
    device = check_device_dtype(device, dtype)
    with torch.device("meta"):
        model = Cut3rModel(ckpt.config)
    sd = fill_aliases(ckpt.state_dict, model.state_dict().keys())
    strict_load(model, sd, what=f"CUT3R model ({ckpt.path.name})", assign=True,
                hint="The file is not one of the released CUT3R checkpoints or is damaged: " + _NOT_CUT3R)
    model = model.to(device=device, dtype=torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype)
    if dtype in (torch.float16, torch.bfloat16):
        model.set_dtype(dtype, head_dtype=torch.float32)
    return model.eval().requires_grad_(False)


def load_cut3r(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Cut3rModel:
    """Read ``path`` safely and return the ready model (see :func:`read_checkpoint`, :func:`build_model`)."""
    dev = check_device_dtype(device, dtype)
    return build_model(read_checkpoint(path, mmap=dev.type != "cpu"), dev, dtype)


def save_safetensors(model: Cut3rModel, path: str | Path) -> None:
    """Write the model's weights as ``.safetensors`` with its configuration in the metadata (atomic)."""
    from safetensors.torch import save

    from ..fileio import atomic_write_bytes

    sd = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
    meta = {META_CONFIG: json.dumps(_jsonable(model.cfg.to_dict()))}
    atomic_write_bytes(path, save(sd, metadata=meta))


def save_pth(model: Cut3rModel, path: str | Path, **extra_args) -> None:
    """Write the official ``.pth`` layout ``{"model": state_dict, "args": Namespace(model=<constructor>)}`` (atomic).

    For tests and tiny fixtures; the released checkpoints already have this layout.
    """
    import argparse

    from ..fileio import atomic_writer

    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    args = argparse.Namespace(model=model.cfg.constructor_string(), **extra_args)
    with atomic_writer(path, "wb") as f:
        torch.save({"model": sd, "args": args}, f)


def _jsonable(d: dict) -> dict:
    def conv(v):
        if isinstance(v, float) and v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v
    return {k: conv(v) for k, v in d.items()}
