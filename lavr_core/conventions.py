"""The conventions every value in ComfyUI-LaVR follows. One place, so nothing else has to guess.

Cameras
    * Poses are **camera-to-world** (c2w) 4x4 matrices unless a name says ``w2c``.
    * Camera axes are **OpenCV**: +x right, +y down, +z forward (the viewing direction).
      World frames are right-handed. OpenGL / Blender / three.js cameras use +x right, +y up,
      +z backward; converting between the two flips the camera's y and z axes
      (``c2w_gl = c2w_cv @ diag(1, -1, -1, 1)``), see ``lavr_core.camera.transforms``.
    * Intrinsics ``K`` are 3x3 in **pixels** of the trajectory's ``width`` x ``height`` image, with the
      principal point measured from the top-left *corner* of the top-left pixel (pixel centres at
      +0.5), as OpenCV, COLMAP and nerfstudio do.
    * Translation units are "scene units": metres where a source says so (ReCamMaster after its
      cm -> m division, COLMAP/nerfstudio as written), otherwise the unknown scale of a
      reconstruction (CUT3R, VGGT). ``normalize_to_first`` / ``normalize_scale`` make them comparable.

Rotations
    * Quaternions are **wxyz** (scalar first), unit norm, and for a rotation matrix ``R`` the
      quaternion ``q`` satisfies ``R = quat_to_matrix(q)``; ``q`` and ``-q`` are the same rotation and
      functions return ``w >= 0``.

Images and video
    * ComfyUI ``IMAGE``: float tensor ``[T, H, W, 3]`` in [0, 1], RGB, frames along the batch axis.
    * Model inputs inside ``lavr_core`` are ``[B, 3, H, W]`` (or ``[B, T, 3, H, W]``) in the range the
      official code uses; each model module states its own and converts at its boundary.

Time
    * Frame ``i`` of a trajectory is shown at ``i / fps`` seconds. Frame counts are 1 .. MAX_FRAMES.
"""

from __future__ import annotations

#: Longest trajectory or video any node accepts (frames). Longer paths are almost always a mistake
#: (a frame count typed in milliseconds, a wrong fps); 2048 frames is over a minute at 30 fps.
MAX_FRAMES = 2048

#: A rotation block whose ``|R^T R - I|`` (max abs entry) is at most this, with ``det(R) > 0``, is
#: re-orthonormalised silently: text formats print 6-8 significant digits and accumulate this much.
#: Anything further from a rotation is rejected (scale or shear in a pose is a bug upstream).
ROTATION_TOLERANCE = 1e-3

#: ComfyUI custom type names of the values that flow between LaVR nodes.
TRAJECTORY_TYPE = "LAVR_CAMERA_TRAJECTORY"
POINT_CLOUD_TYPE = "LAVR_POINT_CLOUD"
SCENE_LATENT_TYPE = "LAVR_SCENE_LATENT"
GAUSSIANS_TYPE = "LAVR_GAUSSIANS"
#: A V x T grid of frames (views x timesteps) with its layout: see ``lavr_core.grid``.
GRID_LAYOUT_TYPE = "LAVR_GRID_LAYOUT"
#: Loaded model handles (``lavr_core.models.ModelHandle``), one type per model family so a wrong
#: link is refused by the graph editor before anything runs.
CUT3R_MODEL_TYPE = "LAVR_CUT3R_MODEL"
VGGT_MODEL_TYPE = "LAVR_VGGT_MODEL"
VIDEO_MODEL_TYPE = "LAVR_VIDEO_MODEL"
GEN3R_MODEL_TYPE = "LAVR_GEN3R_MODEL"

#: The four image/camera conventions the camera core converts between.
AXIS_CONVENTIONS = ("opencv", "opengl", "blender", "threejs")
