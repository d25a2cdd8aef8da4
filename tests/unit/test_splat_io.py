import gzip
import json
import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from lavr_core.errors import InputError
from lavr_core.gaussians import (SH_C0, GaussianSequence, Gaussians, read_gaussians, read_ply, read_sequence,
                                 read_splat, read_spz, write_gaussians, write_ply, write_sequence, write_splat,
                                 write_spz)
from lavr_core.gaussians.cli import main as cli_main
from lavr_core.gaussians.sh import axis_flip_signs

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "tests" / "e2e"


def plyfile_splat(path: Path, n=300, deg=3, seed=0, text=False, byte_order="<") -> dict:
    """A 3DGS .ply written by plyfile (independent of our writer); returns the raw columns."""
    rng = np.random.default_rng(seed)
    k = (deg + 1) ** 2
    cols = {"x": rng.uniform(-3, 3, n), "y": rng.uniform(-3, 3, n), "z": rng.uniform(-3, 3, n),
            "nx": np.zeros(n), "ny": np.zeros(n), "nz": np.zeros(n)}
    for c in range(3):
        cols[f"f_dc_{c}"] = rng.uniform(-1.6, 1.6, n)  # colours 0.05..0.95: inside 8-bit range
    for i in range(3 * (k - 1)):
        cols[f"f_rest_{i}"] = rng.uniform(-0.9, 0.9, n)
    cols["opacity"] = rng.uniform(-5, 5, n)
    for c in range(3):
        cols[f"scale_{c}"] = rng.uniform(-6, 0, n)
    q = rng.normal(size=(n, 4))
    for c in range(4):
        cols[f"rot_{c}"] = q[:, c]
    arr = np.empty(n, dtype=[(name, "f4") for name in cols])
    for name, v in cols.items():
        arr[name] = v
    PlyData([PlyElement.describe(arr, "vertex")], text=text, byte_order=byte_order).write(str(path))
    return {name: arr[name].astype(np.float64) for name in cols}


