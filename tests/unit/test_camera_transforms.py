"""Pose algebra (``lavr_core.camera.transforms``) and the ``CameraTrajectory`` value, cross-checked with kornia.

kornia 0.9 quaternions are (w, x, y, z) like ours, but its ``rotation_matrix_to_quaternion`` does not
canonicalise the sign (``w`` may be negative), so quaternions are compared up to ``q`` vs ``-q``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from kornia.geometry.camera import PinholeCamera
from kornia.geometry.conversions import (
    axis_angle_to_rotation_matrix, quaternion_to_rotation_matrix, rotation_matrix_to_quaternion,
)
from kornia.geometry.linalg import compose_transformations, inverse_transformation, relative_transformation
from kornia.geometry.quaternion import Quaternion

from lavr_core.camera import (
    CameraTrajectory, axis_angle_to_matrix, c2w_to_w2c, check_frame_count, convert_axes, fov_from_intrinsics,
    intrinsics_from_fov, invert_pose, look_at, make_pose, matrix_to_quat, normalize_intrinsics,
    normalize_scale, normalize_to_first, orthonormalize, quat_multiply, quat_normalize, quat_to_matrix,
    scale_intrinsics, w2c_to_c2w,
)
from lavr_core.conventions import AXIS_CONVENTIONS, MAX_FRAMES, ROTATION_TOLERANCE
from lavr_core.errors import LavrError, TrajectoryError

F64 = torch.float64


def rand_rotations(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_rotation_matrix(torch.randn(n, 3, generator=g, dtype=F64) * 1.7)


def rand_poses(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return make_pose(rand_rotations(n, seed), torch.randn(n, 3, generator=g, dtype=F64) * 4)


def same_quat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Max distance between quaternions up to the sign (q and -q are one rotation)."""
    return torch.minimum((a - b).abs().amax(-1), (a + b).abs().amax(-1)).max()


def K_of(fx=500.0, fy=480.0, cx=320.0, cy=170.0) -> torch.Tensor:
    return torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=F64)


# ------------------------------------------------------------------------------- axis conventions

@pytest.mark.parametrize("src,dst", list(itertools.product(AXIS_CONVENTIONS, repeat=2)))
def test_convert_axes_round_trip_every_pair(src, dst):
    c2w = rand_poses(16, seed=1)
    there = convert_axes(c2w, src, dst)
    torch.testing.assert_close(convert_axes(there, dst, src), c2w, rtol=0, atol=1e-6)
    torch.testing.assert_close(there[:, :3, 3], c2w[:, :3, 3], rtol=0, atol=0)  # centres never move
    assert torch.linalg.det(there[:, :3, :3]).sub(1).abs().max() < 1e-12  # still a proper rotation
    for mid in AXIS_CONVENTIONS:  # going through any third convention changes nothing
        torch.testing.assert_close(convert_axes(convert_axes(c2w, src, mid), mid, dst), there, rtol=0, atol=1e-12)


def test_convert_axes_meaning():
    """A y-up, z-backward (OpenGL) camera with identity pose looks down world -z with world +y up."""
    gl = torch.eye(4, dtype=F64)
    cv = convert_axes(gl, "opengl", "opencv")
    torch.testing.assert_close(cv[:3, 2], torch.tensor([0, 0, -1.0], dtype=F64))  # OpenCV forward
    torch.testing.assert_close(cv[:3, 1], torch.tensor([0, -1.0, 0], dtype=F64))  # OpenCV down = -world up
    # A point in front of the camera projects inside the image and in front (kornia pinhole, OpenCV).
    K4 = torch.eye(4, dtype=F64)[None]
    K4[0, :3, :3] = K_of(cx=320, cy=240)
    cam = PinholeCamera(K4, invert_pose(cv)[None], torch.tensor([480.0], dtype=F64), torch.tensor([640.0], dtype=F64))
    uv = cam.project(torch.tensor([[0.1, 0.2, -5.0]], dtype=F64))  # ahead, slightly right and up
    assert uv[0, 0] > 320 and uv[0, 1] < 240
    assert torch.equal(convert_axes(gl, "blender", "threejs"), gl)
    with pytest.raises(TrajectoryError, match="Unknown camera convention"):
        convert_axes(gl, "opencv", "unity")


