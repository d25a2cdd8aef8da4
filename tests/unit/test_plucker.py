"""Plücker ray maps against an independent kornia computation and Gen3R's golden fixture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from kornia.geometry.camera import PinholeCamera
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from kornia.geometry.grid import create_meshgrid
from kornia.geometry.line import ParametrizedLine

from lavr_core.camera import (
    CameraTrajectory, pack_plucker_frames, plucker_embedding, plucker_for_trajectory,
)
from lavr_core.camera import plucker as plucker_mod
from lavr_core.errors import InputError, TrajectoryError

GEN3R_FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "gen3r" / "tiny_plucker"


def random_cameras(n: int, seed: int, spread: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random c2w (kornia rotations, translations ~ N(0, spread)) and distinct, off-centre K."""
    g = torch.Generator().manual_seed(seed)
    R = axis_angle_to_rotation_matrix(torch.randn(n, 3, generator=g, dtype=torch.float64) * 1.5)
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    c2w[:, :3, :3] = R
    c2w[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=torch.float64) * spread
    K = torch.zeros(n, 3, 3, dtype=torch.float64)
    K[:, 0, 0] = 300 + 200 * torch.rand(n, generator=g, dtype=torch.float64)
    K[:, 1, 1] = K[:, 0, 0] * (0.9 + 0.2 * torch.rand(n, generator=g, dtype=torch.float64))
    K[:, 0, 2] = 320 + 30 * torch.randn(n, generator=g, dtype=torch.float64)
    K[:, 1, 2] = 180 + 20 * torch.randn(n, generator=g, dtype=torch.float64)
    K[:, 2, 2] = 1
    return c2w, K


def kornia_plucker(c2w, K, width, height, out_h, out_w) -> torch.Tensor:
    """Reference ``[n, 6, out_h, out_w]`` = ``[o x d, d]`` built only from kornia's pinhole model.

    Cell ``(i, j)`` of the output grid is centred at original-image pixel coordinate
    ``((j + 0.5) * width / out_w, (i + 0.5) * height / out_h)``; kornia unprojects it at depth 1 to
    a world point and the ray runs from the camera centre through it.
    """
    n = c2w.shape[0]
    K4 = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    K4[:, :3, :3] = K
    cam = PinholeCamera(K4, torch.linalg.inv(c2w), torch.full((n,), float(height), dtype=torch.float64),
                        torch.full((n,), float(width), dtype=torch.float64))
    grid = create_meshgrid(out_h, out_w, normalized_coordinates=False, dtype=torch.float64)[0]  # [h, w, (x, y)]
    pix = (grid + 0.5) * torch.tensor([width / out_w, height / out_h], dtype=torch.float64)
    pix = pix.reshape(1, -1, 2).expand(n, -1, -1)
    world = cam.unproject(pix, torch.ones(n, pix.shape[1], 1, dtype=torch.float64))  # [n, h*w, 3]
    origin = c2w[:, None, :3, 3].expand_as(world)
    line = ParametrizedLine.through(origin, world)  # unit direction
    d = line.direction
    m = torch.linalg.cross(line.origin, d, dim=-1)
    return torch.cat([m, d], -1).reshape(n, out_h, out_w, 6).permute(0, 3, 1, 2)


@pytest.mark.parametrize("out_h,out_w", [(360, 640), (45, 80), (17, 31), (7, 3), (1, 1), (90, 60)])
def test_matches_kornia_at_any_resolution(out_h, out_w):
    c2w, K = random_cameras(4, seed=out_h * 1000 + out_w)
    ours = plucker_embedding(c2w, K, 640, 360, out_h, out_w, dtype=torch.float64)
    ref = kornia_plucker(c2w, K, 640, 360, out_h, out_w)
    assert ours.shape == (4, 6, out_h, out_w)
    err = (ours - ref).abs().max().item()
    assert err < 1e-5, err
    # float32 output (the default) stays within float32 rounding of moments of ~|o| = 5 units.
    err32 = (plucker_embedding(c2w, K, 640, 360, out_h, out_w) - ref).abs().max().item()
    assert err32 < 1e-5, err32


def test_far_cameras_keep_precision():
    c2w, K = random_cameras(3, seed=7, spread=200.0)  # moments ~ hundreds of units
    ref = kornia_plucker(c2w, K, 640, 360, 24, 40)
    ours = plucker_embedding(c2w, K, 640, 360, 24, 40, dtype=torch.float64)
    assert (ours - ref).abs().max().item() < 1e-8


def test_batch_shapes_and_broadcast_K():
    c2w, K = random_cameras(6, seed=3)
    flat = plucker_embedding(c2w, K[0], 640, 360, 9, 16, dtype=torch.float64)
    nested = plucker_embedding(c2w.reshape(2, 3, 4, 4), K[0], 640, 360, 9, 16, dtype=torch.float64)
    assert nested.shape == (2, 3, 6, 9, 16)
    torch.testing.assert_close(nested.reshape(6, 6, 9, 16), flat, rtol=0, atol=1e-12)
    single = plucker_embedding(c2w[2], K[0], 640, 360, 9, 16, dtype=torch.float64)
    assert single.shape == (6, 9, 16)
    torch.testing.assert_close(single, flat[2], rtol=0, atol=1e-12)
    three_by_four = plucker_embedding(c2w[:, :3], K[0], 640, 360, 9, 16, dtype=torch.float64)
    torch.testing.assert_close(three_by_four, flat, rtol=0, atol=1e-12)


