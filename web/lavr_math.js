// Camera math for the LaVR trajectory editor: small vectors, rotations, quaternions (wxyz) and the
// keyframe interpolation the backend uses (centripetal Catmull-Rom positions, squad/slerp rotations).
//
// Conventions are the pack's (lavr_core/conventions.py): OpenCV camera-to-world poses (x right,
// y down, z forward), right-handed; quaternions w, x, y, z with w >= 0; 3x3 matrices as arrays of
// three rows. Pure functions only: no DOM, no ComfyUI, so node can test this file directly.

export const EPS = 1e-12;

// ------------------------------------------------------------------------------------ vectors
export const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
export const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
export const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
export const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
export const cross = (a, b) => [
  a[1] * b[2] - a[2] * b[1],
  a[2] * b[0] - a[0] * b[2],
  a[0] * b[1] - a[1] * b[0],
];
export const norm = (a) => Math.hypot(a[0], a[1], a[2]);
export const dist = (a, b) => norm(sub(a, b));
export const lerp = (a, b, t) => [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
export function normalize(a) {
  const n = norm(a);
  return n > EPS ? scale(a, 1 / n) : [0, 0, 0];
}
export const isFiniteVec = (a, n = 3) =>
  Array.isArray(a) && a.length === n && a.every((v) => typeof v === "number" && Number.isFinite(v));

// ------------------------------------------------------------------------------------ 3x3 rotations
/** Matrix-vector product for a 3x3 given as rows. */
export const matVec = (R, v) => [dot(R[0], v), dot(R[1], v), dot(R[2], v)];
/** Transpose-vector product (R^T v): world -> camera for a c2w rotation. */
export const matTVec = (R, v) => [
  R[0][0] * v[0] + R[1][0] * v[1] + R[2][0] * v[2],
  R[0][1] * v[0] + R[1][1] * v[1] + R[2][1] * v[2],
  R[0][2] * v[0] + R[1][2] * v[1] + R[2][2] * v[2],
];
/** 3x3 rotation from its three columns. */
export const fromColumns = (x, y, z) => [
  [x[0], y[0], z[0]],
  [x[1], y[1], z[1]],
  [x[2], y[2], z[2]],
];
export const column = (R, j) => [R[0][j], R[1][j], R[2][j]];

/** Rotation and position of a row-major 4x4 camera-to-world given as 16 numbers. */
export function splitC2W(m16) {
  return {
    R: [
      [m16[0], m16[1], m16[2]],
      [m16[4], m16[5], m16[6]],
      [m16[8], m16[9], m16[10]],
    ],
    t: [m16[3], m16[7], m16[11]],
  };
}

/** Row-major 16 numbers of the camera-to-world with rotation R (rows) and position t. */
export function makeC2W(R, t) {
  return [R[0][0], R[0][1], R[0][2], t[0], R[1][0], R[1][1], R[1][2], t[1], R[2][0], R[2][1], R[2][2], t[2], 0, 0, 0, 1];
}

/** World direction that appears up in images: OpenCV's y points down, so up is -y. */
export const WORLD_UP = [0, -1, 0];

/**
 * Rotation (c2w, OpenCV) of a camera at `eye` looking at `target`, built exactly like
 * lavr_core.camera.transforms.look_at: z = forward, x = -up x z, y = z x x. Returns null when the
 * camera sits on its target or looks along `up` (the backend rejects those keyframes too).
 */
export function lookAtRotation(eye, target, up = WORLD_UP) {
  const f = sub(target, eye);
  const fn = norm(f);
  if (!(fn > EPS)) return null;
  const z = scale(f, 1 / fn);
  const x0 = cross(scale(up, -1), z);
  const xn = norm(x0);
  if (!(xn > 1e-9)) return null;
  const x = scale(x0, 1 / xn);
  const y = cross(z, x);
  return fromColumns(x, y, z);
}

// ------------------------------------------------------------------------------------ quaternions
export function quatNormalize(q) {
  const n = Math.hypot(q[0], q[1], q[2], q[3]);
  if (!(n > EPS)) return [1, 0, 0, 0];
  const s = q[0] < 0 ? -1 / n : 1 / n;
  return [q[0] * s, q[1] * s, q[2] * s, q[3] * s];
}

/** Rotation matrix (rows) of a quaternion wxyz of any non-zero norm. */
export function quatToMatrix(q) {
  const [w, x, y, z] = quatNormalize(q);
  return [
    [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
    [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
    [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ];
}

/** Quaternion wxyz (w >= 0) of a rotation matrix, using the largest pivot for accuracy. */
export function matrixToQuat(R) {
  const [[m00, m01, m02], [m10, m11, m12], [m20, m21, m22]] = R;
  const tr = m00 + m11 + m22;
  const cands = [
    [1 + tr, [1 + tr, m21 - m12, m02 - m20, m10 - m01]],
    [1 + m00 - m11 - m22, [m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20]],
    [1 - m00 + m11 - m22, [m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21]],
    [1 - m00 - m11 + m22, [m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22]],
  ];
  let best = cands[0];
  for (const c of cands) if (c[0] > best[0]) best = c;
  return quatNormalize(best[1]);
}

/**
 * Spherical linear interpolation, t in [0, 1]. `shortest` flips b into a's hemisphere first (plain
 * slerp); squad's inner slerps pass false and follow the arc as given, as the backend does.
 */
export function slerp(a, b, t, shortest = true) {
  let d = a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3];
  let bb = b;
  if (shortest && d < 0) {
    d = -d;
    bb = [-b[0], -b[1], -b[2], -b[3]];
  }
  const th = Math.acos(Math.max(-1, Math.min(1, d)));
  const s = Math.sin(th);
  // (nearly) the same rotation: the normalised lerp is exact to float precision
  const wa = s < 1e-9 ? 1 - t : Math.sin((1 - t) * th) / s;
  const wb = s < 1e-9 ? t : Math.sin(t * th) / s;
  const q = [0, 1, 2, 3].map((i) => wa * a[i] + wb * bb[i]);
  const n = Math.hypot(...q);
  return q.map((v) => v / n);
}

export const quatMultiply = (a, b) => [
  a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
  a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
  a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
  a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0],
];
export const quatConjugate = (q) => [q[0], -q[1], -q[2], -q[3]];

/** Unit quaternion -> half-angle rotation vector (q = (cos a, sin a n) -> a n). */
export function quatLog(q) {
  const v = [q[1], q[2], q[3]];
  const n = norm(v);
  if (n < 1e-12) return v;
  return scale(v, Math.atan2(n, q[0]) / n);
}

/** Inverse of quatLog. */
export function quatExp(v) {
  const a = norm(v);
  const sinc = a < 1e-12 ? 1 : Math.sin(a) / a;
  const q = [Math.cos(a), v[0] * sinc, v[1] * sinc, v[2] * sinc];
  const n = Math.hypot(...q);
  return q.map((x) => x / n);
}

/** Angle in radians between two rotations given as quaternions. */
export function quatAngle(a, b) {
  const d = Math.abs(a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3]);
  return 2 * Math.acos(Math.min(1, d));
}

// ------------------------------------------------------------------------------------ intrinsics
/** Focal length in pixels for a horizontal field of view (degrees) over `width` pixels. */
export const focalFromFov = (fovDeg, width) => width / 2 / Math.tan((fovDeg * Math.PI) / 360);
/** Horizontal field of view (degrees) of focal length `fx` over `width` pixels. */
export const fovFromFocal = (fx, width) => (360 / Math.PI) * Math.atan(width / 2 / fx);

// ------------------------------------------------------------------------------------ splines
// These follow lavr_core/camera/interpolate.py step by step so the live path the editor draws is
// the path the backend will build: times are frame numbers, each keyframe interval maps linearly
// onto its spline segment, the first/last keyframe holds outside the keyed range, and values at a
// keyframe's frame are that keyframe exactly.

/** Segment index i (between keys i and i+1) and the fraction in it, for a frame; clamped. */
function segment(frames, frame) {
  const k = frames.length;
  const q = Math.min(Math.max(frame, frames[0]), frames[k - 1]);
  let i = 0;
  while (i < k - 2 && q >= frames[i + 1]) i++;
  const frac = Math.min(Math.max((q - frames[i]) / (frames[i + 1] - frames[i]), 0), 1);
  return { i, frac, q };
}

/** Index of the keyframe exactly at `frame` (after clamping to the keyed range), or -1. */
function exactKey(frames, frame) {
  const q = Math.min(Math.max(frame, frames[0]), frames[frames.length - 1]);
  return frames.indexOf(q);
}

/**
 * Centripetal Catmull-Rom (alpha 0.5) through `pts` keyed at `frames` (ascending), at `frame`.
 * Ends use reflected phantom points (p[-1] = 2 p0 - p1), so two keyframes give a straight line;
 * knot gaps have a tiny floor so repeated points cannot divide by zero.
 */
export function catmullRom(frames, pts, frame, alpha = 0.5) {
  const k = pts.length;
  if (k === 1) return pts[0].slice();
  const ext = [sub(scale(pts[0], 2), pts[1]), ...pts, sub(scale(pts[k - 1], 2), pts[k - 2])];
  let gaps = [];
  for (let j = 0; j + 1 < ext.length; j++) gaps.push(Math.pow(dist(ext[j + 1], ext[j]), alpha));
  const floor = Math.max(Math.max(...gaps) * 1e-9, 1e-12);
  gaps = gaps.map((g) => Math.max(g, floor));
  const key = exactKey(frames, frame);
  if (key >= 0) return pts[key].slice();
  const { i, frac } = segment(frames, frame);
  const [P0, P1, P2, P3] = [ext[i], ext[i + 1], ext[i + 2], ext[i + 3]];
  const t0 = 0, t1 = gaps[i], t2 = t1 + gaps[i + 1], t3 = t2 + gaps[i + 2];
  const u = t1 + frac * gaps[i + 1];
  const mix = (a, b, ta, tb) => add(scale(a, (tb - u) / (tb - ta)), scale(b, (u - ta) / (tb - ta)));
  const A1 = mix(P0, P1, t0, t1), A2 = mix(P1, P2, t1, t2), A3 = mix(P2, P3, t2, t3);
  const B1 = mix(A1, A2, t0, t2), B2 = mix(A2, A3, t1, t3);
  return mix(B1, B2, t1, t2);
}

/** Piecewise-linear positions through `pts` keyed at `frames`. */
export function linearPosition(frames, pts, frame) {
  if (pts.length === 1) return pts[0].slice();
  const { i, frac } = segment(frames, frame);
  return lerp(pts[i], pts[i + 1], frac);
}

export function interpolatePosition(frames, pts, frame, method = "catmull_rom") {
  return method === "linear" ? linearPosition(frames, pts, frame) : catmullRom(frames, pts, frame);
}

/** Unit quaternions with signs flipped so consecutive keys have a non-negative dot product. */
export function alignHemisphere(quats) {
  const out = [quatNormalizeKeepSign(quats[0])];
  for (let i = 1; i < quats.length; i++) {
    const q = quatNormalizeKeepSign(quats[i]), p = out[i - 1];
    out.push(p[0] * q[0] + p[1] * q[1] + p[2] * q[2] + p[3] * q[3] < 0 ? q.map((v) => -v) : q);
  }
  return out;
}

function quatNormalizeKeepSign(q) {
  const n = Math.hypot(...q);
  return q.map((v) => v / n);
}

/** Squad control quaternions s_i = q_i exp(-(log(q_i^-1 q_i+1) + log(q_i^-1 q_i-1)) / 4); ends: q_i. */
export function squadControls(q) {
  const s = q.map((v) => v.slice());
  for (let i = 1; i + 1 < q.length; i++) {
    const inv = quatConjugate(q[i]);
    const t = scale(add(quatLog(quatMultiply(inv, q[i + 1])), quatLog(quatMultiply(inv, q[i - 1]))), -0.25);
    s[i] = quatMultiply(q[i], quatExp(t));
  }
  return s;
}

/** Rotation at `frame` through hemisphere-aligned keyframe quaternions: "slerp" or "squad". */
export function interpolateRotation(frames, quats, frame, method = "squad", controls = null) {
  if (quats.length === 1) return quats[0].slice();
  const key = exactKey(frames, frame);
  if (key >= 0) return quats[key].slice();
  const { i, frac } = segment(frames, frame);
  if (method === "slerp") return slerp(quats[i], quats[i + 1], frac, true);
  const s = controls ?? squadControls(quats);
  const a = slerp(quats[i], quats[i + 1], frac, false);
  const b = slerp(s[i], s[i + 1], frac, false);
  return slerp(a, b, 2 * frac * (1 - frac), false);
}

/** Rotation quaternion of one keyframe: its explicit rotation, or one looking at its look_at. */
export function keyframeQuat(kf) {
  if (Array.isArray(kf.rotation)) return quatNormalize(kf.rotation);
  const R = lookAtRotation(kf.position, kf.look_at);
  return R ? matrixToQuat(R) : null;
}

/**
 * Sample the path a list of keyframes describes, one camera per frame 0 .. frameCount-1.
 * Returns {cameras: [{t, R, fov}], error} where `error` names what makes the keyframes unusable
 * (the backend rejects the same cases) and `cameras` is empty then.
 */
export function sampleKeyframePath(keyframes, frameCount, opts = {}) {
  const fovDefault = opts.fovDeg ?? 60;
  const posMethod = opts.positionInterpolation ?? "catmull_rom";
  const rotMethod = opts.rotationInterpolation ?? "squad";
  const kfs = [...keyframes].sort((a, b) => a.frame - b.frame);
  if (kfs.length < 2) return { cameras: [], error: "needs at least 2 keyframes" };
  for (let i = 1; i < kfs.length; i++) {
    if (kfs[i].frame === kfs[i - 1].frame) return { cameras: [], error: `two keyframes on frame ${kfs[i].frame}` };
  }
  const frames = kfs.map((k) => k.frame);
  const pts = kfs.map((k) => k.position);
  const raw = [];
  for (const k of kfs) {
    const q = keyframeQuat(k);
    if (!q) return { cameras: [], error: `keyframe at frame ${k.frame}: camera sits on its look-at point or looks straight up/down` };
    raw.push(q);
  }
  const quats = alignHemisphere(raw);
  const controls = rotMethod === "squad" ? squadControls(quats) : null;
  const fovs = kfs.map((k) => (typeof k.fov_deg === "number" ? k.fov_deg : fovDefault));
  const cameras = [];
  for (let f = 0; f < frameCount; f++) {
    const t = interpolatePosition(frames, pts, f, posMethod);
    const q = interpolateRotation(frames, quats, f, rotMethod, controls);
    cameras.push({ t, R: quatToMatrix(q), fov: interpolateScalar(frames, fovs, f) });
  }
  return { cameras, error: null };
}

/** Piecewise-linear interpolation of a scalar per keyframe, held constant outside the range. */
export function interpolateScalar(frames, values, frame) {
  if (values.length === 1) return values[0];
  const { i, frac } = segment(frames, frame);
  return values[i] + (values[i + 1] - values[i]) * frac;
}
