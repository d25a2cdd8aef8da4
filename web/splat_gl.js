// Splat renderers for the in-node preview, both with the interface
//   setData(data)   upload a SplatData (splat_parse.js); keeps at most `maxSplats` (even subsample)
//   draw(view)      draw with a splat_math.js view; sorts back to front every call
//   dispose()
// SplatRendererGL: WebGL2, one instanced quad per Gaussian, the 2D covariance computed per vertex
// from the 3D one (as 3DGS does), alpha-blended back to front with premultiplied colour.
// SplatRenderer2D: the canvas-2D fallback when a browser has no WebGL2; flat ellipses of the same
// screen covariance, fewer splats.

import { covariances, depthOrder, ellipseOf, screenCovariance, subsample, toCamera, toPixel } from "./splat_math.js";

export const BACKGROUND = [0.07, 0.075, 0.09];

const VS = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
uniform sampler2D u_data;   // 3 texels per splat: (x, y, z, c00) (c01, c02, c11, c12) (c22, -, -, -)
uniform sampler2D u_color;  // 1 texel per splat: rgba
uniform int u_dataWidth;
uniform int u_colorWidth;
uniform mat3 u_W;           // world -> camera rotation
uniform vec3 u_t;
uniform float u_focal;      // pixels
uniform vec2 u_size;        // pixels
uniform float u_near;
in uint a_index;
out vec4 v_color;
out vec2 v_uv;
ivec2 at(int k, int w) { return ivec2(k % w, k / w); }
void main() {
  int i = int(a_index);
  vec4 t0 = texelFetch(u_data, at(3 * i, u_dataWidth), 0);
  vec4 t1 = texelFetch(u_data, at(3 * i + 1, u_dataWidth), 0);
  vec4 t2 = texelFetch(u_data, at(3 * i + 2, u_dataWidth), 0);
  vec3 c = u_W * t0.xyz + u_t;
  if (c.z <= u_near) { gl_Position = vec4(0.0, 0.0, 2.0, 1.0); return; }
  mat3 S = mat3(t0.w, t1.x, t1.y, t1.x, t1.z, t1.w, t1.y, t1.w, t2.x);
  float iz = 1.0 / c.z;
  // Jacobian of the pinhole projection (third row zero), columns first
  mat3 J = mat3(u_focal * iz, 0.0, 0.0, 0.0, u_focal * iz, 0.0, -u_focal * c.x * iz * iz, -u_focal * c.y * iz * iz, 0.0);
  mat3 T = J * u_W;
  mat3 V = T * S * transpose(T);
  float a = V[0][0] + 0.3, b = V[0][1], d = V[1][1] + 0.3;
  float mid = 0.5 * (a + d), rad = length(vec2(0.5 * (a - d), b));
  float l1 = mid + rad, l2 = max(mid - rad, 1e-6);
  vec2 ax = abs(b) > 1e-12 ? normalize(vec2(b, l1 - a)) : (a >= d ? vec2(1.0, 0.0) : vec2(0.0, 1.0));
  float r1 = min(3.0 * sqrt(l1), 2048.0), r2 = min(3.0 * sqrt(l2), 2048.0);
  vec2 corner = vec2(float(gl_VertexID & 1), float(gl_VertexID >> 1)) * 2.0 - 1.0;
  vec2 centre = 0.5 * u_size + u_focal * c.xy * iz;
  vec2 px = centre + corner.x * r1 * ax + corner.y * r2 * vec2(-ax.y, ax.x);
  v_uv = corner * 3.0; // in standard deviations along the ellipse's axes
  v_color = texelFetch(u_color, at(i, u_colorWidth), 0);
  gl_Position = vec4(px.x / u_size.x * 2.0 - 1.0, 1.0 - px.y / u_size.y * 2.0, 0.0, 1.0);
}`;

const FS = `#version 300 es
precision highp float;
in vec4 v_color;
in vec2 v_uv;
out vec4 o_color;
void main() {
  float p = -0.5 * dot(v_uv, v_uv);
  if (p < -4.5) discard;
  float alpha = min(0.99, v_color.a * exp(p));
  if (alpha < 1.0 / 255.0) discard;
  o_color = vec4(v_color.rgb * alpha, alpha);
}`;

function compile(gl, type, src) {
  const s = gl.createShader(type);
  gl.shaderSource(s, src);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(`splat shader: ${gl.getShaderInfoLog(s)}`);
  return s;
}

export class SplatRendererGL {
  /** Throws when the canvas has no WebGL2 context. */
  constructor(canvas, { maxSplats = 3_000_000 } = {}) {
    const gl = canvas.getContext("webgl2", { antialias: false, premultipliedAlpha: true, preserveDrawingBuffer: true });
    if (!gl) throw new Error("WebGL2 is not available");
    this.kind = "webgl2";
    this.gl = gl;
    this.canvas = canvas;
    const maxTex = gl.getParameter(gl.MAX_TEXTURE_SIZE);
    this.texWidth = Math.min(4096, maxTex);
    this.maxSplats = Math.min(maxSplats, Math.floor((this.texWidth * maxTex) / 3));
    const prog = gl.createProgram();
    gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, VS));
    gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, FS));
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(`splat program: ${gl.getProgramInfoLog(prog)}`);
    this.prog = prog;
    this.u = Object.fromEntries(["u_data", "u_color", "u_dataWidth", "u_colorWidth", "u_W", "u_t", "u_focal", "u_size", "u_near"]
      .map((n) => [n, gl.getUniformLocation(prog, n)]));
    this.vao = gl.createVertexArray();
    gl.bindVertexArray(this.vao);
    this.indexBuffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, this.indexBuffer);
    const loc = gl.getAttribLocation(prog, "a_index");
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribIPointer(loc, 1, gl.UNSIGNED_INT, 0, 0);
    gl.vertexAttribDivisor(loc, 1);
    gl.bindVertexArray(null);
    this.dataTex = gl.createTexture();
    this.colorTex = gl.createTexture();
    this.scratch = {};
    this.data = null;
  }

  setData(data) {
    const gl = this.gl;
    const pick = subsample(data.count, this.maxSplats);
    const n = pick ? pick.length : data.count;
    const cov = covariances(data);
    const W = this.texWidth;
    const rows = Math.max(1, Math.ceil((3 * n) / W)), crows = Math.max(1, Math.ceil(n / W));
    const buf = new Float32Array(rows * W * 4);
    const col = new Uint8Array(crows * W * 4);
    const positions = new Float32Array(3 * n);
    for (let k = 0; k < n; k++) {
      const i = pick ? pick[k] : k, o = 12 * k;
      buf[o] = positions[3 * k] = data.positions[3 * i];
      buf[o + 1] = positions[3 * k + 1] = data.positions[3 * i + 1];
      buf[o + 2] = positions[3 * k + 2] = data.positions[3 * i + 2];
      buf[o + 3] = cov[6 * i];
      buf[o + 4] = cov[6 * i + 1]; buf[o + 5] = cov[6 * i + 2]; buf[o + 6] = cov[6 * i + 3]; buf[o + 7] = cov[6 * i + 4];
      buf[o + 8] = cov[6 * i + 5];
      for (let c = 0; c < 4; c++) col[4 * k + c] = data.colors[4 * i + c];
    }
    const upload = (tex, internal, format, type, w, h, pixels) => {
      gl.bindTexture(gl.TEXTURE_2D, tex);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
      gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
      gl.texImage2D(gl.TEXTURE_2D, 0, internal, w, h, 0, format, type, pixels);
    };
    upload(this.dataTex, gl.RGBA32F, gl.RGBA, gl.FLOAT, W, rows, buf);
    upload(this.colorTex, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, W, crows, col);
    this.data = { count: n, positions, total: data.count };
    return n;
  }

  draw(view) {
    const gl = this.gl;
    gl.viewport(0, 0, view.width, view.height);
    gl.clearColor(BACKGROUND[0], BACKGROUND[1], BACKGROUND[2], 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (!this.data) return 0;
    const { order, count } = depthOrder(view, this.data.positions, this.data.count, null, this.scratch);
    if (!count) return 0;
    gl.useProgram(this.prog);
    gl.bindVertexArray(this.vao);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.indexBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, order.subarray(0, count), gl.DYNAMIC_DRAW);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.dataTex);
    gl.uniform1i(this.u.u_data, 0);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, this.colorTex);
    gl.uniform1i(this.u.u_color, 1);
    gl.uniform1i(this.u.u_dataWidth, this.texWidth);
    gl.uniform1i(this.u.u_colorWidth, this.texWidth);
    const w = view.W; // rows -> GLSL's column-major order
    gl.uniformMatrix3fv(this.u.u_W, false, new Float32Array([w[0], w[3], w[6], w[1], w[4], w[7], w[2], w[5], w[8]]));
    gl.uniform3f(this.u.u_t, view.t[0], view.t[1], view.t[2]);
    gl.uniform1f(this.u.u_focal, view.focal);
    gl.uniform2f(this.u.u_size, view.width, view.height);
    gl.uniform1f(this.u.u_near, view.near);
    gl.disable(gl.DEPTH_TEST);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, count);
    gl.bindVertexArray(null);
    return count;
  }

  dispose() {
    const gl = this.gl;
    gl.deleteTexture(this.dataTex);
    gl.deleteTexture(this.colorTex);
    gl.deleteBuffer(this.indexBuffer);
    gl.deleteVertexArray(this.vao);
    gl.deleteProgram(this.prog);
    this.data = null;
  }
}

export class SplatRenderer2D {
  constructor(canvas, { maxSplats = 40000 } = {}) {
    this.kind = "canvas2d";
    this.ctx = canvas.getContext("2d");
    this.maxSplats = maxSplats;
    this.scratch = {};
    this.data = null;
  }

  setData(data) {
    const pick = subsample(data.count, this.maxSplats);
    const n = pick ? pick.length : data.count;
    const cov = covariances(data);
    const sel = { count: n, positions: new Float32Array(3 * n), cov: new Float32Array(6 * n), colors: new Uint8Array(4 * n) };
    for (let k = 0; k < n; k++) {
      const i = pick ? pick[k] : k;
      sel.positions.set(data.positions.subarray(3 * i, 3 * i + 3), 3 * k);
      sel.cov.set(cov.subarray(6 * i, 6 * i + 6), 6 * k);
      sel.colors.set(data.colors.subarray(4 * i, 4 * i + 4), 4 * k);
    }
    this.data = sel;
    return n;
  }

  draw(view) {
    const ctx = this.ctx, d = this.data;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = `rgb(${BACKGROUND.map((v) => Math.round(v * 255)).join(",")})`;
    ctx.fillRect(0, 0, view.width, view.height);
    if (!d) return 0;
    const { order, count } = depthOrder(view, d.positions, d.count, null, this.scratch);
    const c = [0, 0, 0];
    for (let k = 0; k < count; k++) {
      const i = order[k];
      toCamera(view, d.positions, i, c);
      const [x, y] = toPixel(view, c);
      const e = ellipseOf(screenCovariance(view, d.cov, i, c));
      const r1 = 1.6 * Math.sqrt(e.major), r2 = 1.6 * Math.sqrt(e.minor);
      if (x + r1 < 0 || y + r1 < 0 || x - r1 > view.width || y - r1 > view.height || r1 > 4 * view.width) continue;
      ctx.fillStyle = `rgba(${d.colors[4 * i]},${d.colors[4 * i + 1]},${d.colors[4 * i + 2]},${(0.75 * d.colors[4 * i + 3]) / 255})`;
      ctx.beginPath();
      ctx.ellipse(x, y, r1, r2, Math.atan2(e.axis[1], e.axis[0]), 0, 2 * Math.PI);
      ctx.fill();
    }
    return count;
  }

  dispose() { this.data = null; }
}

/** The WebGL2 renderer, else the canvas-2D one (with the reason WebGL2 failed). */
export function createRenderer(canvas, opts = {}) {
  try {
    return { renderer: new SplatRendererGL(canvas, opts), fallbackReason: null };
  } catch (e) {
    // a canvas that failed to give a webgl2 context can still give a 2d one
    return { renderer: new SplatRenderer2D(canvas, opts), fallbackReason: String(e?.message ?? e) };
  }
}
