// Gaussian splat files for the in-node preview: 3DGS .ply, antimatter15 .splat, Niantic .spz
// (versions 1-3, gzip) and LaVR's sequence manifest. No ComfyUI or DOM imports, so node's test runner
// checks it against lavr_core's readers (tests/e2e/splat_web.test.mjs).
//
// Every parser returns a SplatData in LaVR's storage conventions (lavr_core/gaussians/types.py):
//   count       number of Gaussians
//   positions   Float32Array [3N] world xyz (OpenCV frame: x right, y down, z forward)
//   scales      Float32Array [3N] linear standard deviations
//   rotations   Float32Array [4N] unit quaternions wxyz
//   colors      Uint8Array   [4N] view-independent colour (0.5 + SH_C0 * DC, clamped) and opacity, * 255
//   shDegree    SH degree in the file (the preview draws the base colour only)
//   format      "ply" | "splat" | "spz"

export const SH_C0 = 0.28209479177387814;
export const MANIFEST_FORMAT = "lavr.gaussian_sequence";

export class SplatParseError extends Error {}

const PLY_TYPES = {
  char: ["Int8", 1], int8: ["Int8", 1], uchar: ["Uint8", 1], uint8: ["Uint8", 1],
  short: ["Int16", 2], int16: ["Int16", 2], ushort: ["Uint16", 2], uint16: ["Uint16", 2],
  int: ["Int32", 4], int32: ["Int32", 4], uint: ["Uint32", 4], uint32: ["Uint32", 4],
  float: ["Float32", 4], float32: ["Float32", 4], double: ["Float64", 8], float64: ["Float64", 8],
};

const toU8 = (v) => (v <= 0 ? 0 : v >= 1 ? 255 : Math.floor(v * 255 + 0.5));
const sigmoid = (x) => 1 / (1 + Math.exp(-x));

function emptyData(count, format) {
  if (!(count > 0)) throw new SplatParseError("the file holds no Gaussians");
  return {
    count, format, shDegree: 0,
    positions: new Float32Array(3 * count), scales: new Float32Array(3 * count),
    rotations: new Float32Array(4 * count), colors: new Uint8Array(4 * count),
  };
}

/** Normalise quaternion i in place (wxyz); a zero one becomes the identity. */
function normaliseQuat(q, i) {
  const o = 4 * i;
  const n = Math.hypot(q[o], q[o + 1], q[o + 2], q[o + 3]);
  if (!(n > 1e-12)) { q[o] = 1; q[o + 1] = q[o + 2] = q[o + 3] = 0; return; }
  const s = q[o] < 0 ? -1 / n : 1 / n; // w >= 0, as lavr_core stores them
  q[o] *= s; q[o + 1] *= s; q[o + 2] *= s; q[o + 3] *= s;
}

/** Split a PLY into its header fields and where the body starts. */
export function parsePlyHeader(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (u8.length < 4 || String.fromCharCode(u8[0], u8[1], u8[2]) !== "ply") throw new SplatParseError("not a PLY file (no 'ply' magic)");
  const limit = Math.min(u8.length, 1 << 20);
  const text = new TextDecoder("latin1").decode(u8.subarray(0, limit));
  const m = /end_header[ \t]*\r?\n/.exec(text);
  if (!m) throw new SplatParseError("the PLY header never ends (no end_header line)");
  let format = null;
  const elements = [];
  for (const raw of text.slice(0, m.index).split(/\r?\n/).slice(1)) {
    const tok = raw.trim().split(/\s+/);
    if (!tok[0] || tok[0] === "comment" || tok[0] === "obj_info") continue;
    if (tok[0] === "format") format = tok[1];
    else if (tok[0] === "element") elements.push({ name: tok[1], count: parseInt(tok[2], 10), props: [] });
    else if (tok[0] === "property") {
      const el = elements[elements.length - 1];
      if (!el) throw new SplatParseError("PLY property before any element");
      if (tok[1] === "list") el.props.push({ name: tok[4], type: null });
      else if (PLY_TYPES[tok[1]]) el.props.push({ name: tok[2], type: tok[1] });
      else throw new SplatParseError(`unknown PLY property type '${tok[1]}'`);
    } else throw new SplatParseError(`unknown PLY header line '${raw.trim()}'`);
  }
  if (!["ascii", "binary_little_endian", "binary_big_endian"].includes(format)) throw new SplatParseError(`unknown PLY format '${format}'`);
  return { format, elements, bodyOffset: m.index + m[0].length };
}

