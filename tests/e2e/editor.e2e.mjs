// Browser test of the 3D trajectory editor (web/lavr_trajectory_editor.js) in the real ComfyUI
// frontend, driven in Debian's headless Chromium by playwright-core.
//
// Env: COMFY_URL (running ComfyUI with this pack), WORKFLOW (UI-format workflow JSON holding a
// LaVRCameraTrajectoryBuilder node), SHOT (screenshot path; the Vue-renderer shot goes next to it
// with a "-vue" suffix), OUT (JSON report path, optional), CHROMIUM (default /usr/bin/chromium).
// Prints "PASS name" / "FAIL name: why" per check and "N passed, N failed"; exits 1 on a failure.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const BASE = (process.env.COMFY_URL ?? "http://127.0.0.1:8188").replace(/\/$/, "");
const WORKFLOW_PATH = process.env.WORKFLOW ?? new URL("../../workflows/camera_trajectory_editor.json", import.meta.url).pathname;
const SHOT = process.env.SHOT ?? "editor.png";
const SHOT_VUE = SHOT.replace(/(\.png)?$/i, "-vue.png");
const OUT = process.env.OUT ?? "";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const NODE_TYPE = "LaVRCameraTrajectoryBuilder";
const TIMEOUT = 60000;

const results = [];
let passed = 0, failed = 0;
function record(name, ok, why = "") {
  results.push({ name, ok, why });
  if (ok) { passed++; console.log(`PASS ${name}`); } else { failed++; console.log(`FAIL ${name}: ${why}`); }
  return ok;
}
/** Run one check; a thrown error or a returned string is the failure reason. */
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
const skip = (name, why) => record(name, false, `not run: ${why}`);

// Console noise the frontend makes on a fresh user dir with no network (shared/comfyui README,
// pitfalls 8 and 10). Anything else in the console fails the test.
const ALLOWED_CONSOLE = [
  /\/user\.css\b/,
  /\/api\/userdata\?dir=workflows/,
  /\/api\/userdata\?dir=subgraphs/,
  /comfy\.templates\.json/,
  /Cannot read properties of undefined \(reading 'id'\)/,
  /Refused to connect to .*(api\.comfy\.org|comfy\.org)/,
  /api\.comfy\.org/,
  /Failed to load resource: the server responded with a status of 404/,
  /Failed to load resource: net::ERR_FAILED/,
  /net::ERR_NAME_NOT_RESOLVED/,
];

/** Close modal dialogs (first-run template browser, toasts with masks) that would catch the mouse. */
async function closeDialogs(page, waitMs = 0) {
  const mask = page.locator(".p-dialog-mask");
  if (waitMs) await mask.first().waitFor({ state: "visible", timeout: waitMs }).catch(() => {});
  for (let i = 0; i < 8 && (await mask.count()) > 0; i++) {
    // the template browser ignores Escape: use its close button (an "x" icon), else Escape
    const close = page.locator(".p-dialog button:has(i.pi-times), .p-dialog .p-dialog-close-button, .p-dialog button[aria-label='Close']");
    if (await close.count()) await close.first().click({ timeout: 2000 }).catch(() => page.keyboard.press("Escape"));
    else await page.keyboard.press("Escape");
    await page.waitForTimeout(300);
  }
  const left = await mask.count();
  if (left) throw new Error(`${left} modal dialog(s) stay open`);
}

/** Put the builder node at scale 1 near the top-left of the graph canvas, whole and unobstructed. */
async function frameNode(page) {
  await page.evaluate((id) => {
    const app = window.app, n = app.graph.getNodeById(id), ds = app.canvas.ds;
    ds.scale = 1;
    ds.offset[0] = -n.pos[0] + 80;
    ds.offset[1] = -n.pos[1] + 130;
    app.canvas.setDirty(true, true);
  }, NODE_ID);
  await page.waitForTimeout(300);
}

