// The trajectory editor panel: a 3D view (source path, target path with camera frustums, point
// cloud, keyframe handles), a toolbar, a keyframe row and a timeline with play/pause.
//
// It knows nothing about ComfyUI: it talks to its node through a small `host` object
//   readStateText() -> string          the editor_state widget's text
//   writeStateText(text)               store new state (saved in the workflow, sent in the prompt)
//   param(name) -> value               other widget values: mode, frames, fps, width, height, fov_deg, target_depth
//   setMode(mode)                      set the node's mode widget
// so a plain test page can drive it with a fake host.
//
// Mouse: left-drag orbits; right-, middle- or shift-drag pans; the wheel zooms. On a keyframe
// handle, left-drag moves it in the plane facing the view and shift-drag moves it in depth (toward
// or away from the viewer); the diamond is the keyframe's look-at point. Double-click adds a
// keyframe, Delete/Backspace removes the selected one.

import { el, injectCss } from "./lavr_dom.js";
import {
  add, sub, scale, column, splitC2W, matrixToQuat, focalFromFov, fovFromFocal, sampleKeyframePath, dist,
} from "./lavr_math.js";
import {
  parseState, serializeState, defaultState, keyframesFromPath, defaultKeyframes,
} from "./lavr_editor_state.js";
import {
  OrbitCamera, strokePolyline, drawGrid, drawAxes, drawFrustum, drawPoints, drawHandle, drawGizmo,
} from "./lavr_view3d.js";

const COLORS = {
  source: "#7f9cc8",
  target: "#ffa336",
  current: "#ffe14d",
  key: "#3fd0ff",
  keySelected: "#ff4fd8",
  look: "#9aa",
  executed: "#ffa336",
};
const HANDLE_RADIUS = 7;
const CSS = `
.lavr-editor{box-sizing:border-box;display:flex;flex-direction:column;width:100%;height:100%;min-height:340px;
  font:11px/1.3 sans-serif;color:var(--input-text,#ddd);background:#15171b;border-radius:6px;overflow:hidden;user-select:none}
.dom-widget > .lavr-editor{height:100%;width:100%}
.lavr-editor *{box-sizing:border-box}
.lavr-bar{display:flex;flex-wrap:wrap;gap:3px;align-items:center;padding:3px 4px;background:#1e2127;min-height:26px}
.lavr-bar button{font:11px sans-serif;padding:2px 6px;border-radius:4px;border:1px solid #3a3f48;
  background:var(--comfy-input-bg,#2a2e35);color:inherit;cursor:pointer}
.lavr-bar button:hover:not(:disabled){border-color:#6a7384}
.lavr-bar button:disabled{opacity:.4;cursor:default}
.lavr-bar button.lavr-on{background:#3b4a2e}
.lavr-bar input[type=range]{flex:1;min-width:60px}
.lavr-bar input[type=number]{width:64px;font:11px sans-serif;padding:1px 3px;border-radius:3px;border:1px solid #3a3f48;
  background:var(--comfy-input-bg,#2a2e35);color:inherit}
.lavr-bar .lavr-grow{flex:1}
.lavr-mode{padding:1px 6px;border-radius:8px;background:#2d3540;font-weight:bold}
.lavr-view{position:relative;flex:1;min-height:200px;background:#101216}
.lavr-view canvas{position:absolute;inset:0;width:100%;height:100%;display:block;outline:none;cursor:grab}
.lavr-error{position:absolute;left:6px;right:6px;top:6px;padding:6px 8px;border-radius:4px;background:#5a1f24ee;
  color:#fff;white-space:pre-wrap;display:none}
.lavr-msg{position:absolute;left:6px;bottom:6px;right:6px;color:#ffd27a;pointer-events:none;text-shadow:0 0 3px #000}
.lavr-frame{min-width:78px;text-align:right;font-variant-numeric:tabular-nums}
`;


const num = (v, fallback) => (typeof v === "number" && Number.isFinite(v) ? v : fallback);

