"""Camera core: the trajectory type, pose algebra, Plücker rays, interchange formats, and the
trajectory builder (presets and keyframes). No ComfyUI imports. Conventions: ``lavr_core.conventions``."""

from .trajectory import CameraTrajectory, check_frame_count  # noqa: F401
from .transforms import (  # noqa: F401
    axis_angle_to_matrix, c2w_to_w2c, convert_axes, fov_from_intrinsics, intrinsics_from_fov,
    invert_pose, look_at, make_pose, matrix_to_quat, normalize_intrinsics, normalize_scale,
    normalize_to_first, orthonormalize, quat_multiply, quat_normalize, quat_to_matrix, scale_intrinsics,
    w2c_to_c2w,
)
from .plucker import PLUCKER_ORDERS, pack_plucker_frames, plucker_embedding, plucker_for_trajectory  # noqa: F401
from .preview import render_trajectory_preview  # noqa: F401
