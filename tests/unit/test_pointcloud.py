import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from lavr_core.errors import InputError
from lavr_core.pointcloud import PointCloud, read_ply_points, write_ply_points


def _cloud(n=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    return PointCloud(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g))


def test_our_ply_reads_in_plyfile_and_back(tmp_path):
    c = _cloud()
    p = write_ply_points(c, tmp_path / "a.ply")
    v = PlyData.read(str(p))["vertex"]
    xyz = np.stack([v["x"], v["y"], v["z"]], -1)
    assert np.allclose(xyz, c.xyz.numpy())
    assert np.abs(np.stack([v["red"], v["green"], v["blue"]], -1) / 255.0 - c.rgb.numpy()).max() <= 0.5 / 255 + 1e-6
    back = read_ply_points(p)
    assert torch.equal(back.xyz, c.xyz)
    assert (back.rgb - c.rgb).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("text", [True, False])
def test_reads_plyfile_written_ascii_and_binary_with_3dgs_colours(tmp_path, text):
    n = 50
    rng = np.random.default_rng(1)
    arr = np.zeros(n, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("nx", "f4"), ("ny", "f4"), ("nz", "f4"),
                             ("f_dc_0", "f4"), ("f_dc_1", "f4"), ("f_dc_2", "f4"), ("opacity", "f4")])
    for k in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"):
        arr[k] = rng.normal(size=n)
    path = tmp_path / "g.ply"
    PlyData([PlyElement.describe(arr, "vertex")], text=text, byte_order=">" if not text else "=").write(str(path))
    c = read_ply_points(path)
    assert np.allclose(c.xyz.numpy(), np.stack([arr["x"], arr["y"], arr["z"]], -1), atol=1e-5)
    expect = np.clip(0.5 + 0.28209479177387814 * np.stack([arr[f"f_dc_{i}"] for i in range(3)], -1), 0, 1)
    assert np.allclose(c.rgb.numpy(), expect, atol=1e-5)


def test_truncated_and_garbage_files_get_clear_errors(tmp_path):
    p = write_ply_points(_cloud(100), tmp_path / "t.ply")
    data = p.read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) - 40])
    with pytest.raises(InputError, match="truncated"):
        read_ply_points(tmp_path / "cut.ply")
    (tmp_path / "no.ply").write_bytes(b"hello world")
    with pytest.raises(InputError, match="not a PLY"):
        read_ply_points(tmp_path / "no.ply")
    (tmp_path / "hdr.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 2\n")
    with pytest.raises(InputError, match="end_header"):
        read_ply_points(tmp_path / "hdr.ply")


def test_nonfinite_points_dropped_and_counted():
    xyz = torch.tensor([[0, 0, 0], [float("nan"), 0, 0], [1, 2, 3.0]])
    c = PointCloud(xyz)
    assert len(c) == 2 and c.meta["dropped_nonfinite"] == 1


def test_subsample_is_deterministic():
    c = _cloud(1000)
    a, b = c.subsample(100, seed=3), c.subsample(100, seed=3)
    assert len(a) == 100 and torch.equal(a.xyz, b.xyz)
    assert c.subsample(5000) is c
