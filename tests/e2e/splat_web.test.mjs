// Unit tests of the splat preview's pure JS modules (web/splat_parse.js, web/splat_math.js,
// resolveSource of web/splat_preview_ui.js), run with
//   node --test tests/e2e/splat_web.test.mjs
// Files are written by lavr_core's writers and read back by lavr_core's readers (through the repo's
// Python), so the browser parsers are checked against the backend value for value.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import {
  parsePly, parseSplat, parseSpz, parseManifest, parseSplatFile, formatOfName, concatSplats, SplatParseError,
} from "../../web/splat_parse.js";
import {
  covariances, depthOrder, ellipseOf, robustBounds, screenCovariance, subsample, toCamera, toPixel, viewOf,
} from "../../web/splat_math.js";
import { OrbitCamera } from "../../web/lavr_view3d.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PYTHON = process.env.PYTHON ?? path.join(REPO, ".venv/bin/python");
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), "lavr-splat-web-"));
process.on("exit", () => fs.rmSync(TMP, { recursive: true, force: true }));

// Write the test scene (random scales/rotations on top, SH degree 1 for the .ply) in every format
// and dump what lavr_core reads back from each file.
const PY = `
import json, sys, torch
sys.path.insert(0, ${JSON.stringify(path.join(REPO, "tests", "e2e"))})
sys.path.insert(0, ${JSON.stringify(REPO)})
from splat_test_scene import scene, write_scene_sequence
from lavr_core.gaussians import Gaussians, read_gaussians, write_gaussians
from lavr_core.camera.transforms import quat_to_matrix
out = sys.argv[1]
g = scene(40)
gen = torch.Generator().manual_seed(3)
n = g.num
q = torch.randn(n, 4, generator=gen)
s = torch.exp(torch.randn(n, 3, generator=gen) * 0.5 - 3.5)
sh = torch.cat([g.sh, 0.1 * torch.randn(n, 3, 3, generator=gen)], 1)
g = Gaussians(g.means, s, q, torch.rand(n, generator=gen) * 0.98 + 0.01, sh)
res = {}
for name, opts in (("ply", {}), ("splat", {"sort": False}), ("spz", {"version": 2}), ("spz3", {"version": 3})):
    ext = "spz" if name.startswith("spz") else name
    p = f"{out}/scene_{name}.{ext}"
    write_gaussians(g, p, **opts)
    r = read_gaussians(p)
    R = quat_to_matrix(r.rotations)
    cov = R @ torch.diag_embed(r.scales ** 2) @ R.transpose(1, 2)
    res[name] = {"file": p, "means": r.means.flatten().tolist(), "scales": r.scales.flatten().tolist(),
                 "rotations": r.rotations.flatten().tolist(), "opacities": r.opacities.tolist(),
                 "rgb": r.rgb.flatten().tolist(), "sh_degree": r.sh_degree,
                 "cov": cov[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]].flatten().tolist()}
res["manifest"] = str(write_scene_sequence(out + "/seq", frames=2, per_disc=10))
print(json.dumps(res))
`;
const REF = JSON.parse(execFileSync(PYTHON, ["-c", PY, TMP], { encoding: "utf8", maxBuffer: 64 << 20 }));

const maxDiff = (a, b) => { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i])); return m; };
const bytes = (name) => fs.readFileSync(REF[name].file);

function assertMatches(data, ref, { pos = 1e-6, scaleRel = 1e-5, rot = 1e-5, colour = 1 } = {}) {
  const n = ref.opacities.length;
  assert.equal(data.count, n);
  assert.ok(maxDiff(data.positions, ref.means) <= pos, `positions differ by ${maxDiff(data.positions, ref.means)}`);
  let worstScale = 0;
  for (let i = 0; i < 3 * n; i++) worstScale = Math.max(worstScale, Math.abs(data.scales[i] / ref.scales[i] - 1));
  assert.ok(worstScale <= scaleRel, `scales differ by ${worstScale} relative`);
  assert.ok(maxDiff(data.rotations, ref.rotations) <= rot, `rotations differ by ${maxDiff(data.rotations, ref.rotations)}`);
  let worstCol = 0;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) worstCol = Math.max(worstCol, Math.abs(data.colors[4 * i + c] - ref.rgb[3 * i + c] * 255));
    worstCol = Math.max(worstCol, Math.abs(data.colors[4 * i + 3] - ref.opacities[i] * 255));
  }
  assert.ok(worstCol <= colour, `colour/opacity bytes differ by ${worstCol}`);
}

