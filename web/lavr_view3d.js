// A small perspective 3D view drawn with the canvas 2D API: an orbiting viewer camera, projection,
// picking rays and the drawing primitives the trajectory editor needs (grid, paths, frustums,
// points, handles). No WebGL and no third-party library.
//
// The viewer camera is itself an OpenCV camera (x right, y down, z forward) whose "up" is world -y,
// so the scene's up (OpenCV -y) looks up on screen without mirroring anything.

import {
  add, sub, scale, dot, normalize, lookAtRotation, matTVec, matVec, column, WORLD_UP,
} from "./lavr_math.js";

const NEAR = 1e-3;
const DEG = Math.PI / 180;

export class OrbitCamera {
  constructor() {
    this.target = [0, 0, 1];
    this.yaw = -35 * DEG; // around the up axis
    this.pitch = 25 * DEG; // positive: looking down from above
    this.distance = 6;
    this.fovY = 50 * DEG;
    this.width = 1;
    this.height = 1;
    this.update();
  }

  /** Saved form, stored in editor_state.view (the backend ignores it). */
  toJSON() {
    const r = (v) => Math.round(v * 1e5) / 1e5;
    return { target: this.target.map(r), yaw: r(this.yaw), pitch: r(this.pitch), distance: r(this.distance) };
  }

  fromJSON(v) {
    if (!v || typeof v !== "object") return false;
    const ok = (x) => typeof x === "number" && Number.isFinite(x);
    if (!(Array.isArray(v.target) && v.target.length === 3 && v.target.every(ok))) return false;
    if (!ok(v.yaw) || !ok(v.pitch) || !ok(v.distance) || v.distance <= 0) return false;
    this.target = v.target.slice();
    this.yaw = v.yaw;
    this.pitch = Math.max(-89 * DEG, Math.min(89 * DEG, v.pitch));
    this.distance = v.distance;
    this.update();
    return true;
  }

  setViewport(width, height) {
    this.width = Math.max(width, 1);
    this.height = Math.max(height, 1);
    this.focal = this.height / 2 / Math.tan(this.fovY / 2);
  }

  /** Recompute the viewer pose after target/yaw/pitch/distance changed. */
  update() {
    const cp = Math.cos(this.pitch);
    // offset from target to eye; yaw 0, pitch 0 puts the eye behind the target (looking along +z)
    const off = [
      -Math.sin(this.yaw) * cp * this.distance,
      -Math.sin(this.pitch) * this.distance, // up is -y: a positive pitch lifts the eye
      -Math.cos(this.yaw) * cp * this.distance,
    ];
    this.eye = add(this.target, off);
    this.R = lookAtRotation(this.eye, this.target, WORLD_UP);
    this.setViewport(this.width, this.height);
  }

  orbit(dxPixels, dyPixels) {
    this.yaw += dxPixels * 0.008;
    this.pitch = Math.max(-89 * DEG, Math.min(89 * DEG, this.pitch + dyPixels * 0.008));
    this.update();
  }

  zoom(factor) {
    this.distance = Math.max(1e-3, Math.min(1e5, this.distance * factor));
    this.update();
  }

  /** Move the orbit target with the mouse: the point under the cursor stays under it. */
  pan(dxPixels, dyPixels) {
    const k = this.distance / this.focal;
    const right = column(this.R, 0), down = column(this.R, 1);
    this.target = add(this.target, add(scale(right, -dxPixels * k), scale(down, -dyPixels * k)));
    this.update();
  }

  /** Frame a set of points: orbit target at their centre, distance to see their bounding sphere. */
  fit(points) {
    if (!points.length) return;
    let lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (const p of points) for (let i = 0; i < 3; i++) { lo[i] = Math.min(lo[i], p[i]); hi[i] = Math.max(hi[i], p[i]); }
    this.target = scale(add(lo, hi), 0.5);
    const radius = Math.max(0.5 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]), 0.25);
    this.distance = (radius / Math.tan(this.fovY / 2)) * 1.15;
    this.update();
  }

  /** Viewer-camera coordinates of a world point. */
  toCam(p) {
    return matTVec(this.R, sub(p, this.eye));
  }

  /** Screen position {x, y, z} (CSS pixels, z = depth) of a world point, or null behind the viewer. */
  project(p) {
    const c = this.toCam(p);
    if (c[2] <= NEAR) return null;
    return { x: this.width / 2 + (this.focal * c[0]) / c[2], y: this.height / 2 + (this.focal * c[1]) / c[2], z: c[2] };
  }

  /** World-space ray {origin, dir} through a screen position. */
  ray(x, y) {
    const d = [(x - this.width / 2) / this.focal, (y - this.height / 2) / this.focal, 1];
    return { origin: this.eye.slice(), dir: normalize(matVec(this.R, d)) };
  }

  get forward() {
    return column(this.R, 2);
  }

  /** World point under screen (x, y) on the plane through `point` facing the viewer. */
  pointOnViewPlane(x, y, point) {
    const { origin, dir } = this.ray(x, y);
    const n = this.forward;
    const denom = dot(dir, n);
    if (Math.abs(denom) < 1e-9) return null;
    const t = dot(sub(point, origin), n) / denom;
    return t > 0 ? add(origin, scale(dir, t)) : null;
  }

  /** World length of one screen pixel at the depth of `point`. */
  pixelSize(point) {
    const z = Math.max(this.toCam(point)[2], NEAR);
    return z / this.focal;
  }
}

