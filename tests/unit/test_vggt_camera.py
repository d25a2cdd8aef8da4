"""VGGT camera encoding utilities against the official golden, and the conversion to LaVR cameras."""

import math
from pathlib import Path

import pytest
import torch

from lavr_core.camera.transforms import invert_pose
from lavr_core.errors import InputError
from lavr_core.vggt import camera as C

REF = Path(__file__).resolve().parents[2].parent / "shared/reference"
GOLDEN = REF / "vggt" / "tiny" / "camera_utils.safetensors"


@pytest.fixture(scope="module")
def golden():
    if not GOLDEN.is_file():
        pytest.skip(f"VGGT reference data not present at {GOLDEN}")
    from safetensors.torch import load_file
    return load_file(str(GOLDEN))


def test_pose_encoding_to_extri_intri_matches_official(golden):
    hw = tuple(golden["image_size_hw"].tolist())
    extr, K = C.pose_encoding_to_extri_intri(golden["pose_enc"], hw)
    torch.testing.assert_close(extr, golden["extrinsic"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(K, golden["intrinsic"], atol=1e-5, rtol=1e-5)
    extr2, none = C.pose_encoding_to_extri_intri(golden["pose_enc"], hw, build_intrinsics=False)
    assert none is None and torch.equal(extr, extr2)


def test_quaternion_conversions_match_official(golden):
    torch.testing.assert_close(C.quat_xyzw_to_matrix(golden["quat_xyzw"]), golden["rotation_from_quat"],
                               atol=1e-5, rtol=1e-5)
    q = C.matrix_to_quat_xyzw(golden["rotation_from_quat"])
    torch.testing.assert_close(q, golden["quat_from_rotation"], atol=1e-5, rtol=1e-5)
    assert (q[..., 3] >= 0).all()  # scalar last, non-negative


def test_round_trip_and_unprojection_match_official(golden):
    hw = tuple(golden["image_size_hw"].tolist())
    enc = C.extri_intri_to_pose_encoding(golden["extrinsic"], golden["intrinsic"], hw)
    torch.testing.assert_close(enc, golden["pose_enc_roundtrip"], atol=1e-5, rtol=1e-5)
    pts = C.unproject_depth_map_to_point_map(golden["depth"], golden["extrinsic"][0], golden["intrinsic"][0])
    assert pts.shape == (3, 6, 8, 3) and pts.dtype == torch.float32
    torch.testing.assert_close(pts, golden["world_points_from_depth"], atol=1e-5, rtol=1e-5)


def test_c2w_is_inverse_of_extrinsics_and_projects_back(golden):
    """A world point unprojected from pixel (u, v) at depth d projects back to (u, v) with LaVR's c2w/K."""
    hw = (6, 8)
    c2w, K = C.pose_encoding_to_c2w(golden["pose_enc"], hw)
    assert c2w.dtype == torch.float64 and c2w.shape == (1, 3, 4, 4)
    extr, _ = C.pose_encoding_to_extri_intri(golden["pose_enc"].double(), hw)
    torch.testing.assert_close(invert_pose(c2w)[..., :3, :], extr)
    pts = C.unproject_depth_map_to_point_map(golden["depth"].double(), extr[0], K[0])
    w2c = invert_pose(c2w[0])
    cam = torch.einsum("sij,shwj->shwi", w2c[:, :3, :3], pts) + w2c[:, None, None, :3, 3]
    uv = torch.einsum("sij,shwj->shwi", K[0], cam)
    uv = uv[..., :2] / uv[..., 2:]
    v, u = torch.meshgrid(torch.arange(6.0, dtype=torch.float64), torch.arange(8.0, dtype=torch.float64),
                          indexing="ij")
    torch.testing.assert_close(uv, torch.stack([u, v], -1).expand_as(uv), atol=1e-9, rtol=0)
    torch.testing.assert_close(cam[..., 2], golden["depth"][..., 0].double(), atol=1e-6, rtol=0)


def test_trajectory_from_pose_encoding():
    # Camera 1 is translated by +1 along the world x axis: its extrinsic t is -1 in x.
    enc = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 1.0, 1.2],
                        [-1, 0, 0, 0, 0, 0, 1, 1.0, 1.2]])
    traj = C.pose_encoding_to_trajectory(enc, (42, 56), fps=8)
    assert traj.num_frames == 2 and (traj.width, traj.height) == (56, 42) and traj.meta["source"] == "vggt"
    torch.testing.assert_close(traj.centers, torch.tensor([[0, 0, 0], [1.0, 0, 0]], dtype=torch.float64))
    assert math.isclose(traj.K[0, 0, 0].item(), 28 / math.tan(0.6), rel_tol=1e-6) and traj.K[0, 0, 2].item() == 28
    with pytest.raises(InputError, match="sequences"):
        C.pose_encoding_to_trajectory(enc.expand(2, 2, 9), (42, 56))
    with pytest.raises(InputError, match="9 values"):
        C.pose_encoding_to_extri_intri(torch.zeros(2, 7), (4, 4))
    with pytest.raises(InputError, match="not positive"):
        C.pose_encoding_to_extri_intri(enc, (0, 4))
