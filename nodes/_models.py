"""Model files and devices: ComfyUI's model folders and memory management, used by every loader."""

from __future__ import annotations

import contextlib
import os

import torch

from lavr_core.errors import CheckpointError, InputError

DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("auto", "cpu")


def model_file_options(folder: str, expected: list[str]) -> list[str]:
    """Files in a ComfyUI model folder; with none, the expected names, so the workflow still loads and
    running it says where to put the file (instead of an empty, unexplained list)."""
    import folder_paths

    try:
        files = folder_paths.get_filename_list(folder)
    except KeyError:
        files = []
    return list(files) or list(expected)


def resolve_model_file(folder: str, name: str, source: str) -> str:
    """Full path of ``name`` in ComfyUI model folder ``folder``, or an error saying where to put it."""
    import folder_paths

    path = folder_paths.get_full_path(folder, name) if name else None
    if path is None or not os.path.isfile(path):
        where = folder_paths.get_folder_paths(folder)
        # diffusion_models lists the legacy models/unet first: point users at the folder named as asked
        target = next((p for p in where if os.path.basename(os.path.normpath(p)) == folder),
                      where[0] if where else "models/" + folder)
        raise CheckpointError(f"Model file {name!r} was not found in the {folder!r} model folder.",
                              f"Download it from {source} and put it in {target}, "
                              "then press R in ComfyUI to refresh the list.")
    return path


def pick_devices(device: str) -> tuple[torch.device, torch.device]:
    """(run device, offload device) from a node's device option, via ComfyUI's model management."""
    import comfy.model_management as mm

    if device == "cpu":
        return torch.device("cpu"), torch.device("cpu")
    if device != "auto":
        raise InputError(f"Unknown device option {device!r}.", f"Use one of {', '.join(DEVICES)}.")
    return mm.get_torch_device(), mm.unet_offload_device()


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """fp32 on CPU, bf16 on GPUs that support it (else fp16), unless the user chose."""
    import comfy.model_management as mm

    if dtype not in DTYPES:
        raise InputError(f"Unknown dtype option {dtype!r}.", f"Use one of {', '.join(DTYPES)}.")
    if DTYPES[dtype] is not None:
        return DTYPES[dtype]
    if device.type == "cpu":
        return torch.float32
    return torch.bfloat16 if mm.should_use_bf16(device) else torch.float16


@contextlib.contextmanager
def model_on_device(handle):
    """Move a ``ModelHandle``'s model to its run device for the duration of a node, then back.

    ComfyUI is asked to free enough memory first (it unloads its own idle models), and the model
    returns to the offload device afterwards, also when the node fails or is cancelled.
    """
    import comfy.model_management as mm

    dev = handle.load_device
    if dev.type != "cpu":
        mm.free_memory(handle.num_bytes * 1.3, dev)
    handle.model.to(dev)
    try:
        yield handle.model
    finally:
        handle.model.to(handle.offload_device)
        if dev.type != "cpu":
            mm.soft_empty_cache()
