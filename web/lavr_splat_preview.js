// ComfyUI extension: an in-node 3D preview of Gaussian splats.
//
// Any node whose execution result carries `ui.lavr_splat` (a list of {filename, subfolder, type,
// format, gaussians, manifest}, as LaVR's "Save Splat" sends) gets a preview panel as a DOM widget
// (node.addDOMWidget, drawn by both the LiteGraph canvas and the Vue "Nodes 2.0" renderer). The
// files come from ComfyUI's /view endpoint; .ply, .splat, .spz (v1-3) and LaVR sequence manifests
// (one file per timestep, with a slider) are read in the browser. Rendering is WebGL2 (depth-sorted,
// alpha-blended Gaussians) with a canvas-2D fallback; no library, nothing from a CDN.
//
// LaVR's splat-saving nodes get the (empty) panel as soon as they are created, so the node has its
// final size before the first run; other nodes get it on their first result.

import { app } from "../../scripts/app.js";
import { SplatPreview } from "./splat_preview_ui.js";

const UI_KEY = "lavr_splat";
const WIDGET_NAME = "lavr_splat_preview";
const MIN_HEIGHT = 320;
const MIN_WIDTH = 400;

/** LaVR output nodes that save splats: they show the panel from the start. */
const showsFromStart = (nodeData) => {
  const name = nodeData?.name ?? "";
  return name === "LaVRSaveSplat" || (name.startsWith("LaVR") && !!nodeData?.output_node && /splat|gaussian/i.test(name));
};

async function fetchBytes(ref) {
  const q = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder ?? "", type: ref.type ?? "output" });
  const r = await app.api.fetchApi(`/view?${q}`, { cache: "no-store" });
  if (!r.ok) throw new Error(`${ref.filename}: the server answered ${r.status} for /view`);
  return await r.arrayBuffer();
}

function attachPreview(node) {
  if (node.lavrSplatPreview) return node.lavrSplatPreview;
  const preview = new SplatPreview({ fetchBytes }, { nodeId: node.id });
  node.lavrSplatPreview = preview;
  const widget = node.addDOMWidget(WIDGET_NAME, WIDGET_NAME, preview.root, {
    serialize: false, // not in the API prompt
    getMinHeight: () => MIN_HEIGHT,
    getValue: () => "",
    setValue: () => {},
  });
  widget.serialize = false; // not in the workflow's widgets_values
  node.lavrSplatWidget = widget;
  const [w, h] = node.computeSize();
  node.setSize([Math.max(node.size?.[0] ?? 0, w, MIN_WIDTH), Math.max(node.size?.[1] ?? 0, h)]);
  node.setDirtyCanvas?.(true, true);
  return preview;
}

app.registerExtension({
  name: "lavr.splat_preview",

  async setup() {
    window.LAVR_SPLAT_PREVIEW = { ready: true, uiKey: UI_KEY };
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (showsFromStart(nodeData)) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = onNodeCreated?.apply(this, arguments);
        try {
          attachPreview(this);
        } catch (e) {
          console.error("[LaVR] could not create the splat preview", e);
        }
        return r;
      };
    }

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const r = onExecuted?.apply(this, arguments);
      const entries = message?.[UI_KEY];
      if (Array.isArray(entries) && entries.length) {
        try {
          attachPreview(this).show(entries);
        } catch (e) {
          console.error("[LaVR] splat preview failed", e);
        }
      }
      return r;
    };

    const onAdded = nodeType.prototype.onAdded;
    nodeType.prototype.onAdded = function () {
      const r = onAdded?.apply(this, arguments);
      if (this.lavrSplatPreview) this.lavrSplatPreview.root.dataset.nodeId = String(this.id); // ids are given on add
      return r;
    };

    const onRemoved = nodeType.prototype.onRemoved;
    nodeType.prototype.onRemoved = function () {
      this.lavrSplatPreview?.destroy();
      return onRemoved?.apply(this, arguments);
    };
  },
});
