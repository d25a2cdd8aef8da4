// The splat preview panel: a 3D view of Gaussian splats (WebGL2, canvas-2D fallback) with orbit/pan/
// zoom, a status line, and a timestep slider with play/pause when the result is a sequence.
//
// It knows nothing about ComfyUI: it loads files through a small `host` object
//   fetchBytes(ref) -> Promise<ArrayBuffer>   ref = {filename, subfolder, type}
// so a plain page (or node's test runner) can drive it.
//
// Mouse: left-drag orbits, right-, middle- or shift-drag pans, the wheel zooms, double-click (or
// "Fit") frames the splats again, looking down +z like the source camera.

import { el, injectCss } from "./lavr_dom.js";
import { OrbitCamera } from "./lavr_view3d.js";
import { concatSplats, formatOfName, parseManifest, parseSplatFile } from "./splat_parse.js";
import { robustBounds, viewOf } from "./splat_math.js";
import { createRenderer, SplatRenderer2D } from "./splat_gl.js";

const CSS = `
.lavr-splat{box-sizing:border-box;display:flex;flex-direction:column;width:100%;height:100%;min-height:260px;
  font:11px/1.3 sans-serif;color:var(--input-text,#ddd);background:#121317;border-radius:6px;overflow:hidden;user-select:none}
.dom-widget > .lavr-splat{height:100%;width:100%}
.lavr-splat *{box-sizing:border-box}
.lavr-splat-bar{display:flex;gap:4px;align-items:center;padding:3px 4px;background:#1e2127;min-height:24px}
.lavr-splat-bar button{font:11px sans-serif;padding:2px 6px;border-radius:4px;border:1px solid #3a3f48;
  background:var(--comfy-input-bg,#2a2e35);color:inherit;cursor:pointer}
.lavr-splat-bar button:disabled{opacity:.4;cursor:default}
.lavr-splat-bar input[type=range]{flex:1;min-width:60px}
.lavr-splat-info{flex:1;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;font-variant-numeric:tabular-nums}
.lavr-splat-view{position:relative;flex:1;min-height:160px;background:#121317}
.lavr-splat-view canvas{position:absolute;inset:0;width:100%;height:100%;display:block;outline:none;cursor:grab}
.lavr-splat-msg{position:absolute;left:6px;right:6px;top:6px;padding:5px 7px;border-radius:4px;pointer-events:none;
  white-space:pre-wrap;display:none}
.lavr-splat-msg.lavr-err{background:#5a1f24ee;color:#fff}
.lavr-splat-msg.lavr-note{background:#00000088;color:#ffd27a}
.lavr-splat-frame{min-width:70px;text-align:right;font-variant-numeric:tabular-nums}
`;


const CACHE_FRAMES = 12;

/**
 * Turn a `ui.lavr_splat` list into what the panel plays: {frames: [ref], static: ref|null, times, label}.
 * An entry is a splat file, or a sequence manifest (format "json", a .json file name, or a `manifest`
 * field naming the manifest file, or holding the manifest itself); several plain files play as frames.
 */
export async function resolveSource(entries, fetchBytes) {
  const list = (Array.isArray(entries) ? entries : [entries]).filter((e) => e && typeof e === "object");
  if (!list.length) throw new Error("the node sent no splat files");
  const ref = (e, filename) => ({ filename, subfolder: e.subfolder ?? "", type: e.type ?? "output" });
  // LaVR's Save Splat lists the manifest first ({manifest: true}) and then the files it names
  const isManifest = (e) => (e.manifest && typeof e.manifest === "object") || (typeof e.manifest === "string" && e.manifest)
    || e.format === "json" || formatOfName(e.filename) === "json";
  const first = list.find(isManifest) ?? list[0];
  let manifest = null, mref = null;
  if (first.manifest && typeof first.manifest === "object") manifest = first.manifest;
  else if (typeof first.manifest === "string" && first.manifest) mref = ref(first, first.manifest);
  else if (first.format === "json" || formatOfName(first.filename) === "json") mref = ref(first, first.filename);
  if (mref) {
    const text = new TextDecoder().decode(await fetchBytes(mref));
    manifest = JSON.parse(text);
  }
  if (manifest) {
    const m = parseManifest(manifest);
    const base = mref ?? ref(first, first.filename);
    return {
      frames: m.frames.map((f) => ({ ...ref(base, f.file), format: formatOfName(f.file), gaussians: f.gaussians })),
      static: m.static ? { ...ref(base, m.static.file), format: formatOfName(m.static.file), gaussians: m.static.gaussians } : null,
      times: m.frames.map((f) => f.time),
      label: mref?.filename ?? first.filename,
    };
  }
  const frames = list.map((e) => ({ ...ref(e, e.filename), format: e.format ?? formatOfName(e.filename), gaussians: e.gaussians ?? null }));
  return { frames, static: null, times: frames.map((_, i) => i), label: frames.length > 1 ? `${frames.length} files` : frames[0].filename };
}

