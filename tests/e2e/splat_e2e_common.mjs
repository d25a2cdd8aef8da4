// Shared pieces of the splat browser tests: PASS/FAIL bookkeeping, a headless Chromium with WebGL
// (SwiftShader) that may only reach loopback, a PNG decoder (node:zlib, no dependency) and the pixel
// check of the test scene written by splat_test_scene.py.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";

export function makeChecker() {
  const results = [];
  let passed = 0, failed = 0;
  let since = Date.now();
  function record(name, ok, why = "") {
    const seconds = (Date.now() - since) / 1000;
    since = Date.now();
    results.push({ name, ok, why, seconds });
    if (ok) { passed++; console.log(`PASS ${name} (${seconds.toFixed(1)} s)`); } else { failed++; console.log(`FAIL ${name}: ${why}`); }
    return ok;
  }
  /** Run one check; a thrown error or a returned string is the failure reason; returns the value or null. */
  async function check(name, fn) {
    try {
      const r = await fn();
      if (typeof r === "string") return record(name, false, r), null;
      record(name, true);
      return r ?? true;
    } catch (e) {
      record(name, false, String(e?.message ?? e).split("\n")[0]);
      return null;
    }
  }
  function summary() {
    console.log(`${passed} passed, ${failed} failed`);
    return failed;
  }
  return { check, record, summary, results };
}

export function writeReport(file, extra) {
  if (!file) return;
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(extra, null, 1));
}

/** Headless Chromium with WebGL2 on SwiftShader (no GPU here), a fresh profile, no DNS but loopback. */
export async function launchChromium(viewport) {
  const userDir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? os.tmpdir(), "lavr-splat-chromium-"));
  const context = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    viewport,
    args: ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
      "--ignore-gpu-blocklist", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"],
  });
  const blocked = [];
  const loopback = (u) => /^(https?|wss?):\/\/(127\.0\.0\.1|localhost)(:\d+)?\//.test(u) || u.startsWith("data:") || u.startsWith("blob:");
  await context.route((url) => !loopback(url.href), (route) => { blocked.push(route.request().url()); return route.abort(); });
  const consoleLines = [];
  context.on("page", (p) => watch(p));
  const watch = (p) => {
    p.on("console", (m) => consoleLines.push({ type: m.type(), text: m.text() }));
    p.on("pageerror", (e) => consoleLines.push({ type: "pageerror", text: `${e.message}\n${e.stack ?? ""}` }));
    p.on("response", (r) => { if (r.status() >= 400) consoleLines.push({ type: "http", text: `${r.status()} ${r.url()}` }); });
  };
  for (const p of context.pages()) watch(p);
  return { context, userDir, consoleLines, blocked };
}

/** Decode an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium's screenshots are) to {width, height, rgba}. */
export function decodePng(buf) {
  if (buf.readUInt32BE(0) !== 0x89504e47) throw new Error("not a PNG");
  let off = 8, width = 0, height = 0, bitDepth = 0, colorType = 0, interlace = 0;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off), type = buf.toString("ascii", off + 4, off + 8);
    const body = buf.subarray(off + 8, off + 8 + len);
    if (type === "IHDR") {
      width = body.readUInt32BE(0); height = body.readUInt32BE(4);
      bitDepth = body[8]; colorType = body[9]; interlace = body[12];
    } else if (type === "IDAT") idat.push(body);
    else if (type === "IEND") break;
    off += 12 + len;
  }
  const channels = { 2: 3, 6: 4 }[colorType];
  if (bitDepth !== 8 || !channels || interlace) throw new Error(`unsupported PNG (depth ${bitDepth}, colour type ${colorType}, interlace ${interlace})`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = new Uint8Array(width * height * 4);
  let prev = new Uint8Array(stride), cur = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? cur[i - channels] : 0, b = prev[i], c = i >= channels ? prev[i - channels] : 0;
      let p;
      if (f === 0) p = 0;
      else if (f === 1) p = a;
      else if (f === 2) p = b;
      else if (f === 3) p = (a + b) >> 1;
      else if (f === 4) { const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c); p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      else throw new Error(`bad PNG filter ${f}`);
      cur[i] = (line[i] + p) & 255;
    }
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 4;
      out[o] = cur[x * channels]; out[o + 1] = cur[x * channels + 1]; out[o + 2] = cur[x * channels + 2];
      out[o + 3] = channels === 4 ? cur[x * channels + 3] : 255;
    }
    [prev, cur] = [cur, prev];
  }
  return { width, height, rgba: out };
}

/** Colour classes of the test scene's discs (splat_test_scene.py), on what a splat renderer draws. */
const CLASSES = {
  red: (r, g, b) => r > 140 && g < 90 && b < 90,
  green: (r, g, b) => g > 130 && r < 110 && b < 110,
  blue: (r, g, b) => b > 140 && r < 120 && g < 140,
  yellow: (r, g, b) => r > 140 && g > 120 && b < 90,
};

/**
 * Count drawn pixels (farther than 40 in summed |rgb| from `background`) and each disc's pixels and
 * centroid. `problem` names the first thing wrong: too little drawn, a colour missing, or the discs not
 * in the scene's layout (red < green < blue along x, yellow above green; with `yellowRightOfGreen`
 * the yellow disc must sit right of the green one, as it does in later frames of the test sequence).
 */
export function analyseScene({ width, height, rgba }, { background = [0, 0, 0], minDrawn = 0.01, minPerColour = 0.0015, yellowRightOfGreen = false } = {}) {
  const n = width * height;
  let drawn = 0;
  const acc = Object.fromEntries(Object.keys(CLASSES).map((k) => [k, { count: 0, x: 0, y: 0 }]));
  for (let i = 0; i < n; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    if (Math.abs(r - background[0]) + Math.abs(g - background[1]) + Math.abs(b - background[2]) > 40) drawn++;
    for (const [k, f] of Object.entries(CLASSES)) {
      if (f(r, g, b)) { const a = acc[k]; a.count++; a.x += i % width; a.y += Math.floor(i / width); }
    }
  }
  const discs = {};
  for (const [k, a] of Object.entries(acc)) discs[k] = { pixels: a.count, x: a.count ? +(a.x / a.count / width).toFixed(3) : null, y: a.count ? +(a.y / a.count / height).toFixed(3) : null };
  const res = { width, height, drawnFraction: +(drawn / n).toFixed(4), discs, problem: null };
  if (drawn / n < minDrawn) res.problem = `only ${(100 * drawn / n).toFixed(2)}% of the pixels are drawn (blank?)`;
  else {
    const missing = Object.entries(discs).filter(([, d]) => d.pixels < minPerColour * n).map(([k, d]) => `${k} (${d.pixels} px)`);
    if (missing.length) res.problem = `colours missing: ${missing.join(", ")}`;
    else if (!(discs.red.x < discs.green.x && discs.green.x < discs.blue.x)) res.problem = `discs not red < green < blue left to right: ${JSON.stringify(discs)}`;
    else if (!(discs.yellow.y < discs.green.y)) res.problem = `yellow disc is not above the green one (image upside down?): ${JSON.stringify(discs)}`;
    else if (yellowRightOfGreen && !(discs.yellow.x > discs.green.x + 0.03)) res.problem = `yellow disc not moved right of green: ${JSON.stringify(discs)}`;
    else if (!yellowRightOfGreen && Math.abs(discs.yellow.x - discs.green.x) > 0.06) res.problem = `yellow disc is not above the green one: ${JSON.stringify(discs)}`;
  }
  return res;
}