export class TrajectoryEditor {
  constructor(host, { nodeId = "" } = {}) {
    injectCss("lavr-editor-css", CSS);
    this.host = host;
    this.state = defaultState();
    this.error = null;
    this.payload = null;
    this.cam = new OrbitCamera();
    this.viewSet = false; // the view was restored from the state or fitted to data
    this.frame = 0;
    this.playing = false;
    this.selected = null; // the selected keyframe object (kept by reference across sorting)
    this.handles = [];
    this.drag = null;
    this.message = "";
    this.lastText = null;
    this.destroyed = false;
    this._build(nodeId);
    this.loadFromHost();
    this._poll = setInterval(() => this.syncFromHost(), 400);
  }

  // ------------------------------------------------------------------ DOM
  _build(nodeId) {
    const btn = (text, title, fn) => el("button", { text, title, type: "button", onclick: (e) => { e.preventDefault(); fn(); } });
    this.modeLabel = el("span", { class: "lavr-mode", text: "preset" });
    this.btnAdd = btn("+ Key", "Add a keyframe at the timeline's frame (or double-click in the view)", () => this.addKeyframeAtFrame());
    this.btnDel = btn("Delete", "Delete the selected keyframe (Delete key)", () => this.deleteSelected());
    this.btnSeed = btn("Keys from path", "Replace the keyframes with 4 taken from the last executed path, and switch to keyframes mode", () => this.keyframesFromLastPath());
    this.btnFit = btn("Fit", "Fit the view to the paths and the point cloud", () => { this.fitView(); this.commitView(); });
    this.btnReset = btn("Reset", "Replace the editor state with a fresh one", () => this.resetState());
    const bar = el("div", { class: "lavr-bar" }, [this.modeLabel, this.btnAdd, this.btnDel, this.btnSeed, el("span", { class: "lavr-grow" }), this.btnFit, this.btnReset]);

    this.canvas = el("canvas", { tabindex: "0", "data-lavr-canvas": "1" });
    this.errorBox = el("div", { class: "lavr-error" });
    this.msgBox = el("div", { class: "lavr-msg" });
    const view = el("div", { class: "lavr-view" }, [this.canvas, this.errorBox, this.msgBox]);

    const numIn = (title, step) => el("input", { type: "number", step, title });
    this.kFrame = numIn("Frame of the selected keyframe", "1");
    this.kX = numIn("x (right)", "0.01");
    this.kY = numIn("y (down)", "0.01");
    this.kZ = numIn("z (forward)", "0.01");
    for (const inp of [this.kFrame, this.kX, this.kY, this.kZ]) inp.addEventListener("change", () => this._applyKeyInputs());
    this.keyInfo = el("span", { text: "" });
    this.keyRow = el("div", { class: "lavr-bar" }, [
      this.keyInfo, el("span", { text: "frame" }), this.kFrame, el("span", { text: "x" }), this.kX,
      el("span", { text: "y" }), this.kY, el("span", { text: "z" }), this.kZ,
    ]);

    this.btnPlay = btn("▶", "Play / pause the path", () => this.togglePlay());
    this.slider = el("input", { type: "range", min: "0", max: "0", step: "1", value: "0", title: "Timeline: the highlighted camera" });
    this.slider.addEventListener("input", () => { this.setFrame(parseInt(this.slider.value, 10)); });
    this.frameLabel = el("span", { class: "lavr-frame", text: "0 / 0" });
    const timeline = el("div", { class: "lavr-bar" }, [this.btnPlay, this.slider, this.frameLabel]);

    this.root = el("div", { class: "lavr-editor widget-expands", "data-lavr-editor": "1", "data-node-id": String(nodeId), "data-capture-wheel": "true" },
      [bar, view, this.keyRow, timeline]);

    // keep pointer and wheel input inside the editor: the node must not start dragging, the graph
    // canvas must not zoom, and Delete must not delete the node
    this.root.addEventListener("pointerdown", (e) => e.stopPropagation());
    this.root.addEventListener("wheel", (e) => e.stopPropagation(), { passive: true });
    this.root.addEventListener("contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); });
    this.root.addEventListener("keydown", (e) => {
      if (["Delete", "Backspace"].includes(e.key) || e.key.startsWith("Arrow")) e.stopPropagation();
    });

    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => this._onDown(e));
    c.addEventListener("pointermove", (e) => this._onMove(e));
    c.addEventListener("pointerup", (e) => this._onUp(e));
    c.addEventListener("lostpointercapture", (e) => this._onUp(e));
    c.addEventListener("dblclick", (e) => this._onDblClick(e));
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      e.stopPropagation();
      this.cam.zoom(Math.exp(Math.max(-200, Math.min(200, e.deltaY)) * 0.0015));
      this.viewSet = true;
      this.requestDraw();
      this._scheduleViewCommit();
    }, { passive: false });
    c.addEventListener("keydown", (e) => {
      if (e.key === "Delete" || e.key === "Backspace") {
        e.preventDefault();
        e.stopPropagation();
        this.deleteSelected();
      }
    });
    this._resizeObs = new ResizeObserver(() => this.requestDraw());
    this._resizeObs.observe(c);
  }

  destroy() {
    this.destroyed = true;
    this.playing = false;
    clearInterval(this._poll);
    this._resizeObs?.disconnect();
    if (this._raf) cancelAnimationFrame(this._raf);
  }

  // ------------------------------------------------------------------ state in/out
  /** Read the editor_state widget (workflow load, undo, paste); a bad text shows an error. */
  loadFromHost() {
    const text = this.host.readStateText();
    this.lastText = text;
    const mode = this.host.param("mode") === "keyframes" ? "keyframes" : "preset";
    const { state, error } = parseState(text, mode);
    this.error = error;
    this.selected = null;
    if (state) {
      this.state = state;
      if (this.cam.fromJSON(state.view)) this.viewSet = true;
      // the node's mode widget is the one that counts; a keyframe path needs keyframes to run
      if (state.mode !== mode || (mode === "keyframes" && state.keyframes.length === 0)) this.setMode(mode);
    }
    if (!this.viewSet) this.fitView();
    this._refreshUi();
  }

  /** Pick up changes made outside the editor (mode widget, editor_state text). */
  syncFromHost() {
    if (this.destroyed) return;
    const text = this.host.readStateText();
    if (text !== this.lastText) this.loadFromHost();
    const mode = this.host.param("mode");
    if (!this.error && (mode === "preset" || mode === "keyframes") && mode !== this.state.mode) this.setMode(mode);
    // frames / fov / size widgets change the live path
    const sig = ["frames", "fov_deg", "width", "height", "target_depth"].map((n) => this.host.param(n)).join("|");
    if (sig !== this._paramSig) {
      this._paramSig = sig;
      this._refreshUi();
    }
  }

  /** Write the state into the widget (saved in the workflow, sent in the prompt). */
  commit() {
    if (this.error || !this.state) return;
    const text = serializeState(this.state);
    if (text !== this.lastText) {
      this.lastText = text;
      this.host.writeStateText(text);
    }
    this._refreshUi();
  }

  commitView() {
    if (!this.state || this.error) return;
    this.state.view = this.cam.toJSON();
    this.commit();
  }

  _scheduleViewCommit() {
    clearTimeout(this._viewTimer);
    this._viewTimer = setTimeout(() => this.commitView(), 600);
  }

  /** The node's mode changed (or must be mirrored into the JSON). */
  setMode(mode) {
    if (this.error || !this.state) return;
    this.state.mode = mode;
    if (mode === "keyframes" && this.state.keyframes.length < 2) this._seedKeyframes();
    this.commit();
  }

  _seedKeyframes() {
    const frames = this.frameCount();
    const depth = num(this.host.param("target_depth"), 2);
    let kfs = [];
    if (this.payload?.target?.c2w?.length) {
      kfs = keyframesFromPath(this.payload.target, { count: 4, depth, fovDeg: this._baseCamera().fov });
    }
    if (kfs.length < 2) kfs = defaultKeyframes(frames, depth);
    this.state.keyframes = kfs;
    this.selected = null;
    if (!this.viewSet) this.fitView();
  }

  /** The last execution's `lavr_editor` payload: source/target paths and the point cloud. */
  setPayload(p) {
    this.payload = p && typeof p === "object" ? p : null;
    if (!this.viewSet) this.fitView();
    this._refreshUi();
  }

  resetState() {
    const mode = this.host.param("mode") === "keyframes" ? "keyframes" : "preset";
    this.error = null;
    this.state = defaultState(mode);
    if (mode === "keyframes") this._seedKeyframes();
    this.state.view = this.cam.toJSON();
    this.lastText = null;
    this.commit();
  }

  keyframesFromLastPath() {
    if (this.error) return this.flash("Fix or reset the editor state first.");
    const target = this.payload?.target;
    if (!target?.c2w?.length) return this.flash("Run the workflow once (Queue) so there is a path to take keyframes from.");
    const depth = num(this.host.param("target_depth"), 2);
    this.state.keyframes = keyframesFromPath(target, { count: 4, depth, fovDeg: this._baseCamera().fov });
    this.selected = this.state.keyframes[0] ?? null;
    this.state.mode = "keyframes";
    if (this.host.param("mode") !== "keyframes") this.host.setMode("keyframes");
    this.commit();
    this.flash(`${this.state.keyframes.length} keyframes taken from the executed path.`);
  }

  // ------------------------------------------------------------------ paths
  frameCount() {
    if (this.state?.mode === "keyframes") return Math.max(1, Math.round(num(this.host.param("frames"), 1)));
    const n = this.payload?.target?.c2w?.length;
    return n || Math.max(1, Math.round(num(this.host.param("frames"), 1)));
  }

  /** Image size and starting fov of the live path: the source camera's when one is connected
   * (the backend ignores width/height/fov_deg then), else the node's widgets. */
  _baseCamera() {
    const src = this.payload?.source;
    if (src?.K?.length && src.width > 0) {
      return { fov: fovFromFocal(src.K[0][0], src.width), w: src.width, h: src.height };
    }
    return {
      fov: num(this.host.param("fov_deg"), 60),
      w: Math.max(1, num(this.host.param("width"), 832)),
      h: Math.max(1, num(this.host.param("height"), 480)),
    };
  }

  _liveIntrinsics(fovDeg) {
    const { w, h } = this._baseCamera();
    const f = focalFromFov(fovDeg, w);
    return { fx: f, fy: f, cx: w / 2, cy: h / 2, width: w, height: h };
  }

  /** Cameras [{t, R, intr}] of a payload path. */
  _payloadCameras(path) {
    if (!path?.c2w?.length) return [];
    const W = num(path.width, 1), H = num(path.height, 1);
    return path.c2w.map((m, i) => {
      const { R, t } = splitC2W(m);
      const K = path.K?.[i] ?? path.K?.[0] ?? [W, W, W / 2, H / 2];
      return { R, t, intr: { fx: K[0], fy: K[1], cx: K[2], cy: K[3], width: W, height: H } };
    });
  }

  /** The target path shown: live from the keyframes in keyframes mode, else the executed one. */
  targetCameras() {
    if (this.state?.mode === "keyframes" && !this.error) {
      const frames = this.frameCount();
      const base = this._baseCamera();
      const fov = base.fov;
      const key = `${serializeState(this.state)}|${frames}|${fov}|${base.w}|${base.h}`;
      if (key !== this._liveKey) {
        this._liveKey = key;
        const { cameras, error } = sampleKeyframePath(this.state.keyframes, frames, {
          fovDeg: fov, positionInterpolation: this.state.position_interpolation,
          rotationInterpolation: this.state.rotation_interpolation,
        });
        this._liveError = error;
        this._live = cameras.map((c) => ({ R: c.R, t: c.t, intr: this._liveIntrinsics(c.fov) }));
      }
      return this._live;
    }
    return this._payloadCameras(this.payload?.target);
  }

  sourceCameras() {
    return this._payloadCameras(this.payload?.source);
  }

  fitView() {
    const pts = [];
    for (const c of this.targetCameras()) pts.push(c.t);
    for (const c of this.sourceCameras()) pts.push(c.t);
    if (this.state?.mode === "keyframes") for (const k of this.state.keyframes) { pts.push(k.position); if (k.look_at) pts.push(k.look_at); }
    const xyz = this.payload?.points?.xyz;
    if (xyz?.length) {
      // a robust extent: every 7th point is plenty, and far outliers would shrink everything
      const sample = [];
      for (let i = 0; i + 2 < xyz.length; i += 21) sample.push([xyz[i], xyz[i + 1], xyz[i + 2]]);
      const c = sample.reduce((a, p) => add(a, p), [0, 0, 0]).map((v) => v / Math.max(sample.length, 1));
      const d = sample.map((p) => dist(p, c)).sort((a, b) => a - b);
      const r90 = d[Math.floor(d.length * 0.9)] ?? 0;
      for (const p of sample) if (dist(p, c) <= r90) pts.push(p);
    }
    if (!pts.length) pts.push([0, 0, 0], [0, 0, num(this.host.param("target_depth"), 2)]);
    this.cam.fit(pts);
    this.viewSet = true;
    this.requestDraw();
  }

  // ------------------------------------------------------------------ keyframe edits
  _keyDepth(k) {
    return k.look_at ? dist(k.position, k.look_at) : num(this.host.param("target_depth"), 2);
  }

  addKeyframeAtFrame(frame = this.frame, position = null) {
    if (this.error) return this.flash("Fix or reset the editor state first.");
    if (this.state.mode !== "keyframes") return this.flash('Switch the node\'s mode to "keyframes" to edit keyframes.');
    const n = this.frameCount();
    let f = Math.max(0, Math.min(n - 1, Math.round(frame)));
    const used = new Set(this.state.keyframes.map((k) => k.frame));
    if (used.has(f)) {
      // the frame is taken: use the nearest free frame after it, else before it
      let g = f;
      while (g < n && used.has(g)) g++;
      if (g >= n) { g = f; while (g >= 0 && used.has(g)) g--; }
      if (g < 0) return this.flash("Every frame already has a keyframe.");
      f = g;
    }
    const cams = this.targetCameras();
    const camAt = cams[Math.min(f, cams.length - 1)];
    const pos = position ?? (camAt ? camAt.t.slice() : [0, 0, 0]);
    const kf = { frame: f, position: pos };
    const neighbour = this.state.keyframes.reduce((best, k) => (!best || Math.abs(k.frame - f) < Math.abs(best.frame - f) ? k : best), null);
    if (camAt && neighbour?.rotation) kf.rotation = matrixToQuat(camAt.R);
    else {
      const fwd = camAt ? column(camAt.R, 2) : [0, 0, 1];
      kf.look_at = neighbour?.look_at && position ? neighbour.look_at.slice() : add(pos, scale(fwd, neighbour ? this._keyDepth(neighbour) : num(this.host.param("target_depth"), 2)));
    }
    this.state.keyframes.push(kf);
    this.state.keyframes.sort((a, b) => a.frame - b.frame);
    this.selected = kf;
    this.setFrame(f);
    this.commit();
    this.flash(`Added a keyframe at frame ${f}.`);
    return kf;
  }

  deleteSelected() {
    if (this.error || this.state.mode !== "keyframes") return;
    const i = this.state.keyframes.indexOf(this.selected);
    if (i < 0) return this.flash("Select a keyframe first (click its handle).");
    if (this.state.keyframes.length <= 2) return this.flash("A keyframe path needs at least 2 keyframes.");
    this.state.keyframes.splice(i, 1);
    this.selected = null;
    this.commit();
  }

  _applyKeyInputs() {
    const k = this.selected;
    if (!k || this.error) return;
    const n = this.frameCount();
    const f = Math.round(Number(this.kFrame.value));
    if (Number.isFinite(f) && f !== k.frame) {
      if (f < 0 || f > n - 1) this.flash(`Frames run from 0 to ${n - 1}.`);
      else if (this.state.keyframes.some((o) => o !== k && o.frame === f)) this.flash(`Frame ${f} already has a keyframe.`);
      else k.frame = f;
    }
    const xyz = [this.kX, this.kY, this.kZ].map((i) => Number(i.value));
    if (xyz.every(Number.isFinite)) k.position = xyz;
    this.state.keyframes.sort((a, b) => a.frame - b.frame);
    this.commit();
  }

  // ------------------------------------------------------------------ timeline
  setFrame(f) {
    const n = this.frameCount();
    this.frame = Math.max(0, Math.min(n - 1, Math.round(f) || 0));
    this._refreshUi();
  }

  togglePlay() {
    this.playing = !this.playing;
    this.btnPlay.textContent = this.playing ? "❚❚" : "▶";
    this.btnPlay.classList.toggle("lavr-on", this.playing);
    if (this.playing) {
      this._playT0 = performance.now();
      this._playF0 = this.frame >= this.frameCount() - 1 ? 0 : this.frame;
      this._tick();
    }
  }

  _tick() {
    if (!this.playing || this.destroyed) return;
    const fps = Math.max(1, num(this.payload?.target?.fps, num(this.host.param("fps"), 16)));
    const n = this.frameCount();
    const f = (this._playF0 + Math.floor(((performance.now() - this._playT0) / 1000) * fps)) % Math.max(n, 1);
    if (f !== this.frame) this.setFrame(f);
    requestAnimationFrame(() => this._tick());
  }

  // ------------------------------------------------------------------ pointer input
  _local(e) {
    // the graph canvas may scale the widget with a CSS transform: map client px to canvas px
    const r = this.canvas.getBoundingClientRect();
    const sx = this.canvas.clientWidth / (r.width || 1), sy = this.canvas.clientHeight / (r.height || 1);
    return [(e.clientX - r.left) * sx, (e.clientY - r.top) * sy];
  }

  _hit(x, y) {
    let best = null, bestD = HANDLE_RADIUS + 4;
    for (const h of this.handles) {
      const d = Math.hypot(h.x - x, h.y - y);
      if (d <= bestD || (d === bestD && h.kind === "key")) { best = h; bestD = d; }
    }
    return best;
  }

  _onDown(e) {
    this.canvas.focus({ preventScroll: true });
    const [x, y] = this._local(e);
    const hit = e.button === 0 && this.state?.mode === "keyframes" && !this.error ? this._hit(x, y) : null;
    if (hit) {
      const k = hit.key;
      this.selected = k;
      const p = hit.kind === "key" ? k.position : k.look_at;
      const onPlane = this.cam.pointOnViewPlane(x, y, p);
      this.drag = { type: "handle", kind: hit.kind, key: k, start: p.slice(), offset: onPlane ? sub(p, onPlane) : [0, 0, 0], x0: x, y0: y, moved: false, depth: e.shiftKey };
    } else {
      const pan = e.button === 2 || e.button === 1 || e.shiftKey || e.ctrlKey;
      this.drag = { type: pan ? "pan" : "orbit", x0: x, y0: y, lx: x, ly: y, moved: false };
    }
    this.canvas.setPointerCapture?.(e.pointerId);
    e.preventDefault();
    this._refreshUi();
  }

  _onMove(e) {
    const d = this.drag;
    const [x, y] = this._local(e);
    if (!d) {
      const h = this.state?.mode === "keyframes" ? this._hit(x, y) : null;
      this.canvas.style.cursor = h ? "move" : "grab";
      return;
    }
    if (Math.hypot(x - d.x0, y - d.y0) > 2) d.moved = true;
    if (d.type === "handle") {
      let p;
      if (d.depth) {
        // shift-drag: move along the viewing direction, up = away from the viewer
        p = add(d.start, scale(this.cam.forward, -(y - d.y0) * this.cam.pixelSize(d.start)));
      } else {
        const q = this.cam.pointOnViewPlane(x, y, d.start);
        if (!q) return;
        p = add(q, d.offset);
      }
      if (d.kind === "key") d.key.position = p;
      else d.key.look_at = p;
      this._liveKey = null;
    } else if (d.type === "orbit") {
      this.cam.orbit(x - d.lx, y - d.ly);
      this.viewSet = true;
    } else {
      this.cam.pan(x - d.lx, y - d.ly);
      this.viewSet = true;
    }
    d.lx = x;
    d.ly = y;
    this._refreshUi();
  }

  _onUp(e) {
    const d = this.drag;
    if (!d) return;
    this.drag = null;
    if (this.canvas.hasPointerCapture?.(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    if (d.type === "handle") {
      if (d.moved) this.commit();
    } else if (!d.moved && d.type === "orbit") {
      this.selected = null; // a click on empty space clears the selection
      this._refreshUi();
    } else if (d.moved) {
      this.commitView();
    }
  }

  _onDblClick(e) {
    if (this.error || this.state?.mode !== "keyframes") return;
    const [x, y] = this._local(e);
    if (this._hit(x, y)) return;
    const cams = this.targetCameras();
    const anchor = cams[Math.min(this.frame, cams.length - 1)]?.t ?? this.cam.target;
    const p = this.cam.pointOnViewPlane(x, y, anchor);
    if (p) this.addKeyframeAtFrame(this.frame, p);
  }

  // ------------------------------------------------------------------ drawing
  flash(text) {
    this.message = text;
    clearTimeout(this._msgTimer);
    this._msgTimer = setTimeout(() => { this.message = ""; this._refreshUi(); }, 4000);
    this._refreshUi();
  }

  _refreshUi() {
    if (this.destroyed) return;
    const kfMode = this.state?.mode === "keyframes" && !this.error;
    this.modeLabel.textContent = this.error ? "error" : this.state.mode;
    this.btnAdd.disabled = !kfMode;
    this.btnDel.disabled = !kfMode || !this.selected;
    this.btnSeed.disabled = !!this.error || !this.payload?.target?.c2w?.length;
    this.errorBox.style.display = this.error ? "block" : "none";
    this.errorBox.textContent = this.error ? `${this.error}\nFix the JSON in the workflow, or press Reset for a fresh state.` : "";
    this.keyRow.style.display = kfMode ? "flex" : "none";
    const k = kfMode ? this.selected : null;
    for (const inp of [this.kFrame, this.kX, this.kY, this.kZ]) inp.disabled = !k;
    if (k && document.activeElement?.parentElement !== this.keyRow) {
      this.kFrame.value = String(k.frame);
      [this.kX, this.kY, this.kZ].forEach((inp, i) => { inp.value = k.position[i].toFixed(3); });
    }
    this.keyInfo.textContent = k ? `key ${this.state.keyframes.indexOf(k) + 1}/${this.state.keyframes.length}` : `${this.state?.keyframes?.length ?? 0} keys, none selected`;
    const n = this.frameCount();
    if (this.frame > n - 1) this.frame = n - 1;
    this.slider.max = String(Math.max(n - 1, 0));
    this.slider.value = String(this.frame);
    this.frameLabel.textContent = `frame ${this.frame} / ${n - 1}`;
    this.msgBox.textContent = this.message || this._warning();
    this.requestDraw();
  }

  _warning() {
    if (this.error) return "";
    if (this.state.mode === "keyframes") {
      this.targetCameras();
      if (this._liveError) return `Keyframes: ${this._liveError}.`;
      const n = this.frameCount();
      const late = this.state.keyframes.filter((k) => k.frame > n - 1);
      if (late.length) return `Keyframe at frame ${late[0].frame} is past the last frame (${n - 1}).`;
      return "";
    }
    if (!this.payload) return "Queue the workflow to preview the preset path here.";
    return "";
  }

  requestDraw() {
    if (this._raf || this.destroyed) return;
    this._raf = requestAnimationFrame(() => {
      this._raf = 0;
      this.draw();
    });
  }

  draw() {
    const c = this.canvas;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#101216";
    ctx.fillRect(0, 0, w, h);
    this.cam.setViewport(w, h);
    const cam = this.cam;

    const target = this.targetCameras();
    const source = this.sourceCameras();
    const allT = [...target.map((c) => c.t), ...source.map((c) => c.t)];
    let extent = 0.5;
    if (allT.length > 1) {
      const lo = [0, 1, 2].map((i) => Math.min(...allT.map((p) => p[i])));
      const hi = [0, 1, 2].map((i) => Math.max(...allT.map((p) => p[i])));
      extent = Math.max(Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]), 0.3);
    }
    const gridStep = Math.pow(10, Math.floor(Math.log10(Math.max(extent, 1e-3) / 2)));
    // a floor a little below the lowest camera (OpenCV y points down, so "below" is larger y)
    const keyPts = this.state?.mode === "keyframes" && !this.error ? this.state.keyframes.map((k) => k.position) : [];
    const ys = [...allT, ...keyPts].map((p) => p[1]);
    const level = (ys.length ? Math.max(...ys) : 0) + extent * 0.25;
    drawGrid(ctx, cam, { step: gridStep, half: 12, level, center: cam.target });
    drawAxes(ctx, cam, extent * 0.15);

    const pts = this.payload?.points;
    if (pts?.xyz?.length) drawPoints(ctx, cam, pts.xyz, pts.rgb);

    const fsize = extent * 0.09;
    const every = (n) => Math.max(1, Math.round(n / 10));
    if (source.length) {
      strokePolyline(ctx, cam, source.map((c) => c.t), { color: COLORS.source, width: 1.5 });
      const k = every(source.length);
      source.forEach((s, i) => { if (i % k === 0 || i === source.length - 1) drawFrustum(ctx, cam, s.R, s.t, s.intr, fsize * 0.8, { color: COLORS.source, alpha: 0.6 }); });
    }
    const kfMode = this.state?.mode === "keyframes" && !this.error;
    if (kfMode && this.payload?.target?.c2w?.length) {
      // the last executed path, faint: shows where the backend's result differs from the live edit
      strokePolyline(ctx, cam, this._payloadCameras(this.payload.target).map((c) => c.t), { color: COLORS.executed, alpha: 0.35, dash: [3, 4] });
    }
    if (target.length) {
      strokePolyline(ctx, cam, target.map((c) => c.t), { color: COLORS.target, width: 2 });
      const k = every(target.length);
      target.forEach((s, i) => { if (i % k === 0 || i === target.length - 1) drawFrustum(ctx, cam, s.R, s.t, s.intr, fsize, { color: COLORS.target, alpha: 0.75 }); });
    }
    const cur = target[Math.min(this.frame, target.length - 1)];
    if (cur) {
      drawFrustum(ctx, cam, cur.R, cur.t, cur.intr, fsize * 1.6, { color: COLORS.current, width: 2.5, fill: COLORS.current, fillAlpha: 0.3 });
      strokePolyline(ctx, cam, [cur.t, add(cur.t, scale(column(cur.R, 2), extent * 0.25))], { color: COLORS.current, alpha: 0.6, dash: [2, 3] });
    }
    const scur = source[Math.min(this.frame, source.length - 1)];
    if (scur) drawFrustum(ctx, cam, scur.R, scur.t, scur.intr, fsize * 1.2, { color: "#cde", width: 2 });

    this.handles = [];
    if (kfMode) {
      for (const k of this.state.keyframes) {
        const sel = k === this.selected;
        if (k.look_at) {
          strokePolyline(ctx, cam, [k.position, k.look_at], { color: sel ? COLORS.keySelected : COLORS.look, alpha: sel ? 0.9 : 0.45, dash: [4, 3] });
          const s = drawHandle(ctx, cam, k.look_at, { radius: sel ? 5 : 4, fill: sel ? COLORS.keySelected : COLORS.look, shape: "diamond" });
          if (s) this.handles.push({ kind: "look", key: k, x: s.x, y: s.y });
        }
      }
      for (const k of this.state.keyframes) {
        const sel = k === this.selected;
        const s = drawHandle(ctx, cam, k.position, { radius: HANDLE_RADIUS, fill: sel ? COLORS.keySelected : COLORS.key, label: `f${k.frame}` });
        if (s) this.handles.push({ kind: "key", key: k, x: s.x, y: s.y });
      }
    }

    // legend and hints
    ctx.font = "10px sans-serif";
    const legend = [];
    if (source.length) legend.push([COLORS.source, `source (${source.length})`]);
    if (target.length) legend.push([COLORS.target, kfMode ? `target, live (${target.length})` : `target (${target.length})`]);
    if (kfMode) legend.push([COLORS.key, `keyframes (${this.state.keyframes.length})`]);
    if (pts?.xyz?.length) legend.push(["#bbb", `points (${Math.floor(pts.xyz.length / 3)})`]);
    legend.forEach(([col, text], i) => {
      ctx.fillStyle = col;
      ctx.fillRect(w - 128, 8 + i * 13, 8, 8);
      ctx.fillStyle = "#ccc";
      ctx.fillText(text, w - 116, 16 + i * 13);
    });
    ctx.fillStyle = "#8a93a0";
    const hint = kfMode
      ? "drag key: move · shift-drag: depth · dbl-click: add · Del: delete"
      : "drag: orbit · right/shift-drag: pan · wheel: zoom";
    ctx.fillText(hint, 8, 14);
    if (kfMode) ctx.fillText("drag: orbit · right/shift-drag: pan · wheel: zoom", 8, 27);
    drawGizmo(ctx, cam, w - 28, h - 28);
  }

  // ------------------------------------------------------------------ for tests and scripts
  /** Client (page) coordinates of a keyframe's handle ("key" or "look"), or null when not drawn. */
  handleClientPos(index, kind = "key") {
    this.draw();
    const k = this.state?.keyframes?.[index];
    const h = this.handles.find((o) => o.key === k && o.kind === kind);
    if (!h) return null;
    const r = this.canvas.getBoundingClientRect();
    const sx = (r.width || 1) / (this.canvas.clientWidth || 1), sy = (r.height || 1) / (this.canvas.clientHeight || 1);
    return { x: r.left + h.x * sx, y: r.top + h.y * sy };
  }
}