test(".ply written by lavr_core parses to lavr_core's values (SH degree 1 file)", () => {
  const d = parsePly(bytes("ply"));
  assert.equal(d.format, "ply");
  assert.equal(d.shDegree, 1);
  assertMatches(d, REF.ply);
});

test(".splat parses to lavr_core's values", () => {
  const d = parseSplat(bytes("splat"));
  assertMatches(d, REF.splat);
});

test(".spz v2 and v3 (gzip) parse to lavr_core's values, axes converted back to OpenCV", async () => {
  for (const name of ["spz", "spz3"]) {
    const d = await parseSpz(bytes(name));
    assert.equal(d.shDegree, 1);
    assertMatches(d, REF[name], { pos: 1e-6, scaleRel: 1e-5, rot: 2e-6, colour: 1 });
  }
});

test("parseSplatFile dispatches by format; unknown formats and v4 .spz give errors that say so", async () => {
  assert.equal((await parseSplatFile(bytes("splat"), "splat")).count, REF.splat.opacities.length);
  await assert.rejects(parseSplatFile(bytes("ply"), "obj"), /cannot preview a 'obj' file/);
  const v4 = new Uint8Array(32);
  new DataView(v4.buffer).setUint32(0, 0x5053474e, true);
  await assert.rejects(parseSpz(v4), /version 4/);
  assert.equal(formatOfName("a/b/scene_00001.PLY"), "ply");
  assert.equal(formatOfName("x.json"), "json");
  assert.equal(formatOfName("x.obj"), null);
});

test("truncated and malformed files are refused with a reason", () => {
  const ply = bytes("ply");
  assert.throws(() => parsePly(ply.subarray(0, ply.length - 10)), /truncated/);
  assert.throws(() => parsePly(Buffer.from("ply\nformat binary_little_endian 1.0\nelement vertex 3\n")), /never ends/);
  assert.throws(() => parsePly(Buffer.from("solid cube\n")), /not a PLY/);
  assert.throws(() => parsePly(Buffer.from("ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n\0\0\0\0")), /no 'y'/);
  assert.throws(() => parseSplat(bytes("splat").subarray(0, 33)), /32-byte/);
  assert.throws(() => parseSplat(new Uint8Array(0)), SplatParseError);
});

test("other PLY layouts: big-endian doubles, ascii, and a plain coloured point cloud", () => {
  const header = (fmt, props) => `ply\nformat ${fmt} 1.0\nelement vertex 2\n${props.map((p) => `property ${p}`).join("\n")}\nend_header\n`;
  const names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"];
  const rows = [[1, 2, 3, 0, 0, 0, 0, Math.log(0.1), Math.log(0.2), Math.log(0.3), 2, 0, 0, 0],
    [-1, 0.5, 4, 1, -1, 0.5, 2, 0, 0, 0, 0, 0, 0, -3]];
  const be = Buffer.alloc(2 * 14 * 8);
  rows.flat().forEach((v, i) => be.writeDoubleBE(v, 8 * i));
  const d1 = parsePly(Buffer.concat([Buffer.from(header("binary_big_endian", names.map((n) => `double ${n}`))), be]));
  const d2 = parsePly(Buffer.from(header("ascii", names.map((n) => `float ${n}`)) + rows.map((r) => r.join(" ")).join("\n") + "\n"));
  for (const d of [d1, d2]) {
    assert.deepEqual(Array.from(d.positions), [1, 2, 3, -1, 0.5, 4]);
    assert.ok(maxDiff(d.scales, [0.1, 0.2, 0.3, 1, 1, 1]) < 1e-6);
    assert.deepEqual(Array.from(d.rotations), [1, 0, 0, 0, 0, 0, 0, -1]); // normalised; w = 0 keeps its sign, as lavr_core does
    assert.deepEqual(Array.from(d.colors.subarray(0, 4)), [128, 128, 128, 128]);
    assert.equal(d.colors[7], Math.floor(255 / (1 + Math.exp(-2)) + 0.5));
  }
  const pc = Buffer.concat([Buffer.from("ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"),
    Buffer.from(new Float32Array([0, 0, 0]).buffer), Buffer.from([255, 0, 10]), Buffer.from(new Float32Array([3, 4, 0]).buffer), Buffer.from([0, 255, 20])]);
  const d3 = parsePly(pc);
  assert.deepEqual(Array.from(d3.colors), [255, 0, 10, 255, 0, 255, 20, 255]);
  assert.ok(Math.abs(d3.scales[0] - 0.01) < 1e-7, `point size ${d3.scales[0]} is 0.2% of the 5-unit diagonal`);
});