# --------------------------------------------------------------------------------- c2w <-> w2c

def test_invert_pose_matches_kornia_and_linalg():
    c2w = rand_poses(32, seed=2)
    w2c = c2w_to_w2c(c2w)
    torch.testing.assert_close(w2c, inverse_transformation(c2w), rtol=0, atol=1e-12)
    torch.testing.assert_close(w2c, torch.linalg.inv(c2w), rtol=0, atol=1e-12)
    torch.testing.assert_close(w2c_to_c2w(w2c), c2w, rtol=0, atol=1e-6)
    torch.testing.assert_close(w2c @ c2w, torch.eye(4, dtype=F64).expand(32, 4, 4), rtol=0, atol=1e-12)
    batched = invert_pose(c2w.reshape(4, 8, 4, 4))
    torch.testing.assert_close(batched.reshape(32, 4, 4), w2c, rtol=0, atol=0)
    # float32 in, float32 out
    assert invert_pose(c2w.float()).dtype == torch.float32


def test_make_pose():
    R, t = rand_rotations(5, 3), torch.arange(15, dtype=F64).reshape(5, 3)
    T = make_pose(R, t)
    assert T.shape == (5, 4, 4)
    torch.testing.assert_close(T[:, :3, :3], R)
    torch.testing.assert_close(T[:, :3, 3], t)
    torch.testing.assert_close(T[:, 3], torch.tensor([0, 0, 0, 1.0], dtype=F64).expand(5, 4))
    assert make_pose(R[0], t).shape == (5, 4, 4)  # broadcast one rotation over many translations


# ---------------------------------------------------------------------------------- quaternions

def test_quaternions_match_kornia_wxyz():
    g = torch.Generator().manual_seed(4)
    q = quat_normalize(torch.randn(200, 4, generator=g, dtype=F64))
    assert (q[:, 0] >= 0).all()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(200, dtype=F64))
    torch.testing.assert_close(quat_to_matrix(q), quaternion_to_rotation_matrix(q), rtol=0, atol=1e-12)
    R = rand_rotations(200, seed=5)
    assert same_quat(matrix_to_quat(R), rotation_matrix_to_quaternion(R)) < 1e-10
    # Known value: 90 degrees about +z is (cos 45, 0, 0, sin 45) and maps x to y.
    qz = torch.tensor([math.sqrt(0.5), 0, 0, math.sqrt(0.5)], dtype=F64)
    torch.testing.assert_close(quat_to_matrix(qz) @ torch.tensor([1.0, 0, 0], dtype=F64),
                               torch.tensor([0, 1.0, 0], dtype=F64))


def test_quaternion_round_trips_including_half_turns():
    g = torch.Generator().manual_seed(6)
    axes = torch.cat([torch.eye(3, dtype=F64), -torch.eye(3, dtype=F64),
                      torch.randn(40, 3, generator=g, dtype=F64)])
    axes = axes / axes.norm(dim=-1, keepdim=True)
    angles = torch.tensor([0.0, 1e-9, 1e-4, 0.5, math.pi / 2, 3.0, math.pi - 1e-3, math.pi - 1e-6,
                           math.pi - 1e-9, math.pi], dtype=F64)
    aa = (axes[:, None] * angles[None, :, None]).reshape(-1, 3)
    R = axis_angle_to_rotation_matrix(aa)  # kornia builds the matrices independently
    torch.testing.assert_close(axis_angle_to_matrix(axes[:, None].expand(-1, len(angles), 3).reshape(-1, 3),
                                                    angles.repeat(len(axes))), R, rtol=0, atol=1e-12)
    q = matrix_to_quat(R)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(len(q), dtype=F64))
    assert (q[:, 0] >= 0).all()
    torch.testing.assert_close(quat_to_matrix(q), R, rtol=0, atol=1e-6)  # matrix -> quat -> matrix
    qq = matrix_to_quat(quat_to_matrix(q))
    assert same_quat(qq, q) < 1e-6  # quat -> matrix -> quat (sign free only at exactly 180 degrees)
    strictly_less = (angles < math.pi).repeat(len(axes))
    torch.testing.assert_close(qq[strictly_less], q[strictly_less], rtol=0, atol=1e-6)
    # Half-turn quaternions have w = 0 and the rotation axis as the vector part.
    half = q.reshape(len(axes), len(angles), 4)[:, -1]
    assert half[:, 0].abs().max() < 1e-12
    assert same_quat(half[:, 1:], axes) < 1e-12