/** Read every vertex property into a Float64Array-free column map {name: (i) => value}. */
function plyVertexColumns(buffer) {
  const u8 = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const { format, elements, bodyOffset } = parsePlyHeader(u8);
  const vi = elements.findIndex((e) => e.name === "vertex");
  if (vi < 0) throw new SplatParseError("the PLY has no 'vertex' element");
  const vertex = elements[vi];
  if (vertex.props.some((p) => p.type === null)) throw new SplatParseError("the vertex element has list properties");
  const n = vertex.count;
  const names = vertex.props.map((p) => p.name);
  if (format === "ascii") {
    const lines = new TextDecoder("latin1").decode(u8.subarray(bodyOffset)).split("\n");
    const skip = elements.slice(0, vi).reduce((s, e) => s + e.count, 0);
    const cols = Object.fromEntries(names.map((nm) => [nm, new Float64Array(n)]));
    for (let i = 0; i < n; i++) {
      const tok = (lines[skip + i] ?? "").trim().split(/\s+/);
      if (tok.length < names.length) throw new SplatParseError(`${n} vertices announced, vertex line ${i} is incomplete (truncated file?)`);
      names.forEach((nm, j) => { cols[nm][i] = Number(tok[j]); });
    }
    return { n, cols };
  }
  const little = format === "binary_little_endian";
  let offset = bodyOffset;
  for (const e of elements.slice(0, vi)) {
    if (e.props.some((p) => p.type === null)) throw new SplatParseError(`the element '${e.name}' before the vertices has list properties`);
    offset += e.count * e.props.reduce((s, p) => s + PLY_TYPES[p.type][1], 0);
  }
  const stride = vertex.props.reduce((s, p) => s + PLY_TYPES[p.type][1], 0);
  if (u8.length - offset < n * stride) {
    throw new SplatParseError(`${n} vertices announced but only ${Math.max(0, Math.floor((u8.length - offset) / stride))} present (truncated file?)`);
  }
  const cols = {};
  if (little && vertex.props.every((p) => PLY_TYPES[p.type][0] === "Float32")) {
    // the usual 3DGS layout: one aligned copy viewed as float32 rows
    const copy = new Uint8Array(n * stride);
    copy.set(u8.subarray(offset, offset + n * stride));
    const rows = new Float32Array(copy.buffer);
    const k = names.length;
    names.forEach((nm, j) => { cols[nm] = { k, j, rows }; });
    return { n, cols, strided: true };
  }
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  let at = 0;
  for (const p of vertex.props) {
    const [kind, size] = PLY_TYPES[p.type];
    const col = new Float64Array(n);
    const get = dv[`get${kind}`].bind(dv);
    for (let i = 0, o = offset + at; i < n; i++, o += stride) col[i] = size === 1 ? get(o) : get(o, little);
    cols[p.name] = col;
    at += size;
  }
  return { n, cols };
}

/**
 * A 3DGS .ply (x, y, z, f_dc_*, opacity logit, scale_* log, rot_* wxyz), or a plain coloured point
 * cloud (x, y, z and optional red/green/blue): points get small round Gaussians of `pointScale`
 * (default: 0.2% of the bounding-box diagonal).
 */
export function parsePly(buffer, { pointScale = null } = {}) {
  const { n, cols, strided } = plyVertexColumns(buffer);
  const col = (name) => {
    const c = cols[name];
    if (!c) return null;
    if (strided) { const { k, j, rows } = c; return (i) => rows[i * k + j]; }
    return (i) => c[i];
  };
  for (const r of ["x", "y", "z"]) if (!cols[r]) throw new SplatParseError(`the PLY vertices have no '${r}' property`);
  const d = emptyData(n, "ply");
  const [x, y, z] = ["x", "y", "z"].map(col);
  for (let i = 0; i < n; i++) { d.positions[3 * i] = x(i); d.positions[3 * i + 1] = y(i); d.positions[3 * i + 2] = z(i); }
  const isSplat = ["f_dc_0", "opacity", "scale_0", "rot_0"].every((k) => cols[k]);
  if (isSplat) {
    const dc = [0, 1, 2].map((c) => col(`f_dc_${c}`));
    const op = col("opacity");
    const sc = [0, 1, 2].map((c) => col(`scale_${c}`));
    const rt = [0, 1, 2, 3].map((c) => col(`rot_${c}`));
    if (dc.some((f) => !f) || sc.some((f) => !f) || rt.some((f) => !f)) throw new SplatParseError("the PLY has some but not all 3DGS properties (f_dc_0..2, scale_0..2, rot_0..3)");
    const rest = Object.keys(cols).filter((k) => k.startsWith("f_rest_")).length;
    d.shDegree = Math.max(0, Math.round(Math.sqrt(rest / 3 + 1)) - 1);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) {
        d.colors[4 * i + c] = toU8(0.5 + SH_C0 * dc[c](i));
        d.scales[3 * i + c] = Math.exp(sc[c](i));
      }
      d.colors[4 * i + 3] = toU8(sigmoid(op(i)));
      for (let c = 0; c < 4; c++) d.rotations[4 * i + c] = rt[c](i);
      normaliseQuat(d.rotations, i);
    }
    return d;
  }
  // a point cloud: colours from red/green/blue (0..255 integers or 0..1 floats), round Gaussians
  const rgb = ["red", "green", "blue"].map(col);
  const intColour = ["red", "green", "blue"].every((k) => cols[k]) && Math.max(...Array.from({ length: Math.min(n, 1000) }, (_, i) => rgb[0](i))) > 1.0001;
  let s = pointScale;
  if (!(s > 0)) {
    const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (let i = 0; i < 3 * n; i++) { const a = i % 3; lo[a] = Math.min(lo[a], d.positions[i]); hi[a] = Math.max(hi[a], d.positions[i]); }
    s = Math.max(2e-3 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]), 1e-6);
  }
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      d.colors[4 * i + c] = rgb[c] ? toU8(intColour ? rgb[c](i) / 255 : rgb[c](i)) : 200;
      d.scales[3 * i + c] = s;
    }
    d.colors[4 * i + 3] = 255;
    d.rotations[4 * i] = 1;
  }
  return d;
}

