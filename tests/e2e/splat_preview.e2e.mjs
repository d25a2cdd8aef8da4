// Browser test of the in-node splat preview (web/lavr_splat_preview.js) in the real ComfyUI frontend,
// driven in Debian's headless Chromium (WebGL2 on SwiftShader) by playwright-core.
//
// The test scene (splat_test_scene.py, written with lavr_core's writers) is placed in the server's
// output folder as .ply, .splat, .spz and a 3-timestep sequence; an `executed` event carrying
// `ui.lavr_splat` is then dispatched through the app's api for a plain node (PrimitiveString: the
// extension must work for any node), exactly as the server's websocket message would arrive. The
// preview must load each file through /view and draw the scene upright (the same pixel checks as the
// independent-viewer test), orbit and zoom with the mouse without moving the node, step through the
// sequence, report a missing file, and do all that in the Vue node renderer too. When the server has
// LaVRSaveSplat and SPLAT_WORKFLOW names a workflow using it, that workflow is queued from the page
// and its real result previewed as well.
//
// Env: COMFY_URL, COMFY_OUTPUT (the server's output folder), SPLAT_PREVIEW_SHOT or SHOT (screenshot; "-vue"
// and "-sequence" variants go next to it), SPLAT_WORKFLOW (optional), OUT (JSON report), CHROMIUM, PYTHON.
// Prints "PASS name" / "FAIL name: why" per check and "N passed, N failed"; exits 1 on a failure.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { analyseScene, decodePng, launchChromium, makeChecker, writeReport } from "./splat_e2e_common.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const BASE = (process.env.COMFY_URL ?? "http://127.0.0.1:8188").replace(/\/$/, "");
const OUTPUT = process.env.COMFY_OUTPUT;
const SHOT = process.env.SPLAT_PREVIEW_SHOT ?? process.env.SHOT ?? path.join(REPO, "out", "screenshots", "splat_preview.png");
const shotVariant = (suffix) => SHOT.replace(/(\.png)?$/i, `-${suffix}.png`);
const WORKFLOW = process.env.SPLAT_WORKFLOW ?? "";
const OUT = process.env.OUT ?? "";
const PYTHON = process.env.PYTHON ?? (fs.existsSync(path.join(REPO, ".venv/bin/python")) ? path.join(REPO, ".venv/bin/python") : "python3");
const GENERIC_NODE = "PrimitiveString";
const SUB = "lavr_e2e_splat";
const BG = [18, 19, 23]; // splat_gl.js BACKGROUND
const TIMEOUT = 30000;
const t0 = Date.now();
const { check, record, summary, results } = makeChecker();
const skip = (name, why) => record(name, false, `not run: ${why}`);

// Console noise the frontend makes on a fresh user dir with no network (see editor.e2e.mjs).
const ALLOWED_CONSOLE = [
  /\/user\.css\b/, /\/api\/userdata\?dir=workflows/, /\/api\/userdata\?dir=subgraphs/, /comfy\.templates\.json/,
  /Cannot read properties of undefined \(reading 'id'\)/, /Refused to connect to .*(api\.comfy\.org|comfy\.org)/,
  /api\.comfy\.org/, /Failed to load resource: the server responded with a status of 404/,
  /Failed to load resource: net::ERR_FAILED/, /net::ERR_NAME_NOT_RESOLVED/,
  // SwiftShader's WebGL warns about slow paths (no GPU here)
  /GL Driver Message/, /GPU stall due to ReadPixels/, /WebGL: too many errors/, /Automatic fallback to software WebGL/,
];