def test_quat_multiply_composes_rotations():
    g = torch.Generator().manual_seed(8)
    a, b = quat_normalize(torch.randn(2, 50, 4, generator=g, dtype=F64))
    ab = quat_multiply(a, b)
    torch.testing.assert_close(quat_to_matrix(ab), quat_to_matrix(a) @ quat_to_matrix(b), rtol=0, atol=1e-12)
    ref = Quaternion(a) * Quaternion(b)  # kornia's Hamilton product
    torch.testing.assert_close(ab, ref.data, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------ rigidity

def test_orthonormalize_accepts_small_noise_and_rejects_the_rest():
    R = rand_rotations(10, seed=9)
    g = torch.Generator().manual_seed(10)
    noise = torch.randn(10, 3, 3, generator=g, dtype=F64)
    noisy = R + noise / noise.abs().amax(dim=(-1, -2), keepdim=True) * 2e-4  # |R^T R - I| < 1e-3
    assert ((noisy.transpose(-1, -2) @ noisy - torch.eye(3, dtype=F64)).abs().amax() < ROTATION_TOLERANCE)
    fixed = orthonormalize(noisy)
    torch.testing.assert_close(fixed.transpose(-1, -2) @ fixed, torch.eye(3, dtype=F64).expand(10, 3, 3),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(fixed), torch.ones(10, dtype=F64))
    assert (fixed - R).abs().max() < 1e-3
    with pytest.raises(TrajectoryError, match="scale or shear"):
        orthonormalize(R * 1.01)
    with pytest.raises(TrajectoryError, match="reflection"):
        orthonormalize(R @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=F64)))
    bad = R.clone()
    bad[4, 1, 1] = float("nan")
    with pytest.raises(TrajectoryError, match=r"NaN.*\[4\]|\[4\].*NaN"):
        orthonormalize(bad)


# ---------------------------------------------------------------------------------- intrinsics

