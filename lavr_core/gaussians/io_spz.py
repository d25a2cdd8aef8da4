"""Niantic ``.spz`` files (spec: README of github.com/nianticlabs/spz), versions 1 to 4 read, 2 and 3 written.

Versions 1-3 are one gzip stream holding a 16-byte header and then the attributes of all points,
attribute by attribute::

    header   uint32 magic 0x5053474E ("NGSP"), uint32 version, uint32 numPoints,
             uint8 shDegree, uint8 fractionalBits, uint8 flags (0x1 antialiased, 0x2 extensions), uint8 0
    positions  v1: 3 float16; v2+: 3 x 24-bit signed fixed point with ``fractionalBits`` fraction bits
    alphas     uint8  opacity * 255
    colours    3 uint8  DC * (0.15 * 255) + 127.5   (0.15 instead of SH_C0 leaves head-room beyond [0, 1])
    scales     3 uint8  (log(scale) + 10) * 16
    rotations  v1/v2: 3 uint8 of (x, y, z) * 127.5 + 127.5 with w >= 0 implied;
               v3+: one uint32, "smallest three": 2 bits index of the largest |component| (xyzw order),
               then three 10-bit fields (sign bit + 9-bit magnitude of |q_i| / sqrt(1/2)), first-stored highest
    sh         per point, (degree+1)^2 - 1 coefficients x 3 channels (channel fastest), uint8 q with
               value (q - 128) / 128; writers round to buckets of 8 (band 1) and 16 (higher bands)

Version 4 is a 32-byte plain header (``numStreams`` uint8 at byte 15, ``tocByteOffset`` uint32 at 16),
a table of (compressed, uncompressed) uint64 sizes, then one zstd stream per non-empty attribute in the
order above. Reading it needs a zstd decoder (``zstandard`` package, or Python 3.14's
``compression.zstd``); we never write it, because common web readers (spz-js) read versions 1-2 only.

Axes: the spec stores splats in a right-up-back (RUB, OpenGL/three.js) frame, while 3DGS ``.ply``
files and LaVR use right-down-front (RDF, OpenCV). With ``convert_axes=True`` (the default, as the
official ``ply_to_spz`` tool does) the writer flips y and z -- positions, quaternions, and SH through
``axis_flip_signs`` -- and the reader flips them back, so ``.ply -> .spz -> .ply`` is the identity up
to quantisation. (For SH degree 4 we derive the signs from the basis; the official table differs from
it in the sign of the last degree-4 coefficient.)
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileio import atomic_writer
from .io_common import GaussianArrays, build, file_error, read_bytes
from .sh import axis_flip_signs
from .types import Gaussians

SPZ_MAGIC = 0x5053474E
COLOR_SCALE = 0.15
_SQRT1_2 = math.sqrt(0.5)
_FLIP = (1, -1, -1)  # RDF <-> RUB
_HINT = "The file is truncated or not an .spz; export it again."


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C's ``round``: halves away from zero (numpy's ``rint`` rounds them to even). In place on a copy."""
    out = np.abs(x)
    out += 0.5
    np.floor(out, out=out)
    return np.copysign(out, x, out=out)


def _u8(x: np.ndarray) -> np.ndarray:
    """Round (halves up, as C's round does for the non-negative values that survive) and clamp to a byte."""
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _flip_arrays(means, rots_wxyz, sh, flip=_FLIP):
    """Re-express positions, quaternions and SH under the axis flip ``diag(flip)``."""
    sx, sy, sz = flip
    means = means * np.asarray(flip, np.float32)
    # A flip F conjugates rotations: R' = F R F. For det F = +1 the axis maps to F a with the same
    # angle; in general the vector part picks up (sy*sz, sx*sz, sx*sy).
    rots_wxyz = rots_wxyz * np.asarray([1, sy * sz, sx * sz, sx * sy], np.float32)
    k = sh.shape[1]
    signs = np.asarray(axis_flip_signs(sx, sy, sz, int(round(math.sqrt(k))) - 1), np.float32)
    return means, rots_wxyz, sh * signs[None, :, None]


