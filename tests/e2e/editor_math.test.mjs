// Unit tests of the editor's pure JS modules (web/lavr_math.js, web/lavr_editor_state.js), run with
//   node --test tests/e2e/editor_math.test.mjs
// The parity test builds random keyframe paths with the backend (lavr_core.camera.editor_state,
// through the repo's Python) and checks the editor's live path against it: the path the user sees
// while dragging must be the path the node will output.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import {
  sampleKeyframePath, lookAtRotation, matrixToQuat, quatToMatrix, slerp, catmullRom, focalFromFov, fovFromFocal,
} from "../../web/lavr_math.js";
import { parseState, serializeState, keyframesFromPath, defaultKeyframes, spreadFrames } from "../../web/lavr_editor_state.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PYTHON = process.env.PYTHON ?? path.join(REPO, ".venv/bin/python");

// a small seeded generator: the same "random" paths on every run
function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

const maxAbs = (a, b) => Math.max(...a.map((v, i) => Math.abs(v - b[i])));

test("look_at rotation matches the OpenCV convention (identity looking down +z)", () => {
  const R = lookAtRotation([0, 0, 0], [0, 0, 5]);
  assert.deepEqual(R.map((r) => r.map((v) => Math.round(v * 1e12) / 1e12 + 0)), [[1, 0, 0], [0, 1, 0], [0, 0, 1]]);
  // looking along +x: image right is +... x axis = -up x z = (0,1,0) x (1,0,0) = (0,0,-1)
  const R2 = lookAtRotation([0, 0, 0], [3, 0, 0]);
  assert.ok(maxAbs([R2[0][0], R2[1][0], R2[2][0]], [0, 0, -1]) < 1e-12);
  assert.equal(lookAtRotation([0, 0, 0], [0, 0, 0]), null);
  assert.equal(lookAtRotation([0, 0, 0], [0, -2, 0]), null);
});

test("quaternion <-> matrix round trip and slerp end points", () => {
  const r = rng(7);
  for (let n = 0; n < 50; n++) {
    const q0 = [r() - 0.5, r() - 0.5, r() - 0.5, r() - 0.5];
    const nq = Math.hypot(...q0);
    const q = q0.map((v) => (v / nq) * (q0[0] < 0 ? -1 : 1));
    assert.ok(maxAbs(matrixToQuat(quatToMatrix(q)), q) < 1e-9);
    const p = matrixToQuat(quatToMatrix([r(), r() - 0.5, r() - 0.5, r() - 0.5]));
    assert.ok(maxAbs(slerp(q, p, 0), q) < 1e-9);
    const e = slerp(q, p, 1);
    const sign = e[0] * p[0] + e[1] * p[1] + e[2] * p[2] + e[3] * p[3] < 0 ? -1 : 1;
    assert.ok(maxAbs(e.map((v) => v * sign), p) < 1e-9);
  }
});

test("Catmull-Rom passes through every keyframe and is straight for two keys", () => {
  const frames = [0, 10, 25, 40];
  const pts = [[0, 0, 0], [1, -0.5, 2], [3, 0.2, 2.5], [2, 0, 5]];
  frames.forEach((f, i) => assert.deepEqual(catmullRom(frames, pts, f), pts[i]));
  const mid = catmullRom([0, 10], [[0, 0, 0], [2, 4, 6]], 5);
  assert.ok(maxAbs(mid, [1, 2, 3]) < 1e-12);
  // held outside the keyed range
  assert.deepEqual(catmullRom([5, 10], [[0, 0, 0], [1, 1, 1]], 0), [0, 0, 0]);
});

test("fov <-> focal", () => {
  assert.ok(Math.abs(fovFromFocal(focalFromFov(60, 832), 832) - 60) < 1e-9);
  assert.ok(Math.abs(focalFromFov(90, 100) - 50) < 1e-9);
});

test("state: parse/serialize round trip, errors instead of crashes", () => {
  const text = JSON.stringify({
    version: 1, mode: "keyframes", position_interpolation: "linear", rotation_interpolation: "slerp", view: { a: 1 },
    keyframes: [{ frame: 9, position: [1, 2, 3], rotation: [1, 0, 0, 0] }, { frame: 0, position: [0, 0, 0], look_at: [0, 0, 1], fov_deg: 50 }],
  });
  const { state, error } = parseState(text);
  assert.equal(error, null);
  const again = JSON.parse(serializeState(state));
  assert.deepEqual(again.keyframes.map((k) => k.frame), [0, 9]); // sorted, as the backend requires
  assert.equal(again.keyframes[0].fov_deg, 50);
  assert.equal(again.position_interpolation, "linear");
  assert.deepEqual(again.view, { a: 1 });
  assert.equal(parseState("").error, null);
  for (const bad of ["{not json", "[]", '{"version":2,"mode":"preset","keyframes":[]}',
    '{"version":1,"mode":"keyframes","keyframes":[{"frame":0,"position":[0,0,0]}]}',
    '{"version":1,"mode":"keyframes","keyframes":[{"frame":0,"position":[0,0,"x"],"look_at":[0,0,1]}]}',
    '{"version":1,"mode":"keyframes","keyframes":[{"frame":1.5,"position":[0,0,0],"look_at":[0,0,1]}]}']) {
    const r = parseState(bad);
    assert.equal(r.state, null, bad);
    assert.match(r.error, /./);
  }
});

