"""VGGT (Visual Geometry Grounded Transformer), written for LaVR from the paper and the official
code's documented behaviour; loads the released ``facebook/VGGT-1B`` weights key for key.

Main entry points:

* ``VGGT(VGGTConfig.vggt_1b())`` / ``load_vggt(path)``: the model; ``model(images)`` returns a
  ``VGGTPrediction`` (cameras, depth, points, optional tracks).
* ``preprocess_images`` / ``preprocess_comfy_images``: the official 518 px "crop" and "pad" input
  preparation.
* ``lavr_core.vggt.camera``: pose encoding <-> extrinsics/intrinsics, LaVR c2w and trajectories.
"""

from .aggregator import Aggregator, AggregatorState, LayerHook, TokenLayout
from .camera import (extri_intri_to_pose_encoding, pose_encoding_to_c2w, pose_encoding_to_extri_intri,
                     pose_encoding_to_trajectory, unproject_depth_map_to_point_map)
from .config import VGGTConfig
from .loader import load_vggt
from .model import VGGT, VGGTPrediction, check_images
from .preprocess import preprocess_comfy_images, preprocess_images, preprocess_images_square

__all__ = [
    "Aggregator", "AggregatorState", "LayerHook", "TokenLayout", "VGGT", "VGGTConfig", "VGGTPrediction",
    "check_images", "extri_intri_to_pose_encoding", "load_vggt", "pose_encoding_to_c2w",
    "pose_encoding_to_extri_intri", "pose_encoding_to_trajectory", "preprocess_comfy_images",
    "preprocess_images", "preprocess_images_square", "unproject_depth_map_to_point_map",
]