def _fractional_bits(means: np.ndarray) -> int:
    """12 fraction bits (0.24 mm at metre scale) as the reference writer uses, fewer when needed to fit 24 bits."""
    m = float(np.abs(means).max(initial=0.0))
    limit = (1 << 23) - 1
    for fb in range(12, -1, -1):
        if m * (1 << fb) <= limit:
            return fb
    raise InputError(f"Gaussian positions reach {m:.4g} scene units, beyond the .spz 24-bit range (+-{limit}).",
                     "Rescale the scene (normalize_scale) or save it as .ply.")


def _pack_smallest_three(q_xyzw: np.ndarray) -> np.ndarray:
    n = q_xyzw.shape[0]
    largest = np.argmax(np.abs(q_xyzw), axis=1)
    neg = q_xyzw[np.arange(n), largest] < 0
    comp = largest.astype(np.uint32)
    for i in range(4):
        # the three components other than the largest, in index order, shifted in one after another
        take = largest != i
        qi = q_xyzw[:, i]
        negbit = ((qi < 0) ^ neg).astype(np.uint32)
        mag = np.floor(511.0 * (np.abs(qi) / _SQRT1_2) + 0.5).astype(np.uint32)
        mag = np.minimum(mag, 511)
        comp = np.where(take, (comp << 10) | (negbit << 9) | mag, comp)
    return comp.astype("<u4").view(np.uint8).reshape(n, 4)


def _unpack_smallest_three(b: np.ndarray) -> np.ndarray:
    comp = b.astype(np.uint32)
    comp = comp[:, 0] | (comp[:, 1] << 8) | (comp[:, 2] << 16) | (comp[:, 3] << 24)
    largest = (comp >> 30).astype(np.int64)
    q = np.zeros((b.shape[0], 4), np.float32)
    for i in range(3, -1, -1):
        take = largest != i
        mag = (comp & 511).astype(np.float32)
        negbit = (comp >> 9) & 1
        val = _SQRT1_2 * mag / 511.0
        q[:, i] = np.where(take, np.where(negbit == 1, -val, val), 0.0)
        comp = np.where(take, comp >> 10, comp)
    rest = np.clip(1.0 - (q * q).sum(1), 0.0, None)
    q[np.arange(b.shape[0]), largest] = np.sqrt(rest)
    return q