// ------------------------------------------------------------------------------------ drawing
/** Clip the segment a-b (viewer coordinates) to the near plane; null when wholly behind. */
function clipToNear(a, b) {
  if (a[2] <= NEAR && b[2] <= NEAR) return null;
  if (a[2] > NEAR && b[2] > NEAR) return [a, b];
  const t = (NEAR - a[2]) / (b[2] - a[2]);
  const m = [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, NEAR];
  return a[2] > NEAR ? [a, m] : [m, b];
}

function camToScreen(cam, c) {
  return [cam.width / 2 + (cam.focal * c[0]) / c[2], cam.height / 2 + (cam.focal * c[1]) / c[2]];
}

/** Stroke a world-space polyline, clipped at the viewer's near plane. */
export function strokePolyline(ctx, cam, pts, style = {}) {
  if (pts.length < 2) return;
  ctx.save();
  ctx.strokeStyle = style.color ?? "#fff";
  ctx.lineWidth = style.width ?? 1;
  ctx.globalAlpha = style.alpha ?? 1;
  if (style.dash) ctx.setLineDash(style.dash);
  ctx.beginPath();
  let prev = cam.toCam(pts[0]);
  let penDown = false;
  for (let i = 1; i < pts.length; i++) {
    const cur = cam.toCam(pts[i]);
    const seg = clipToNear(prev, cur);
    if (seg) {
      const [s0, s1] = [camToScreen(cam, seg[0]), camToScreen(cam, seg[1])];
      if (!penDown || seg[0] !== prev) ctx.moveTo(s0[0], s0[1]);
      ctx.lineTo(s1[0], s1[1]);
      penDown = seg[1] === cur;
    } else {
      penDown = false;
    }
    prev = cur;
  }
  ctx.stroke();
  ctx.restore();
}

/** Ground grid on the plane y = `level` (OpenCV y down), `half` cells each way of size `step`. */
export function drawGrid(ctx, cam, { step = 1, half = 10, level = 0, center = [0, 0, 0] } = {}) {
  const cx = Math.round(center[0] / step) * step, cz = Math.round(center[2] / step) * step;
  for (let i = -half; i <= half; i++) {
    const alpha = i === 0 ? 0.35 : 0.13;
    strokePolyline(ctx, cam, [[cx + i * step, level, cz - half * step], [cx + i * step, level, cz + half * step]], { color: "#9ab", alpha });
    strokePolyline(ctx, cam, [[cx - half * step, level, cz + i * step], [cx + half * step, level, cz + i * step]], { color: "#9ab", alpha });
  }
}

/** World axes at the origin: x red, "up" (-y) green, z (forward) blue. */
export function drawAxes(ctx, cam, length = 0.5) {
  const o = [0, 0, 0];
  const axes = [[[length, 0, 0], "#e55", "x"], [[0, -length, 0], "#5d5", "up"], [[0, 0, length], "#58f", "z"]];
  for (const [end, color, label] of axes) {
    strokePolyline(ctx, cam, [o, end], { color, width: 2 });
    const s = cam.project(end);
    if (s) {
      ctx.fillStyle = color;
      ctx.font = "10px sans-serif";
      ctx.fillText(label, s.x + 3, s.y - 3);
    }
  }
}

/**
 * Camera frustum of an OpenCV c2w (R rows, position t) with pinhole {fx, fy, cx, cy, width, height},
 * drawn `size` world units deep, with a small triangle on the image's top edge.
 */
