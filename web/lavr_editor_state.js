// The editor's JSON state (schema version 1), as stored in the node's `editor_state` widget.
//
//   {"version": 1, "mode": "preset"|"keyframes",
//    "keyframes": [{"frame", "position": [x,y,z], "look_at": [x,y,z] | "rotation": [w,x,y,z], "fov_deg"?}],
//    "position_interpolation": "catmull_rom"|"linear", "rotation_interpolation": "squad"|"slerp",
//    "view": {...}}   // view: orbit state of the editor, ignored by the backend
//
// The backend (lavr_core/camera/editor_state.py) validates the same rules again; here they decide
// whether the editor can show the state or must show an error instead of guessing.

import {
  add, scale, column, splitC2W, matrixToQuat, lookAtRotation, quatAngle, fovFromFocal, isFiniteVec,
} from "./lavr_math.js";

export const STATE_VERSION = 1;
export const MODES = ["preset", "keyframes"];
export const POSITION_INTERPOLATIONS = ["catmull_rom", "linear"];
export const ROTATION_INTERPOLATIONS = ["squad", "slerp"];

export function defaultState(mode = "preset") {
  return {
    version: STATE_VERSION,
    mode: MODES.includes(mode) ? mode : "preset",
    keyframes: [],
    position_interpolation: "catmull_rom",
    rotation_interpolation: "squad",
    view: {},
  };
}

/**
 * Parse and check the widget text. Returns {state, error}: `state` is a fresh object (null when
 * `error` is set); an empty text is the default state, not an error.
 */
export function parseState(text, fallbackMode = "preset") {
  if (text == null || (typeof text === "string" && text.trim() === "")) {
    return { state: defaultState(fallbackMode), error: null };
  }
  let raw;
  try {
    raw = typeof text === "string" ? JSON.parse(text) : JSON.parse(JSON.stringify(text));
  } catch (e) {
    return { state: null, error: `editor_state is not valid JSON (${e.message}).` };
  }
  const error = validateState(raw);
  if (error) return { state: null, error };
  const state = defaultState(raw.mode);
  state.keyframes = raw.keyframes.map(cleanKeyframe);
  if (raw.position_interpolation) state.position_interpolation = raw.position_interpolation;
  if (raw.rotation_interpolation) state.rotation_interpolation = raw.rotation_interpolation;
  if (raw.view && typeof raw.view === "object" && !Array.isArray(raw.view)) state.view = raw.view;
  return { state, error: null };
}

/** A message naming the first problem of a parsed state, or null when it is valid. */
export function validateState(s) {
  if (!s || typeof s !== "object" || Array.isArray(s)) return "editor_state must be a JSON object.";
  if (s.version !== STATE_VERSION) return `editor_state version ${JSON.stringify(s.version)} is not supported (expected ${STATE_VERSION}).`;
  if (!MODES.includes(s.mode)) return `editor_state mode ${JSON.stringify(s.mode)} must be "preset" or "keyframes".`;
  if (!Array.isArray(s.keyframes)) return "editor_state keyframes must be a list.";
  if (s.position_interpolation !== undefined && !POSITION_INTERPOLATIONS.includes(s.position_interpolation)) {
    return `position_interpolation must be one of ${POSITION_INTERPOLATIONS.join(", ")}.`;
  }
  if (s.rotation_interpolation !== undefined && !ROTATION_INTERPOLATIONS.includes(s.rotation_interpolation)) {
    return `rotation_interpolation must be one of ${ROTATION_INTERPOLATIONS.join(", ")}.`;
  }
  const seen = new Set();
  for (let i = 0; i < s.keyframes.length; i++) {
    const k = s.keyframes[i];
    const where = `keyframe ${i}`;
    if (!k || typeof k !== "object") return `${where} must be an object.`;
    if (!Number.isInteger(k.frame) || k.frame < 0) return `${where}: frame must be an integer >= 0.`;
    if (seen.has(k.frame)) return `${where}: two keyframes on frame ${k.frame}.`;
    seen.add(k.frame);
    if (!isFiniteVec(k.position)) return `${where}: position must be 3 finite numbers.`;
    const hasLook = k.look_at !== undefined, hasRot = k.rotation !== undefined;
    if (hasLook === hasRot) return `${where}: give exactly one of look_at or rotation.`;
    if (hasLook && !isFiniteVec(k.look_at)) return `${where}: look_at must be 3 finite numbers.`;
    if (hasRot) {
      if (!isFiniteVec(k.rotation, 4)) return `${where}: rotation must be 4 finite numbers (w, x, y, z).`;
      if (Math.hypot(...k.rotation) < 1e-6) return `${where}: rotation quaternion has zero length.`;
    }
    if (k.fov_deg !== undefined && !(typeof k.fov_deg === "number" && k.fov_deg > 0 && k.fov_deg < 180)) {
      return `${where}: fov_deg must be a number between 0 and 180.`;
    }
  }
  return null;
}

