"""The headless trajectory preview picture."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix

from lavr_core.camera import CameraTrajectory, intrinsics_from_fov, look_at, make_pose, render_trajectory_preview
from lavr_core.camera.preview import SOURCE_COLOR, TARGET_COLOR, TARGET_FIRST_COLOR
from lavr_core.errors import InputError

F64 = torch.float64
K = intrinsics_from_fov(60.0, 832, 480)


def straight_path(T: int, step, start=(0.0, 0.0, 0.0)) -> CameraTrajectory:
    """Cameras looking down +z (identity rotation) moving by ``step`` per frame."""
    t = torch.tensor(start, dtype=F64) + torch.arange(T, dtype=F64)[:, None] * torch.tensor(step, dtype=F64)
    return CameraTrajectory(make_pose(torch.eye(3, dtype=F64).expand(T, 3, 3), t), K, 832, 480)


def orbit(T: int, radius=3.0) -> CameraTrajectory:
    a = torch.linspace(0, math.pi, T, dtype=F64)
    eye = torch.stack([radius * torch.sin(a), -0.5 + 0 * a, radius - radius * torch.cos(a)], -1)
    return CameraTrajectory(look_at(eye, torch.tensor([0, 0, radius], dtype=F64).expand_as(eye)), K, 832, 480)


def as_u8(img: torch.Tensor) -> np.ndarray:
    return (img[0].numpy() * 255 + 0.5).astype(np.uint8)


def mask_of(img: np.ndarray, color) -> np.ndarray:
    return (img == np.array(color, np.uint8)).all(-1)


def bbox(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return xs.min(), xs.max(), ys.min(), ys.max()


def test_shape_range_and_colours():
    target = orbit(40)
    img = render_trajectory_preview(target, size=(640, 360))
    assert img.shape == (1, 360, 640, 3) and img.dtype == torch.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    u8 = as_u8(img)
    assert mask_of(u8, TARGET_COLOR).sum() > 500
    assert mask_of(u8, TARGET_FIRST_COLOR).sum() > 20  # first frame highlighted
    assert mask_of(u8, SOURCE_COLOR).sum() == 0
    with_source = as_u8(render_trajectory_preview(target, straight_path(10, (0.1, 0, 0))))
    assert with_source.shape == (512, 512, 3)
    assert mask_of(with_source, SOURCE_COLOR).sum() > 100


def test_points_are_drawn_nearest_first_and_deterministically():
    g = torch.Generator().manual_seed(0)
    xyz = torch.randn(3000, 3, generator=g, dtype=F64) + torch.tensor([0, 0.5, 3.0], dtype=F64)
    green = torch.zeros(3000, 3)
    green[:, 1] = 1.0
    target = orbit(30)
    plain = as_u8(render_trajectory_preview(target))
    dotted = as_u8(render_trajectory_preview(target, points=(xyz, green)))
    assert mask_of(plain, (0, 255, 0)).sum() == 0
    assert mask_of(dotted, (0, 255, 0)).sum() > 1000
    again = as_u8(render_trajectory_preview(target, points=(xyz.numpy(), green.numpy())))
    assert np.array_equal(dotted, again)
    # Non-finite points are skipped; missing colours are grey.
    xyz_bad = xyz.clone()
    xyz_bad[::7, 0] = float("nan")
    render_trajectory_preview(target, points=(xyz_bad, None))
    render_trajectory_preview(target, points=(torch.zeros(0, 3), torch.zeros(0, 3)))
    # A point-cloud value with xyz / rgb attributes works like the pair.
    as_object = as_u8(render_trajectory_preview(target, points=SimpleNamespace(xyz=xyz, rgb=green)))
    assert np.array_equal(as_object, dotted)


def test_picture_is_invariant_to_world_similarity():
    """Auto-fit and camera-derived "up": moving, rotating and scaling the world changes nothing."""
    target, source = orbit(60), straight_path(20, (0.05, 0, 0.02), start=(-0.5, 0, 0))
    g = torch.Generator().manual_seed(1)
    xyz = torch.randn(2000, 3, generator=g, dtype=F64) + torch.tensor([0, 0.5, 3.0], dtype=F64)
    rgb = torch.rand(2000, 3, generator=g)
    base = render_trajectory_preview(target, source, (xyz, rgb))
    G = make_pose(axis_angle_to_rotation_matrix(torch.tensor([[0.4, 2.0, -0.7]], dtype=F64))[0],
                  torch.tensor([100.0, -20.0, 5.0], dtype=F64))
    s = 1000.0

    def move(t: CameraTrajectory) -> CameraTrajectory:
        c2w = G @ t.c2w
        c2w[:, :3, 3] *= s
        return t.replace(c2w=c2w)

    moved_xyz = (xyz @ G[:3, :3].T + G[:3, 3]) * s
    moved = render_trajectory_preview(move(target), move(source), (moved_xyz, rgb))
    diff = (base - moved).abs().amax(-1)
    assert (diff > 0.02).float().mean() < 0.01  # at most a few rasterisation flips along edges
    # ...whereas a genuinely different path does change the picture.
    other = render_trajectory_preview(orbit(60, radius=1.0), source, (xyz, rgb))
    assert ((base - other).abs().amax(-1) > 0.02).float().mean() > 0.02


def test_view_is_from_behind_and_above_and_auto_fitted():
    # Trucking right (+x, cameras looking +z): seen from behind, the path runs left to right.
    truck = as_u8(render_trajectory_preview(straight_path(30, (0.1, 0, 0))))
    x0, x1, _, _ = bbox(mask_of(truck, TARGET_COLOR))
    assert (x1 - x0) > 0.6 * 512  # fitted to the picture, not a dot in a corner
    fx = bbox(mask_of(truck, TARGET_FIRST_COLOR))
    assert (fx[0] + fx[1]) / 2 < (x0 + x1) / 2  # first frame on the left
    # Dollying forward (+z): seen from above-behind, the path runs up the picture.
    dolly = as_u8(render_trajectory_preview(straight_path(30, (0, 0, 0.1))))
    _, _, y0, y1 = bbox(mask_of(dolly, TARGET_COLOR))
    fy = bbox(mask_of(dolly, TARGET_FIRST_COLOR))
    assert (fy[2] + fy[3]) / 2 > (y0 + y1) / 2  # first frame at the bottom


def test_outlier_points_do_not_shrink_the_scene():
    target = straight_path(30, (0.1, 0, 0))
    g = torch.Generator().manual_seed(2)
    xyz = torch.randn(1000, 3, generator=g, dtype=F64) * 0.5 + torch.tensor([1.5, 0.5, 3.0], dtype=F64)
    xyz[:3] = torch.tensor([[1e5, 0, 0], [0, -1e5, 0], [0, 0, -1e6]], dtype=F64)
    u8 = as_u8(render_trajectory_preview(target, points=(xyz, torch.rand(1000, 3, generator=g))))
    x0, x1, _, _ = bbox(mask_of(u8, TARGET_COLOR))
    assert (x1 - x0) > 0.3 * 512


def test_degenerate_paths():
    single = CameraTrajectory(torch.eye(4, dtype=F64), K, 832, 480)
    assert mask_of(as_u8(render_trajectory_preview(single)), TARGET_FIRST_COLOR).sum() > 20
    static = CameraTrajectory(torch.eye(4, dtype=F64).repeat(5, 1, 1), K, 832, 480)
    assert render_trajectory_preview(static, static, size=(64, 48)).shape == (1, 48, 64, 3)


def test_bad_inputs():
    target = orbit(5)
    with pytest.raises(InputError, match="CameraTrajectory"):
        render_trajectory_preview(target.c2w)
    with pytest.raises(InputError, match="CameraTrajectory"):
        render_trajectory_preview(target, source="path.json")
    for size in [(0, 512), (512,), (512.5, 512), "512", (100000, 512)]:
        with pytest.raises(InputError, match="size"):
            render_trajectory_preview(target, size=size)
    with pytest.raises(InputError, match="colours"):
        render_trajectory_preview(target, points=(torch.zeros(10, 3), torch.zeros(9, 3)))
    with pytest.raises(InputError, match=r"\[N, 3\]"):
        render_trajectory_preview(target, points=(torch.zeros(10, 2), None))
    with pytest.raises(InputError, match="pair"):
        render_trajectory_preview(target, points=torch.zeros(10, 3))


def test_fast_for_long_paths_and_many_points():
    target, source = orbit(2048), straight_path(81, (0.01, 0, 0))
    g = torch.Generator().manual_seed(3)
    xyz = torch.randn(50_000, 3, generator=g) + torch.tensor([0, 0.5, 3.0])
    rgb = torch.rand(50_000, 3, generator=g)
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        img = render_trajectory_preview(target, source, (xyz, rgb))
        best = min(best, time.perf_counter() - t0)
    assert img.shape == (1, 512, 512, 3)
    assert best < 0.2, f"preview took {best:.3f} s"