test("covariances equal lavr_core's R diag(s^2) R^T", () => {
  const d = parsePly(bytes("ply"));
  const cov = covariances(d);
  const worst = maxDiff(cov, REF.ply.cov);
  const scale = Math.max(...REF.ply.cov.map(Math.abs));
  assert.ok(worst <= 1e-6 * scale, `covariance differs by ${worst} (largest entry ${scale})`);
});

function cameraAt(yaw, pitch, distance, target = [0, 0, 3]) {
  const cam = new OrbitCamera();
  Object.assign(cam, { target, yaw, pitch, distance });
  cam.update();
  cam.setViewport(640, 480);
  return cam;
}

test("viewOf agrees with the editor's OrbitCamera projection", () => {
  const cam = cameraAt(0.4, -0.3, 5);
  const view = viewOf(cam, 640, 480);
  const pts = new Float32Array([0.3, -0.2, 3.5, -1, 0.5, 2]);
  for (let i = 0; i < 2; i++) {
    const p = cam.project([pts[3 * i], pts[3 * i + 1], pts[3 * i + 2]]);
    const c = toCamera(view, pts, i);
    const [x, y] = toPixel(view, c);
    assert.ok(Math.abs(x - p.x) < 1e-3 && Math.abs(y - p.y) < 1e-3 && Math.abs(c[2] - p.z) < 1e-6, `${[x, y, c[2]]} vs ${JSON.stringify(p)}`);
  }
});

test("screen covariance is J Σ J^T of the projection (finite differences) plus the 0.3 px blur", () => {
  const d = parsePly(bytes("ply"));
  const cov = covariances(d);
  const cam = cameraAt(-0.5, 0.35, 4);
  const view = viewOf(cam, 800, 600);
  const project = (p) => {
    const c = [0, 1, 2].map((r) => view.W[3 * r] * p[0] + view.W[3 * r + 1] * p[1] + view.W[3 * r + 2] * p[2] + view.t[r]);
    return toPixel(view, c);
  };
  for (const i of [0, 7, 55, 120]) {
    const p = [d.positions[3 * i], d.positions[3 * i + 1], d.positions[3 * i + 2]];
    const h = 1e-5;
    const J = [[0, 0, 0], [0, 0, 0]];
    for (let k = 0; k < 3; k++) {
      const a = [...p], b = [...p];
      a[k] += h; b[k] -= h;
      const fa = project(a), fb = project(b);
      J[0][k] = (fa[0] - fb[0]) / (2 * h);
      J[1][k] = (fa[1] - fb[1]) / (2 * h);
    }
    const o = 6 * i;
    const S = [[cov[o], cov[o + 1], cov[o + 2]], [cov[o + 1], cov[o + 3], cov[o + 4]], [cov[o + 2], cov[o + 4], cov[o + 5]]];
    const JS = J.map((r) => [0, 1, 2].map((c) => r[0] * S[0][c] + r[1] * S[1][c] + r[2] * S[2][c]));
    const want = [JS[0][0] * J[0][0] + JS[0][1] * J[0][1] + JS[0][2] * J[0][2] + 0.3,
      JS[0][0] * J[1][0] + JS[0][1] * J[1][1] + JS[0][2] * J[1][2],
      JS[1][0] * J[1][0] + JS[1][1] * J[1][1] + JS[1][2] * J[1][2] + 0.3];
    const got = screenCovariance(view, cov, i, toCamera(view, d.positions, i));
    assert.ok(maxDiff(got, want) <= 1e-4 * Math.max(1, ...want.map(Math.abs)), `splat ${i}: ${got} vs ${want}`);
    // the ellipse's axes reproduce the matrix
    const e = ellipseOf(got);
    const [ux, uy] = e.axis, [vx, vy] = [-uy, ux];
    const back = [e.major * ux * ux + e.minor * vx * vx, e.major * ux * uy + e.minor * vx * vy, e.major * uy * uy + e.minor * vy * vy];
    assert.ok(maxDiff(back, got) <= 1e-6 * Math.max(...got.map(Math.abs)), `ellipse ${JSON.stringify(e)} does not rebuild ${got}`);
  }
});

