"""LaVR: ReCamMaster conditioned on CUT3R's scene latent.

* ``config``: ``LavrAdapterConfig`` (sizes, query grid and frame policies, JSON round-trip).
* ``adapter``: ``LavrAdapter``: state tokens -> MLP -> query transformer (one query per latent
  cell) -> latent frames; source / target pose MLPs with zero-initialised per-block outputs.
* ``model``: ``LavrModel(ReCamMasterModel)``: ``condition_kwargs(scene, target_cam_emb, F, (H, W))``
  and ``forward(x, t, context, cam_emb, **condition_kwargs)``; exactly ReCamMaster without adapter.
* ``weights``: the ``lavr_adapter`` safetensors layout, ``save_adapter`` / ``attach_adapter``.
"""

from .adapter import LavrAdapter, frame_indices, relative_pose_12, snapshot_indices
from .config import LavrAdapterConfig
from .model import FEATURES_KW, LATENTS_KW, LavrBlock, LavrModel, SceneTokens
from .weights import FORMAT, FORMAT_VERSION, attach_adapter, build_adapter, read_adapter, save_adapter

__all__ = [
    "FEATURES_KW", "FORMAT", "FORMAT_VERSION", "LATENTS_KW", "LavrAdapter", "LavrAdapterConfig", "LavrBlock",
    "LavrModel", "SceneTokens", "attach_adapter", "build_adapter", "frame_indices", "read_adapter",
    "relative_pose_12", "save_adapter", "snapshot_indices",
]