function cleanKeyframe(k) {
  const out = { frame: k.frame, position: k.position.slice() };
  if (k.look_at !== undefined) out.look_at = k.look_at.slice();
  else out.rotation = k.rotation.slice();
  if (k.fov_deg !== undefined) out.fov_deg = k.fov_deg;
  return out;
}

const round6 = (v) => Math.round(v * 1e6) / 1e6;

/** JSON text of a state: keyframes sorted by frame, numbers rounded to 1e-6 so the text stays readable. */
export function serializeState(state) {
  const kfs = [...state.keyframes]
    .sort((a, b) => a.frame - b.frame)
    .map((k) => {
      const o = { frame: k.frame, position: k.position.map(round6) };
      if (k.look_at) o.look_at = k.look_at.map(round6);
      else o.rotation = k.rotation.map(round6);
      if (k.fov_deg !== undefined) o.fov_deg = round6(k.fov_deg);
      return o;
    });
  return JSON.stringify({
    version: STATE_VERSION,
    mode: state.mode,
    keyframes: kfs,
    position_interpolation: state.position_interpolation,
    rotation_interpolation: state.rotation_interpolation,
    view: state.view ?? {},
  });
}

/** `count` frame numbers spread evenly over 0 .. frameCount-1 (distinct, first and last included). */
export function spreadFrames(frameCount, count) {
  const last = Math.max(frameCount - 1, 0);
  const n = Math.max(2, Math.min(count, last + 1));
  const out = [];
  for (let i = 0; i < n; i++) {
    const f = Math.round((i * last) / (n - 1));
    if (!out.includes(f)) out.push(f);
  }
  return out;
}

/**
 * Keyframes seeded from an executed path (payload.target): `count` cameras spread over the path.
 * A camera that looks at a point `depth` ahead without roll becomes a look_at keyframe (easy to
 * re-aim); one with roll keeps its exact rotation. A focal length that differs from the node's
 * field of view is kept as fov_deg (zoom presets).
 */
export function keyframesFromPath(target, { count = 4, depth = 2, fovDeg = null } = {}) {
  const n = target?.c2w?.length ?? 0;
  if (n === 0) return [];
  const frames = n === 1 ? [0] : spreadFrames(n, count);
  return frames.map((f) => {
    const { R, t } = splitC2W(target.c2w[f]);
    const fwd = column(R, 2);
    const lookAt = add(t, scale(fwd, depth));
    const kf = { frame: f, position: t.slice() };
    const q = matrixToQuat(R);
    const Rl = lookAtRotation(t, lookAt);
    if (Rl && quatAngle(q, matrixToQuat(Rl)) < (0.05 * Math.PI) / 180) kf.look_at = lookAt;
    else kf.rotation = q;
    const K = target.K?.[f];
    if (K && target.width) {
      const fov = fovFromFocal(K[0], target.width);
      if (fovDeg == null || Math.abs(fov - fovDeg) > 0.01) kf.fov_deg = fov;
    }
    return kf;
  });
}

/**
 * A starting set of keyframes when there is no executed path yet: four cameras on a gentle arc in
 * front of the first camera, all looking at the point `depth` straight ahead.
 */
export function defaultKeyframes(frameCount, depth = 2) {
  const d = depth > 0 ? depth : 2;
  const frames = spreadFrames(frameCount, 4);
  const target = [0, 0, d];
  return frames.map((f, i) => {
    const a = frames.length > 1 ? (i / (frames.length - 1)) * (Math.PI / 6) : 0; // 0 .. 30 degrees
    const position = [d * Math.sin(a), -0.1 * d * i / Math.max(frames.length - 1, 1), d - d * Math.cos(a)];
    return { frame: f, position, look_at: target.slice() };
  });
}
