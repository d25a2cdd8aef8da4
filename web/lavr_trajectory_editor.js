// ComfyUI extension: the 3D trajectory editor on the "Camera Trajectory Builder" node.
//
// The node's `editor_state` input (a multiline STRING holding the editor's JSON) stays the widget
// that is saved in the workflow's widgets_values and sent in the prompt; this extension hides its
// textarea and shows the editor instead, as a DOM widget (node.addDOMWidget), which both the
// LiteGraph canvas renderer and the Vue node renderer ("Nodes 2.0") of frontend 1.32 display.
// The backend re-validates the JSON (lavr_core/camera/editor_state.py) and, after each run, sends
// `ui.lavr_editor = [payload]` with the executed source/target paths and a point-cloud sample.

import { app } from "../../scripts/app.js";
import { TrajectoryEditor } from "./lavr_editor_ui.js";

const NODE_TYPE = "LaVRCameraTrajectoryBuilder";
const STATE_WIDGET = "editor_state";
const EDITOR_WIDGET = "lavr_trajectory_editor";
const EDITOR_MIN_HEIGHT = 400;
const EDITOR_MIN_WIDTH = 480;

const findWidget = (node, name) => node.widgets?.find((w) => w.name === name);

/** Keep a widget's value (serialised, sent) but take it out of both renderers' layouts. */
function hideWidget(w) {
  w.hidden = true; // LiteGraph canvas: not drawn, no DOM overlay
  w.options = w.options ?? {};
  w.options.hidden = true; // Vue node renderer: not listed
  w.type = "hidden"; // DOM widgets of type "hidden" take no height in the canvas layout
  if (w.element) w.element.style.display = "none";
}

function attachEditor(node) {
  if (node.lavrEditor) return node.lavrEditor;
  const stateWidget = findWidget(node, STATE_WIDGET);
  if (!stateWidget) {
    console.warn(`[LaVR] ${NODE_TYPE} has no '${STATE_WIDGET}' widget; the trajectory editor is disabled.`);
    return null;
  }
  hideWidget(stateWidget);

  const host = {
    readStateText: () => {
      const v = stateWidget.value;
      return typeof v === "string" ? v : v == null ? "" : JSON.stringify(v);
    },
    writeStateText: (text) => {
      stateWidget.value = text;
      stateWidget.callback?.(text);
      node.setDirtyCanvas?.(true, true);
    },
    param: (name) => findWidget(node, name)?.value,
    setMode: (mode) => {
      const w = findWidget(node, "mode");
      if (!w || w.value === mode) return;
      w.value = mode;
      w.callback?.(mode); // the Vue renderer wraps callbacks to refresh its copy of the value
      node.setDirtyCanvas?.(true, true);
    },
  };
  const editor = new TrajectoryEditor(host, { nodeId: node.id });
  node.lavrEditor = editor;

  const widget = node.addDOMWidget(EDITOR_WIDGET, EDITOR_WIDGET, editor.root, {
    serialize: false, // not in the API prompt (graphToPrompt reads options.serialize)
    getMinHeight: () => EDITOR_MIN_HEIGHT,
    getValue: () => "",
    setValue: () => {},
  });
  widget.serialize = false; // not in the workflow's widgets_values either
  node.lavrEditorWidget = widget;

  // the node's mode widget decides; the JSON's "mode" follows it
  const modeWidget = findWidget(node, "mode");
  if (modeWidget) {
    const orig = modeWidget.callback;
    modeWidget.callback = function (value, ...rest) {
      const r = orig?.call(this, value, ...rest);
      editor.setMode(value === "keyframes" ? "keyframes" : "preset");
      return r;
    };
  }
  return editor;
}

app.registerExtension({
  name: "lavr.trajectory_editor",

  async setup() {
    window.LAVR_TRAJECTORY_EDITOR = { ready: true, nodeType: NODE_TYPE };
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      try {
        if (attachEditor(this)) {
          const [w, h] = this.computeSize();
          this.setSize([Math.max(w, EDITOR_MIN_WIDTH), h]);
        }
      } catch (e) {
        console.error("[LaVR] could not create the trajectory editor", e);
      }
      return r;
    };

    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const r = onConfigure?.apply(this, arguments);
      const ed = this.lavrEditor;
      if (ed) {
        ed.root.dataset.nodeId = String(this.id);
        ed.viewSet = false; // a loaded workflow brings its own view (or gets a fitted one)
        ed.loadFromHost();
      }
      return r;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const r = onExecuted?.apply(this, arguments);
      const payload = message?.lavr_editor?.[0];
      if (payload && this.lavrEditor) this.lavrEditor.setPayload(payload);
      return r;
    };

    const onAdded = nodeType.prototype.onAdded;
    nodeType.prototype.onAdded = function () {
      const r = onAdded?.apply(this, arguments);
      if (this.lavrEditor) this.lavrEditor.root.dataset.nodeId = String(this.id); // ids are given on add
      return r;
    };

    const onRemoved = nodeType.prototype.onRemoved;
    nodeType.prototype.onRemoved = function () {
      this.lavrEditor?.destroy();
      return onRemoved?.apply(this, arguments);
    };
  },
});