export class SplatPreview {
  /** `forceCanvas2D` skips WebGL2 (the fallback renderer, for tests and broken drivers). */
  constructor(host, { nodeId = "", forceCanvas2D = false } = {}) {
    injectCss("lavr-splat-css", CSS);
    this.host = host;
    this.cam = new OrbitCamera();
    this.cam.yaw = 0;
    this.cam.pitch = 0;
    this.cam.update();
    this.source = null;
    this.cache = new Map(); // "subfolder/filename" -> SplatData
    this.frame = 0;
    this.playing = false;
    this.loadToken = 0;
    this.state = { status: "empty", error: null, frame: 0, frames: 0, splats: 0, shown: 0, drawn: 0, renderer: null, drawMs: 0, draws: 0 };
    this.destroyed = false;
    this._build(nodeId);
    this._makeRenderer(forceCanvas2D);
    this._setMessage("Run the node to preview its Gaussian splats.", "note");
    this.requestDraw();
  }

  // ------------------------------------------------------------------ DOM
  _build(nodeId) {
    const btn = (text, title, fn) => el("button", { text, title, type: "button", onclick: (e) => { e.preventDefault(); fn(); } });
    this.info = el("span", { class: "lavr-splat-info", text: "no splats yet" });
    this.btnFit = btn("Fit", "Frame the splats again (or double-click the view)", () => this.fit());
    const bar = el("div", { class: "lavr-splat-bar" }, [this.info, this.btnFit]);
    this.canvas = el("canvas", { tabindex: "0", "data-lavr-splat-canvas": "1" });
    this.msg = el("div", { class: "lavr-splat-msg" });
    this.view = el("div", { class: "lavr-splat-view" }, [this.canvas, this.msg]);
    this.btnPlay = btn("▶", "Play / pause the timesteps", () => this.togglePlay());
    this.slider = el("input", { type: "range", min: "0", max: "0", step: "1", value: "0", title: "Timestep" });
    this.slider.addEventListener("input", () => this.setFrame(parseInt(this.slider.value, 10)));
    this.frameLabel = el("span", { class: "lavr-splat-frame", text: "" });
    this.timeline = el("div", { class: "lavr-splat-bar" }, [this.btnPlay, this.slider, this.frameLabel]);
    this.timeline.style.display = "none";
    this.root = el("div", { class: "lavr-splat widget-expands", "data-lavr-splat": "1", "data-node-id": String(nodeId), "data-capture-wheel": "true" },
      [bar, this.view, this.timeline]);
    // keep pointer and wheel input here: the node must not move and the graph must not zoom
    this.root.addEventListener("pointerdown", (e) => e.stopPropagation());
    this.root.addEventListener("wheel", (e) => e.stopPropagation(), { passive: true });
    this.root.addEventListener("contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); });
    this._bindCanvas(this.canvas);
    this._resizeObs = new ResizeObserver(() => this.requestDraw());
    this._resizeObs.observe(this.view);
  }

  _bindCanvas(c) {
    c.addEventListener("pointerdown", (e) => {
      c.setPointerCapture?.(e.pointerId);
      this.drag = { x: e.clientX, y: e.clientY, pan: e.button === 1 || e.button === 2 || e.shiftKey };
      c.style.cursor = "grabbing";
    });
    c.addEventListener("pointermove", (e) => {
      if (!this.drag) return;
      const dx = e.clientX - this.drag.x, dy = e.clientY - this.drag.y;
      this.drag.x = e.clientX; this.drag.y = e.clientY;
      // the DOM widget may be scaled with the graph: convert screen pixels to canvas CSS pixels
      const k = this.canvas.clientWidth / Math.max(this.canvas.getBoundingClientRect().width, 1);
      if (this.drag.pan) this.cam.pan(dx * k, dy * k);
      else this.cam.orbit(dx * k, dy * k);
      this.requestDraw();
    });
    const up = () => { this.drag = null; c.style.cursor = "grab"; };
    c.addEventListener("pointerup", up);
    c.addEventListener("lostpointercapture", up);
    c.addEventListener("dblclick", () => this.fit());
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      e.stopPropagation();
      this.cam.zoom(Math.exp(Math.max(-200, Math.min(200, e.deltaY)) * 0.0015));
      this.requestDraw();
    }, { passive: false });
  }

  _makeRenderer(forceCanvas2D = false) {
    const { renderer, fallbackReason } = forceCanvas2D
      ? { renderer: new SplatRenderer2D(this.canvas), fallbackReason: "switched off" }
      : createRenderer(this.canvas);
    if (renderer instanceof SplatRenderer2D && !renderer.ctx) {
      // the canvas already holds a (broken) WebGL context: a fresh canvas takes the 2D one
      const fresh = el("canvas", { tabindex: "0", "data-lavr-splat-canvas": "1" });
      this.canvas.replaceWith(fresh);
      this.canvas = fresh;
      this._bindCanvas(fresh);
      this.renderer = new SplatRenderer2D(fresh);
    } else this.renderer = renderer;
    this.fallbackReason = fallbackReason;
    this.state.renderer = this.renderer.kind;
    if (fallbackReason) console.warn(`[LaVR] splat preview without WebGL2 (${fallbackReason}); drawing fewer, flat splats.`);
  }

  destroy() {
    this.destroyed = true;
    this.playing = false;
    this._resizeObs?.disconnect();
    if (this._raf) cancelAnimationFrame(this._raf);
    clearTimeout(this._playTimer);
    this.renderer?.dispose();
    this.cache.clear();
  }

  _setMessage(text, kind = "note") {
    this.msg.textContent = text ?? "";
    this.msg.className = `lavr-splat-msg ${kind === "error" ? "lavr-err" : "lavr-note"}`;
    this.msg.style.display = text ? "block" : "none";
  }

  _fail(err) {
    const text = String(err?.message ?? err);
    this.state.status = "error";
    this.state.error = text;
    this._setMessage(`Cannot preview: ${text}`, "error");
    this.info.textContent = this.source?.label ?? "no splats";
  }

  // ------------------------------------------------------------------ loading
  /** Show a node's `ui.lavr_splat` list (replaces what was shown; keeps the view unless it is new). */
  async show(entries) {
    const token = ++this.loadToken;
    this.playing = false;
    this.state.status = "loading";
    this.state.error = null;
    this._setMessage("Loading splats…", "note");
    try {
      const src = await resolveSource(entries, (ref) => this.host.fetchBytes(ref));
      if (token !== this.loadToken) return;
      const same = this.source && this.source.label === src.label && this.source.frames.length === src.frames.length;
      this.source = src;
      this.cache.clear();
      this.frame = Math.min(same ? this.frame : 0, src.frames.length - 1);
      this.slider.max = String(src.frames.length - 1);
      this.timeline.style.display = src.frames.length > 1 ? "" : "none";
      await this._loadFrame(this.frame, token, !same || !this.fitted);
    } catch (e) {
      if (token === this.loadToken) this._fail(e);
    }
  }

  async _fetchSplats(ref) {
    const key = `${ref.type}/${ref.subfolder}/${ref.filename}`;
    if (this.cache.has(key)) return this.cache.get(key);
    if (!ref.format) throw new Error(`${ref.filename}: unknown splat format (.ply, .splat or .spz can be previewed)`);
    const bytes = await this.host.fetchBytes(ref);
    let data;
    try {
      data = await parseSplatFile(bytes, ref.format);
    } catch (e) {
      throw new Error(`${ref.filename}: ${e.message}`);
    }
    this.cache.set(key, data);
    while (this.cache.size > CACHE_FRAMES) this.cache.delete(this.cache.keys().next().value);
    return data;
  }

  async _loadFrame(i, token = this.loadToken, refit = false) {
    const src = this.source;
    const [stat, dyn] = await Promise.all([src.static ? this._fetchSplats(src.static) : null, this._fetchSplats(src.frames[i])]);
    if (token !== this.loadToken || this.destroyed) return;
    const data = concatSplats(stat, dyn);
    const shown = this.renderer.setData(data);
    this.frame = i;
    this.slider.value = String(i);
    const t = src.times[i];
    this.frameLabel.textContent = `${i + 1} / ${src.frames.length}`;
    this.frameLabel.title = typeof t === "number" ? `t = ${t.toFixed(3)} s` : "";
    Object.assign(this.state, { status: "ready", frame: i, frames: src.frames.length, splats: data.count, shown, shDegree: data.shDegree });
    if (refit) { this.fitTo(data); this.fitted = true; }
    const sub = shown < data.count ? ` (${shown.toLocaleString()} drawn)` : "";
    const gl = this.renderer.kind === "webgl2" ? "" : " · no WebGL2: flat preview";
    this.info.textContent = `${src.label} · ${data.count.toLocaleString()} splats${sub}${gl}`;
    this.info.title = `${src.frames[i].filename}${src.static ? ` + ${src.static.filename}` : ""}; SH degree ${data.shDegree} (the preview draws the base colour)`;
    this._setMessage(this.fallbackReason ? `WebGL2 unavailable (${this.fallbackReason}): flat preview.` : "", "note");
    this.lastData = data;
    this.requestDraw();
  }

  /** Go to timestep i of a sequence (loads its file, cached). */
  async setFrame(i) {
    if (!this.source) return;
    i = Math.max(0, Math.min(this.source.frames.length - 1, i | 0));
    if (i === this.frame && this.state.status === "ready") return;
    const token = ++this.loadToken;
    this.frameLabel.textContent = `${i + 1} / ${this.source.frames.length} …`;
    try {
      await this._loadFrame(i, token);
    } catch (e) {
      if (token === this.loadToken) this._fail(e);
    }
  }

  togglePlay() {
    if (!this.source || this.source.frames.length < 2) return;
    this.playing = !this.playing;
    this.btnPlay.textContent = this.playing ? "❚❚" : "▶";
    const step = async () => {
      if (!this.playing || this.destroyed) return;
      const started = performance.now();
      await this.setFrame((this.frame + 1) % this.source.frames.length);
      const times = this.source.times;
      const dt = times.length > 1 ? Math.max(0.05, (times[times.length - 1] - times[0]) / (times.length - 1)) : 0.25;
      this._playTimer = setTimeout(step, Math.max(0, dt * 1000 - (performance.now() - started)));
    };
    if (this.playing) step();
  }

  // ------------------------------------------------------------------ view
  /** Look down +z (as the source camera does) at the bulk of the splats. */
  fitTo(data) {
    const { center, radius } = robustBounds(data.positions, data.count);
    this.cam.target = center;
    this.cam.yaw = 0;
    this.cam.pitch = 0;
    this.cam.distance = (radius / Math.tan(this.cam.fovY / 2)) * 1.1;
    this.cam.update();
  }

  fit() {
    if (this.lastData) this.fitTo(this.lastData);
    this.requestDraw();
  }

  requestDraw() {
    if (this._raf || this.destroyed) return;
    this._raf = requestAnimationFrame(() => {
      this._raf = null;
      this.draw();
    });
  }

  draw() {
    const c = this.canvas;
    const cssW = Math.max(c.clientWidth, 1), cssH = Math.max(c.clientHeight, 1);
    if (cssW < 2 || cssH < 2) return;
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    const w = Math.round(cssW * dpr), h = Math.round(cssH * dpr);
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    this.cam.setViewport(cssW, cssH);
    const t0 = performance.now();
    const drawn = this.renderer.draw(viewOf(this.cam, w, h));
    this.state.drawMs = +(performance.now() - t0).toFixed(1);
    this.state.drawn = drawn;
    this.state.draws++;
  }
}