@pytest.mark.parametrize("axis", ["horizontal", "vertical", "diagonal"])
def test_intrinsics_fov_round_trip(axis):
    W, H = 832, 480
    for fov in (10.0, 45.0, 60.0, 90.0, 150.0):
        K = intrinsics_from_fov(fov, W, H, axis=axis)
        torch.testing.assert_close(K[:2, 2], torch.tensor([W / 2, H / 2], dtype=F64))
        assert K[0, 0] == K[1, 1]  # square pixels
        fovx, fovy = fov_from_intrinsics(K, W, H)
        if axis == "horizontal":
            assert abs(fovx.item() - fov) < 1e-9
        elif axis == "vertical":
            assert abs(fovy.item() - fov) < 1e-9
        else:
            diag = 2 * math.degrees(math.atan(math.hypot(W, H) / (2 * K[0, 0].item())))
            assert abs(diag - fov) < 1e-9
        # kornia pinhole: a point at the half-angle lands on the image edge.
        K4 = torch.eye(4, dtype=F64)[None]
        K4[0, :3, :3] = K
        cam = PinholeCamera(K4, torch.eye(4, dtype=F64)[None], torch.tensor([float(H)], dtype=F64),
                            torch.tensor([float(W)], dtype=F64))
        edge = cam.project(torch.tensor([[math.tan(math.radians(fovx.item() / 2)), 0.0, 1.0]], dtype=F64))
        assert abs(edge[0, 0].item() - W) < 1e-9
    for bad in (0.0, 180.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(TrajectoryError, match="Field of view"):
            intrinsics_from_fov(bad, W, H)
    with pytest.raises(TrajectoryError, match="axis"):
        intrinsics_from_fov(60.0, W, H, axis="slanted")


def test_scale_and_normalize_intrinsics_match_kornia():
    K = K_of()
    K4 = torch.eye(4, dtype=F64)[None]
    K4[0, :3, :3] = K
    cam = PinholeCamera(K4, torch.eye(4, dtype=F64)[None], torch.tensor([340.0], dtype=F64),
                        torch.tensor([640.0], dtype=F64))
    half = cam.scale(torch.tensor([0.5], dtype=F64))
    torch.testing.assert_close(scale_intrinsics(K, 0.5, 0.5), half.intrinsics[0, :3, :3])
    n = normalize_intrinsics(K, 640, 340)
    torch.testing.assert_close(n, torch.tensor([[500 / 640, 0, 0.5], [0, 480 / 340, 0.5], [0, 0, 1]], dtype=F64))
    # Pixel-corner convention: the image centre stays the centre after an anisotropic resize.
    Kc = K_of(cx=320, cy=170)
    torch.testing.assert_close(scale_intrinsics(Kc, 0.25, 2.0)[:2, 2], torch.tensor([80.0, 340.0], dtype=F64))


# ------------------------------------------------------------------------------- normalisation

def test_normalize_to_first_keeps_relative_motion():
    c2w = rand_poses(12, seed=11)
    rel = normalize_to_first(c2w)
    torch.testing.assert_close(rel[0], torch.eye(4, dtype=F64), rtol=0, atol=1e-12)
    # The pose of frame j in frame i's camera, inv(c2w_i) @ c2w_j (kornia), is unchanged.
    for i, j in [(0, 5), (3, 7), (11, 2)]:
        before = relative_transformation(c2w[i][None], c2w[j][None])
        after = relative_transformation(rel[i][None], rel[j][None])
        torch.testing.assert_close(after, before, rtol=0, atol=1e-10)
    torch.testing.assert_close(compose_transformations(c2w[:1], rel), c2w, rtol=0, atol=1e-10)


def test_normalize_scale():
    c2w = rand_poses(10, seed=12)
    out, s = normalize_scale(c2w)
    d = (out[:, :3, 3] - out[:1, :3, 3]).norm(dim=-1)
    assert abs(d.max().item() - 1.0) < 1e-12
    torch.testing.assert_close(out[:, :3, :3], c2w[:, :3, :3], rtol=0, atol=0)
    torch.testing.assert_close(out[:, :3, 3] * s, c2w[:, :3, 3])
    _, s_mean = normalize_scale(c2w, mode="mean")
    assert s_mean < s
    out2, s2 = normalize_scale(c2w, scale=2.0)
    assert s2.item() == 2.0
    torch.testing.assert_close(out2[:, :3, 3], c2w[:, :3, 3] / 2)
    static = c2w[:1].repeat(4, 1, 1)
    out3, s3 = normalize_scale(static)
    assert s3.item() == 1.0 and torch.equal(out3, static)
    # A batch of paths: each path is divided by its own size.
    batch = torch.stack([c2w, make_pose(c2w[:, :3, :3], c2w[:, :3, 3] * 10)])
    outb, sb = normalize_scale(batch)
    torch.testing.assert_close(sb, torch.stack([s, 10 * s]))
    torch.testing.assert_close(outb[0], out)
    torch.testing.assert_close(outb[1], out)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(TrajectoryError, match="scale"):
            normalize_scale(c2w, scale=bad)


def test_look_at():
    g = torch.Generator().manual_seed(13)
    eye = torch.randn(20, 3, generator=g, dtype=F64) * 3
    target = torch.randn(20, 3, generator=g, dtype=F64)
    c2w = look_at(eye, target)
    R = c2w[:, :3, :3]
    torch.testing.assert_close(R.transpose(-1, -2) @ R, torch.eye(3, dtype=F64).expand(20, 3, 3), rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(20, dtype=F64))
    torch.testing.assert_close(c2w[:, :3, 3], eye)
    fwd = (target - eye) / (target - eye).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(R[:, :, 2], fwd)
    up = torch.tensor([0.0, -1.0, 0.0], dtype=F64)
    assert (R[:, :, 1] @ up < 0).all()  # image down points against world up
    assert (R[:, :, 0] @ up).abs().max() < 1e-12  # no roll: image x stays horizontal
    # The target projects onto the principal point (kornia pinhole).
    K4 = torch.eye(4, dtype=F64).repeat(20, 1, 1)
    K4[:, :3, :3] = K_of()
    cam = PinholeCamera(K4, invert_pose(c2w), torch.full((20,), 340.0, dtype=F64), torch.full((20,), 640.0, dtype=F64))
    torch.testing.assert_close(cam.project(target[:, None])[:, 0], torch.tensor([320.0, 170.0], dtype=F64).expand(20, 2))
    # Custom up (OpenGL-style world, +y up): the camera's down axis follows it.
    c2w_up = look_at(eye, target, up=torch.tensor([0.0, 1.0, 0.0], dtype=F64))
    assert (c2w_up[:, :3, 1] @ torch.tensor([0, 1.0, 0], dtype=F64) < 0).all()
    with pytest.raises(TrajectoryError, match="on its target"):
        look_at(eye, eye.clone())
    with pytest.raises(TrajectoryError, match="up vector"):
        look_at(torch.zeros(3, dtype=F64), torch.tensor([0.0, 5.0, 0.0], dtype=F64))


# ------------------------------------------------------------------------------ CameraTrajectory

def make_traj(T=6, **kw) -> CameraTrajectory:
    args = dict(c2w=rand_poses(T, seed=14), K=K_of(), width=640, height=340)
    args.update(kw)
    return CameraTrajectory(**args)


def test_trajectory_normalises_inputs():
    c2w = rand_poses(6, seed=14)
    t = CameraTrajectory(c2w.float(), K_of().float(), 640, 340, fps=np.float32(24), meta={"source": "test"})
    assert t.c2w.dtype == F64 and t.K.dtype == F64 and t.K.shape == (6, 3, 3)
    assert t.num_frames == len(t) == 6 and t.fps == 24.0 and isinstance(t.width, int)
    torch.testing.assert_close(t.c2w, c2w, rtol=0, atol=1e-6)
    torch.testing.assert_close(t.w2c, inverse_transformation(t.c2w), rtol=0, atol=1e-12)
    torch.testing.assert_close(t.centers, t.c2w[:, :3, 3])
    assert CameraTrajectory(c2w[:, :3], K_of(), 640, 340).allclose(CameraTrajectory(c2w, K_of(), 640, 340))
    assert CameraTrajectory(c2w[0], K_of(), 640, 340).num_frames == 1
    assert CameraTrajectory(np.eye(4), K_of().numpy(), 640, 340).num_frames == 1
    assert abs(t.duration - 0.25) < 1e-12 and "6 frames" in t.summary()


def test_trajectory_methods():
    t = make_traj()
    rel = t.relative_to_first()
    torch.testing.assert_close(rel.c2w[0], torch.eye(4, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(rel.c2w, normalize_to_first(t.c2w))
    small = t.with_image_size(320, 170)
    assert (small.width, small.height) == (320, 170)
    torch.testing.assert_close(small.K[0], scale_intrinsics(K_of(), 0.5, 0.5))
    sub = t.subset([4, 1])
    torch.testing.assert_close(sub.c2w, t.c2w[[4, 1]])
    assert t.subset(2).num_frames == 1
    assert t.allclose(t.replace(meta={"x": 1}))
    moved = t.c2w.clone()
    moved[3, 0, 3] += 1e-3
    assert not t.allclose(t.replace(c2w=moved))


def test_trajectory_reorthonormalises_within_tolerance():
    c2w = rand_poses(3, seed=15)
    noisy = c2w.clone()
    noisy[1, :3, :3] *= 1 + 4e-4  # |R^T R - I| = 8e-4, within 1e-3: text-file rounding
    t = CameraTrajectory(noisy, K_of(), 640, 340)
    R = t.c2w[:, :3, :3]
    torch.testing.assert_close(R.transpose(-1, -2) @ R, torch.eye(3, dtype=F64).expand(3, 3, 3), rtol=0, atol=1e-12)
    torch.testing.assert_close(t.c2w, c2w, rtol=0, atol=1e-9)
    beyond = c2w.clone()
    beyond[2, :3, :3] *= 1.002  # 4e-3 away: a scaled pose, not rounding
    with pytest.raises(TrajectoryError, match=r"scale or shear") as err:
        CameraTrajectory(beyond, K_of(), 640, 340)
    assert "[2]" in str(err.value) and err.value.hint


@pytest.mark.parametrize("case,match", [
    ("nan_pose", "NaN"), ("inf_pose", "NaN or infinity"), ("reflection", "reflection"),
    ("projective", "last row"), ("zero_focal", "focal"), ("negative_focal", "focal"), ("nan_K", "NaN"),
    ("K_last_row", "last row"), ("zero_frames", "0 frames"), ("too_many_frames", f"{MAX_FRAMES + 1} frames"),
    ("pose_3x3", "shape"), ("pose_5d", "shape"), ("K_4x4", "shape"), ("K_wrong_T", "shape"),
    ("width_zero", "width"), ("height_float", "height"), ("width_nan", "width"), ("fps_zero", "Frame rate"),
    ("fps_bool", "Frame rate"),
])
def test_trajectory_bad_inputs(case, match):
    c2w, K = rand_poses(4, seed=16), K_of()
    kw = dict(c2w=c2w, K=K, width=640, height=340, fps=16.0)
    if case == "nan_pose":
        kw["c2w"] = c2w.clone()
        kw["c2w"][2, 1, 3] = float("nan")
    elif case == "inf_pose":
        kw["c2w"] = c2w.clone()
        kw["c2w"][0, 0, 0] = float("inf")
    elif case == "reflection":
        kw["c2w"] = c2w @ torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=F64))
    elif case == "projective":
        kw["c2w"] = c2w.clone()
        kw["c2w"][1, 3, 2] = 0.5
    elif case == "zero_focal":
        kw["K"] = K_of(fx=0.0)
    elif case == "negative_focal":
        kw["K"] = K_of(fy=-300.0).expand(4, 3, 3)
    elif case == "nan_K":
        kw["K"] = K_of(cx=float("nan"))
    elif case == "K_last_row":
        kw["K"] = K.clone()
        kw["K"][2, 0] = 1.0
    elif case == "zero_frames":
        kw["c2w"] = torch.zeros(0, 4, 4, dtype=F64)
    elif case == "too_many_frames":
        kw["c2w"] = torch.eye(4, dtype=F64).repeat(MAX_FRAMES + 1, 1, 1)
    elif case == "pose_3x3":
        kw["c2w"] = c2w[:, :3, :3]
    elif case == "pose_5d":
        kw["c2w"] = c2w[None, None]
    elif case == "K_4x4":
        kw["K"] = torch.eye(4, dtype=F64)
    elif case == "K_wrong_T":
        kw["K"] = K.expand(3, 3, 3)
    elif case == "width_zero":
        kw["width"] = 0
    elif case == "height_float":
        kw["height"] = 340.5
    elif case == "width_nan":
        kw["width"] = float("nan")
    elif case == "fps_zero":
        kw["fps"] = 0
    elif case == "fps_bool":
        kw["fps"] = True
    with pytest.raises(TrajectoryError, match=match) as err:
        CameraTrajectory(**kw)
    assert isinstance(err.value, LavrError) and err.value.hint  # every error says what to do


def test_max_frames_is_accepted():
    t = CameraTrajectory(torch.eye(4, dtype=F64).repeat(MAX_FRAMES, 1, 1), K_of(), 640, 340)
    assert t.num_frames == MAX_FRAMES


def test_check_frame_count():
    assert check_frame_count(1) == 1 and check_frame_count(np.int64(81)) == 81 and check_frame_count(49.0) == 49
    for bad in (0, -3, MAX_FRAMES + 1, 2.5, True, float("nan"), "12"):
        with pytest.raises(TrajectoryError):
            check_frame_count(bad)
