from pathlib import Path

import pytest
import torch

from lavr_core.camera.transforms import invert_pose
from lavr_core.errors import InputError
from lavr_core.scene import SceneLatent
from lavr_core.visualize import colorize_depth

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "cut3r" / "tiny"


@pytest.fixture(scope="module")
def encoded():
    if not FIXTURE.is_dir():
        pytest.skip(f"{FIXTURE} is absent (the CUT3R golden fixture)")
    from lavr_core.cut3r import StreamOptions, encode_video
    from lavr_core.cut3r.conformance import fixture_model

    model = fixture_model(FIXTURE)
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(5, 40, 56, 3, generator=g)
    with torch.inference_mode():
        seq = encode_video(model, frames, StreamOptions(state_every=2), size=224)
    return seq


def test_first_camera_is_the_world_origin_and_geometry_is_unchanged(encoded):
    latent = SceneLatent.from_cut3r(encoded, fps=10.0)
    assert torch.allclose(latent.trajectory.c2w[0], torch.eye(4, dtype=torch.float64), atol=1e-6)
    assert not torch.allclose(encoded.c2w[0].double(), torch.eye(4, dtype=torch.float64), atol=1e-3)
    for i in range(latent.num_frames):  # points seen from each camera are where they were
        w2c_new = invert_pose(latent.trajectory.c2w[i]).float()
        w2c_old = invert_pose(encoded.c2w[i].double()).float()
        cam_new = latent.pts3d_world[i] @ w2c_new[:3, :3].T + w2c_new[:3, 3]
        cam_old = encoded.pts3d_world[i].float() @ w2c_old[:3, :3].T + w2c_old[:3, 3]
        assert torch.allclose(cam_new, cam_old, atol=1e-4)
    assert latent.trajectory.width == 56 and latent.trajectory.height == 40 and latent.trajectory.fps == 10.0


def test_state_subsampling(encoded):
    latent = SceneLatent.from_cut3r(encoded, fps=10.0)
    assert latent.state_frames == [0, 2, 4]
    tokens, frames = latent.states_every(4)
    assert frames == [0, 4] and torch.equal(tokens, latent.state_tokens[[0, 2]])
    with pytest.raises(InputError, match="every 2 frames"):
        latent.states_every(3)


def test_point_cloud_respects_confidence(encoded):
    latent = SceneLatent.from_cut3r(encoded, fps=10.0)
    all_pts = latent.point_cloud(min_conf=1.0)
    some = latent.point_cloud(min_conf=float(latent.conf_world.median()))
    assert 0 < len(some) < len(all_pts) and all_pts.rgb is not None
    assert len(latent.point_cloud(min_conf=1.0, max_points=10)) == 10


def test_colorize_depth_near_red_far_blue_invalid_black():
    d = torch.tensor([[[1.0, 2.0, 4.0, 100.0, float("nan"), 0.0]]])
    img = colorize_depth(d)
    assert img.shape == (1, 1, 6, 3)
    near, far = img[0, 0, 0], img[0, 0, 3]
    assert near[0] > near[2] and far[2] > far[0]
    assert torch.equal(img[0, 0, 4], torch.zeros(3)) and torch.equal(img[0, 0, 5], torch.zeros(3))
