"""Gen3R (JaceyHuang/Gen3R, MIT): a Wan2.1-Fun Control-Camera DiT that generates appearance and
VGGT-derived geometry latents side by side.

* ``geometry_adapter``: ``GeometryAdapter`` (VGGT tokens <-> 16-channel latent, an instance of the
  Wan VAE in ``lavr_core.wan.vae``), token packing to and from the VGGT aggregator/heads.
* ``dit``: ``Gen3RDiT`` (``WanModel`` + camera adapter + side-by-side RoPE), ``join_latents`` /
  ``split_latents``, loading.
* ``camera``: the Plücker camera control (``control_camera_latents``).
* ``conformance``: runner for ``python -m lavr_core.conformance`` (fixtures and manifests).
"""

from .camera import control_camera_from_trajectory, control_camera_latents
from .dit import (GEN3R_DIT_1_3B, CameraAdapter, Gen3RDiT, Gen3RDiTConfig, dit_from_state_dict,
                  join_latents, load_gen3r_dit, split_latents)
from .geometry_adapter import (GEN3R_GEOMETRY_ADAPTER, GeometryAdapter, GeometryAdapterConfig,
                               adapter_from_state_dict, as_aggregator_layers, load_geometry_adapter, tokens_from_vggt,
                               vggt_token_groups)

__all__ = ["GEN3R_DIT_1_3B", "GEN3R_GEOMETRY_ADAPTER", "CameraAdapter", "GeometryAdapter", "GeometryAdapterConfig",
           "Gen3RDiT", "Gen3RDiTConfig", "adapter_from_state_dict", "as_aggregator_layers",
           "control_camera_from_trajectory", "control_camera_latents", "dit_from_state_dict", "join_latents",
           "load_gen3r_dit", "load_geometry_adapter", "split_latents", "tokens_from_vggt", "vggt_token_groups"]