export function drawFrustum(ctx, cam, R, t, intr, size, style = {}) {
  const { fx, fy, cx, cy, width, height } = intr;
  const corner = (u, v) => add(t, matVec(R, [((u - cx) / fx) * size, ((v - cy) / fy) * size, size]));
  const c = [corner(0, 0), corner(width, 0), corner(width, height), corner(0, height)];
  const st = { color: style.color ?? "#fa3", width: style.width ?? 1, alpha: style.alpha ?? 1 };
  for (const k of c) strokePolyline(ctx, cam, [t, k], st);
  strokePolyline(ctx, cam, [...c, c[0]], st);
  const topMid = scale(add(c[0], c[1]), 0.5);
  const tip = add(topMid, scale(sub(c[0], c[3]), 0.35)); // above the top edge
  strokePolyline(ctx, cam, [c[0], tip, c[1]], st);
  if (style.fill) {
    const s = c.map((p) => cam.project(p));
    if (s.every(Boolean)) {
      ctx.save();
      ctx.globalAlpha = style.fillAlpha ?? 0.25;
      ctx.fillStyle = style.fill;
      ctx.beginPath();
      ctx.moveTo(s[0].x, s[0].y);
      for (const p of s.slice(1)) ctx.lineTo(p.x, p.y);
      ctx.closePath();
      ctx.fill();
      ctx.restore();
    }
  }
}

/** Coloured points (flat xyz, flat rgb 0..255), far ones first, sized by depth. */
export function drawPoints(ctx, cam, xyz, rgb) {
  const n = Math.floor(xyz.length / 3);
  if (!n) return;
  const R = cam.R, e = cam.eye;
  const scr = new Float32Array(n * 3);
  const order = [];
  for (let i = 0; i < n; i++) {
    const dx = xyz[3 * i] - e[0], dy = xyz[3 * i + 1] - e[1], dz = xyz[3 * i + 2] - e[2];
    const z = R[0][2] * dx + R[1][2] * dy + R[2][2] * dz;
    if (z <= NEAR) continue;
    const x = R[0][0] * dx + R[1][0] * dy + R[2][0] * dz;
    const y = R[0][1] * dx + R[1][1] * dy + R[2][1] * dz;
    scr[3 * i] = cam.width / 2 + (cam.focal * x) / z;
    scr[3 * i + 1] = cam.height / 2 + (cam.focal * y) / z;
    scr[3 * i + 2] = z;
    order.push(i);
  }
  order.sort((a, b) => scr[3 * b + 2] - scr[3 * a + 2]);
  for (const i of order) {
    const r = rgb ? rgb[3 * i] : 200, g = rgb ? rgb[3 * i + 1] : 200, b = rgb ? rgb[3 * i + 2] : 200;
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    const s = Math.max(1, Math.min(4, (2 * cam.distance) / scr[3 * i + 2])); // nearer = bigger
    ctx.fillRect(scr[3 * i] - s / 2, scr[3 * i + 1] - s / 2, s, s);
  }
}

/** A round handle; returns its screen position (null when behind the viewer). */
export function drawHandle(ctx, cam, p, { radius = 6, fill = "#4cf", stroke = "#fff", shape = "circle", label = null } = {}) {
  const s = cam.project(p);
  if (!s) return null;
  ctx.save();
  ctx.beginPath();
  if (shape === "diamond") {
    ctx.moveTo(s.x, s.y - radius);
    ctx.lineTo(s.x + radius, s.y);
    ctx.lineTo(s.x, s.y + radius);
    ctx.lineTo(s.x - radius, s.y);
    ctx.closePath();
  } else {
    ctx.arc(s.x, s.y, radius, 0, Math.PI * 2);
  }
  ctx.fillStyle = fill;
  ctx.fill();
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = stroke;
  ctx.stroke();
  if (label) {
    ctx.font = "10px sans-serif";
    ctx.fillStyle = "#eee";
    ctx.fillText(label, s.x + radius + 2, s.y - radius);
  }
  ctx.restore();
  return s;
}

/** Orientation gizmo in a screen corner: where x, up and z point from the current view. */
export function drawGizmo(ctx, cam, x, y, len = 16) {
  const axes = [[[1, 0, 0], "#e55", "x"], [[0, -1, 0], "#5d5", "up"], [[0, 0, 1], "#58f", "z"]];
  ctx.save();
  ctx.lineWidth = 2;
  ctx.font = "9px sans-serif";
  for (const [a, color, label] of axes) {
    const c = matTVec(cam.R, a);
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + c[0] * len, y + c[1] * len);
    ctx.stroke();
    ctx.fillText(label, x + c[0] * (len + 5) - 3, y + c[1] * (len + 5) + 3);
  }
  ctx.restore();
}

