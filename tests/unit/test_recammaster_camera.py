"""ReCamMaster's camera input for the model: cam_emb from a CameraTrajectory."""

import json
import math
from pathlib import Path

import pytest
import torch

from lavr_core.camera.trajectory import CameraTrajectory
from lavr_core.camera.transforms import axis_angle_to_matrix, make_pose
from lavr_core.errors import InputError, TrajectoryError
from lavr_core.wan.recammaster import camera_embedding, latent_frame_count

REF = Path(__file__).resolve().parents[3] / "shared" / "reference" / "recammaster"
if not REF.is_dir():
    REF = Path("/work/shared/reference/recammaster")
PRESETS = REF / "preset_trajectories.json"
needs_ref = pytest.mark.skipif(not PRESETS.is_file(), reason="reference data not present")

K = torch.tensor([[400.0, 0, 416], [0, 400.0, 240], [0, 0, 1]], dtype=torch.float64)


def _preset(cam_type: int) -> torch.Tensor:
    """``[21, 4, 4]`` relative poses of an official preset (rounded to 6 digits in the file)."""
    rel = torch.tensor(json.loads(PRESETS.read_text())["trajectories"][str(cam_type)]["relative_c2w_3x4_rowmajor"],
                       dtype=torch.float64).view(-1, 3, 4)
    return torch.cat([rel, torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(rel.shape[0], 1, 4)], 1)


def _world():
    """An arbitrary rigid world placement: cam_emb must not depend on it."""
    R = axis_angle_to_matrix(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64), 1.1)
    return make_pose(R, torch.tensor([2.0, -1.0, 5.0], dtype=torch.float64))


@needs_ref
@pytest.mark.parametrize("cam_type", [1, 5, 9])
def test_cam_emb_of_an_81_frame_trajectory_equals_the_official_preset(cam_type):
    rel = _preset(cam_type)
    c2w = torch.empty(81, 4, 4, dtype=torch.float64)
    c2w[::4] = _world() @ rel
    for i in range(81):  # in-between frames are not used; give them any valid pose
        if i % 4:
            c2w[i] = _world() @ make_pose(torch.eye(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64))
    traj = CameraTrajectory(c2w=c2w, K=K, width=832, height=480)
    emb = camera_embedding(traj, num_latent_frames=21)
    assert emb.shape == (1, 21, 12) and emb.dtype == torch.float32
    ref = rel[:, :3, :4].reshape(1, 21, 12).float()
    assert (emb - ref).abs().max() < 1e-5


@needs_ref
def test_tiny_fixture_camera_is_preset_9_frame_40():
    from safetensors.torch import load_file
    cam = load_file(str(REF / "tiny" / "inputs.safetensors"))["cam_emb"]
    assert (cam[0, 0] - _preset(9)[10, :3, :4].reshape(12).float()).abs().max() < 1e-5


def test_reference_pose_stride_and_scale():
    R = axis_angle_to_matrix(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), torch.linspace(0, 0.5, 9))
    t = torch.stack([torch.linspace(0, 2, 9), torch.zeros(9), torch.zeros(9)], -1).double()
    traj = CameraTrajectory(c2w=_world() @ make_pose(R, t), K=K, width=64, height=48)
    emb = camera_embedding(traj)
    assert emb.shape == (1, 3, 12)
    assert torch.allclose(emb[0, 0], torch.tensor([1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]))
    # frame 8 relative to frame 0: rotation of 0.5 rad about y, translation (2, 0, 0)
    assert math.isclose(emb[0, 2, 3].item(), 2.0, rel_tol=1e-6)
    assert math.isclose(emb[0, 2, 0].item(), math.cos(0.5), rel_tol=1e-6)
    every = camera_embedding(traj, temporal_stride=1)
    assert every.shape == (1, 9, 12) and torch.allclose(every[:, ::4], emb)
    half = camera_embedding(traj, translation_scale=0.5)
    assert math.isclose(half[0, 2, 3].item(), 1.0, rel_tol=1e-6) and torch.equal(half[..., :3], emb[..., :3])
    # relative to another reference (training uses the source camera's first frame)
    ref = traj.c2w[4]
    emb_ref = camera_embedding(traj, reference_c2w=ref)
    assert torch.allclose(emb_ref[0, 1], torch.tensor([1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]), atol=1e-6)


def test_frame_count_errors():
    traj = CameraTrajectory(c2w=torch.eye(4).expand(80, 4, 4), K=K, width=64, height=48)
    with pytest.raises(TrajectoryError, match="Resample the trajectory to 81 frames"):
        camera_embedding(traj)
    traj = CameraTrajectory(c2w=torch.eye(4).expand(81, 4, 4), K=K, width=64, height=48)
    with pytest.raises(TrajectoryError, match="Resample"):
        camera_embedding(traj, num_latent_frames=13)
    assert latent_frame_count(81) == 21 and latent_frame_count(1) == 1
    with pytest.raises(InputError, match="4k\\+1"):
        latent_frame_count(80)