def expected_from_columns(cols: dict, deg: int):
    n = len(cols["x"])
    k = (deg + 1) ** 2
    sh = np.zeros((n, k, 3))
    sh[:, 0] = np.stack([cols[f"f_dc_{c}"] for c in range(3)], -1)
    if k > 1:
        rest = np.stack([cols[f"f_rest_{i}"] for i in range(3 * (k - 1))], -1)
        sh[:, 1:] = rest.reshape(n, 3, k - 1).transpose(0, 2, 1)
    q = np.stack([cols[f"rot_{c}"] for c in range(4)], -1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.where(q[:, :1] < 0, -1, 1)
    return dict(means=np.stack([cols[c] for c in "xyz"], -1),
                scales=np.exp(np.stack([cols[f"scale_{c}"] for c in range(3)], -1)),
                rotations=q, opacities=1 / (1 + np.exp(-cols["opacity"])), sh=sh)


def arrays(g: Gaussians) -> dict:
    return {f: getattr(g, f).double().numpy() for f in ("means", "scales", "rotations", "opacities", "sh")}


def rotation_angle_deg(qa, qb):
    dot = np.abs((qa * qb).sum(-1)).clip(0, 1)
    return np.degrees(2 * np.arccos(dot))


@pytest.mark.parametrize("text, byte_order", [(False, "<"), (False, ">"), (True, "=")])
def test_plyfile_written_splat_reads_exactly(tmp_path, text, byte_order):
    cols = plyfile_splat(tmp_path / "in.ply", n=120, deg=2, text=text, byte_order=byte_order)
    g = read_ply(tmp_path / "in.ply")
    exp, got = expected_from_columns(cols, 2), arrays(g)
    assert g.num == 120 and g.sh_degree == 2
    for f in ("means", "sh"):
        assert np.allclose(got[f], exp[f], atol=1e-6), f
    for f in ("scales", "opacities", "rotations"):
        assert np.allclose(got[f], exp[f], rtol=1e-5, atol=1e-6), f


def test_our_ply_reads_in_plyfile_with_the_standard_layout(tmp_path):
    cols = plyfile_splat(tmp_path / "in.ply", n=80, deg=3)
    g = read_ply(tmp_path / "in.ply")
    write_ply(g, tmp_path / "ours.ply")
    v = PlyData.read(str(tmp_path / "ours.ply"))["vertex"]
    names = list(v.data.dtype.names)
    assert names == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                     + [f"f_rest_{i}" for i in range(45)]
                     + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert all(v.data.dtype[nm] == np.dtype("<f4") for nm in names)
    for name in ("x", "f_dc_1", "f_rest_0", "f_rest_17", "f_rest_44", "opacity", "scale_2"):
        assert np.allclose(v[name], cols[name], rtol=1e-5, atol=1e-5), name
    for c in range(4):  # rotations come back normalised with w >= 0
        q = np.stack([cols[f"rot_{i}"] for i in range(4)], -1)
        q = q / np.linalg.norm(q, axis=1, keepdims=True) * np.where(q[:, :1] < 0, -1, 1)
        assert np.allclose(v[f"rot_{c}"], q[:, c], atol=1e-6)


def _check_spz_quantisation(exp, got, version):
    assert np.abs(got["means"] - exp["means"]).max() <= 0.5 / 4096 + 1e-6
    assert np.abs(np.log(got["scales"]) - np.log(exp["scales"])).max() <= 0.5 / 16 + 1e-5
    assert np.abs(got["opacities"] - exp["opacities"]).max() <= 0.5 / 255 + 1e-6
    assert np.abs(got["sh"][:, 0] - exp["sh"][:, 0]).max() <= 0.5 / (0.15 * 255) + 1e-5
    band1, rest = got["sh"][:, 1:4] - exp["sh"][:, 1:4], got["sh"][:, 4:] - exp["sh"][:, 4:]
    assert np.abs(band1).max() <= (4 + 0.5) / 128 + 1e-6       # 5-bit buckets of 8
    assert np.abs(rest).max(initial=0) <= (8 + 0.5) / 128 + 1e-6  # 4-bit buckets of 16
    if version == 3:
        assert rotation_angle_deg(got["rotations"], exp["rotations"]).max() < 0.25
    else:  # v2 stores x, y, z of the w >= 0 quaternion in 8 bits and derives w; when rounding pushes
        # |xyz| past 1, w is 0 and re-normalising moves xyz by up to one more step
        assert np.abs(got["rotations"][:, 1:] - exp["rotations"][:, 1:]).max() <= 1.5 / 127.5


@pytest.mark.parametrize("target", ["splat", "spz-v2", "spz-v3", "ply"])
def test_plyfile_splat_converts_to_each_format_and_back(tmp_path, target):
    deg = 3
    cols = plyfile_splat(tmp_path / "in.ply", n=400, deg=deg, seed=1)
    exp = expected_from_columns(cols, deg)
    fmt, _, ver = target.partition("-v")
    out = tmp_path / f"out.{fmt}"
    args = ["convert", str(tmp_path / "in.ply"), str(out)] + (["--spz-version", ver] if ver else [])
    assert cli_main(args) == 0
    assert cli_main(["convert", str(out), str(tmp_path / "back.ply")]) == 0
    got = arrays(read_ply(tmp_path / "back.ply"))
    if fmt == "ply":
        for f in exp:
            assert np.allclose(got[f], exp[f], rtol=1e-5, atol=1e-6), f
    elif fmt == "spz":
        _check_spz_quantisation(exp, got, int(ver))
        assert read_spz(out).meta["spz_version"] == int(ver)
    else:
        order_e = np.lexsort(exp["means"].T)  # .splat is re-ordered; positions are exact float32
        order_g = np.lexsort(got["means"].T)
        e = {k: v[order_e] for k, v in exp.items()}
        o = {k: v[order_g] for k, v in got.items()}
        assert np.allclose(o["means"], e["means"], atol=1e-6)
        assert np.allclose(o["scales"], e["scales"], rtol=1e-6)
        assert np.abs(o["opacities"] - e["opacities"]).max() <= 0.5 / 255 + 1e-6
        rgb_e, rgb_o = 0.5 + SH_C0 * e["sh"][:, 0], 0.5 + SH_C0 * o["sh"][:, 0]
        assert np.abs(rgb_o - rgb_e).max() <= 0.5 / 255 + 1e-6
        assert o["sh"].shape[1] == 1  # the format has no higher bands
        assert rotation_angle_deg(o["rotations"], e["rotations"]).max() < 3.0


def test_splat_records_are_32_bytes_sorted_big_and_opaque_first(tmp_path):
    cols = plyfile_splat(tmp_path / "in.ply", n=64, deg=0)
    g = read_ply(tmp_path / "in.ply")
    write_splat(g, tmp_path / "a.splat")
    data = (tmp_path / "a.splat").read_bytes()
    assert len(data) == 64 * 32
    rec = np.frombuffer(data, dtype=[("p", "<f4", 3), ("s", "<f4", 3), ("c", "u1", 4), ("q", "u1", 4)])
    opacity = 1 / (1 + np.exp(-cols["opacity"]))
    pos = np.stack([cols["x"], cols["y"], cols["z"]], -1).astype(np.float32)
    src = [int(np.flatnonzero((pos == p).all(1))[0]) for p in rec["p"]]  # record -> input Gaussian
    key = rec["s"].astype(np.float64).prod(-1) * opacity[src]
    assert sorted(src) == list(range(64)) and np.all(np.diff(key) <= 0)
    # record 0 is the biggest Gaussian of the input, its quaternion bytes are q*128+128 (wxyz)
    i = int(np.argmax(np.exp(np.stack([cols[f"scale_{c}"] for c in range(3)], -1)).prod(-1) /
                      (1 + np.exp(-cols["opacity"]))))
    assert np.allclose(rec["p"][0], [cols["x"][i], cols["y"][i], cols["z"][i]])
    q = np.array([cols[f"rot_{c}"][i] for c in range(4)])
    q = q / np.linalg.norm(q) * (1 if q[0] >= 0 else -1)
    assert np.abs(rec["q"][0].astype(float) - (q * 128 + 128)).max() <= 0.5 + 1e-6


def test_spz_layout_and_axes_follow_the_spec(tmp_path):
    """Parse our .spz bytes by hand: header, RUB positions (y, z flipped), fields in spec order."""
    cols = plyfile_splat(tmp_path / "in.ply", n=10, deg=1, seed=5)
    g = read_ply(tmp_path / "in.ply")
    write_spz(g, tmp_path / "a.spz", version=2)
    raw = gzip.decompress((tmp_path / "a.spz").read_bytes())
    magic, version, n, deg, fb, flags, res = struct.unpack_from("<IIIBBBB", raw)
    assert (magic, version, n, deg, fb, flags, res) == (0x5053474E, 2, 10, 1, 12, 0, 0)
    assert len(raw) == 16 + n * (9 + 1 + 3 + 3 + 3 + 9)
    b = np.frombuffer(raw, np.uint8, count=9 * n, offset=16).reshape(n * 3, 3).astype(np.int64)
    fixed = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    fixed = np.where(fixed >= 1 << 23, fixed - (1 << 24), fixed).reshape(n, 3) / 4096.0
    assert np.allclose(fixed, np.stack([cols["x"], -cols["y"], -cols["z"]], -1), atol=0.5 / 4096 + 1e-7)
    alpha = np.frombuffer(raw, np.uint8, count=n, offset=16 + 9 * n)
    assert np.abs(alpha / 255 - 1 / (1 + np.exp(-cols["opacity"]))).max() <= 0.5 / 255 + 1e-6
    # the same file read back without the axis conversion shows the stored RUB frame
    rub = read_spz(tmp_path / "a.spz", convert_axes=False)
    assert np.allclose(rub.means.numpy(), fixed, atol=1e-6)
    assert np.allclose(rub.sh[:, 1:].numpy() * np.array(axis_flip_signs(1, -1, -1, 1)[1:])[None, :, None],
                       read_spz(tmp_path / "a.spz").sh[:, 1:].numpy(), atol=1e-7)


def test_spz_version_1_float16_positions_read(tmp_path):
    """Version 1 (float16 positions, 8-bit xyz rotations) is still readable, as the spec says."""
    cols = plyfile_splat(tmp_path / "in.ply", n=30, deg=0, seed=6)
    exp = expected_from_columns(cols, 0)
    write_spz(read_ply(tmp_path / "in.ply"), tmp_path / "v2.spz", version=2, convert_axes=False)
    raw = gzip.decompress((tmp_path / "v2.spz").read_bytes())
    n = 30
    rest = raw[16 + 9 * n:]
    half = (exp["means"]).astype("<f2").tobytes()
    header = struct.pack("<IIIBBBB", 0x5053474E, 1, n, 0, 0, 0, 0)
    (tmp_path / "v1.spz").write_bytes(gzip.compress(header + half + rest))
    got = read_spz(tmp_path / "v1.spz", convert_axes=False)
    assert got.meta["spz_version"] == 1
    assert np.allclose(got.means.numpy(), exp["means"].astype(np.float16), atol=1e-6)
    assert np.abs(got.opacities.numpy() - exp["opacities"]).max() <= 0.5 / 255 + 1e-6


def test_spz_positions_far_from_origin_use_fewer_fraction_bits(tmp_path):
    g = Gaussians(torch.tensor([[5000.0, 1.0, -3000.0], [0.001, 0, 0]]), torch.full((2, 3), 0.1),
                  torch.tensor([[1.0, 0, 0, 0]] * 2), torch.full((2,), 0.5), torch.zeros(2, 1, 3))
    write_spz(g, tmp_path / "far.spz")
    back = read_spz(tmp_path / "far.spz")
    fb = back.meta["fractional_bits"]
    assert fb == 10  # 5000 * 2^10 < 2^23 <= 5000 * 2^11
    assert torch.allclose(back.means, g.means, atol=0.5 / 2 ** fb)
    with pytest.raises(InputError, match="24-bit range"):
        write_spz(Gaussians(torch.tensor([[1e7, 0, 0]]), torch.ones(1, 3), torch.tensor([[1.0, 0, 0, 0]]),
                            torch.ones(1), torch.zeros(1, 1, 3)), tmp_path / "x.spz")


def _spz_js_available():
    return shutil.which("node") is not None and (E2E / "node_modules" / "spz-js" / "package.json").is_file()


@pytest.mark.skipif(not _spz_js_available(),
                    reason="needs node and the npm package spz-js (cd tests/e2e && npm install)")
def test_our_spz_reads_in_the_independent_spz_js_reader(tmp_path):
    cols = plyfile_splat(tmp_path / "in.ply", n=200, deg=2, seed=7)
    exp = expected_from_columns(cols, 2)
    g = read_ply(tmp_path / "in.ply")
    write_spz(g, tmp_path / "a.spz", version=2)
    res = subprocess.run(["node", str(E2E / "spz_read.mjs"), str(tmp_path / "a.spz")], cwd=E2E,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    js = json.loads(res.stdout)
    assert js["numPoints"] == 200 and js["shDegree"] == 2
    f = lambda k: np.array([-np.inf if v is None else v for v in js[k]], dtype=np.float64)  # noqa: E731
    pos, sc, rot = f("positions").reshape(-1, 3), f("scales").reshape(-1, 3), f("rotations").reshape(-1, 4)
    alpha, col, sh = f("alphas"), f("colors").reshape(-1, 3), f("sh").reshape(200, -1, 3)
    # spz-js returns the stored (RUB) frame: y and z flipped against the RDF .ply
    flip = np.array([1, -1, -1])
    assert np.abs(pos - exp["means"] * flip).max() <= 0.5 / 4096 + 1e-6
    assert np.abs(sc - np.log(exp["scales"])).max() <= 0.5 / 16 + 1e-5
    assert np.abs(1 / (1 + np.exp(-alpha)) - exp["opacities"]).max() <= 0.5 / 255 + 1e-5
    assert np.abs(col - exp["sh"][:, 0]).max() <= 0.5 / (0.15 * 255) + 1e-5
    signs = np.array(axis_flip_signs(1, -1, -1, 2)[1:])[None, :, None]
    assert np.abs(sh - exp["sh"][:, 1:] * signs).max() <= (8 + 0.5) / 128 + 1e-6
    q_js = rot[:, [3, 0, 1, 2]] * np.array([1, 1, -1, -1])  # xyzw RUB -> wxyz RDF
    assert np.abs(q_js[:, 1:] - exp["rotations"][:, 1:]).max() <= 0.5 / 127.5 + 1e-6  # v2 stores x, y, z
    # both readers decode the same bytes to the same numbers
    ours = read_spz(tmp_path / "a.spz", convert_axes=False)
    assert np.allclose(ours.means.numpy(), pos, atol=1e-6)
    assert np.allclose(ours.scales.log().numpy(), sc, atol=1e-5)
    assert np.allclose(ours.sh[:, 1:].numpy(), sh, atol=1e-6)
    assert np.allclose(ours.sh[:, 0].numpy(), col, atol=1e-5)
    q_ours = ours.rotations.double().numpy()[:, [1, 2, 3, 0]]
    assert np.allclose(q_ours / np.linalg.norm(q_ours, axis=1, keepdims=True),
                       rot / np.linalg.norm(rot, axis=1, keepdims=True), atol=1e-5)
    for k in ("positions", "scales", "sh"):
        v = f(k)
        assert math.isclose(js["stats"][k]["min"], v.min()) and math.isclose(js["stats"][k]["max"], v.max())


def test_spz_version_4_reads_when_a_zstd_decoder_is_installed(tmp_path):
    zstandard = pytest.importorskip("zstandard", reason="reading .spz v4 needs the optional zstandard package")
    cols = plyfile_splat(tmp_path / "in.ply", n=50, deg=1, seed=8)
    exp = expected_from_columns(cols, 1)
    g = read_ply(tmp_path / "in.ply")
    write_spz(g, tmp_path / "v3.spz", version=3)
    raw = gzip.decompress((tmp_path / "v3.spz").read_bytes())
    n = 50
    sizes = [9 * n, n, 3 * n, 3 * n, 4 * n, 9 * n]
    streams, off = [], 16
    for s in sizes:
        streams.append(raw[off:off + s])
        off += s
    chunks = [zstandard.ZstdCompressor().compress(s) for s in streams]
    header = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, n, 1, 12, 0, len(chunks), 32)
    toc = b"".join(struct.pack("<QQ", len(c), len(s)) for c, s in zip(chunks, streams))
    (tmp_path / "v4.spz").write_bytes(header + toc + b"".join(chunks))
    got = arrays(read_spz(tmp_path / "v4.spz"))
    _check_spz_quantisation(exp, got, 3)


def test_sequence_numbered_files_and_manifest(tmp_path):
    cols = plyfile_splat(tmp_path / "in.ply", n=30, deg=1)
    base = read_ply(tmp_path / "in.ply")
    frames = [base.subset(slice(i * 5, i * 5 + 10)) for i in range(3)]
    seq = GaussianSequence.from_fps(frames, fps=24, static=base.subset(slice(0, 4)), meta={"model": "test"})
    for fmt in ("ply", "spz"):
        manifest = write_sequence(seq, tmp_path / fmt, stem="scene", fmt=fmt)
        m = json.loads(manifest.read_text())
        assert m["format"] == "lavr.gaussian_sequence" and m["timesteps"] == 3
        assert [e["file"] for e in m["frames"]] == [f"scene_{i:05d}.{fmt}" for i in range(3)]
        assert m["static"] == {"file": f"scene_static.{fmt}", "gaussians": 4}
        assert all((tmp_path / fmt / e["file"]).is_file() for e in m["frames"])
        back = read_sequence(manifest)
        assert len(back) == 3 and torch.allclose(back.times, seq.times) and back.meta == {"model": "test"}
        tol = 1e-6 if fmt == "ply" else 0.5 / 4096 + 1e-6
        assert torch.allclose(back.frames[2].means, frames[2].means, atol=tol)
        assert torch.allclose(back.at(1).means[:4], seq.static.means, atol=tol)
    bad = json.loads(manifest.read_text())
    bad["frames"][0]["file"] = "../in.ply"
    (tmp_path / "evil.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match="not a plain file name"):
        read_sequence(tmp_path / "evil.json")
    with pytest.raises(InputError, match="plain file name"):
        write_sequence(seq, tmp_path, stem="../x")
    del cols


def test_cli_module_alias_runs(tmp_path):
    plyfile_splat(tmp_path / "in.ply", n=20, deg=0)
    res = subprocess.run([sys.executable, "-m", "lavr_core.splat", "convert", str(tmp_path / "in.ply"),
                          str(tmp_path / "o.spz")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "20 Gaussians" in res.stdout and read_gaussians(tmp_path / "o.spz").num == 20
    res = subprocess.run([sys.executable, "-m", "lavr_core.splat", "convert", str(tmp_path / "nope.ply"),
                          str(tmp_path / "o.splat")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_cli_notes_what_a_format_drops(tmp_path, capsys):
    plyfile_splat(tmp_path / "in.ply", n=20, deg=3)
    assert cli_main(["convert", str(tmp_path / "in.ply"), str(tmp_path / "o.splat")]) == 0
    out = capsys.readouterr().out
    assert "SH degree 3 -> 0" in out and "base colour only" in out
    assert cli_main(["convert", str(tmp_path / "in.ply"), str(tmp_path / "o.obj")]) == 2
    assert "unknown splat format .obj" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- bad files

def _good_files(tmp_path):
    plyfile_splat(tmp_path / "in.ply", n=40, deg=1)
    g = read_ply(tmp_path / "in.ply")
    return {"ply": write_ply(g, tmp_path / "g.ply"), "splat": write_splat(g, tmp_path / "g.splat"),
            "spz": write_spz(g, tmp_path / "g.spz")}


@pytest.mark.parametrize("fmt, cut, match", [
    ("ply", 100, "40 vertices announced but only 3[0-9] present"),
    ("splat", 7, "not a whole number of 32-byte"),
    ("spz", 20, "gzip stream is damaged"),
])
def test_truncated_files_name_the_file_and_the_problem(tmp_path, fmt, cut, match):
    p = _good_files(tmp_path)[fmt]
    data = p.read_bytes()
    bad = tmp_path / f"cut.{fmt}"
    bad.write_bytes(data[:len(data) - cut])
    with pytest.raises(InputError, match=rf"cut\.{fmt}: .*{match}"):
        read_gaussians(bad)


@pytest.mark.parametrize("fmt, match", [("ply", "not a PLY"), ("spz", "not an .spz"),
                                        ("splat", "not a whole number")])
def test_garbage_files_get_clear_errors(tmp_path, fmt, match):
    bad = tmp_path / f"junk.{fmt}"
    bad.write_bytes(b"this is not a splat file at all" * 3 + b"!")
    with pytest.raises(InputError, match=match):
        read_gaussians(bad)


def test_specific_bad_contents(tmp_path):
    files = _good_files(tmp_path)
    # a plain point cloud is not a splat
    arr = np.zeros(5, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "pc.ply"))
    with pytest.raises(InputError, match="pc.ply: not a Gaussian splat PLY: .*opacity"):
        read_ply(tmp_path / "pc.ply")
    # NaN inside a ply
    v = PlyData.read(str(files["ply"]))
    v["vertex"]["x"][3] = np.nan
    v.write(str(tmp_path / "nan.ply"))
    with pytest.raises(InputError, match="nan.ply: 1 of 40 Gaussians have NaN"):
        read_ply(tmp_path / "nan.ply")
    # header without end
    (tmp_path / "hdr.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 2\n")
    with pytest.raises(InputError, match="end_header"):
        read_ply(tmp_path / "hdr.ply")
    # an incomplete SH band
    arr = np.zeros(3, dtype=[(c, "f4") for c in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "f_rest_0",
                                                 "opacity", "scale_0", "scale_1", "scale_2",
                                                 "rot_0", "rot_1", "rot_2", "rot_3")])
    arr["rot_0"] = 1
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "band.ply"))
    with pytest.raises(InputError, match="whole SH degree"):
        read_ply(tmp_path / "band.ply")
    # spz: wrong magic, more points announced than stored, unknown version, empty file
    raw = bytearray(gzip.decompress(files["spz"].read_bytes()))
    for name, patch, match in (("magic", (0, b"XXXX"), "bad .spz magic"),
                               ("count", (8, struct.pack("<I", 41)), "41 Gaussians announced"),
                               ("version", (4, struct.pack("<I", 9)), "version 9")):
        b = bytearray(raw)
        b[patch[0]:patch[0] + 4] = patch[1]
        (tmp_path / f"{name}.spz").write_bytes(gzip.compress(bytes(b)))
        with pytest.raises(InputError, match=match):
            read_spz(tmp_path / f"{name}.spz")
    (tmp_path / "empty.spz").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_spz(tmp_path / "empty.spz")
    with pytest.raises(InputError, match="does not exist"):
        read_gaussians(tmp_path / "missing.splat")
    with pytest.raises(InputError, match="cannot be written"):
        write_spz(read_ply(files["ply"]), tmp_path / "v4.spz", version=4)
    with pytest.raises(InputError, match="degree 4 does not fit"):
        write_gaussians(read_ply(files["ply"]).with_sh_degree(4), tmp_path / "d4.ply")
    # a splat file with a non-positive scale
    rec = bytearray(files["splat"].read_bytes())
    rec[12:16] = struct.pack("<f", -1.0)
    (tmp_path / "neg.splat").write_bytes(bytes(rec))
    with pytest.raises(InputError, match="neg.splat: Gaussian scales must be positive"):
        read_splat(tmp_path / "neg.splat")


def test_spz_v4_without_decoder_says_what_to_install(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_zstd(name, *a, **k):
        if name in ("zstandard", "compression"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_zstd)
    header = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, 2, 0, 12, 0, 5, 32)
    sizes = [18, 2, 6, 6, 8]
    toc = b"".join(struct.pack("<QQ", 4, s) for s in sizes)
    (tmp_path / "v4.spz").write_bytes(header + toc + b"\0" * 20)
    with pytest.raises(InputError, match="zstd.*pip install zstandard"):
        read_spz(tmp_path / "v4.spz")