test("depthOrder sorts front splats far to near and drops those behind the viewer", () => {
  const cam = cameraAt(0, 0, 2, [0, 0, 0]); // eye at z = -2 looking down +z
  const view = viewOf(cam, 100, 100);
  const zs = [5, -3, 1, 0.5, 9, -2.5, 3];
  const pos = new Float32Array(zs.flatMap((z, i) => [0.01 * i, 0, z]));
  const { order, count } = depthOrder(view, pos, zs.length);
  // camera depths z + 2 = [7, -1, 3, 2.5, 11, -0.5, 5]: the two negative ones are behind the eye
  assert.equal(count, 5);
  assert.deepEqual(Array.from(order.subarray(0, count)), [4, 0, 6, 2, 3]);
});

test("subsample and robustBounds", () => {
  assert.equal(subsample(10, 20), null);
  const s = subsample(1000, 100);
  assert.equal(s.length, 100);
  assert.ok(s.every((v, i) => i === 0 || v > s[i - 1]) && s[99] < 1000);
  const pos = new Float32Array(3 * 1000);
  for (let i = 0; i < 1000; i++) { pos[3 * i] = (i % 10) / 9; pos[3 * i + 1] = 0; pos[3 * i + 2] = 2; }
  pos.set([1e6, 1e6, 1e6], 0); // one floater
  const b = robustBounds(pos, 1000);
  assert.ok(Math.abs(b.center[0] - 0.5) < 0.01 && Math.abs(b.center[2] - 2) < 1e-6, JSON.stringify(b));
  assert.ok(b.radius < 1, `a single floater blew the radius up to ${b.radius}`);
});

test("manifests: LaVR sequence manifests parse, unsafe names and other JSON are refused", () => {
  const m = parseManifest(fs.readFileSync(REF.manifest, "utf8"));
  assert.equal(m.fileFormat, "ply");
  assert.deepEqual(m.frames.map((f) => f.file), ["scene_00000.ply", "scene_00001.ply"]);
  assert.equal(m.static, null);
  assert.equal(m.frames[1].time, 0.125);
  const good = JSON.parse(fs.readFileSync(REF.manifest, "utf8"));
  assert.throws(() => parseManifest({ ...good, frames: [{ index: 0, time: 0, file: "../etc/passwd" }] }), /plain file name/);
  assert.throws(() => parseManifest({ format: "something else" }), /not a LaVR/);
  const frame0 = parsePly(fs.readFileSync(path.join(path.dirname(REF.manifest), "scene_00000.ply")));
  const both = concatSplats(frame0, frame0);
  assert.equal(both.count, 2 * frame0.count);
  assert.deepEqual(Array.from(both.positions.subarray(3 * frame0.count, 3 * frame0.count + 3)), Array.from(frame0.positions.subarray(0, 3)));
});