def spz_bytes(g: Gaussians, version: int = 2, convert_axes: bool = True,
              sh1_bits: int = 5, sh_rest_bits: int = 4, compresslevel: int = 1) -> bytes:
    """The gzip-compressed ``.spz`` (version 2 or 3) encoding of ``g``.

    ``compresslevel`` 1 (default) is about 7x faster than zlib's default 6, which the reference
    writer uses, for files about 3 % larger (the quantised bytes leave little for deeper searches).
    """
    if version not in (2, 3):
        raise InputError(f".spz version {version} cannot be written; versions 2 and 3 can.",
                         "Use version 2 (widest reader support) or 3 (more accurate rotations).")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise InputError(f"SH quantisation bits must be 1..8, got {sh1_bits} and {sh_rest_bits}.", "Use the defaults 5 and 4.")
    a = GaussianArrays.of(g)
    n, k = a.sh.shape[:2]
    means, rots, sh = a.means, a.rotations, a.sh
    if convert_axes:
        means, rots, sh = _flip_arrays(means, rots, sh)
    fb = _fractional_bits(means)
    fixed = _round_half_away(means.astype(np.float64) * (1 << fb)).astype(np.int64)
    pos = (fixed & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(n, 3, 4)[:, :, :3].reshape(-1)
    alphas = _u8(a.opacities * 255.0)
    colors = _u8(sh[:, 0].astype(np.float64) * (COLOR_SCALE * 255.0) + 127.5)
    scales = _u8((np.log(a.scales.astype(np.float64)) + 10.0) * 16.0)
    q = rots[:, [1, 2, 3, 0]].astype(np.float64)  # xyzw, the order the spec's packers index
    q /= np.sqrt((q * q).sum(1, keepdims=True))
    if version >= 3:
        rot = _pack_smallest_three(q)
    else:
        q = np.where(q[:, 3:4] < 0, -q, q)
        rot = _u8(q[:, :3] * 127.5 + 127.5)
    parts = [struct.pack("<IIIBBBB", SPZ_MAGIC, version, n, int(round(math.sqrt(k))) - 1, fb, 0, 0),
             pos.tobytes(), alphas.tobytes(), colors.tobytes(), scales.tobytes(), rot.tobytes()]
    if k > 1:
        v = _round_half_away(sh[:, 1:] * np.float32(128.0)) + np.float32(128.0)  # x * 128 is exact in float32
        bucket = np.full((k - 1, 1), 1 << (8 - sh_rest_bits), np.float32)
        bucket[:3] = 1 << (8 - sh1_bits)
        v = np.floor((v + bucket // 2) / bucket) * bucket
        parts.append(np.clip(v, 0, 255).astype(np.uint8).tobytes())
    return gzip.compress(b"".join(parts), compresslevel=compresslevel, mtime=0)


def write_spz(g: Gaussians, path: str | os.PathLike, version: int = 2, convert_axes: bool = True,
              sh1_bits: int = 5, sh_rest_bits: int = 4, compresslevel: int = 1) -> Path:
    """Write ``g`` as ``.spz`` (version 2 by default, the one every reader supports), atomically."""
    data = spz_bytes(g, version, convert_axes, sh1_bits, sh_rest_bits, compresslevel)
    with atomic_writer(path, "wb") as f:
        f.write(data)
    return Path(path)


def _zstd_decompress(path: Path, chunk: bytes, size: int) -> bytes:
    try:
        import zstandard  # optional; PyPI wheel, no build
        return zstandard.ZstdDecompressor().decompress(chunk, max_output_size=size)
    except ImportError:
        pass
    try:
        from compression import zstd  # Python >= 3.14
        return zstd.decompress(chunk)
    except ImportError:
        raise file_error(path, ".spz version 4 is zstd-compressed and no zstd decoder is installed.",
                         "pip install zstandard, or re-save the file as .spz version 2/3 or .ply.") from None


def _attribute_sizes(n: int, version: int, sh_degree: int) -> list[int]:
    pos = n * 3 * (2 if version == 1 else 3)
    rot = n * (4 if version >= 3 else 3)
    return [pos, n, n * 3, n * 3, rot, n * 3 * ((sh_degree + 1) ** 2 - 1)]


def _legacy_streams(p: Path, data: bytes):
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise file_error(p, f"the gzip stream is damaged ({e}).", _HINT) from e
    if len(raw) < 16:
        raise file_error(p, f"the .spz header needs 16 bytes, the decompressed data has {len(raw)}.", _HINT)
    magic, version, n, deg, fb, flags, _ = struct.unpack_from("<IIIBBBB", raw)
    if magic != SPZ_MAGIC:
        raise file_error(p, f"bad .spz magic 0x{magic:08x} (expected 0x{SPZ_MAGIC:08x}, 'NGSP').", _HINT)
    if not 1 <= version <= 3:
        raise file_error(p, f"gzip-wrapped .spz of version {version}; versions 1-3 use gzip.",
                         "The file is corrupt or from an unknown writer.")
    sizes = _check_header(p, n, deg, fb, version)
    need = 16 + sum(sizes)
    if len(raw) < need:
        raise file_error(p, f"{n} Gaussians announced, which need {need} bytes; the data has {len(raw)}.", _HINT)
    if len(raw) > need and not flags & 0x2:
        raise file_error(p, f"{len(raw) - need} unexpected bytes after the Gaussians (and no extensions flag).", _HINT)
    streams, off = [], 16
    for s in sizes:
        streams.append(raw[off:off + s])
        off += s
    return version, n, deg, fb, flags, streams


def _check_header(p: Path, n: int, deg: int, fb: int, version: int) -> list[int]:
    if n == 0:
        raise file_error(p, "the file holds 0 Gaussians.", "Export a non-empty splat.")
    if deg > 4:
        raise file_error(p, f"SH degree {deg} (the spec allows 0..4).", _HINT)
    if fb > 23:
        raise file_error(p, f"{fb} fractional bits for 24-bit positions.", _HINT)
    return _attribute_sizes(n, version, deg)


def _ngsp_streams(p: Path, data: bytes):
    if len(data) < 32:
        raise file_error(p, f"the version-4 header needs 32 bytes, the file has {len(data)}.", _HINT)
    magic, version, n, deg, fb, flags, nstreams, toc = struct.unpack_from("<IIIBBBBI", data)
    if version != 4:
        raise file_error(p, f"unsupported .spz version {version} in a plain (zstd) header; readable: 1-4.",
                         "Convert it with a newer spz tool to version 3 or 4.")
    sizes = _check_header(p, n, deg, fb, version)
    sizes = [s for s in sizes if s]
    if nstreams != len(sizes):
        raise file_error(p, f"{nstreams} attribute streams, but {len(sizes)} expected for SH degree {deg}.", _HINT)
    if toc < 32 or toc + 16 * nstreams > len(data):
        raise file_error(p, "the stream table lies outside the file.", _HINT)
    off = toc + 16 * nstreams
    streams = []
    for i, size in enumerate(sizes):
        csize, usize = struct.unpack_from("<QQ", data, toc + 16 * i)
        if usize != size or off + csize > len(data):
            raise file_error(p, f"attribute stream {i} has inconsistent sizes (file too short or corrupt).", _HINT)
        chunk = _zstd_decompress(p, data[off:off + csize], size)
        if len(chunk) != size:
            raise file_error(p, f"attribute stream {i} decompressed to {len(chunk)} bytes, expected {size}.", _HINT)
        streams.append(chunk)
        off += csize
    if deg == 0:
        streams.append(b"")
    return version, n, deg, fb, flags, streams


def read_spz(path: str | os.PathLike, convert_axes: bool = True) -> Gaussians:
    """Read an ``.spz`` (versions 1-4) into ``Gaussians``; see the module docstring for ``convert_axes``."""
    p = Path(path)
    data = read_bytes(p, "spz")
    if data[:2] == b"\x1f\x8b":
        version, n, deg, fb, flags, streams = _legacy_streams(p, data)
    elif data[:4] == struct.pack("<I", SPZ_MAGIC):
        version, n, deg, fb, flags, streams = _ngsp_streams(p, data)
    else:
        raise file_error(p, "not an .spz file (neither gzip-compressed nor starting with 'NGSP').", _HINT)
    pos_b, alpha_b, col_b, scale_b, rot_b, sh_b = (np.frombuffer(s, np.uint8) for s in streams)
    if version == 1:
        means = np.frombuffer(streams[0], "<f2").astype(np.float32).reshape(n, 3)
    else:
        b = pos_b.reshape(n * 3, 3).astype(np.int32)
        fixed = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
        means = (fixed.astype(np.float64) / (1 << fb)).astype(np.float32).reshape(n, 3)
    opac = alpha_b.astype(np.float32) / 255.0
    sh = np.empty((n, (deg + 1) ** 2, 3), np.float32)
    sh[:, 0] = ((col_b.reshape(n, 3).astype(np.float32) / 255.0) - 0.5) / COLOR_SCALE
    if deg:
        sh[:, 1:] = (sh_b.reshape(n, -1, 3).astype(np.float32) - 128.0) / 128.0
    scales = np.exp(scale_b.reshape(n, 3).astype(np.float32) / 16.0 - 10.0)
    if version >= 3:
        q = _unpack_smallest_three(rot_b.reshape(n, 4))
    else:
        xyz = rot_b.reshape(n, 3).astype(np.float32) / 127.5 - 1.0
        q = np.concatenate([xyz, np.sqrt(np.clip(1.0 - (xyz * xyz).sum(1, keepdims=True), 0, None))], 1)
    rots = q[:, [3, 0, 1, 2]]  # xyzw -> wxyz
    if convert_axes:
        means, rots, sh = _flip_arrays(means, rots, sh)
    meta = {"source": p.name, "format": "spz", "spz_version": version, "fractional_bits": fb,
            "antialiased": bool(flags & 0x1), "skipped_extensions": bool(flags & 0x2),
            "axes": "converted RUB -> RDF" if convert_axes else "as stored"}
    return build(p, means, scales, rots, opac, sh, meta)
