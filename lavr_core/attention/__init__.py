"""Attention variants for the video DiT.

* ``fused_view_time``: 4Real-Video-V2's fused view-time sparse attention (same view OR same time),
  with FlexAttention, dense-mask SDPA and a float64 naive reference behind one API.
* ``fused_rope``: the (v, t, x, y) -> (v * T_max + t, x, y) RoPE positions of the fused grid.
"""

from .fused_rope import fused_rope, fused_rope_positions  # noqa: F401
from .fused_view_time import (BACKENDS, ViewTimeLayout, block_density, build_block_mask,  # noqa: F401
                              fused_view_time_attention, ideal_density, mask_density, view_time_mask,
                              wan_attention_fn)

__all__ = ["BACKENDS", "ViewTimeLayout", "block_density", "build_block_mask", "fused_rope", "fused_rope_positions",
           "fused_view_time_attention", "ideal_density", "mask_density", "view_time_mask", "wan_attention_fn"]
