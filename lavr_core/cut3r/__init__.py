"""CUT3R (Continuous 3D Perception Model with Persistent State, CVPR 2025), written for LaVR.

* :mod:`.config` - :class:`Cut3rConfig` and the safe parser of the checkpoints' constructor string;
* :mod:`.model` - :class:`Cut3rModel` (official parameter names) with a per-frame :meth:`~Cut3rModel.step`;
* :mod:`.load` - :func:`load_cut3r` / :func:`read_checkpoint`: safe loading of ``.pth`` and ``.safetensors``;
* :mod:`.preprocess` - the official resize/crop for the 512 and 224 models;
* :mod:`.streaming` - :func:`encode_video`: flat-memory, frame-by-frame scene latents;
* :mod:`.conformance` - the runner behind ``python -m lavr_core.conformance``.

Only torch, numpy and Pillow are needed; nothing here imports ComfyUI.
"""

from .config import CUT3R_224_LINEAR, CUT3R_512_DPT, RELEASED_CHECKPOINTS, WEIGHTS_SOURCE, Cut3rConfig, parse_constructor
from .load import (Cut3rCheckpoint, build_model, check_device_dtype, load_cut3r, read_checkpoint, save_pth,
                   save_safetensors)
from .model import Cut3rModel, Cut3rState, Cut3rStep
from .preprocess import CropInfo, PreparedFrames, plan_crop, prepare_frames
from .streaming import Cut3rFrame, Cut3rSequence, Cut3rStreamer, StreamOptions, encode_frames, encode_video

__all__ = [
    "CUT3R_224_LINEAR", "CUT3R_512_DPT", "CropInfo", "Cut3rCheckpoint", "Cut3rConfig", "Cut3rFrame", "Cut3rModel",
    "Cut3rSequence", "Cut3rState", "Cut3rStep", "Cut3rStreamer", "PreparedFrames", "RELEASED_CHECKPOINTS",
    "StreamOptions", "WEIGHTS_SOURCE", "build_model", "check_device_dtype", "save_pth", "encode_frames", "encode_video", "load_cut3r",
    "parse_constructor", "plan_crop", "prepare_frames", "read_checkpoint", "save_safetensors",
]