def test_chunking_does_not_change_results(monkeypatch):
    c2w, K = random_cameras(5, seed=11)
    whole = plucker_embedding(c2w, K, 640, 360, 8, 12, dtype=torch.float64)
    monkeypatch.setattr(plucker_mod, "_CHUNK_VALUES", 6 * 8 * 12 * 2)  # two frames per chunk
    torch.testing.assert_close(plucker_embedding(c2w, K, 640, 360, 8, 12, dtype=torch.float64), whole,
                               rtol=0, atol=0)


def test_ray_geometry_properties():
    c2w, K = random_cameras(3, seed=5)
    p = plucker_embedding(c2w, K, 640, 360, 12, 20, dtype=torch.float64)
    m, d = p[:, :3], p[:, 3:]
    torch.testing.assert_close(d.norm(dim=1), torch.ones(3, 12, 20, dtype=torch.float64))
    assert (m * d).sum(1).abs().max() < 1e-12  # the moment is perpendicular to the direction
    # The moment does not depend on which point of the line is used: (o + 2.5 d) x d == o x d.
    o = c2w[:, :3, 3, None, None]
    torch.testing.assert_close(torch.linalg.cross(o + 2.5 * d, d, dim=1), m)
    # The ray of a cell centred on the principal point is the camera's optical axis.
    Kc = K.clone()
    Kc[:, 0, 2], Kc[:, 1, 2] = 320.0, 180.0  # 640 x 360 image -> centre of cell (6, 10) of a 13 x 21 grid
    q = plucker_embedding(c2w, Kc, 640, 360, 13, 21, dtype=torch.float64)
    torch.testing.assert_close(q[:, 3:, 6, 10], c2w[:, :3, 2])


def test_channel_orders_and_unnormalised_directions():
    c2w, K = random_cameras(2, seed=9)
    base = plucker_embedding(c2w, K, 640, 360, 6, 10, dtype=torch.float64)
    swapped = plucker_embedding(c2w, K, 640, 360, 6, 10, order="d,o_cross_d", dtype=torch.float64)
    torch.testing.assert_close(swapped, torch.cat([base[:, 3:], base[:, :3]], 1))
    od = plucker_embedding(c2w, K, 640, 360, 6, 10, order="o,d", dtype=torch.float64)
    torch.testing.assert_close(od[:, :3], c2w[:, :3, 3, None, None].expand(2, 3, 6, 10))
    torch.testing.assert_close(od[:, 3:], base[:, 3:])
    raw = plucker_embedding(c2w, K, 640, 360, 6, 10, normalize_dirs=False, dtype=torch.float64)
    d_cam = torch.einsum("nji,njhw->nihw", c2w[:, :3, :3], raw[:, 3:])  # back into camera axes
    torch.testing.assert_close(d_cam[:, 2], torch.ones(2, 6, 10, dtype=torch.float64))  # z = 1 plane
    torch.testing.assert_close(raw[:, 3:] / raw[:, 3:].norm(dim=1, keepdim=True), base[:, 3:])
    torch.testing.assert_close(raw[:, :3], torch.linalg.cross(c2w[:, :3, 3, None, None].expand_as(raw[:, 3:]),
                                                              raw[:, 3:], dim=1))


def test_pixel_center_zero_hits_cell_corners():
    c2w, K = random_cameras(2, seed=13)
    p = plucker_embedding(c2w, K, 640, 360, 36, 64, pixel_center=0.0, dtype=torch.float64)
    # Cell (0, 0) with pixel_center=0 is the image's top-left corner, pixel coordinate (0, 0).
    d = c2w[:, :3, :3] @ torch.linalg.solve(K, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(2, 3)[..., None])
    torch.testing.assert_close(p[:, 3:, 0, 0], (d / d.norm(dim=1, keepdim=True))[..., 0])