/** An antimatter15 .splat: 32-byte records (3 f32 position, 3 f32 linear scale, rgba u8, quaternion u8 wxyz). */
export function parseSplat(buffer) {
  const u8 = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  if (u8.length % 32) throw new SplatParseError(`${u8.length} bytes is not a whole number of 32-byte .splat records (truncated file?)`);
  const n = u8.length / 32;
  const d = emptyData(n, "splat");
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  for (let i = 0; i < n; i++) {
    const o = 32 * i;
    for (let c = 0; c < 3; c++) {
      d.positions[3 * i + c] = dv.getFloat32(o + 4 * c, true);
      d.scales[3 * i + c] = dv.getFloat32(o + 12 + 4 * c, true);
    }
    for (let c = 0; c < 4; c++) {
      d.colors[4 * i + c] = u8[o + 24 + c];
      d.rotations[4 * i + c] = (u8[o + 28 + c] - 128) / 128;
    }
    normaliseQuat(d.rotations, i);
  }
  return d;
}

const SPZ_MAGIC = 0x5053474e;
const SPZ_COLOR_SCALE = 0.15;

/**
 * A decompressed Niantic .spz payload (versions 1-3). The spec stores right-up-back axes; like
 * lavr_core's reader (convert_axes=True) this flips y and z back to OpenCV's right-down-front.
 */
export function parseSpzPayload(raw) {
  const u8 = raw instanceof Uint8Array ? raw : new Uint8Array(raw);
  if (u8.length < 16) throw new SplatParseError("the .spz header is truncated");
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const magic = dv.getUint32(0, true), version = dv.getUint32(4, true), n = dv.getUint32(8, true);
  const deg = u8[12], fb = u8[13];
  if (magic !== SPZ_MAGIC) throw new SplatParseError("not an .spz payload (bad magic)");
  if (!(version >= 1 && version <= 3)) throw new SplatParseError(`.spz version ${version} is not supported by the preview (1-3 are)`);
  if (deg > 4) throw new SplatParseError(`.spz SH degree ${deg} is out of range`);
  const posBytes = version === 1 ? 6 : 9, rotBytes = version >= 3 ? 4 : 3;
  const shCoeffs = ((deg + 1) ** 2 - 1) * 3;
  const need = 16 + n * (posBytes + 1 + 3 + 3 + rotBytes + shCoeffs);
  if (u8.length < need) throw new SplatParseError(`${n} points announced but the .spz payload is truncated (${u8.length} of ${need} bytes)`);
  const d = emptyData(n, "spz");
  d.shDegree = deg;
  let o = 16;
  const flip = [1, -1, -1];
  if (version === 1) {
    for (let i = 0; i < 3 * n; i++) d.positions[i] = halfToFloat(dv.getUint16(o + 2 * i, true)) * flip[i % 3];
  } else {
    const scale = 1 / (1 << fb);
    for (let i = 0; i < 3 * n; i++) {
      const b = o + 3 * i;
      let v = u8[b] | (u8[b + 1] << 8) | (u8[b + 2] << 16);
      if (v & 0x800000) v -= 1 << 24;
      d.positions[i] = v * scale * flip[i % 3];
    }
  }
  o += n * posBytes;
  for (let i = 0; i < n; i++) d.colors[4 * i + 3] = u8[o + i];
  o += n;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const dc = (u8[o + 3 * i + c] / 255 - 0.5) / SPZ_COLOR_SCALE;
      d.colors[4 * i + c] = toU8(0.5 + SH_C0 * dc);
    }
  }
  o += 3 * n;
  for (let i = 0; i < 3 * n; i++) d.scales[i] = Math.exp(u8[o + i] / 16 - 10);
  o += 3 * n;
  const q = d.rotations;
  for (let i = 0; i < n; i++) {
    let x, y, z, w;
    if (version >= 3) {
      let comp = (u8[o + 4 * i] | (u8[o + 4 * i + 1] << 8) | (u8[o + 4 * i + 2] << 16) | (u8[o + 4 * i + 3] << 24)) >>> 0;
      const largest = comp >>> 30;
      const v = [0, 0, 0, 0];
      let sum = 0;
      for (let k = 3; k >= 0; k--) {
        if (k === largest) continue;
        const mag = comp & 511, neg = (comp >>> 9) & 1;
        v[k] = (Math.SQRT1_2 * mag / 511) * (neg ? -1 : 1);
        sum += v[k] * v[k];
        comp >>>= 10;
      }
      v[largest] = Math.sqrt(Math.max(0, 1 - sum));
      [x, y, z, w] = v;
    } else {
      x = u8[o + 3 * i] / 127.5 - 1; y = u8[o + 3 * i + 1] / 127.5 - 1; z = u8[o + 3 * i + 2] / 127.5 - 1;
      w = Math.sqrt(Math.max(0, 1 - x * x - y * y - z * z));
    }
    // the y/z flip conjugates the rotation: (w, x, y, z) -> (w, x, -y, -z)
    q[4 * i] = w; q[4 * i + 1] = x; q[4 * i + 2] = -y; q[4 * i + 3] = -z;
    normaliseQuat(q, i);
  }
  return d;
}

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** gunzip with the platform's DecompressionStream (browsers, node >= 18). */
export async function gunzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A whole .spz file (gzip-wrapped, versions 1-3); version 4 (zstd) gets an error that says so. */
export async function parseSpz(buffer) {
  const u8 = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  if (u8[0] === 0x1f && u8[1] === 0x8b) return parseSpzPayload(await gunzip(u8));
  if (u8.length >= 8 && new DataView(u8.buffer, u8.byteOffset).getUint32(0, true) === SPZ_MAGIC) {
    throw new SplatParseError(".spz version 4 (zstd) cannot be previewed here; save as .ply, .splat or .spz v2/v3");
  }
  throw new SplatParseError("not an .spz file (not gzip-compressed)");
}