test("keyframes from a path keep positions, look-at or exact rotation, and zoom", () => {
  const W = 100, H = 50;
  const c2w = [], K = [];
  for (let i = 0; i < 13; i++) {
    const a = (i / 12) * 0.6;
    const R = [[Math.cos(a), 0, Math.sin(a)], [0, 1, 0], [-Math.sin(a), 0, Math.cos(a)]];
    c2w.push([R[0][0], R[0][1], R[0][2], i * 0.1, R[1][0], R[1][1], R[1][2], 0, R[2][0], R[2][1], R[2][2], 0, 0, 0, 0, 1]);
    const f = focalFromFov(60 - i, W);
    K.push([f, f, W / 2, H / 2]);
  }
  const kfs = keyframesFromPath({ c2w, K, width: W, height: H, fps: 16 }, { count: 4, depth: 2, fovDeg: 60 });
  assert.deepEqual(kfs.map((k) => k.frame), [0, 4, 8, 12]);
  kfs.forEach((k) => {
    assert.ok(maxAbs(k.position, [k.frame * 0.1, 0, 0]) < 1e-12);
    assert.ok(k.look_at, "no roll: a look_at keyframe");
    assert.ok(Math.abs((k.fov_deg ?? 60) - (60 - k.frame)) < 1e-9);
  });
  assert.deepEqual(spreadFrames(49, 4), [0, 16, 32, 48]);
  assert.equal(defaultKeyframes(49, 2).length, 4);
});

test("live JS path matches the backend's build_from_keyframes", { skip: !fs.existsSync(PYTHON) && `no Python at ${PYTHON}` }, () => {
  const r = rng(1234);
  const cases = [];
  for (let c = 0; c < 8; c++) {
    const nk = 2 + (c % 4);
    const frames = 20 + Math.floor(r() * 40);
    const keyFrames = spreadFrames(frames, nk).map((f, i, a) => (i > 0 && i < a.length - 1 ? f + Math.floor((r() - 0.5) * 4) : f));
    const keyframes = keyFrames.map((f) => {
      const position = [r() * 4 - 2, r() - 0.5, r() * 4 - 2];
      const k = { frame: f, position };
      if (r() < 0.5) k.look_at = [r() * 2 - 1, r() * 0.5 - 0.25, 3 + r() * 2];
      else k.rotation = [0.5 + r(), r() - 0.5, r() - 0.5, r() - 0.5];
      if (r() < 0.3) k.fov_deg = 30 + r() * 60;
      return k;
    });
    const state = {
      version: 1, mode: "keyframes", keyframes,
      position_interpolation: c % 3 === 2 ? "linear" : "catmull_rom",
      rotation_interpolation: c % 2 ? "slerp" : "squad", view: {},
    };
    cases.push({ text: serializeState(parseState(JSON.stringify(state)).state), frames, fov: 55, width: 640, height: 360 });
  }
  const py = `
import json, sys, math
from lavr_core.camera.editor_state import parse_editor_state, build_from_keyframes
out = []
for c in json.load(sys.stdin):
    t = build_from_keyframes(parse_editor_state(c["text"]), num_frames=c["frames"], width=c["width"],
                             height=c["height"], fov_deg=c["fov"], fps=16.0)
    out.append({"c2w": t.c2w.reshape(-1, 16).tolist(), "fx": t.K[:, 0, 0].tolist()})
print(json.dumps(out))
`;
  const res = JSON.parse(execFileSync(PYTHON, ["-c", py], { cwd: REPO, input: JSON.stringify(cases), maxBuffer: 1 << 26 }).toString());
  let worstT = 0, worstR = 0, worstF = 0;
  cases.forEach((c, ci) => {
    const st = parseState(c.text).state;
    const { cameras, error } = sampleKeyframePath(st.keyframes, c.frames, {
      fovDeg: c.fov, positionInterpolation: st.position_interpolation, rotationInterpolation: st.rotation_interpolation,
    });
    assert.equal(error, null);
    cameras.forEach((cam, f) => {
      const m = res[ci].c2w[f];
      worstT = Math.max(worstT, maxAbs(cam.t, [m[3], m[7], m[11]]));
      worstR = Math.max(worstR, maxAbs(cam.R.flat(), [m[0], m[1], m[2], m[4], m[5], m[6], m[8], m[9], m[10]]));
      worstF = Math.max(worstF, Math.abs(focalFromFov(cam.fov, c.width) - res[ci].fx[f]) / res[ci].fx[f]);
    });
  });
  console.log(`parity over ${cases.length} paths: max |dt| ${worstT.toExponential(2)}, max |dR| ${worstR.toExponential(2)}, max rel d(fx) ${worstF.toExponential(2)}`);
  assert.ok(worstT < 1e-6, `positions differ by ${worstT}`);
  assert.ok(worstR < 1e-6, `rotations differ by ${worstR}`);
  assert.ok(worstF < 1e-6, `focal lengths differ by ${worstF}`);
});