/** Full page, plus a close-up of the editor next to it ("<shot>-editor.png"). */
async function screenshots(page, file) {
  await closeDialogs(page);
  await page.waitForTimeout(300);
  await page.screenshot({ path: file });
  const box = await page.locator(`[data-lavr-editor][data-node-id="${NODE_ID}"]`).boundingBox();
  if (box) await page.screenshot({ path: file.replace(/\.png$/i, "-editor.png"), clip: { x: Math.max(box.x - 4, 0), y: Math.max(box.y - 4, 0), width: box.width + 8, height: box.height + 8 } });
}

const t0 = Date.now();
const workflow = JSON.parse(fs.readFileSync(WORKFLOW_PATH, "utf8"));
const builderInWf = workflow.nodes?.find((n) => n.type === NODE_TYPE);
if (!builderInWf) {
  console.log(`FAIL workflow: ${WORKFLOW_PATH} has no ${NODE_TYPE} node`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}
const NODE_ID = builderInWf.id;
for (const p of [SHOT, SHOT_VUE]) fs.mkdirSync(path.dirname(path.resolve(p)), { recursive: true });
const userDir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? "/tmp", "lavr-e2e-chromium-"));

// a new, empty profile (--user-data-dir): playwright takes it as launchPersistentContext's argument
const context = await chromium.launchPersistentContext(userDir, {
  executablePath: CHROMIUM,
  viewport: { width: 1400, height: 1000 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    // no DNS for anything but loopback: the frontend calls api.comfy.org otherwise
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"],
});
const consoleLines = [];
const blocked = [];
let report = {};
try {
  const loopback = (u) => /^(https?|wss?):\/\/(127\.0\.0\.1|localhost)(:\d+)?\//.test(u) || u.startsWith("data:") || u.startsWith("blob:");
  await context.route((url) => !loopback(url.href), (route) => { blocked.push(route.request().url()); return route.abort(); });
  const page = context.pages()[0] ?? await context.newPage();
  page.on("console", (m) => consoleLines.push({ type: m.type(), text: m.text() }));
  page.on("pageerror", (e) => consoleLines.push({ type: "pageerror", text: `${e.message}\n${e.stack ?? ""}` }));
  page.on("response", (r) => { if (r.status() >= 400) consoleLines.push({ type: "http", text: `${r.status()} ${r.url()}` }); });

  // ---------------------------------------------------------------- app + extension
  const appReady = await check("app and LaVR editor extension loaded", async () => {
    await page.goto(BASE, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => window.app?.graph && window.LiteGraph && window.LAVR_TRAJECTORY_EDITOR?.ready === true, null, { timeout: TIMEOUT });
    const names = await page.evaluate(() => (window.app.extensions ?? []).map((e) => e.name));
    if (!names.includes("lavr.trajectory_editor")) return `extension not in app.extensions: ${names.filter((n) => !n.startsWith("Comfy")).join(", ")}`;
  });
  if (!appReady) throw new Error("app did not start");
  await closeDialogs(page, 4000); // a fresh user gets the template browser, which would eat the mouse
  // start from the LiteGraph renderer whatever the server's default
  await page.evaluate(async () => { await window.app.extensionManager.setting.set("Comfy.VueNodes.Enabled", false); });

  // ---------------------------------------------------------------- workflow + editor DOM
  const loaded = await check("workflow loaded with app.loadGraphData and its editor state read back", async () => {
    await page.evaluate(async (wf) => {
      window.__lavrExecuted = [];
      window.__lavrErrors = [];
      window.app.api.addEventListener("executed", (e) => window.__lavrExecuted.push(e.detail));
      window.app.api.addEventListener("execution_error", (e) => window.__lavrErrors.push(e.detail));
      window.__lavrDone = [];
      window.app.api.addEventListener("execution_success", (e) => window.__lavrDone.push(e.detail));
      await window.app.loadGraphData(wf);
    }, workflow);
    const frames = await page.evaluate((id) => window.app.graph.getNodeById(id)?.lavrEditor?.state?.keyframes?.map((k) => k.frame), NODE_ID);
    if (!frames) return `node ${NODE_ID} has no editor attached`;
    // the editor read the workflow's saved state back (onConfigure)
    const saved = builderInWf.widgets_values.find((v) => typeof v === "string" && v.trim().startsWith("{"));
    const want = saved ? (JSON.parse(saved).keyframes ?? []).map((k) => k.frame) : [];
    if (JSON.stringify(frames) !== JSON.stringify(want)) return `editor shows keyframes at ${JSON.stringify(frames)}, the workflow has ${JSON.stringify(want)}`;
    await frameNode(page);
  });

  const editorSel = `[data-lavr-editor][data-node-id="${NODE_ID}"]`;
  const editorOnNode = async (label) => {
    const loc = page.locator(editorSel);
    await loc.waitFor({ state: "visible", timeout: 20000 });
    const box = await loc.boundingBox();
    if (!box || box.width < 200 || box.height < 200) return `${label}: editor box too small ${JSON.stringify(box)}`;
    const canvasBox = await page.locator(`${editorSel} canvas[data-lavr-canvas]`).boundingBox();
    if (!canvasBox || canvasBox.height < 120) return `${label}: 3D view canvas missing or tiny ${JSON.stringify(canvasBox)}`;
    // the view has been drawn: count non-background pixels
    const drawn = await page.evaluate((sel) => {
      const c = document.querySelector(`${sel} canvas[data-lavr-canvas]`);
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4 * 7) if (Math.abs(d[i] - 0x10) + Math.abs(d[i + 1] - 0x12) + Math.abs(d[i + 2] - 0x16) > 40) n++;
      return n;
    }, editorSel);
    if (drawn < 100) return `${label}: 3D view looks empty (${drawn} drawn pixels sampled)`;
    return box;
  };

  let stateBefore = null;
  if (loaded) {
    await check("editor appears on the builder node (LiteGraph renderer)", async () => {
      const box = await editorOnNode("litegraph");
      if (typeof box === "string") return box;
      // inside the node's on-screen rectangle
      const nodeRect = await page.evaluate((id) => {
        const app = window.app, n = app.graph.getNodeById(id), ds = app.canvas.ds;
        const r = app.canvas.canvas.getBoundingClientRect();
        const x = r.left + (n.pos[0] + ds.offset[0]) * ds.scale, y = r.top + (n.pos[1] + ds.offset[1]) * ds.scale;
        return { x, y, w: n.size[0] * ds.scale, h: n.size[1] * ds.scale };
      }, NODE_ID);
      const inside = box.x >= nodeRect.x - 2 && box.y >= nodeRect.y - 2 && box.x + box.width <= nodeRect.x + nodeRect.w + 2 && box.y + box.height <= nodeRect.y + nodeRect.h + 2;
      if (!inside) return `editor ${JSON.stringify(box)} is not inside node ${JSON.stringify(nodeRect)}`;
      const textareaShown = await page.evaluate(() => [...document.querySelectorAll("textarea.comfy-multiline-input")].some((t) => t.offsetParent !== null && t.getBoundingClientRect().height > 0));
      if (textareaShown) return "the raw editor_state textarea is still visible";
    });

    await check("editor_state is saved in widgets_values and sent in the prompt", async () => {
      const r = await page.evaluate(async (id) => {
        const n = window.app.graph.getNodeById(id);
        const w = n.widgets.find((x) => x.name === "editor_state");
        const ser = n.serialize();
        const prompt = (await window.app.graphToPrompt()).output;
        return { value: w.value, inValues: ser.widgets_values.includes(w.value), nValues: ser.widgets_values.length, inputs: prompt[String(id)]?.inputs ?? {} };
      }, NODE_ID);
      if (!r.inValues) return "editor_state text missing from widgets_values";
      if (r.nValues !== builderInWf.widgets_values.length) return `widgets_values has ${r.nValues} entries, the workflow ${builderInWf.widgets_values.length} (editor widget leaked in?)`;
      if (r.inputs.editor_state !== r.value) return "prompt's editor_state differs from the widget";
      if ("lavr_trajectory_editor" in r.inputs) return "the editor's own DOM widget was sent in the prompt";
      JSON.parse(r.value || "{}");
    });

    // ---------------------------------------------------------------- keyframes mode + drag
    stateBefore = await check("switching to keyframes mode updates the JSON", async () => {
      const s = await page.evaluate((id) => {
        const n = window.app.graph.getNodeById(id);
        const w = n.widgets.find((x) => x.name === "mode");
        w.value = "keyframes";
        w.callback?.(w.value);
        return n.widgets.find((x) => x.name === "editor_state").value;
      }, NODE_ID);
      const st = JSON.parse(s);
      if (st.mode !== "keyframes") return `JSON mode is ${st.mode}`;
      if (!(st.keyframes?.length >= 2)) return `only ${st.keyframes?.length} keyframes`;
      return st;
    });
  }

  let dragged = null;
  if (stateBefore) {
    const K = stateBefore.keyframes.length > 2 ? 1 : stateBefore.keyframes.length - 1;
    dragged = await check("dragging a keyframe handle with the mouse moves it in the saved JSON", async () => {
      await closeDialogs(page);
      const start = await page.evaluate(([id, k]) => window.app.graph.getNodeById(id).lavrEditor.handleClientPos(k), [NODE_ID, K]);
      if (!start) return `keyframe ${K} handle is not on screen`;
      // a slightly different drag each run, so a server that ran this test before cannot answer from its cache
      const jitter = Math.floor(Math.random() * 20);
      const to = { x: start.x + 60 + jitter, y: start.y - 40 - jitter / 2 };
      await page.mouse.move(start.x, start.y);
      await page.mouse.down();
      for (let i = 1; i <= 8; i++) await page.mouse.move(start.x + ((to.x - start.x) * i) / 8, start.y + ((to.y - start.y) * i) / 8);
      await page.mouse.up();
      const after = await page.evaluate((id) => window.app.graph.getNodeById(id).widgets.find((x) => x.name === "editor_state").value, NODE_ID);
      const st = JSON.parse(after);
      const kb = stateBefore.keyframes[K], ka = st.keyframes.find((k) => k.frame === kb.frame);
      if (!ka) return `keyframe at frame ${kb.frame} vanished`;
      const moved = Math.hypot(...ka.position.map((v, i) => v - kb.position[i]));
      if (!(moved > 0.02)) return `position moved only ${moved}`;
      for (const k of stateBefore.keyframes) {
        if (k === kb) continue;
        const o = st.keyframes.find((x) => x.frame === k.frame);
        if (!o || Math.hypot(...o.position.map((v, i) => v - k.position[i])) > 1e-9) return `keyframe at frame ${k.frame} changed too`;
      }
      // the handle now sits under the mouse where it was released (drag in the view-facing plane)
      const now = await page.evaluate(([id, k]) => window.app.graph.getNodeById(id).lavrEditor.handleClientPos(k), [NODE_ID, K]);
      const off = Math.hypot(now.x - to.x, now.y - to.y);
      if (off > 3) return `handle ended ${off.toFixed(1)} px from the mouse`;
      console.log(`  keyframe ${K} (frame ${kb.frame}) moved ${moved.toFixed(3)} units: ${JSON.stringify(kb.position)} -> ${JSON.stringify(ka.position)}`);
      return { frame: kb.frame, position: ka.position, state: st };
    });
  } else skip("dragging a keyframe handle with the mouse moves it in the saved JSON", "no keyframes state");

  // the first keyframe too: its pose defines where the path starts, and the output must follow it
  let draggedFirst = null;
  if (dragged) {
    draggedFirst = await check("dragging the first keyframe moves it in the saved JSON", async () => {
      const before = JSON.parse(await page.evaluate((id) => window.app.graph.getNodeById(id).widgets.find((x) => x.name === "editor_state").value, NODE_ID));
      const start = await page.evaluate((id) => window.app.graph.getNodeById(id).lavrEditor.handleClientPos(0), NODE_ID);
      if (!start) return "first keyframe handle is not on screen";
      await page.mouse.move(start.x, start.y);
      await page.mouse.down();
      for (let i = 1; i <= 6; i++) await page.mouse.move(start.x - 6 * i, start.y + 3 * i);
      await page.mouse.up();
      const st = JSON.parse(await page.evaluate((id) => window.app.graph.getNodeById(id).widgets.find((x) => x.name === "editor_state").value, NODE_ID));
      const kb = before.keyframes[0], ka = st.keyframes.find((k) => k.frame === kb.frame);
      const moved = ka ? Math.hypot(...ka.position.map((v, i) => v - kb.position[i])) : 0;
      if (!(moved > 0.02)) return `first keyframe moved only ${moved}`;
      return { frame: ka.frame, position: ka.position };
    });
  }

  // ---------------------------------------------------------------- queue + executed
  let executed = null;
  if (dragged) {
    executed = await check("queueing from the page executes the builder node", async () => {
      const respP = page.waitForResponse((r) => /\/api\/prompt$/.test(new URL(r.url()).pathname) && r.request().method() === "POST", { timeout: 30000 });
      await page.evaluate(() => { window.__lavrExecuted.length = 0; window.__lavrErrors.length = 0; window.__lavrDone.length = 0; return window.app.queuePrompt(0, 1); });
      const resp = await respP;
      if (resp.status() !== 200) {
        const body = await resp.json().catch(() => ({}));
        const nodeErr = Object.values(body.node_errors ?? {})[0]?.errors?.[0];
        return `POST /prompt answered ${resp.status()}: ${body.error?.message ?? ""} ${nodeErr ? `${nodeErr.message}: ${nodeErr.details}` : body.error?.details ?? ""}`;
      }
      await page.waitForFunction((id) => window.__lavrExecuted.some((d) => String(d.node) === String(id)) || window.__lavrErrors.length > 0 || window.__lavrDone.length > 0, NODE_ID, { timeout: 180000 });
      const errs = await page.evaluate(() => window.__lavrErrors);
      if (errs.length) return `execution_error: ${errs[0].node_type}: ${errs[0].exception_message}`;
      await page.waitForTimeout(200); // an 'executed' right before 'execution_success' may still be queued
      const seen = await page.evaluate((id) => window.__lavrExecuted.some((d) => String(d.node) === String(id)), NODE_ID);
      if (!seen) return "the prompt finished without running the builder node (its result came from the server's cache)";
      const d = await page.evaluate((id) => window.__lavrExecuted.find((x) => String(x.node) === String(id)), NODE_ID);
      const payload = d?.output?.lavr_editor?.[0];
      if (!payload?.target?.c2w?.length) return `no lavr_editor payload in the executed event: ${JSON.stringify(d?.output ?? {}).slice(0, 200)}`;
      return payload;
    });
  } else skip("queueing from the page executes the builder node", "no drag");

  if (executed) {
    await check("output trajectory reflects the drag (camera at the keyframe's frame, 1e-3)", async () => {
      for (const d of [dragged, draggedFirst].filter(Boolean)) {
        const m = executed.target.c2w[d.frame];
        const t = [m[3], m[7], m[11]];
        const err = Math.max(...t.map((v, i) => Math.abs(v - d.position[i])));
        console.log(`  frame ${d.frame}: output camera ${JSON.stringify(t.map((v) => +v.toFixed(6)))}, keyframe ${JSON.stringify(d.position)}, max error ${err.toExponential(2)}`);
        if (!(err <= 1e-3)) return `camera at frame ${d.frame} is ${JSON.stringify(t)}, dragged keyframe ${JSON.stringify(d.position)} (error ${err})`;
      }
    });
    await check("editor received the executed path and its live path matches it", async () => {
      const r = await page.evaluate((id) => {
        const ed = window.app.graph.getNodeById(id).lavrEditor;
        return { has: !!ed.payload?.target, live: ed.targetCameras().map((c) => c.t) };
      }, NODE_ID);
      if (!r.has) return "onExecuted did not hand the payload to the editor";
      const out = executed.target.c2w.map((m) => [m[3], m[7], m[11]]);
      if (out.length !== r.live.length) return `live path has ${r.live.length} frames, output ${out.length}`;
      let worst = 0;
      out.forEach((p, f) => { worst = Math.max(worst, ...p.map((v, i) => Math.abs(v - r.live[f][i]))); });
      console.log(`  live JS path vs backend path: max |dt| ${worst.toExponential(2)} over ${out.length} frames`);
      if (worst > 1e-4) return `live path differs from the executed one by ${worst}`;
    });
  } else skip("output trajectory reflects the drag (camera at the keyframe's frame, 1e-3)", "no execution");

  if (loaded) {
    await check("timeline moves the highlighted camera", async () => {
      const r = await page.evaluate((id) => {
        const ed = window.app.graph.getNodeById(id).lavrEditor;
        const n = ed.frameCount();
        ed.slider.value = String(n - 1);
        ed.slider.dispatchEvent(new Event("input"));
        const f1 = ed.frame;
        ed.togglePlay();
        return { n, f1, playing: ed.playing };
      }, NODE_ID);
      if (r.f1 !== r.n - 1) return `slider set frame ${r.f1}, expected ${r.n - 1}`;
      await page.waitForTimeout(400);
      const f2 = await page.evaluate((id) => { const ed = window.app.graph.getNodeById(id).lavrEditor; const f = ed.frame; ed.togglePlay(); return f; }, NODE_ID);
      if (!(f2 >= 0 && f2 < r.n - 1)) return `playing did not advance (frame ${f2})`;
      await page.evaluate((id) => window.app.graph.getNodeById(id).lavrEditor.setFrame(Math.floor(window.app.graph.getNodeById(id).lavrEditor.frameCount() / 2)), NODE_ID);
    });

    await check("screenshot saved (LiteGraph renderer)", async () => {
      await screenshots(page, SHOT);
      const size = fs.statSync(SHOT).size;
      if (size < 10000) return `screenshot is only ${size} bytes`;
    });

    await check("bad editor_state JSON shows an error instead of crashing", async () => {
      const r = await page.evaluate(async (id) => {
        const n = window.app.graph.getNodeById(id);
        const w = n.widgets.find((x) => x.name === "editor_state");
        const good = w.value;
        w.value = '{"version": 1, "mode": "keyframes", "keyframes": [oops';
        await new Promise((res) => setTimeout(res, 900)); // the editor polls its widget
        const box = document.querySelector(`[data-lavr-editor][data-node-id="${id}"] .lavr-error`);
        const shown = box && getComputedStyle(box).display !== "none" ? box.textContent : null;
        const kept = w.value; // the editor must not overwrite what the user has
        w.value = good;
        n.lavrEditor.loadFromHost();
        const cleared = getComputedStyle(box).display === "none";
        return { shown, kept, cleared };
      }, NODE_ID);
      if (!r.shown || !/not valid JSON/.test(r.shown)) return `no error text shown (${r.shown})`;
      if (!r.kept.includes("oops")) return "the editor overwrote the bad text";
      if (!r.cleared) return "error stayed after a valid state came back";
    });
  }

  if (executed) {
    await check("'Keys from path' seeds keyframes on the executed path", async () => {
      await closeDialogs(page);
      await page.locator(`${editorSel} button`, { hasText: "Keys from path" }).click();
      const st = JSON.parse(await page.evaluate((id) => window.app.graph.getNodeById(id).widgets.find((x) => x.name === "editor_state").value, NODE_ID));
      if (st.mode !== "keyframes" || st.keyframes.length !== 4) return `got mode ${st.mode} with ${st.keyframes.length} keyframes`;
      const n = executed.target.c2w.length;
      if (st.keyframes[0].frame !== 0 || st.keyframes[3].frame !== n - 1) return `keyframes at ${st.keyframes.map((k) => k.frame)} do not span 0..${n - 1}`;
      for (const k of st.keyframes) {
        const m = executed.target.c2w[k.frame];
        const err = Math.max(...[m[3], m[7], m[11]].map((v, i) => Math.abs(v - k.position[i])));
        if (err > 1e-5) return `keyframe at frame ${k.frame} is ${err} away from the executed camera`;
      }
    });
    await check("keyframes are added (button, double-click) and deleted (Delete key, not the node)", async () => {
      const keys = () => page.evaluate((id) => JSON.parse(window.app.graph.getNodeById(id).widgets.find((x) => x.name === "editor_state").value).keyframes.map((k) => k.frame), NODE_ID);
      const k0 = await keys();
      const n = await page.evaluate((id) => window.app.graph.getNodeById(id).lavrEditor.frameCount(), NODE_ID);
      const free = (f, used) => { while (used.includes(f)) f++; return f; };
      const fa = free(Math.floor(n * 0.2), k0);
      await page.evaluate(([id, f]) => window.app.graph.getNodeById(id).lavrEditor.setFrame(f), [NODE_ID, fa]);
      await page.locator(`${editorSel} button`, { hasText: "+ Key" }).click();
      const k1 = await keys();
      if (k1.length !== k0.length + 1 || !k1.includes(fa)) return `"+ Key" at frame ${fa} gave ${JSON.stringify(k1)} from ${JSON.stringify(k0)}`;
      const fb = free(Math.floor(n * 0.6), k1);
      await page.evaluate(([id, f]) => window.app.graph.getNodeById(id).lavrEditor.setFrame(f), [NODE_ID, fb]);
      const cv = await page.locator(`${editorSel} canvas[data-lavr-canvas]`).boundingBox();
      await page.mouse.dblclick(cv.x + cv.width * 0.15, cv.y + cv.height * 0.25);
      const k2 = await keys();
      if (k2.length !== k1.length + 1 || !k2.includes(fb)) return `double-click at frame ${fb} gave ${JSON.stringify(k2)}`;
      // the double-clicked keyframe is selected: Delete removes it and leaves the graph alone
      const nodes = await page.evaluate(() => window.app.graph.nodes.length);
      await page.keyboard.press("Delete");
      const k3 = await keys();
      if (JSON.stringify(k3) !== JSON.stringify(k1)) return `Delete left ${JSON.stringify(k3)}, expected ${JSON.stringify(k1)}`;
      if ((await page.evaluate(() => window.app.graph.nodes.length)) !== nodes) return "Delete removed a node from the graph";
    });
  }

  // ---------------------------------------------------------------- Vue node renderer
  if (loaded) {
    await check("editor appears on the builder node (Vue node renderer, Nodes 2.0)", async () => {
      await page.evaluate(async () => { await window.app.extensionManager.setting.set("Comfy.VueNodes.Enabled", true); });
      await page.locator(".lg-node[data-node-id]").first().waitFor({ state: "visible", timeout: 20000 });
      await frameNode(page);
      const box = await editorOnNode("vue");
      if (typeof box === "string") return box;
      const inNode = await page.evaluate((id) => !!document.querySelector(`.lg-node[data-node-id="${id}"] [data-lavr-editor]`), NODE_ID);
      if (!inNode) return "editor is not inside the Vue node element";
      const textarea = await page.evaluate((id) => !!document.querySelector(`.lg-node[data-node-id="${id}"] textarea`), NODE_ID);
      if (textarea) return "the raw editor_state textarea is shown in the Vue node";
    });

    await check("editor appears on a node created while the Vue renderer is on", async () => {
      await page.evaluate(async (wf) => { await window.app.loadGraphData(wf); }, workflow);
      await frameNode(page);
      const box = await editorOnNode("vue, reloaded");
      if (typeof box === "string") return box;
      const inNode = await page.evaluate((id) => !!document.querySelector(`.lg-node[data-node-id="${id}"] [data-lavr-editor]`), NODE_ID);
      if (!inNode) return "editor is not inside the Vue node element";
      // and it can be switched to keyframes there too
      const mode = await page.evaluate((id) => {
        const n = window.app.graph.getNodeById(id);
        const w = n.widgets.find((x) => x.name === "mode");
        w.value = "keyframes";
        w.callback?.(w.value);
        return JSON.parse(n.widgets.find((x) => x.name === "editor_state").value).mode;
      }, NODE_ID);
      if (mode !== "keyframes") return `JSON mode ${mode} after switching`;
    });

    await check("dragging a keyframe works in the Vue renderer and does not move the node", async () => {
      const before = await page.evaluate((id) => {
        const n = window.app.graph.getNodeById(id);
        return { pos: [...n.pos], state: JSON.parse(n.widgets.find((x) => x.name === "editor_state").value) };
      }, NODE_ID);
      const k = before.state.keyframes.length - 1;
      await closeDialogs(page);
      const start = await page.evaluate(([id, i]) => window.app.graph.getNodeById(id).lavrEditor.handleClientPos(i), [NODE_ID, k]);
      if (!start) return "last keyframe handle not on screen";
      await page.mouse.move(start.x, start.y);
      await page.mouse.down();
      for (let i = 1; i <= 6; i++) await page.mouse.move(start.x - 5 * i, start.y + 4 * i);
      await page.mouse.up();
      const after = await page.evaluate((id) => {
        const n = window.app.graph.getNodeById(id);
        return { pos: [...n.pos], state: JSON.parse(n.widgets.find((x) => x.name === "editor_state").value) };
      }, NODE_ID);
      const moved = Math.hypot(...after.state.keyframes[k].position.map((v, i) => v - before.state.keyframes[k].position[i]));
      if (!(moved > 0.01)) return `keyframe moved only ${moved}`;
      if (Math.hypot(after.pos[0] - before.pos[0], after.pos[1] - before.pos[1]) > 0.5) return `the node moved from ${before.pos} to ${after.pos}`;
    });

    await check("screenshot saved (Vue node renderer)", async () => {
      await screenshots(page, SHOT_VUE);
      if (fs.statSync(SHOT_VUE).size < 10000) return "screenshot too small";
    });
    await page.evaluate(async () => { await window.app.extensionManager.setting.set("Comfy.VueNodes.Enabled", false); }).catch(() => {});
  }

  // ---------------------------------------------------------------- console
  const unexpected = consoleLines
    .filter((l) => ["error", "pageerror", "http"].includes(l.type))
    .filter((l) => !(l.type === "http" && /^404 /.test(l.text) && ALLOWED_CONSOLE.some((re) => re.test(l.text))))
    .filter((l) => !ALLOWED_CONSOLE.some((re) => re.test(l.text)));
  record("no unexpected console errors", unexpected.length === 0, unexpected.slice(0, 5).map((l) => `[${l.type}] ${l.text.split("\n")[0]}`).join(" | "));
  const lavrWarn = consoleLines.filter((l) => /\[LaVR\]/.test(l.text));
  if (lavrWarn.length) console.log("LaVR console lines:\n  " + lavrWarn.map((l) => l.text).join("\n  "));
  report = { unexpected_console: unexpected, blocked_hosts: [...new Set(blocked.map((u) => { try { return new URL(u).host; } catch { return u; } }))] };
} catch (e) {
  record("browser session", false, String(e?.message ?? e).split("\n")[0]);
} finally {
  await context.close();
  fs.rmSync(userDir, { recursive: true, force: true });
}

const seconds = (Date.now() - t0) / 1000;
console.log(`blocked non-loopback requests: ${blocked.length}`);
console.log(`editor browser test ${seconds.toFixed(1)} s; screenshots: ${SHOT} ${SHOT_VUE}`);
console.log(`${passed} passed, ${failed} failed`);
if (OUT) {
  fs.mkdirSync(path.dirname(path.resolve(OUT)), { recursive: true });
  fs.writeFileSync(OUT, JSON.stringify({ passed, failed, seconds, checks: results, screenshots: [SHOT, SHOT_VUE], ...report }, null, 1));
}
process.exit(failed ? 1 : 0);