def test_dtype_and_default_float32():
    c2w, K = random_cameras(1, seed=1)
    assert plucker_embedding(c2w, K, 640, 360, 4, 4).dtype == torch.float32
    half = plucker_embedding(c2w, K, 640, 360, 4, 4, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    ref = plucker_embedding(c2w, K, 640, 360, 4, 4, dtype=torch.float64)
    assert (half.double() - ref).abs().max() < 0.05


def test_plucker_for_trajectory_relative_and_absolute():
    c2w, K = random_cameras(5, seed=21)
    traj = CameraTrajectory(c2w, K, 640, 360)
    rel = plucker_for_trajectory(traj, 18, 32, dtype=torch.float64)
    assert rel.shape == (5, 6, 18, 32)
    assert rel[0, :3].abs().max() < 1e-12  # frame 0 sits at the origin: zero moments
    absolute = plucker_for_trajectory(traj, 18, 32, relative_to_first=False, dtype=torch.float64)
    torch.testing.assert_close(absolute, kornia_plucker(c2w, K, 640, 360, 18, 32), rtol=0, atol=1e-9)
    # Relative maps do not depend on where the whole rig stands in the world.
    G = torch.eye(4, dtype=torch.float64)
    G[:3, :3] = axis_angle_to_rotation_matrix(torch.tensor([[0.3, -1.2, 0.7]], dtype=torch.float64))[0]
    G[:3, 3] = torch.tensor([10.0, -4.0, 2.0], dtype=torch.float64)
    moved = CameraTrajectory(G @ c2w, K, 640, 360)
    torch.testing.assert_close(plucker_for_trajectory(moved, 18, 32, dtype=torch.float64), rel, rtol=0, atol=1e-9)
    assert (plucker_for_trajectory(moved, 18, 32, relative_to_first=False, dtype=torch.float64) - absolute).abs().max() > 0.1


def test_bad_inputs_raise_clear_errors():
    c2w, K = random_cameras(2, seed=2)
    with pytest.raises(InputError, match="order"):
        plucker_embedding(c2w, K, 640, 360, 4, 4, order="d,m")
    for h, w in [(0, 4), (4, -1), (2.5, 4), (True, 4)]:
        with pytest.raises(InputError):
            plucker_embedding(c2w, K, 640, 360, h, w)
    with pytest.raises(InputError):
        plucker_embedding(c2w, K, 0, 360, 4, 4)
    with pytest.raises(InputError):
        plucker_embedding(c2w, K, 640, 360, 4, 4, pixel_center=1.5)
    bad = c2w.clone()
    bad[1, 0, 3] = float("nan")
    with pytest.raises(TrajectoryError, match="NaN"):
        plucker_embedding(bad, K, 640, 360, 4, 4)
    badK = K.clone()
    badK[0, 1, 1] = -5
    with pytest.raises(TrajectoryError, match="focal"):
        plucker_embedding(c2w, badK, 640, 360, 4, 4)
    with pytest.raises(TrajectoryError):
        plucker_embedding(c2w[:, :3, :3], K, 640, 360, 4, 4)
    with pytest.raises(TrajectoryError):
        plucker_embedding(c2w, K[:, :2], 640, 360, 4, 4)
    with pytest.raises(TrajectoryError, match="do not match"):
        plucker_embedding(c2w, K.repeat(2, 1, 1)[:3], 640, 360, 4, 4)


def test_pack_plucker_frames_layout():
    T, H, W = 9, 3, 5
    video = torch.arange(T * 6 * H * W, dtype=torch.float32).reshape(T, 6, H, W)
    packed = pack_plucker_frames(video)
    assert packed.shape == (1, 24, 3, H, W)
    # Latent frame 0 is frame 0 four times; latent frame k>0 holds frames 4k-3 .. 4k, channel c*4 + j.
    for c in range(6):
        for j in range(4):
            torch.testing.assert_close(packed[0, c * 4 + j, 0], video[0, c])
            torch.testing.assert_close(packed[0, c * 4 + j, 1], video[1 + j, c])
            torch.testing.assert_close(packed[0, c * 4 + j, 2], video[5 + j, c])
    batched = pack_plucker_frames(torch.stack([video, video + 1]))
    torch.testing.assert_close(batched[1], packed[0] + 1)
    with pytest.raises(InputError, match="1 \\+ 4k"):
        pack_plucker_frames(video[:8])
    with pytest.raises(InputError):
        pack_plucker_frames(video[0])


@pytest.mark.skipif(not GEN3R_FIXTURE.is_dir(), reason="shared Gen3R reference fixture not present")
def test_gen3r_golden_fixture():
    from safetensors.torch import load_file

    cfg = json.loads((GEN3R_FIXTURE / "config.json").read_text())
    inputs = load_file(str(GEN3R_FIXTURE / "inputs.safetensors"))
    outputs = load_file(str(GEN3R_FIXTURE / "outputs.safetensors"))
    h, w = cfg["args"]["h"], cfg["args"]["w"]
    # Gen3R: rays at (x + 0.5, y + 0.5) through K^-1, rotated to the world, unit length; [o x d, d].
    ours = plucker_embedding(inputs["c2ws"], inputs["K"], w, h, h, w)
    assert ours.shape == outputs["plucker"].shape
    torch.testing.assert_close(ours, outputs["plucker"], rtol=0, atol=1e-5)
    # Its control_camera_latents: Wan-Fun's 4-frame channel packing, then duplicated along width.
    packed = pack_plucker_frames(ours)
    packed = torch.cat([packed, packed], dim=-1)
    torch.testing.assert_close(packed, outputs["control_camera_latents"], rtol=0, atol=1e-5)
    # The same through a CameraTrajectory (Gen3R's poses are already relative to frame 0).
    traj = CameraTrajectory(inputs["c2ws"], inputs["K"], w, h)
    torch.testing.assert_close(plucker_for_trajectory(traj, h, w), outputs["plucker"], rtol=0, atol=1e-5)
    assert math.isclose(float(outputs["plucker"][:, 3:].norm(dim=1).mean()), 1.0, abs_tol=1e-5)