if (!OUTPUT || !fs.existsSync(OUTPUT)) {
  console.log(`FAIL setup: COMFY_OUTPUT (the server's output folder) is not set or missing: ${OUTPUT}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}

// ------------------------------------------------------------------ test files in the output folder
const dir = path.join(OUTPUT, SUB);
fs.mkdirSync(dir, { recursive: true });
const py = (args) => spawnSync(PYTHON, [path.join(HERE, "splat_test_scene.py"), ...args], { encoding: "utf8" });
for (const args of [[path.join(dir, "scene.ply")], [path.join(dir, "scene.splat")], [path.join(dir, "scene.spz")],
  ["--sequence", path.join(dir, "seq"), "--frames", "3"]]) {
  const r = py(args);
  if (r.status !== 0) {
    console.log(`FAIL write the test scene (${args.join(" ")}): ${r.stderr.slice(-600)}`);
    console.log("0 passed, 1 failed");
    process.exit(1);
  }
}
const entry = (filename, extra = {}) => ({ filename, subfolder: SUB, type: "output", format: path.extname(filename).slice(1), ...extra });

const { context, userDir, consoleLines, blocked } = await launchChromium({ width: 1300, height: 950 });
const report = { timings: {} };
let page;

async function closeDialogs(waitMs = 0) {
  const mask = page.locator(".p-dialog-mask");
  if (waitMs) await mask.first().waitFor({ state: "visible", timeout: waitMs }).catch(() => {});
  for (let i = 0; i < 8 && (await mask.count()) > 0; i++) {
    const close = page.locator(".p-dialog button:has(i.pi-times), .p-dialog .p-dialog-close-button, .p-dialog button[aria-label='Close']");
    if (await close.count()) await close.first().click({ timeout: 2000 }).catch(() => page.keyboard.press("Escape"));
    else await page.keyboard.press("Escape");
    await page.waitForTimeout(300);
  }
}

/** Scale 1, node near the top-left of the graph canvas. */
async function frameNode(id) {
  await page.evaluate((nid) => {
    const app = window.app, n = app.graph.getNodeById(nid), ds = app.canvas.ds;
    ds.scale = 1;
    ds.offset[0] = -n.pos[0] + 60;
    ds.offset[1] = -n.pos[1] + 110;
    app.canvas.setDirty(true, true);
  }, id);
  await page.waitForTimeout(300);
}

/** Dispatch an `executed` message for node `id` as the server's websocket would. */
const dispatchExecuted = (id, entries) => page.evaluate(([nid, list]) => {
  window.app.api.dispatchCustomEvent("executed", { node: String(nid), display_node: String(nid), output: { lavr_splat: list }, prompt_id: "lavr-e2e" });
}, [id, entries]);

/** Wait until the node's preview has loaded (or failed) and drawn; returns its state. */
async function previewState(id, { status = "ready", frame = null } = {}) {
  await page.waitForFunction(([nid, want, fr]) => {
    const p = window.app.graph.getNodeById(nid)?.lavrSplatPreview;
    if (!p) return false;
    if (p.state.status === "error" && want !== "error") return true;
    return p.state.status === want && (fr === null || p.state.frame === fr) && (want === "error" || p.state.draws > 0);
  }, [id, status, frame], { timeout: TIMEOUT });
  // two animation frames: the last requested draw has happened
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  return page.evaluate((nid) => ({ ...window.app.graph.getNodeById(nid).lavrSplatPreview.state }), id);
}

const canvasSel = (id, scope = "") => `${scope}[data-lavr-splat][data-node-id="${id}"] canvas[data-lavr-splat-canvas]`;

/**
 * The preview canvas's own pixels (read with toDataURL, so nodes overlapping it on screen do not
 * matter), decoded; `file` also gets what the user sees there (a screenshot of its box).
 */
async function canvasPixels(id, file = null, scope = "") {
  const sel = canvasSel(id, scope);
  const loc = page.locator(sel);
  await loc.waitFor({ state: "visible", timeout: 10000 });
  const box = await loc.boundingBox();
  if (!box || box.width < 150 || box.height < 120) throw new Error(`preview canvas missing or tiny: ${JSON.stringify(box)}`);
  if (file) await page.screenshot({ path: file, clip: box });
  const url = await page.evaluate((s) => document.querySelector(s).toDataURL("image/png"), sel);
  return decodePng(Buffer.from(url.slice(url.indexOf(",") + 1), "base64"));
}

function sceneCheck(px, opts = {}) {
  const a = analyseScene(px, { background: BG, ...opts });
  console.log(`  ${JSON.stringify({ drawn: a.drawnFraction, discs: Object.fromEntries(Object.entries(a.discs).map(([k, d]) => [k, [d.pixels, d.x, d.y]])) })}`);
  return a.problem ?? null;
}

try {
  page = context.pages()[0] ?? await context.newPage();
  const appReady = await check("app and LaVR splat preview extension loaded", async () => {
    await page.goto(BASE, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => window.app?.graph && window.LiteGraph && window.LAVR_SPLAT_PREVIEW?.ready === true, null, { timeout: 60000 });
    const names = await page.evaluate(() => (window.app.extensions ?? []).map((e) => e.name));
    if (!names.includes("lavr.splat_preview")) return "extension not in app.extensions";
  });
  if (!appReady) throw new Error("app did not start");
  await closeDialogs(4000);
  await page.evaluate(async () => { await window.app.extensionManager.setting.set("Comfy.VueNodes.Enabled", false); });
  const serverNodes = await page.evaluate(async () => Object.keys(await (await window.app.api.fetchApi("/object_info")).json()));

  // ---------------------------------------------------------------- a plain node gets the preview
  let nodeId = null;
  const shown = await check(`a ${GENERIC_NODE} node whose result has ui.lavr_splat shows the .ply (LiteGraph renderer)`, async () => {
    nodeId = await page.evaluate(async (type) => {
      await window.app.loadGraphData({ last_node_id: 0, last_link_id: 0, nodes: [], links: [], groups: [], config: {}, extra: {}, version: 0.4 });
      const n = window.LiteGraph.createNode(type);
      n.pos = [100, 100];
      window.app.graph.add(n);
      return n.id;
    }, GENERIC_NODE);
    const before = await page.evaluate((id) => !!window.app.graph.getNodeById(id).lavrSplatPreview, nodeId);
    if (before) return "a node that never produced splats already has a preview";
    const t = Date.now();
    await dispatchExecuted(nodeId, [entry("scene.ply", { gaussians: 4000 })]);
    const st = await previewState(nodeId);
    report.timings.ply_load_and_draw_ms = Date.now() - t;
    if (st.status !== "ready") return `preview ${st.status}: ${st.error}`;
    if (st.splats !== 4000) return `preview loaded ${st.splats} splats, the file has 4000`;
    console.log(`  renderer ${st.renderer}, ${st.drawn} splats drawn in ${st.drawMs} ms, load+draw ${report.timings.ply_load_and_draw_ms} ms`);
    if (st.renderer !== "webgl2") return `renderer is ${st.renderer}, expected webgl2`;
    await frameNode(nodeId);
    // the frontend moves DOM widgets on its next canvas draw
    const inside = await page.waitForFunction((id) => {
      const app = window.app, n = app.graph.getNodeById(id), ds = app.canvas.ds;
      app.canvas.setDirty(true, true);
      const r = app.canvas.canvas.getBoundingClientRect();
      const b = document.querySelector(`[data-lavr-splat][data-node-id="${id}"]`).getBoundingClientRect();
      const x = r.left + (n.pos[0] + ds.offset[0]) * ds.scale, y = r.top + (n.pos[1] + ds.offset[1]) * ds.scale;
      return b.width > 0 && b.left >= x - 2 && b.top >= y - 2 && b.right <= x + n.size[0] * ds.scale + 2 && b.bottom <= y + n.size[1] * ds.scale + 2;
    }, nodeId, { timeout: 10000 }).then(() => true, () => false);
    if (!inside) return "the preview is not inside the node";
    return sceneCheck(await canvasPixels(nodeId)) ?? true;
  });

  if (shown) {
    await check("screenshot saved (LiteGraph renderer)", async () => {
      fs.mkdirSync(path.dirname(path.resolve(SHOT)), { recursive: true });
      await closeDialogs();
      await page.screenshot({ path: SHOT });
      await canvasPixels(nodeId, shotVariant("canvas"));
    });

    await check("the preview is not sent in the prompt nor saved in widgets_values", async () => {
      const r = await page.evaluate(async (id) => {
        const n = window.app.graph.getNodeById(id);
        const prompt = (await window.app.graphToPrompt()).output;
        return { values: n.serialize().widgets_values ?? [], inputs: Object.keys(prompt[String(id)]?.inputs ?? {}) };
      }, nodeId);
      if (r.inputs.includes("lavr_splat_preview")) return "the preview widget is in the prompt";
      if (r.values.length !== 1) return `widgets_values ${JSON.stringify(r.values)} (preview leaked in?)`;
    });

    await check("dragging orbits and the wheel zooms the view, and the node stays put", async () => {
      const before = await page.evaluate((id) => { const n = window.app.graph.getNodeById(id); const c = n.lavrSplatPreview.cam; return { pos: [...n.pos], yaw: c.yaw, dist: c.distance, draws: n.lavrSplatPreview.state.draws }; }, nodeId);
      const box = await page.locator(canvasSel(nodeId)).boundingBox();
      const cx = box.x + box.width / 2, cy = box.y + box.height / 2;
      await page.mouse.move(cx, cy);
      await page.mouse.down();
      for (let i = 1; i <= 6; i++) await page.mouse.move(cx + 12 * i, cy + 2 * i);
      await page.mouse.up();
      await page.mouse.wheel(0, -240);
      await page.waitForTimeout(300);
      const after = await page.evaluate((id) => { const n = window.app.graph.getNodeById(id); const c = n.lavrSplatPreview.cam; return { pos: [...n.pos], yaw: c.yaw, dist: c.distance, draws: n.lavrSplatPreview.state.draws, ms: n.lavrSplatPreview.state.drawMs }; }, nodeId);
      console.log(`  yaw ${before.yaw.toFixed(3)} -> ${after.yaw.toFixed(3)}, distance ${before.dist.toFixed(3)} -> ${after.dist.toFixed(3)}, ${after.draws - before.draws} redraws (last ${after.ms} ms)`);
      if (!(Math.abs(after.yaw - before.yaw) > 0.2)) return `yaw changed by ${after.yaw - before.yaw} only`;
      if (!(after.dist < before.dist * 0.9)) return `the wheel did not zoom in (${before.dist} -> ${after.dist})`;
      if (after.draws <= before.draws) return "the view was not redrawn";
      if (Math.hypot(after.pos[0] - before.pos[0], after.pos[1] - before.pos[1]) > 0.5) return `the node moved from ${before.pos} to ${after.pos}`;
      // turned about 40 degrees: still drawn, no longer the front view
      const a = analyseScene(await canvasPixels(nodeId), { background: BG });
      if (a.drawnFraction < 0.01) return `the orbited view is blank (${a.drawnFraction})`;
      await page.locator(`[data-lavr-splat][data-node-id="${nodeId}"] button`, { hasText: "Fit" }).click();
      await page.waitForTimeout(200);
      const fit = await page.evaluate((id) => window.app.graph.getNodeById(id).lavrSplatPreview.cam.yaw, nodeId);
      if (fit !== 0) return `Fit left yaw at ${fit}`;
    });

    await check(".splat and .spz results are previewed too", async () => {
      for (const f of ["scene.splat", "scene.spz"]) {
        await dispatchExecuted(nodeId, [entry(f)]);
        await page.waitForFunction(([id, name]) => window.app.graph.getNodeById(id).lavrSplatPreview.source?.label === name, [nodeId, f], { timeout: TIMEOUT });
        const st = await previewState(nodeId);
        if (st.status !== "ready" || st.splats !== 4000) return `${f}: ${st.status} ${st.error ?? ""} (${st.splats} splats)`;
        const problem = sceneCheck(await canvasPixels(nodeId));
        if (problem) return `${f}: ${problem}`;
      }
    });

    await check("a sequence manifest gets a timestep slider that loads each frame", async () => {
      await dispatchExecuted(nodeId, [{ filename: "scene.json", subfolder: `${SUB}/seq`, type: "output", format: "json" }]);
      const s0 = await previewState(nodeId, { frame: 0 });
      if (s0.status !== "ready" || s0.frames !== 3) return `sequence ${s0.status} ${s0.error ?? ""} with ${s0.frames} frames`;
      const p0 = sceneCheck(await canvasPixels(nodeId));
      if (p0) return `frame 0: ${p0}`;
      const slider = page.locator(`[data-lavr-splat][data-node-id="${nodeId}"] input[type=range]`);
      if (!(await slider.isVisible())) return "no visible timestep slider";
      await slider.fill("2"); // sets the value and fires 'input', as dragging it does
      const s2 = await previewState(nodeId, { frame: 2 });
      if (s2.status !== "ready") return `frame 2: ${s2.status} ${s2.error ?? ""}`;
      const p2 = sceneCheck(await canvasPixels(nodeId, shotVariant("sequence")), { yellowRightOfGreen: true });
      if (p2) return `frame 2: ${p2}`;
      const label = await page.locator(`[data-lavr-splat][data-node-id="${nodeId}"] .lavr-splat-frame`).textContent();
      if (!/^3 \/ 3/.test(label.trim())) return `frame label reads '${label}'`;
    });

    await check("the canvas-2D fallback (no WebGL2) draws the same scene", async () => {
      const r = await page.evaluate(async (ent) => {
        const urls = await (await window.app.api.fetchApi("/extensions")).json(); // the extension files the app loaded
        const url = urls.find((u) => /\/splat_preview_ui\.js$/.test(u));
        if (!url) return { state: { renderer: null, status: "splat_preview_ui.js not served", error: JSON.stringify(urls) } };
        const { SplatPreview } = await import(window.app.api.fileURL ? window.app.api.fileURL(url) : url);
        const fetchBytes = async (ref) => (await window.app.api.fetchApi(`/view?${new URLSearchParams(ref)}`)).arrayBuffer();
        const p = new SplatPreview({ fetchBytes }, { nodeId: "fallback", forceCanvas2D: true });
        p.root.style.cssText = "position:fixed;left:0;top:0;width:420px;height:330px;z-index:10000";
        document.body.appendChild(p.root);
        await p.show([ent]);
        await new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res)));
        const t = performance.now();
        p.draw();
        const ms = performance.now() - t;
        const png = p.canvas.toDataURL("image/png");
        const state = { ...p.state };
        p.destroy();
        p.root.remove();
        return { png, state, ms };
      }, entry("scene.ply"));
      if (r.state.renderer !== "canvas2d" || r.state.status !== "ready") return `fallback ${r.state.renderer} ${r.state.status} ${r.state.error ?? ""}`;
      console.log(`  canvas-2D: ${r.state.drawn} splats in ${r.ms.toFixed(0)} ms`);
      return sceneCheck(decodePng(Buffer.from(r.png.slice(r.png.indexOf(",") + 1), "base64"))) ?? true;
    });

    await check("a missing file shows an error in the preview instead of failing silently", async () => {
      await dispatchExecuted(nodeId, [entry("does_not_exist.ply")]);
      const st = await previewState(nodeId, { status: "error" });
      if (st.status !== "error" || !/404/.test(st.error ?? "")) return `status ${st.status}, error ${st.error}`;
      const shownText = await page.locator(`[data-lavr-splat][data-node-id="${nodeId}"] .lavr-splat-msg`).textContent();
      if (!/Cannot preview/.test(shownText)) return `message reads '${shownText}'`;
      await dispatchExecuted(nodeId, [entry("scene.ply")]);
      const back = await previewState(nodeId);
      if (back.status !== "ready") return "the preview did not recover on the next result";
    });
  } else {
    for (const n of ["screenshot saved (LiteGraph renderer)", "orbit/zoom", ".splat/.spz", "sequence", "missing file"]) skip(n, "no preview");
  }

  // ---------------------------------------------------------------- Vue node renderer
  if (shown) {
    await check("the preview shows in the Vue node renderer (Nodes 2.0)", async () => {
      await page.evaluate(async () => { await window.app.extensionManager.setting.set("Comfy.VueNodes.Enabled", true); });
      await page.locator(".lg-node[data-node-id]").first().waitFor({ state: "visible", timeout: 20000 });
      await frameNode(nodeId);
      await page.waitForTimeout(500);
      const inNode = await page.evaluate((id) => !!document.querySelector(`.lg-node[data-node-id="${id}"] [data-lavr-splat]`), nodeId);
      if (!inNode) return "the preview is not inside the Vue node element";
      await page.evaluate((id) => window.app.graph.getNodeById(id).lavrSplatPreview.requestDraw(), nodeId);
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      return sceneCheck(await canvasPixels(nodeId, null, `.lg-node[data-node-id="${nodeId}"] `)) ?? true;
    });
    await check("a node created in the Vue renderer gets the preview on its first result", async () => {
      const id2 = await page.evaluate((type) => {
        const n = window.LiteGraph.createNode(type);
        n.pos = [700, 100];
        window.app.graph.add(n);
        return n.id;
      }, GENERIC_NODE);
      await page.locator(`.lg-node[data-node-id="${id2}"]`).waitFor({ state: "visible", timeout: 10000 });
      await dispatchExecuted(id2, [entry("scene.ply")]);
      const st = await previewState(id2);
      if (st.status !== "ready") return `preview ${st.status}: ${st.error}`;
      await frameNode(id2);
      const sel = `.lg-node[data-node-id="${id2}"] [data-lavr-splat]`;
      await page.locator(sel).waitFor({ state: "visible", timeout: 10000 });
      await page.evaluate((id) => window.app.graph.getNodeById(id).lavrSplatPreview.requestDraw(), id2);
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      const problem = sceneCheck(await canvasPixels(id2, null, `.lg-node[data-node-id="${id2}"] `));
      if (problem) return problem;
      await closeDialogs();
      await page.screenshot({ path: shotVariant("vue") });
    });
    await page.evaluate(async () => { await window.app.extensionManager.setting.set("Comfy.VueNodes.Enabled", false); }).catch(() => {});
  }

  // ---------------------------------------------------------------- a real run of LaVRSaveSplat
  const hasSaver = serverNodes.includes("LaVRSaveSplat");
  if (WORKFLOW && fs.existsSync(WORKFLOW) && hasSaver) {
    await check(`queueing ${path.basename(WORKFLOW)} from the page previews LaVRSaveSplat's result`, async () => {
      const wf = JSON.parse(fs.readFileSync(WORKFLOW, "utf8"));
      const saver = wf.nodes.find((n) => n.type === "LaVRSaveSplat");
      if (!saver) return "the workflow has no LaVRSaveSplat node";
      await page.evaluate(async (w) => {
        window.__splatExecuted = []; window.__splatErrors = []; window.__splatDone = [];
        window.app.api.addEventListener("executed", (e) => window.__splatExecuted.push(e.detail));
        window.app.api.addEventListener("execution_error", (e) => window.__splatErrors.push(e.detail));
        window.app.api.addEventListener("execution_success", (e) => window.__splatDone.push(e.detail));
        await window.app.loadGraphData(w);
      }, wf);
      const attached = await page.evaluate((id) => !!window.app.graph.getNodeById(id)?.lavrSplatPreview, saver.id);
      if (!attached) return "LaVRSaveSplat has no preview panel before running";
      // the workflow runs unchanged: in the full suite test_comfy_api.py has run it on this server
      // already, and ComfyUI re-sends a cached output node's ui in its 'executed' message
      const t = Date.now();
      const respP = page.waitForResponse((r) => /\/api\/prompt$/.test(new URL(r.url()).pathname) && r.request().method() === "POST", { timeout: 30000 });
      await page.evaluate(() => window.app.queuePrompt(0, 1));
      const resp = await respP;
      if (resp.status() !== 200) return `POST /prompt answered ${resp.status()}: ${JSON.stringify(await resp.json().catch(() => ({}))).slice(0, 300)}`;
      await page.waitForFunction((id) => window.__splatExecuted.some((d) => String(d.node) === String(id)) || window.__splatErrors.length || window.__splatDone.length, saver.id, { timeout: 300000 });
      const errs = await page.evaluate(() => window.__splatErrors);
      if (errs.length) return `execution_error: ${errs[0].node_type}: ${errs[0].exception_message}`;
      const out = await page.evaluate((id) => window.__splatExecuted.find((d) => String(d.node) === String(id))?.output, saver.id);
      if (!out?.lavr_splat?.length) return `LaVRSaveSplat sent no ui.lavr_splat: ${JSON.stringify(out ?? {}).slice(0, 200)}`;
      const st = await previewState(saver.id);
      report.timings.workflow_run_and_preview_ms = Date.now() - t;
      if (st.status !== "ready") return `preview ${st.status}: ${st.error}`;
      console.log(`  ${JSON.stringify(out.lavr_splat[0])}: ${st.splats} splats, ${st.frames} frame(s), run+preview ${report.timings.workflow_run_and_preview_ms} ms`);
      await page.evaluate((id) => { const n = window.app.graph.getNodeById(id); window.app.canvas.bringToFront?.(n); }, saver.id);
      await frameNode(saver.id);
      await closeDialogs();
      await page.screenshot({ path: shotVariant("workflow") });
      const a = analyseScene(await canvasPixels(saver.id), { background: BG });
      console.log(`  ${(100 * a.drawnFraction).toFixed(1)}% of the preview drawn`);
      if (a.drawnFraction < 0.005) return `the preview of the workflow's splats is blank (${a.drawnFraction} drawn)`;
    });
  } else {
    console.log(`NOTE the queued-workflow check did not run: ${!hasSaver ? "the server has no LaVRSaveSplat node" : `no workflow at SPLAT_WORKFLOW='${WORKFLOW}'`}`);
  }

  // ---------------------------------------------------------------- console
  const unexpected = consoleLines
    .filter((l) => ["error", "pageerror", "http"].includes(l.type))
    .filter((l) => !(l.type === "http" && /\/api\/view\?filename=does_not_exist\.ply/.test(l.text)))
    .filter((l) => !(l.type === "http" && /^404 /.test(l.text) && ALLOWED_CONSOLE.some((re) => re.test(l.text))))
    .filter((l) => !ALLOWED_CONSOLE.some((re) => re.test(l.text)));
  record("no unexpected console errors", unexpected.length === 0, unexpected.slice(0, 5).map((l) => `[${l.type}] ${l.text.split("\n")[0]}`).join(" | "));
  record("nothing outside loopback was requested", blocked.length === 0 || blocked.every((u) => /comfy\.org/.test(u)), blocked.slice(0, 3).join(", "));
} catch (e) {
  record("browser session", false, String(e?.message ?? e).split("\n")[0]);
} finally {
  await context.close();
  fs.rmSync(userDir, { recursive: true, force: true });
}

const seconds = (Date.now() - t0) / 1000;
console.log(`splat preview browser test ${seconds.toFixed(1)} s; screenshots: ${SHOT} ${shotVariant("canvas")} ${shotVariant("sequence")} ${shotVariant("vue")}`);
const failed = summary();
writeReport(OUT, { seconds, checks: results, ...report });
process.exit(failed ? 1 : 0);
