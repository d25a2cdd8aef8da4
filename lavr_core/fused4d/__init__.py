"""Fused 4D sampler (4Real-Video-V2): synchronized multi-view video from a Wan T2V DiT whose
self-attention keeps only same-view / same-time pairs over a V x T grid of latent frames.

* ``layout``: the grid's token sequence, RoPE positions, latent <-> video frame mapping.
* ``reference``: fixed-view row / freeze-time column references encoded into their cells.
* ``pipeline``: ``generate`` (references + prompt -> IMAGE grid + ``GridLayout``), ``sample_grid``.
* ``weights``: self-attention fine-tunes and LoRAs (applied around a run), LoRA training wrappers.
"""

from .layout import GridTokens, latent_times, video_frames  # noqa: F401
from .pipeline import Fused4DResult, Fused4DSettings, decode_grid, generate, sample_grid  # noqa: F401
from .reference import REFERENCE_MODES, GridReference, build_reference  # noqa: F401
