"""ComfyUI-LaVR: video re-rendering along new camera paths, 4D video and 3D/4D Gaussian splats.

ComfyUI loads this file. Nodes register through the V3 ``comfy_entrypoint`` (a module may use either
that or ``NODE_CLASS_MAPPINGS``, not both); ``WEB_DIRECTORY`` serves the JS editor and previews.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
# lavr_core is imported by absolute name so that values (trajectories, Gaussians) created by one node
# are instances of the same classes another node checks against, and so that the standalone tests
# and the pack share one module identity.
if _HERE not in sys.path:
    sys.path.append(_HERE)

WEB_DIRECTORY = "./web"

import importlib.util as _ilu  # noqa: E402

if _ilu.find_spec("comfy_api") is not None:
    from .nodes import comfy_entrypoint  # noqa: E402,F401
elif _ilu.find_spec("comfy") is not None:
    raise ImportError("ComfyUI-LaVR needs a ComfyUI with the V3 node API (comfy_api), 0.3.75 or newer: "
                      "update ComfyUI (git pull, or ComfyUI-Manager > Update ComfyUI).")
# else: imported outside ComfyUI (pytest collects the repository root as a package); nothing to register.