test("resolveSource understands single files, several files, and manifests named or inlined", async () => {
  const { resolveSource } = await import("../../web/splat_preview_ui.js");
  const manifestText = fs.readFileSync(REF.manifest, "utf8");
  const fetched = [];
  const fetchBytes = async (ref) => { fetched.push(ref); return new TextEncoder().encode(manifestText).buffer; };
  const one = await resolveSource([{ filename: "a.ply", subfolder: "s", type: "output" }], fetchBytes);
  assert.deepEqual(one.frames.map((f) => [f.filename, f.subfolder, f.format]), [["a.ply", "s", "ply"]]);
  const many = await resolveSource([{ filename: "a.splat", subfolder: "" }, { filename: "b.splat", subfolder: "" }], fetchBytes);
  assert.equal(many.frames.length, 2);
  for (const entry of [{ filename: "scene.json", subfolder: "seq", type: "output" },
    { filename: "scene_00000.ply", subfolder: "seq", type: "output", format: "ply", manifest: "scene.json" }]) {
    fetched.length = 0;
    const s = await resolveSource([entry], fetchBytes);
    assert.deepEqual(fetched, [{ filename: "scene.json", subfolder: "seq", type: "output" }]);
    assert.deepEqual(s.frames.map((f) => `${f.subfolder}/${f.filename}`), ["seq/scene_00000.ply", "seq/scene_00001.ply"]);
    assert.deepEqual(s.times, [0, 0.125]);
  }
  // the shape nodes/splat.py (Save Splat) sends for a sequence: the manifest first, then its files
  fetched.length = 0;
  const saved = await resolveSource([
    { filename: "scene.json", subfolder: "seq", type: "output", format: "ply", gaussians: 80, manifest: true, timesteps: 2 },
    { filename: "scene_00000.ply", subfolder: "seq", type: "output", format: "ply", gaussians: 40, manifest: false },
    { filename: "scene_00001.ply", subfolder: "seq", type: "output", format: "ply", gaussians: 40, manifest: false },
  ].reverse(), fetchBytes);
  assert.deepEqual(fetched, [{ filename: "scene.json", subfolder: "seq", type: "output" }]);
  assert.deepEqual(saved.frames.map((f) => f.filename), ["scene_00000.ply", "scene_00001.ply"]);
  const inline = await resolveSource([{ filename: "x.ply", subfolder: "seq", manifest: JSON.parse(manifestText) }], fetchBytes);
  assert.equal(inline.frames.length, 2);
  await assert.rejects(resolveSource([], fetchBytes), /no splat files/);
});

test("100k splats: covariances and a depth sort are fast enough to redraw while orbiting", () => {
  const n = 100000;
  const r = (() => { let s = 12345; return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32); })();
  const data = { count: n, positions: new Float32Array(3 * n), scales: new Float32Array(3 * n).fill(0.01), rotations: new Float32Array(4 * n) };
  for (let i = 0; i < 3 * n; i++) data.positions[i] = 4 * r() - 2 + (i % 3 === 2 ? 4 : 0);
  for (let i = 0; i < n; i++) data.rotations.set([r() + 0.1, r() - 0.5, r() - 0.5, r() - 0.5], 4 * i);
  let t = performance.now();
  const cov = covariances(data);
  const covMs = performance.now() - t;
  assert.equal(cov.length, 6 * n);
  const view = viewOf(cameraAt(0.3, 0.2, 6, [0, 0, 4]), 800, 600);
  const scratch = {};
  depthOrder(view, data.positions, n, null, scratch); // warm up
  t = performance.now();
  let res;
  for (let k = 0; k < 5; k++) res = depthOrder(view, data.positions, n, null, scratch);
  const sortMs = (performance.now() - t) / 5;
  console.log(`# 100k splats: covariances ${covMs.toFixed(1)} ms (once per file), depth sort ${sortMs.toFixed(2)} ms per redraw`);
  // far to near: camera depth never increases along the order (to within one 16-bit bucket)
  const z = (i) => view.W[6] * data.positions[3 * i] + view.W[7] * data.positions[3 * i + 1] + view.W[8] * data.positions[3 * i + 2] + view.t[2];
  let worst = 0;
  for (let k = 1; k < res.count; k++) worst = Math.max(worst, z(res.order[k]) - z(res.order[k - 1]));
  assert.ok(worst < 12 / 65535 * 2, `depth increases by ${worst} along the order`);
  assert.ok(sortMs < 150, `depth sort of 100k splats takes ${sortMs} ms`);
});
