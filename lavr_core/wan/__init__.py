"""Wan2.1 video DiT (original Wan key layout) and ReCamMaster's camera conditioning.

* ``config``: ``WanConfig``, the released presets, ``infer_config`` from a state dict's shapes.
* ``model``: ``WanModel`` (patch embedding, time/text embeddings, blocks, head, 3-D RoPE).
* ``recammaster``: ``ReCamMasterModel`` (per-block camera encoder/projector, target|source frames),
  ``camera_embedding`` from a ``CameraTrajectory``.
* ``scheduler``: the flow-matching schedule and Euler step Wan/ReCamMaster sample with.
* ``loading``: single-file weights (ComfyUI, official, ``step20000.ckpt``) with clear errors.
"""

from .config import PRESETS, RECAMMASTER_1_3B, TINY, WAN21_T2V_1_3B, WAN21_T2V_14B, WanConfig, infer_config  # noqa: F401
from .model import WanModel, pad_context  # noqa: F401
from .recammaster import ReCamMasterModel, camera_embedding, concat_target_source, target_half  # noqa: F401
from .scheduler import FlowMatchScheduler  # noqa: F401
