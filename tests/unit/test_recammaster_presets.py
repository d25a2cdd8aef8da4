"""ReCamMaster presets rebuilt by formula (lavr_core/camera/formats/recammaster_presets.py) against
the official trajectories in the shared reference data, and the raw Unreal layout against the
reference's own raw strings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lavr_core.camera.formats import (PRESET_NAMES, parse_unreal_matrix, read_recammaster, recammaster_cam_emb,
                                      recammaster_preset, unreal_to_c2w, unreal_to_opencv, write_recammaster)
from lavr_core.camera.formats.recammaster_presets import START_UE_CM, preset_poses
from lavr_core.camera.transforms import invert_pose
from lavr_core.errors import TrajectoryError

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared/reference"
PRESET_FILE = REFERENCE / "recammaster" / "preset_trajectories.json"

needs_reference = pytest.mark.skipif(
    not PRESET_FILE.is_file(),
    reason=f"ReCamMaster reference data not found at {PRESET_FILE} (the shared/reference folder beside the repo)")


@pytest.fixture(scope="module")
def reference():
    return json.loads(PRESET_FILE.read_text())["trajectories"]


@needs_reference
def test_names_and_order_match_reference(reference):
    for k, name in enumerate(PRESET_NAMES, start=1):
        label = reference[str(k)]["name"]
        assert recammaster_preset(k).meta["label"] == label
        assert recammaster_preset(label).meta["preset"] == name  # "Arc Left (with rotation)" works too


@needs_reference
@pytest.mark.parametrize("cam_type", range(1, 11))
def test_preset_cam_emb_matches_reference(reference, cam_type):
    ref = reference[str(cam_type)]
    expected = torch.tensor(ref["relative_c2w_3x4_rowmajor"], dtype=torch.float64)
    assert ref["raw_frame_indices"] == list(range(0, 81, 4))
    traj = recammaster_preset(PRESET_NAMES[cam_type - 1], num_frames=81)
    emb = recammaster_cam_emb(traj).double()
    assert emb.shape == (21, 12)
    err = (emb - expected).abs()
    assert err.max().item() < 1e-4
    # Tighter: the reference prints rotations to 6 decimals and translations to 4 (5 for the
    # 'translate' presets), so a correct formula misses by rounding only (+ float32 of cam_emb).
    rot, trans = err.reshape(21, 3, 4)[..., :3], err.reshape(21, 3, 4)[..., 3]
    assert rot.max().item() <= 5e-7 + 1e-7 and trans.max().item() <= 5e-5 + 1e-6
    # The float64 poses themselves, not just the float32 embedding.
    P = preset_poses(cam_type)[::4, :3, :].reshape(21, 12)
    assert (P - expected).abs().max().item() <= 5e-5 + 1e-9
    rel80 = P[-1].reshape(3, 4)
    angle = torch.rad2deg(torch.arccos(((rel80[:, :3].trace() - 1) / 2).clamp(-1, 1))).item()
    assert abs(angle - ref["last_frame_rotation_deg"]) < 2e-3
    assert torch.allclose(rel80[:, 3], torch.tensor(ref["last_frame_translation"], dtype=torch.float64), atol=1e-4)


@needs_reference
@pytest.mark.parametrize("cam_type", range(1, 11))
def test_raw_unreal_strings_of_reference(reference, cam_type, tmp_path):
    """Parse the reference's raw frame 0/80 strings with the four steps and write our preset back in
    the Unreal layout: both agree with the reference."""
    ref = reference[str(cam_type)]
    M0, M80 = parse_unreal_matrix(ref["raw_json_frame0"]), parse_unreal_matrix(ref["raw_json_frame80"])
    rel = invert_pose(unreal_to_c2w(M0)) @ unreal_to_c2w(M80)
    expected = torch.tensor(ref["relative_c2w_3x4_rowmajor"][-1], dtype=torch.float64)
    assert (rel[:3].reshape(12) - expected).abs().max().item() < 1e-5
    # The four steps alone (left-handed Unreal world) give the very same relative pose.
    rel_lh = torch.linalg.inv(unreal_to_opencv(M0)) @ unreal_to_opencv(M80)
    assert torch.allclose(rel, rel_lh, atol=1e-12)

    path = write_recammaster(recammaster_preset(cam_type), tmp_path / "camera_extrinsics.json",
                             start_ue_cm=START_UE_CM)
    raw = json.loads(path.read_text())
    assert len(raw) == 81 and list(raw["frame80"]) == ["cam01"]
    ours0, ours80 = parse_unreal_matrix(raw["frame0"]["cam01"]), parse_unreal_matrix(raw["frame80"]["cam01"])
    assert torch.allclose(ours0, M0, atol=1e-9)
    # The reference strings carry 6 significant digits: 0.005 cm on positions, 5e-7 on rotations.
    assert (ours80[:3] - M80[:3]).abs().max().item() < 1e-6
    assert (ours80[3] - M80[3]).abs().max().item() < 0.006
    # Reading our file back gives the preset's relative poses.
    back = read_recammaster(path)
    assert torch.allclose(back.relative_to_first().c2w, recammaster_preset(cam_type).c2w, atol=1e-9)


def test_preset_resampling_and_errors():
    full = preset_poses("arc_right", 81)
    for n in (21, 41):
        sub = preset_poses("arc_right", n)
        assert torch.allclose(sub, full[:: 80 // (n - 1)], atol=1e-12)  # same path, fewer samples
    assert torch.equal(preset_poses("zoom_in", 1), torch.eye(4, dtype=torch.float64)[None])
    t = recammaster_preset("pan-left", num_frames=49, width=512, height=512, fps=16)
    assert (t.num_frames, t.width, t.height, t.fps) == (49, 512, 512, 16.0)
    assert torch.equal(t.c2w[0], torch.eye(4, dtype=torch.float64))
    with pytest.raises(TrajectoryError, match="cam_type"):
        recammaster_preset(0)
    with pytest.raises(TrajectoryError, match="Unknown ReCamMaster preset"):
        recammaster_preset("orbit_left")
    with pytest.raises(TrajectoryError, match="frames"):
        recammaster_preset(1, num_frames=0)


def test_preset_motions_are_what_their_names_say():
    """Independent of the reference: directions in OpenCV camera axes (x right, y down, z forward)."""
    last = {name: preset_poses(name)[-1] for name in PRESET_NAMES}
    fwd = {name: P[:3, 2] for name, P in last.items()}
    assert fwd["pan_right"][0] > 0.3 and fwd["pan_left"][0] < -0.3  # looks right / left
    assert fwd["tilt_up"][1] < -0.15 and fwd["tilt_down"][1] > 0.15  # looks up (-y) / down
    assert last["zoom_in"][2, 3] > 1.9 and last["zoom_out"][2, 3] < -1.9
    assert last["translate_up"][1, 3] < -0.9 and fwd["translate_up"][1] > 0  # moves up, looks down at the subject
    assert last["arc_left"][0, 3] < -1.9 and fwd["arc_left"][0] > 0  # moves left, turns right to the subject
    for name in ("translate_up", "translate_down", "arc_left", "arc_right"):
        P = preset_poses(name)
        to_target = torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64) - P[:, :3, 3]
        cos = (to_target / to_target.norm(dim=-1, keepdim=True) * P[:, :3, 2]).sum(-1)
        assert torch.allclose(cos, torch.ones_like(cos), atol=1e-12)  # always looking at the subject
