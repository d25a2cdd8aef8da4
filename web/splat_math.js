// Math of the splat preview: 3D covariances, the viewer's world->camera transform, the screen-space
// (2D) covariance of a Gaussian (the EWA splatting approximation 3DGS renders with), a back-to-front
// depth order and a robust bounding sphere. No DOM or WebGL: node's test runner checks it.
//
// Conventions: positions in the OpenCV frame (x right, y down, z forward); the viewer camera is an
// OpenCV camera too (lavr_view3d.js OrbitCamera: rotation R with the camera axes as columns, eye).

/** Rotation matrix (rows) of a unit quaternion wxyz. */
export function quatToRows(w, x, y, z) {
  return [
    [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
    [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
    [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ];
}

/**
 * The world covariances R diag(s^2) R^T of every Gaussian, upper triangle per splat:
 * [c00, c01, c02, c11, c12, c22] * N (Float32Array [6N]).
 */
export function covariances(data) {
  const { count, scales: s, rotations: q } = data;
  const out = new Float32Array(6 * count);
  for (let i = 0; i < count; i++) {
    const R = quatToRows(q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]);
    const sx = s[3 * i], sy = s[3 * i + 1], sz = s[3 * i + 2];
    // M = R diag(s): covariance = M M^T
    const m = R.map((r) => [r[0] * sx, r[1] * sy, r[2] * sz]);
    const d = (a, b) => m[a][0] * m[b][0] + m[a][1] * m[b][1] + m[a][2] * m[b][2];
    const o = 6 * i;
    out[o] = d(0, 0); out[o + 1] = d(0, 1); out[o + 2] = d(0, 2);
    out[o + 3] = d(1, 1); out[o + 4] = d(1, 2); out[o + 5] = d(2, 2);
  }
  return out;
}

/**
 * The viewer's projection in device pixels: W (world->camera rotation, rows, Float64Array [9]),
 * t (translation), focal (pixels), width/height (pixels), near (camera-space depth cut).
 */
export function viewOf(cam, pixelWidth, pixelHeight) {
  const R = cam.R, e = cam.eye;
  const W = new Float64Array([R[0][0], R[1][0], R[2][0], R[0][1], R[1][1], R[2][1], R[0][2], R[1][2], R[2][2]]);
  const t = [0, 1, 2].map((r) => -(W[3 * r] * e[0] + W[3 * r + 1] * e[1] + W[3 * r + 2] * e[2]));
  const focal = (pixelHeight / 2) / Math.tan(cam.fovY / 2);
  return { W, t, focal, width: pixelWidth, height: pixelHeight, near: Math.max(1e-4, 1e-3 * (cam.distance ?? 1)) };
}

/** Camera-space position of splat i. */
export function toCamera(view, positions, i, out = [0, 0, 0]) {
  const { W, t } = view;
  const x = positions[3 * i], y = positions[3 * i + 1], z = positions[3 * i + 2];
  out[0] = W[0] * x + W[1] * y + W[2] * z + t[0];
  out[1] = W[3] * x + W[4] * y + W[5] * z + t[1];
  out[2] = W[6] * x + W[7] * y + W[8] * z + t[2];
  return out;
}

/** Pixel position of a camera-space point (y down, origin top-left). */
export const toPixel = (view, c) => [view.width / 2 + (view.focal * c[0]) / c[2], view.height / 2 + (view.focal * c[1]) / c[2]];

/**
 * Screen covariance [a, b, c] (pixels^2: [[a, b], [b, c]]) of splat i at camera point `c`: J W Σ W^T J^T
 * with J the Jacobian of the pinhole projection, plus `blur` on the diagonal (3DGS adds 0.3 so a
 * Gaussian never gets thinner than about a pixel).
 */
export function screenCovariance(view, cov, i, c, blur = 0.3) {
  const { W, focal: f } = view;
  const o = 6 * i;
  const S = [[cov[o], cov[o + 1], cov[o + 2]], [cov[o + 1], cov[o + 3], cov[o + 4]], [cov[o + 2], cov[o + 4], cov[o + 5]]];
  const iz = 1 / c[2];
  const J = [[f * iz, 0, -f * c[0] * iz * iz], [0, f * iz, -f * c[1] * iz * iz]];
  // T = J W (2x3)
  const T = J.map((j) => [0, 1, 2].map((col) => j[0] * W[col] + j[1] * W[3 + col] + j[2] * W[6 + col]));
  const TS = T.map((r) => [0, 1, 2].map((col) => r[0] * S[0][col] + r[1] * S[1][col] + r[2] * S[2][col]));
  const dotr = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  return [dotr(TS[0], T[0]) + blur, dotr(TS[0], T[1]), dotr(TS[1], T[1]) + blur];
}

/** Eigen-decomposition of a 2x2 covariance: major/minor variances and the major axis (unit). */
export function ellipseOf([a, b, c]) {
  const mid = 0.5 * (a + c), rad = Math.hypot(0.5 * (a - c), b);
  const l1 = mid + rad, l2 = Math.max(mid - rad, 1e-6);
  let ax = Math.abs(b) > 1e-12 ? [b, l1 - a] : a >= c ? [1, 0] : [0, 1];
  const n = Math.hypot(ax[0], ax[1]);
  ax = [ax[0] / n, ax[1] / n];
  return { major: l1, minor: l2, axis: ax };
}

/**
 * Indices of the splats in front of the viewer (depth > near), sorted far to near, by a 16-bit
 * counting sort of the camera depth. Returns {order: Uint32Array (owned by `scratch`), count}.
 * `subset` (optional Uint32Array) limits the sort to those splats.
 */
export function depthOrder(view, positions, total, subset = null, scratch = {}) {
  const n = subset ? subset.length : total;
  if (!scratch.depth || scratch.depth.length < n) {
    scratch.depth = new Float32Array(n);
    scratch.keys = new Uint16Array(n);
    scratch.front = new Uint32Array(n);
    scratch.order = new Uint32Array(n);
    scratch.counts = new Uint32Array(65536);
  }
  const { depth, keys, front, order, counts } = scratch;
  const W6 = view.W[6], W7 = view.W[7], W8 = view.W[8], tz = view.t[2], near = view.near;
  let m = 0, lo = Infinity, hi = -Infinity;
  for (let k = 0; k < n; k++) {
    const i = subset ? subset[k] : k;
    const z = W6 * positions[3 * i] + W7 * positions[3 * i + 1] + W8 * positions[3 * i + 2] + tz;
    if (!(z > near)) continue;
    depth[m] = z;
    const zf = depth[m]; // bounds of the stored (float32) depths, so every key lands in 0..65535
    front[m++] = i;
    if (zf < lo) lo = zf;
    if (zf > hi) hi = zf;
  }
  counts.fill(0);
  const k16 = hi > lo ? 65535 / (hi - lo) : 0;
  for (let k = 0; k < m; k++) {
    const key = 65535 - Math.min(65535, Math.max(0, Math.floor((depth[k] - lo) * k16))); // far first
    keys[k] = key;
    counts[key]++;
  }
  for (let b = 1; b < 65536; b++) counts[b] += counts[b - 1];
  for (let k = m - 1; k >= 0; k--) order[--counts[keys[k]]] = front[k];
  return { order, count: m };
}

/** Every `ceil(count / max)`-th index (evenly spread), or null when all `count` fit in `max`. */
export function subsample(count, max) {
  if (count <= max) return null;
  const out = new Uint32Array(max);
  const step = count / max;
  for (let k = 0; k < max; k++) out[k] = Math.min(count - 1, Math.floor(k * step));
  return out;
}

/**
 * Centre and radius that hold the bulk of the splats: per-axis 2nd..98th percentiles of up to 20000
 * sampled positions (a few far-off floaters would otherwise shrink the scene to a dot).
 */
export function robustBounds(positions, count) {
  const step = Math.max(1, Math.floor(count / 20000));
  const axes = [[], [], []];
  for (let i = 0; i < count; i += step) for (let a = 0; a < 3; a++) axes[a].push(positions[3 * i + a]);
  const lo = [], hi = [];
  for (let a = 0; a < 3; a++) {
    const v = Float64Array.from(axes[a]).sort();
    lo.push(v[Math.floor(0.02 * (v.length - 1))]);
    hi.push(v[Math.ceil(0.98 * (v.length - 1))]);
  }
  const center = [0, 1, 2].map((a) => 0.5 * (lo[a] + hi[a]));
  const radius = Math.max(0.5 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]), 1e-3);
  return { center, radius, lo, hi };
}
