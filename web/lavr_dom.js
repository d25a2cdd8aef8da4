// Small DOM helpers shared by the LaVR panels (trajectory editor, splat preview). No ComfyUI imports.

/** Add a <style> with `css` once per page, keyed by `id`. */
export function injectCss(id, css) {
  if (document.getElementById(id)) return;
  const s = document.createElement("style");
  s.id = id;
  s.textContent = css;
  document.head.appendChild(s);
}

/** Create an element: `class`, `text`, `on<event>` handlers and plain attributes, then children. */
export function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.appendChild(c);
  return e;
}
