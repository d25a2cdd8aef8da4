// An independent web splat viewer shows a .ply written by LaVR: Spark (@sparkjsdev/spark, a three.js
// Gaussian-splat renderer from npm) loads the file in Debian's headless Chromium (WebGL2 on
// SwiftShader), and the screenshot must show the test scene of splat_test_scene.py: enough drawn
// pixels, the red, green, blue and yellow discs, left to right with yellow on top.
//
// Everything is served from loopback by a tiny static server in this script: the page, three and
// Spark from tests/e2e/node_modules (an import map, no bundler, no CDN) and the .ply.
//
// Env: SPLAT_FILE (the .ply; written here with splat_test_scene.py when unset), SPLAT_SHOT or SHOT (screenshot,
// default out/screenshots/splat_viewer.png), SPLAT_COUNT (Gaussians in it, default 4000), OUT (JSON report, optional), CHROMIUM, PYTHON.
// Prints "PASS name" / "FAIL name: why" and "N passed, N failed"; exits 1 on a failure.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { analyseScene, decodePng, launchChromium, makeChecker, writeReport } from "./splat_e2e_common.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const SHOT = process.env.SPLAT_SHOT ?? process.env.SHOT ?? path.join(REPO, "out", "screenshots", "splat_viewer.png");
const OUT = process.env.OUT ?? "";
const TIMEOUT = 45000;
const t0 = Date.now();
const { check, record, summary } = makeChecker();

let plyPath = process.env.SPLAT_FILE;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lavr-splat-viewer-"));
if (!plyPath) {
  plyPath = path.join(tmp, "scene.ply");
  const py = process.env.PYTHON ?? (fs.existsSync(path.join(REPO, ".venv/bin/python")) ? path.join(REPO, ".venv/bin/python") : "python3");
  const r = spawnSync(py, [path.join(HERE, "splat_test_scene.py"), plyPath], { encoding: "utf8" });
  if (r.status !== 0) {
    console.log(`FAIL write the test scene with LaVR's writer: ${r.stderr.slice(-500)}`);
    process.exit(1);
  }
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Spark viewer</title>
<style>html,body{margin:0;height:100%;background:#000;overflow:hidden}canvas{display:block}</style>
<script type="importmap">
{"imports": {
  "three": "/node_modules/three/build/three.module.js",
  "three/addons/": "/node_modules/three/examples/jsm/",
  "@sparkjsdev/spark": "/node_modules/@sparkjsdev/spark/dist/spark.module.js"
}}
</script></head><body>
<script type="module">
import * as THREE from "three";
import { SparkRenderer, SplatMesh } from "@sparkjsdev/spark";
window.__viewer = { state: "starting" };
try {
  const renderer = new THREE.WebGLRenderer({ antialias: false });
  renderer.setPixelRatio(1);
  renderer.setSize(innerWidth, innerHeight);
  renderer.setClearColor(0x000000, 1);
  document.body.appendChild(renderer.domElement);
  const scene = new THREE.Scene();
  // three's camera looks down -z with +y up; the file is in OpenCV axes (y down, z forward), so the
  // splat is turned half a turn about x, as Spark's documentation does for such files
  const camera = new THREE.PerspectiveCamera(50, innerWidth / innerHeight, 0.01, 100);
  scene.add(new SparkRenderer({ renderer }));
  const splats = new SplatMesh({ url: "/scene.ply" });
  splats.quaternion.set(1, 0, 0, 0);
  scene.add(splats);
  await splats.initialized;
  window.__viewer.numSplats = splats.numSplats ?? splats.packedSplats?.numSplats ?? null;
  let frames = 0;
  renderer.setAnimationLoop(() => {
    renderer.render(scene, camera);
    if (++frames === 30) window.__viewer.state = "drawn";
  });
  window.__viewer.state = "loaded";
} catch (e) {
  window.__viewer = { state: "error", error: String(e && e.stack || e) };
}
</script></body></html>`;

// ------------------------------------------------------------------ static server (loopback only)
const MIME = { ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json", ".wasm": "application/wasm", ".html": "text/html" };
const nodeModules = path.join(HERE, "node_modules");
const served = [];
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  served.push(url.pathname);
  let file = null;
  if (url.pathname === "/" || url.pathname === "/index.html") {
    res.writeHead(200, { "content-type": "text/html" });
    return res.end(PAGE);
  }
  if (url.pathname === "/scene.ply") file = plyPath;
  else if (url.pathname.startsWith("/node_modules/")) {
    const p = path.resolve(nodeModules, decodeURIComponent(url.pathname.slice("/node_modules/".length)));
    if (p.startsWith(nodeModules + path.sep)) file = p;
  }
  if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404);
    return res.end("not found");
  }
  res.writeHead(200, { "content-type": MIME[path.extname(file)] ?? "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const BASE = `http://127.0.0.1:${server.address().port}`;

const { context, userDir, consoleLines, blocked } = await launchChromium({ width: 900, height: 600 });
let analysis = null;
try {
  const page = context.pages()[0] ?? await context.newPage();
  const loaded = await check("Spark loads the LaVR .ply and draws it (WebGL2)", async () => {
    await page.goto(BASE, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => ["drawn", "error"].includes(window.__viewer?.state), null, { timeout: TIMEOUT });
    const v = await page.evaluate(() => window.__viewer);
    if (v.state === "error") return `viewer error: ${v.error.split("\n")[0]}`;
    console.log(`  Spark reports ${v.numSplats} splats`);
    if (v.numSplats != null && v.numSplats !== Number(process.env.SPLAT_COUNT ?? 4000)) return `Spark read ${v.numSplats} splats, the file has ${process.env.SPLAT_COUNT ?? 4000}`;
  });
  if (loaded) {
    await check("screenshot saved", async () => {
      fs.mkdirSync(path.dirname(path.resolve(SHOT)), { recursive: true });
      await page.screenshot({ path: SHOT });
    });
    await check("screenshot is not blank and shows the scene upright (R G B left to right, Y on top)", async () => {
      const px = decodePng(fs.readFileSync(SHOT));
      analysis = analyseScene(px, { background: [0, 0, 0] });
      console.log(`  ${JSON.stringify(analysis)}`);
      return analysis.problem ?? undefined;
    });
  }
  const errs = consoleLines.filter((l) => ["error", "pageerror"].includes(l.type));
  record("no console errors", errs.length === 0, errs.slice(0, 3).map((l) => l.text.split("\n")[0]).join(" | "));
  record("nothing outside loopback was requested", blocked.length === 0, blocked.slice(0, 3).join(", "));
} catch (e) {
  record("browser session", false, String(e?.message ?? e).split("\n")[0]);
} finally {
  await context.close();
  server.close();
  fs.rmSync(userDir, { recursive: true, force: true });
  fs.rmSync(tmp, { recursive: true, force: true });
}
const seconds = (Date.now() - t0) / 1000;
console.log(`splat viewer test ${seconds.toFixed(1)} s; screenshot: ${SHOT}`);
const failed = summary();
writeReport(OUT, { seconds, screenshot: SHOT, analysis });
process.exit(failed ? 1 : 0);
