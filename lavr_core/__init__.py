"""ComfyUI-LaVR core: camera paths, scene latents, Gaussians and the video models behind them.

Importable with no ComfyUI, no gsplat, no CUDA and no network. See `lavr_core.conventions` for the
coordinate, unit and image conventions every module follows.
"""

__version__ = "0.1.0"