/** "ply" | "splat" | "spz" | "json" from a file name, or null. */
export function formatOfName(name) {
  const m = /\.([A-Za-z0-9]+)$/.exec(String(name ?? ""));
  const ext = m ? m[1].toLowerCase() : "";
  return ["ply", "splat", "spz", "json"].includes(ext) ? ext : null;
}

/** Parse any supported splat file by format name. */
export async function parseSplatFile(buffer, format) {
  if (format === "ply") return parsePly(buffer);
  if (format === "splat") return parseSplat(buffer);
  if (format === "spz") return parseSpz(buffer);
  throw new SplatParseError(`cannot preview a '${format}' file (ply, splat and spz can be)`);
}

/**
 * A LaVR sequence manifest (lavr_core/gaussians/io_sequence.py) -> {fileFormat, frames: [{file, time,
 * gaussians}], static: {file, gaussians} | null}. File names must be plain names (no folders).
 */
export function parseManifest(json) {
  const m = typeof json === "string" ? JSON.parse(json) : json;
  if (!m || typeof m !== "object" || m.format !== MANIFEST_FORMAT) throw new SplatParseError("not a LaVR Gaussian sequence manifest");
  const plain = (f) => typeof f === "string" && f.length > 0 && !/[\\/]/.test(f) && f !== "." && f !== "..";
  if (!Array.isArray(m.frames) || !m.frames.length) throw new SplatParseError("the manifest lists no frames");
  const frames = [...m.frames].sort((a, b) => a.index - b.index).map((f) => {
    if (!plain(f?.file)) throw new SplatParseError(`the manifest names '${f?.file}', which is not a plain file name`);
    return { file: f.file, time: Number(f.time), gaussians: f.gaussians ?? null };
  });
  let stat = null;
  if (m.static) {
    if (!plain(m.static.file)) throw new SplatParseError(`the manifest names '${m.static.file}', which is not a plain file name`);
    stat = { file: m.static.file, gaussians: m.static.gaussians ?? null };
  }
  return { fileFormat: m.file_format ?? formatOfName(frames[0].file), frames, static: stat };
}

/** One SplatData holding `a` then `b` (a timestep = the static set plus that frame's set). */
export function concatSplats(a, b) {
  if (!a) return b;
  if (!b) return a;
  const d = emptyData(a.count + b.count, b.format);
  d.shDegree = Math.max(a.shDegree, b.shDegree);
  for (const k of ["positions", "scales", "rotations", "colors"]) { d[k].set(a[k], 0); d[k].set(b[k], a[k].length); }
  return d;
}
