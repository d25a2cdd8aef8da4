"""Trajectory interchange formats: round trips, hand-written files as each format documents them,
and the errors bad files get. See lavr_core/camera/formats/."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from lavr_core.camera.formats import (FORMATS, detect_format, read_colmap, read_nerfstudio, read_realestate10k,
                                      read_recammaster, read_trajectory, recammaster_cam_emb, write_lavr_json,
                                      write_nerfstudio, write_trajectory)
from lavr_core import fileio as lavr_fileio
from lavr_core.camera.trajectory import CameraTrajectory
from lavr_core.camera.transforms import axis_angle_to_matrix, invert_pose, make_pose, quat_to_matrix
from lavr_core.errors import TrajectoryError

TOL = 1e-6


def random_trajectory(T=9, seed=0, shared_K=False, width=640, height=360, fps=30.0, meta=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(T, 4, generator=g, dtype=torch.float64)
    R = quat_to_matrix(q)
    t = torch.randn(T, 3, generator=g, dtype=torch.float64) * 3
    K = torch.zeros(T, 3, 3, dtype=torch.float64)
    K[:, 0, 0] = 300 + 400 * torch.rand(T, generator=g, dtype=torch.float64)
    K[:, 1, 1] = K[:, 0, 0] * (0.9 + 0.2 * torch.rand(T, generator=g, dtype=torch.float64))
    K[:, 0, 2] = width / 2 + 20 * torch.randn(T, generator=g, dtype=torch.float64)
    K[:, 1, 2] = height / 2 + 20 * torch.randn(T, generator=g, dtype=torch.float64)
    K[:, 2, 2] = 1
    if shared_K:
        K = K[:1].expand(T, 3, 3)
    return CameraTrajectory(c2w=make_pose(R, t), K=K, width=width, height=height, fps=fps, meta=meta or {})


def assert_same_cameras(a: CameraTrajectory, b: CameraTrajectory, tol=TOL, fps=True, K=True):
    assert a.num_frames == b.num_frames
    assert (a.width, a.height) == (b.width, b.height)
    assert (a.c2w - b.c2w).abs().max().item() <= tol, (a.c2w - b.c2w).abs().max().item()
    if K:
        assert (a.K - b.K).abs().max().item() <= tol * max(1.0, a.K.abs().max().item())
    if fps:
        assert abs(a.fps - b.fps) <= tol


def no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


# ------------------------------------------------------------------------------- round trips

def test_lavr_json_round_trip_is_exact(tmp_path):
    meta = {"source": "test", "nested": {"a": [1, 2.5, None], "b": "ü"}, "flag": True}
    traj = random_trajectory(T=13, seed=1, meta=meta, fps=23.976)
    path = write_trajectory(traj, tmp_path / "cam.lavr.json")
    back = read_trajectory(path)
    assert_same_cameras(traj, back, tol=1e-12)
    assert back.meta == meta and back.fps == traj.fps
    assert json.loads(path.read_text())["format"] == "lavr_trajectory"
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("fps", [30.0, 24.0, 29.97, 30000 / 1001, 12.5])
def test_realestate10k_round_trip(tmp_path, fps):
    traj = random_trajectory(T=40, seed=2, fps=fps, width=1280, height=720)
    path = write_trajectory(traj, tmp_path / "clip.txt")
    back = read_trajectory(path, width=1280, height=720)
    assert_same_cameras(traj, back)
    lines = path.read_text().splitlines()
    assert len(lines) == 41 and all(len(line.split()) == 19 for line in lines[1:])


@pytest.mark.parametrize("shared", [True, False])
def test_nerfstudio_round_trip(tmp_path, shared):
    traj = random_trajectory(T=11, seed=3, shared_K=shared, fps=16.0)
    path = write_trajectory(traj, tmp_path / "transforms.json")
    data = json.loads(path.read_text())
    assert ("fl_x" in data) == shared and ("fl_x" in data["frames"][0]) == (not shared)
    back = read_trajectory(path)
    assert_same_cameras(traj, back)
    # nerfstudio stores OpenGL axes: the file's camera y and z columns are the negated OpenCV ones.
    M = torch.tensor(data["frames"][4]["transform_matrix"], dtype=torch.float64)
    assert torch.allclose(M[:3, 1], -traj.c2w[4, :3, 1]) and torch.allclose(M[:3, 2], -traj.c2w[4, :3, 2])


@pytest.mark.parametrize("shared", [True, False])
def test_colmap_round_trip(tmp_path, shared):
    traj = random_trajectory(T=12, seed=4, shared_K=shared)
    folder = write_trajectory(traj, tmp_path / "sparse" / "0", format="colmap")
    assert sorted(p.name for p in folder.iterdir()) == ["cameras.txt", "images.txt", "points3D.txt"]
    back = read_trajectory(folder, fps=30.0)
    assert_same_cameras(traj, back)
    n_cams = sum(1 for line in (folder / "cameras.txt").read_text().splitlines() if line and line[0] != "#")
    assert n_cams == (1 if shared else 12)


def test_recammaster_round_trip(tmp_path):
    traj = random_trajectory(T=9, seed=5, shared_K=True, fps=15.0)
    path = write_trajectory(traj, tmp_path / "camera_extrinsics.json")
    back = read_trajectory(path, K=traj.K[0], width=traj.width, height=traj.height)
    assert_same_cameras(traj, back)
    assert torch.allclose(recammaster_cam_emb(traj, stride=4), recammaster_cam_emb(back, stride=4), atol=1e-6, rtol=0)


def test_round_trip_through_every_format_in_FORMATS(tmp_path):
    """Every registered format keeps the poses (and what else it can store) of one trajectory."""
    traj = random_trajectory(T=5, seed=6, shared_K=True, fps=30.0)
    kw_read = {"realestate10k": dict(width=640, height=360), "recammaster": dict(K=traj.K[0], width=640, height=360, fps=30.0),
               "colmap": dict(fps=30.0)}
    names = {"lavr_trajectory": "t.lavr.json", "realestate10k": "t.txt", "nerfstudio": "transforms.json",
             "colmap": "model", "recammaster": "camera_extrinsics.json"}
    assert set(FORMATS) == set(names)
    for name in FORMATS:
        out = write_trajectory(traj, tmp_path / names[name])
        assert detect_format(out) == name
        assert_same_cameras(traj, read_trajectory(out, **kw_read.get(name, {})))


def test_nerfstudio_applied_transform_both_worlds(tmp_path):
    # ns-process-data's transform: swap world y/z and negate the new z; here with a scale as well.
    A = [[1.0, 0.0, 0.0, 0.5], [0.0, 0.0, 1.0, -1.0], [0.0, -1.0, 0.0, 2.0]]
    traj = random_trajectory(T=6, seed=7, shared_K=True, fps=16.0)
    path = write_nerfstudio(traj, tmp_path / "transforms.json")
    data = json.loads(path.read_text())
    data["applied_transform"], data["applied_scale"] = A, 0.5
    path.write_text(json.dumps(data))

    as_file = read_nerfstudio(path)  # poses exactly as written
    assert_same_cameras(traj, as_file)
    orig = read_nerfstudio(path, world="original")
    A4 = torch.eye(4, dtype=torch.float64)
    A4[:3] = torch.tensor(A)
    # x_file = s * (A x_orig): camera centres map that way, rotations by A's rotation.
    centres = (A4[:3, :3] @ orig.centers.T).T + A4[:3, 3]
    assert torch.allclose(0.5 * centres, traj.centers, atol=1e-12)
    assert torch.allclose(A4[:3, :3] @ orig.c2w[:, :3, :3], traj.c2w[:, :3, :3], atol=1e-12)
    assert orig.meta["applied_scale"] == 0.5 and orig.meta["world"] == "original"
    # Writing either reading back reproduces the file's poses and keeps the applied_* keys.
    for t in (as_file, orig):
        out = write_nerfstudio(t, tmp_path / f"{t.meta['world']}" / "transforms.json")
        d2 = json.loads(out.read_text())
        assert d2["applied_transform"] == A and d2["applied_scale"] == 0.5
        assert_same_cameras(traj, read_nerfstudio(out), tol=1e-9)


# ---------------------------------------------------------------- hand-written example files

def test_realestate10k_hand_written(tmp_path):
    # URL, then: timestamp fx fy cx cy (fractions of W, H) k1 k2, then a 3x4 world-to-camera, row-major.
    p = tmp_path / "0123456789abcdef.txt"
    p.write_text(
        "https://www.youtube.com/watch?v=XXXXXXXXXXX\n"
        "45045000 0.5 0.888889 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n"
        "45078367 0.5 0.888889 0.5 0.5 0 0 0 0 -1 2 0 1 0 0 1 0 0 3\n"
        "45111733 0.5 0.888889 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 -1\n")
    traj = read_realestate10k(p, width=640, height=360)
    assert traj.num_frames == 3 and traj.meta["url"].endswith("XXXXXXXXXXX")
    assert traj.meta["timestamps_us"] == [45045000, 45078367, 45111733]
    assert abs(traj.fps - 30000 / 1001) < 1e-9  # NTSC 29.97 recovered from rounded microseconds
    assert torch.allclose(traj.K[0], torch.tensor([[320.0, 0, 320], [0, 320.00004, 180], [0, 0, 1]],
                                                  dtype=torch.float64), atol=1e-4)
    assert torch.allclose(traj.c2w[0], torch.eye(4, dtype=torch.float64))
    # w2c = [R | t] with R = rotation of -90 deg about y: camera centre is -R^T t.
    R = torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=torch.float64)
    assert torch.allclose(traj.c2w[1, :3, :3], R.T)
    assert torch.allclose(traj.centers[1], -R.T @ torch.tensor([2.0, 0, 3], dtype=torch.float64))
    assert torch.allclose(traj.centers[2], torch.tensor([0.0, 0, 1], dtype=torch.float64))  # w2c t = -1 along z


def test_nerfstudio_hand_written(tmp_path):
    frame = lambda name, z: {"file_path": name, "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, z], [0, 0, 0, 1]]}
    data = {"camera_model": "OPENCV", "fl_x": 500.0, "fl_y": 510.0, "cx": 321.5, "cy": 239.5, "w": 640, "h": 480,
            "k1": -0.1, "k2": 0.01, "p1": 0.0, "p2": 0.001,
            "frames": [frame("images/frame_10.png", 3.0), frame("images/frame_2.png", 5.0),
                       frame("images/frame_1.png", 6.0)]}
    (tmp_path / "transforms.json").write_text(json.dumps(data, indent=2))
    traj = read_trajectory(tmp_path)  # the folder: transforms.json inside
    assert traj.meta["file_paths"] == ["images/frame_1.png", "images/frame_2.png", "images/frame_10.png"]
    assert traj.centers[:, 2].tolist() == [6.0, 5.0, 3.0]
    # An OpenGL identity camera looks down world -z: in OpenCV axes its forward column is -z, down is -y.
    assert torch.equal(traj.c2w[0, :3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)))
    assert traj.K[0].tolist() == [[500.0, 0, 321.5], [0, 510.0, 239.5], [0, 0, 1]]
    assert traj.meta["distortion"] == {"k1": -0.1, "k2": 0.01, "p1": 0.0, "p2": 0.001}
    assert traj.meta["camera_model"] == "OPENCV" and any("not applied" in n for n in traj.meta["notes"])


def test_nerfstudio_per_frame_intrinsics(tmp_path):
    frames = [{"file_path": f"f{i}.png", "fl_x": 400.0 + i, "fl_y": 401.0 + i, "cx": 200.0, "cy": 150.0,
               "transform_matrix": torch.eye(4).tolist()} for i in range(3)]
    (tmp_path / "transforms.json").write_text(json.dumps({"w": 400, "h": 300, "frames": frames}))
    traj = read_nerfstudio(tmp_path / "transforms.json", fps=24)
    assert traj.K[:, 0, 0].tolist() == [400.0, 401.0, 402.0] and traj.fps == 24.0


def test_colmap_hand_written(tmp_path):
    (tmp_path / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n"
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        "# Number of cameras: 3\n"
        "1 SIMPLE_PINHOLE 800 600 700 400 300\n"
        "2 PINHOLE 800 600 710 720 401 299\n"
        "3 OPENCV 800 600 705 706 400.5 300.5 -0.05 0.01 0.001 0.002\n")
    s = math.sin(math.pi / 8)
    c = math.cos(math.pi / 8)
    (tmp_path / "images.txt").write_text(
        "# Image list with two lines of data per image:\n"
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
        "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
        "# Number of images: 3, mean observations per image: 1\n"
        f"7 {c} 0 {s} 0 1 2 3 3 img10.jpg\n"
        "\n"
        "5 1 0 0 0 0 0 0 1 img2.jpg\n"
        "100.5 200.5 -1 310.0 20.0 4\n"
        "9 1 0 0 0 0 0 -2 2 img1.jpg\n"
        "\n")
    (tmp_path / "points3D.txt").write_text("")
    traj = read_colmap(tmp_path / "images.txt")
    assert traj.meta["image_names"] == ["img1.jpg", "img2.jpg", "img10.jpg"]
    assert traj.meta["image_ids"] == [9, 5, 7] and traj.meta["camera_ids"] == [2, 1, 3]
    assert traj.K[0].tolist() == [[710.0, 0, 401.0], [0, 720.0, 299.0], [0, 0, 1]]
    assert traj.K[1].tolist() == [[700.0, 0, 400.0], [0, 700.0, 300.0], [0, 0, 1]]
    assert traj.meta["ignored_distortion"] == {"3": {"model": "OPENCV", "params": [705.0, 706.0, 400.5, 300.5, -0.05, 0.01, 0.001, 0.002]}}
    assert torch.allclose(traj.centers[0], torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64))
    # img10: w2c rotation 45 deg about +y, t = (1, 2, 3); centre -R^T t.
    R = axis_angle_to_matrix(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), math.pi / 4)
    assert torch.allclose(traj.c2w[2, :3, :3], R.T, atol=1e-12)
    assert torch.allclose(traj.centers[2], -R.T @ torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), atol=1e-12)


def test_recammaster_hand_written(tmp_path):
    # Unreal row-vector matrices in cm: rows are the camera's forward (X), right (Y), up (Z) axes.
    start = "[1 0 0 0] [0 1 0 0] [0 0 1 0] [3390 1380 240 1] "
    forward_1m = "[1 0 0 0] [0 1 0 0] [0 0 1 0] [3490 1380 240 1] "
    yaw_right_90 = "[0 1 0 0] [-1 0 0 0] [0 0 1 0] [3390 1380 240 1] "
    data = {"frame0": {"cam01": start, "cam02": start},
            "frame1": {"cam01": forward_1m, "cam02": yaw_right_90}}
    p = tmp_path / "camera_extrinsics.json"
    p.write_text(json.dumps(data))
    with pytest.raises(TrajectoryError, match="cam=1"):
        read_recammaster(p)  # two cameras: the caller must pick
    a, b = read_recammaster(p, cam=1), read_recammaster(p, cam="cam02")
    # World x/y/z = Unreal right/down/forward: Unreal's identity rotation is the identity, and the
    # start (X, Y, Z) = (3390, 1380, 240) cm lands at (Y, -Z, X) / 100 m.
    assert torch.allclose(a.c2w[0, :3, :3], torch.eye(3, dtype=torch.float64))
    assert torch.allclose(a.centers[0], torch.tensor([13.8, -2.4, 33.9], dtype=torch.float64))
    assert torch.linalg.det(a.c2w[0, :3, :3]).item() > 0
    rel_a, rel_b = a.relative_to_first().c2w[1], b.relative_to_first().c2w[1]
    assert torch.allclose(rel_a, make_pose(torch.eye(3, dtype=torch.float64), torch.tensor([0.0, 0, 1], dtype=torch.float64)))
    R = axis_angle_to_matrix(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), math.pi / 2)  # pan right
    assert torch.allclose(rel_b[:3, :3], R, atol=1e-12) and torch.allclose(rel_b[:3, 3], torch.zeros(3, dtype=torch.float64))
    assert a.width == 832 and a.height == 480 and "24 mm" in a.meta["intrinsics_note"]


def test_recammaster_cam_emb_layout():
    c2w = torch.eye(4, dtype=torch.float64).repeat(9, 1, 1)
    c2w[:, 0, 3] = torch.arange(9, dtype=torch.float64)  # moves along x, 1 unit per frame
    c2w[:, :3, :3] = axis_angle_to_matrix(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), torch.tensor(0.3)) @ c2w[:, :3, :3]
    traj = CameraTrajectory(c2w=c2w, K=torch.eye(3), width=8, height=8)
    emb = recammaster_cam_emb(traj)
    assert emb.shape == (3, 12) and emb.dtype == torch.float32
    rel = invert_pose(c2w[:1]) @ c2w[[0, 4, 8]]
    assert torch.allclose(emb, rel[:, :3].reshape(3, 12).float())
    assert torch.equal(emb[0], torch.tensor([1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]))
    with pytest.raises(TrajectoryError, match="1 \\+ 4\\*k"):
        recammaster_cam_emb(traj.subset(slice(0, 8)))


# ------------------------------------------------------------------------------- bad files

def _re10k_line(t=0, w2c="1 0 0 0 0 1 0 0 0 0 1 0"):
    return f"{t} 0.5 0.5 0.5 0.5 0 0 {w2c}"


@pytest.mark.parametrize("body, where_, what", [
    ([_re10k_line(0), "33333 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1"], "line 3", "found 18"),
    ([_re10k_line(0), _re10k_line(33333, "1 0 0 0 0 nan 0 0 0 0 1 0")], "line 3", "nan"),
    ([_re10k_line(0, "2 0 0 0 0 1 0 0 0 0 1 0")], "line 2", "not a rotation"),
    ([_re10k_line(0, "-1 0 0 0 0 1 0 0 0 0 1 0")], "line 2", "reflection"),
    ([_re10k_line(0), _re10k_line(33333)[:25]], "line 3", "Expected 19"),
    ([_re10k_line(0), "abc" + _re10k_line(1)[1:]], "line 3", "Timestamp"),
    ([_re10k_line(5), _re10k_line(5)], "line 3", "does not come after"),
    ([], "", "no camera lines"),
    (["0 0.5 0.5 0.5"], "line 2", "Expected 19"),
])
def test_realestate10k_bad_files(tmp_path, body, where_, what):
    p = tmp_path / "bad.txt"
    p.write_text("\n".join(["https://example.invalid/v"] + body) + "\n")
    with pytest.raises(TrajectoryError) as e:
        read_realestate10k(p, width=64, height=64)
    msg = str(e.value)
    assert str(p) in msg and where_ in msg and what in msg and e.value.hint


def test_realestate10k_damaged_first_line(tmp_path):
    p = tmp_path / "no_url.txt"
    p.write_text("0 0.5 0.5 0.5 0.5 0 0 1 0\n" + _re10k_line(5) + "\n")
    with pytest.raises(TrajectoryError, match="line 1.*neither a URL"):
        read_realestate10k(p, width=8, height=8)
    p.write_text(_re10k_line(0) + "\n" + _re10k_line(40000) + "\n")  # no URL line at all: fine
    assert read_realestate10k(p, width=8, height=8).fps == 25.0


def test_realestate10k_needs_image_size(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("url\n" + _re10k_line() + "\n")
    with pytest.raises(TrajectoryError, match="width= and height="):
        read_trajectory(p)


@pytest.mark.parametrize("name", ["x.lavr.json", "transforms.json", "camera_extrinsics.json"])
def test_malformed_json_names_line(tmp_path, name):
    p = tmp_path / name
    p.write_text('{\n  "frames": [\n    {"file_path": "a.png",\n')  # truncated
    with pytest.raises(TrajectoryError) as e:
        read_trajectory(p, format={"x.lavr.json": "lavr", "transforms.json": "nerfstudio",
                                   "camera_extrinsics.json": "recammaster"}[name])
    assert str(p) in str(e.value) and "line 4" in str(e.value) and "JSON" in str(e.value)


def test_json_nan_and_empty(tmp_path):
    traj = random_trajectory(T=2, seed=8)
    p = write_lavr_json(traj, tmp_path / "a.lavr.json")
    p.write_text(p.read_text().replace(json.dumps(traj.c2w[1, 0, 3].item()), "NaN", 1))
    with pytest.raises(TrajectoryError, match="NaN"):
        read_trajectory(p)
    (tmp_path / "e.lavr.json").write_text("")
    with pytest.raises(TrajectoryError, match="empty"):
        read_trajectory(tmp_path / "e.lavr.json")


def test_lavr_json_bad_contents(tmp_path):
    traj = random_trajectory(T=3, seed=9)
    p = write_lavr_json(traj, tmp_path / "a.lavr.json")
    data = json.loads(p.read_text())
    bad = dict(data, c2w=data["c2w"][:2])
    p.write_text(json.dumps(bad))
    with pytest.raises(TrajectoryError, match="K"):
        read_trajectory(p)
    data["c2w"][1][0][0] *= 3  # scale in a rotation
    p.write_text(json.dumps(data))
    with pytest.raises(TrajectoryError, match="c2w\\[1\\].*not a rotation"):
        read_trajectory(p)
    p.write_text(json.dumps(dict(data, version=2)))
    with pytest.raises(TrajectoryError, match="version 2"):
        read_trajectory(p)


def _sizes_differ(d):
    d.pop("w")
    for i, fr in enumerate(d["frames"]):
        fr["w"] = 100 if i == 1 else 64


@pytest.mark.parametrize("change, what", [
    (lambda d: d.pop("fl_x"), "fl_x"),
    (lambda d: [d.pop("cy"), d.pop("fl_y")], "fl_y, cy are missing"),
    (lambda d: d.pop("w"), "(w, h)"),
    (lambda d: d.update(camera_model="OPENCV_FISHEYE"), "not a pinhole"),
    (lambda d: d["frames"][1].update(transform_matrix=[[1, 0, 0], [0, 1, 0]]), "frames[1].transform_matrix"),
    (lambda d: d["frames"][0].update(transform_matrix=[[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
     "not a rotation"),
    (lambda d: d["frames"][2]["transform_matrix"][1].__setitem__(3, "x"), "frames[2].transform_matrix[1][3]"),
    (lambda d: d["frames"][1].pop("file_path"), "frames[1]"),
    (_sizes_differ, "different image sizes"),
])
def test_nerfstudio_bad_files(tmp_path, change, what):
    traj = random_trajectory(T=3, seed=10, shared_K=True, width=64, height=48)
    p = write_nerfstudio(traj, tmp_path / "transforms.json")
    data = json.loads(p.read_text())
    change(data)
    p.write_text(json.dumps(data))
    with pytest.raises(TrajectoryError) as e:
        read_nerfstudio(p)
    assert str(p) in str(e.value) and what in str(e.value), str(e.value)


def _colmap_model(tmp_path, cameras, images):
    (tmp_path / "cameras.txt").write_text(cameras)
    (tmp_path / "images.txt").write_text(images)
    return tmp_path


@pytest.mark.parametrize("cameras, images, file, where_, what", [
    ("1 FULL_OPENCV 10 10 1 1 5 5 0 0 0 0 0 0 0 0\n", "1 1 0 0 0 0 0 0 1 a.png\n\n", "cameras.txt", "line 1", "not supported"),
    ("1 PINHOLE 10 10 5 5 5\n", "1 1 0 0 0 0 0 0 1 a.png\n\n", "cameras.txt", "line 1", "4 parameters"),
    ("1 PINHOLE 10 10 5 5 5 5\n", "1 1 0 0 0 0 0 0 2 a.png\n\n", "images.txt", "line 1", "camera 2"),
    ("1 PINHOLE 10 10 5 5 5 5\n", "1 2 0 0 0 0 0 0 1 a.png\n\n", "images.txt", "line 1", "norm"),
    ("1 PINHOLE 10 10 5 5 5 5\n", "1 1 0 0 0 0 0 inf 1 a.png\n\n", "images.txt", "line 1", "inf"),
    ("1 PINHOLE 10 10 5 5 5 5\n", "# c\n1 1 0 0 0 0 0 0 1 a.png\n2 1 0 0 0 0 0 0 1 b.png\n\n",
     "images.txt", "line 3", "2-D points"),
    ("1 PINHOLE 10 10 5 5 5 5\n", "1 1 0 0 0 0 0 0 1 a.png\n\n2 1 0 0 0 0", "images.txt", "line 3", "found 6"),
    ("1 PINHOLE 10 10 5 5 5 5\n", "# nothing\n", "images.txt", "", "No images"),
])
def test_colmap_bad_files(tmp_path, cameras, images, file, where_, what):
    folder = _colmap_model(tmp_path, cameras, images)
    with pytest.raises(TrajectoryError) as e:
        read_colmap(folder)
    msg = str(e.value)
    assert str(folder / file) in msg and where_ in msg and what in msg, msg


def test_colmap_binary_model_gets_conversion_hint(tmp_path):
    (tmp_path / "images.bin").write_bytes(b"\x00\x01")
    with pytest.raises(TrajectoryError, match="model_converter"):
        read_trajectory(tmp_path)


@pytest.mark.parametrize("entry, what", [
    ("[1 0 0 0] [0 1 0 0] [0 0 1 0]", "four bracketed rows"),
    ("[1 0 0 0] [0 1 0] [0 0 1 0] [0 0 0 1]", "3 numbers"),
    ("[1 0 0 0] [0 1 0 0] [0 0 1 0] [0 0 0 1] trailing", "four bracketed rows"),
    ("[1 0 0 0] [0 1 0 0] [0 0 1 0] [0 nan 0 1]", "nan"),
    ("[1 0 0 5] [0 1 0 0] [0 0 1 0] [0 0 0 1]", "last column"),
    ("[1 0 0 0] [0 1 0 0] [0 0 -1 0] [0 0 0 1]", "reflection"),
])
def test_recammaster_bad_entries(tmp_path, entry, what):
    p = tmp_path / "camera_extrinsics.json"
    p.write_text(json.dumps({"frame0": {"cam01": "[1 0 0 0] [0 1 0 0] [0 0 1 0] [0 0 0 1] "}, "frame1": {"cam01": entry}}))
    with pytest.raises(TrajectoryError) as e:
        read_recammaster(p)
    assert str(p) in str(e.value) and "frame1" in str(e.value) and what in str(e.value)


def test_recammaster_missing_frame(tmp_path):
    p = tmp_path / "camera_extrinsics.json"
    m = "[1 0 0 0] [0 1 0 0] [0 0 1 0] [0 0 0 1] "
    p.write_text(json.dumps({"frame0": {"cam01": m}, "frame2": {"cam01": m}}))
    with pytest.raises(TrajectoryError, match="frame1 is missing"):
        read_recammaster(p)


# ------------------------------------------------------------------------ dispatch and writing

def test_dispatch_by_name_and_content(tmp_path):
    traj = random_trajectory(T=2, seed=11, shared_K=True)
    p = write_trajectory(traj, tmp_path / "mine.json", format="lavr")
    assert detect_format(p) == "lavr_trajectory"  # sniffed from the content
    q = write_trajectory(traj, tmp_path / "cams.json", format="nerfstudio")
    assert detect_format(q) == "nerfstudio"
    r = write_trajectory(traj, tmp_path / "rcm.json", format="recammaster")
    assert detect_format(r) == "recammaster"
    assert detect_format(tmp_path / "x.txt") == "realestate10k"
    with pytest.raises(TrajectoryError, match="format="):
        write_trajectory(traj, tmp_path / "unknown.json")
    with pytest.raises(TrajectoryError, match="Unknown trajectory format"):
        read_trajectory(p, format="blender")
    with pytest.raises(TrajectoryError, match="format="):
        read_trajectory(tmp_path / "a.csv")


def test_skewed_K_is_refused_not_dropped(tmp_path):
    traj = random_trajectory(T=2, seed=12, shared_K=True)
    K = traj.K.clone()
    K[:, 0, 1] = 3.0
    skewed = traj.replace(K=K)
    for fmt, name in (("realestate10k", "a.txt"), ("nerfstudio", "transforms.json"), ("colmap", "m")):
        with pytest.raises(TrajectoryError, match="skew"):
            write_trajectory(skewed, tmp_path / name, format=fmt)
    assert torch.equal(read_trajectory(write_trajectory(skewed, tmp_path / "s.lavr.json")).K, K)


def test_writes_are_atomic(tmp_path, monkeypatch):
    traj = random_trajectory(T=3, seed=13)
    p = write_trajectory(traj, tmp_path / "a.lavr.json")
    before = p.read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(lavr_fileio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_trajectory(random_trajectory(T=3, seed=14), p)
    assert p.read_text() == before and no_temp_files(tmp_path)
    monkeypatch.undo()
    with pytest.raises(TrajectoryError, match="meta"):
        write_trajectory(traj.replace(meta={"x": object()}), p)
    assert p.read_text() == before and no_temp_files(tmp_path)
    assert os.listdir(tmp_path) == ["a.lavr.json"]
