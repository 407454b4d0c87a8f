// Front-end extension for the Sonic node pack.
// - Shows what a node reports as ui "text" after it runs (LipSyncCorrect's measured
//   audio/video offset, SONIC_PreData's crop and duration notes, VideoEncode's file,
//   SONIC_ModelLoader's model check) in a read-only text box on the node, tall enough for the
//   whole text. The box is never saved into the workflow.
// - When a run is cancelled or fails, our nodes that did not run in it hide their previews and
//   say so in that box: a result from an earlier run is never mistaken for a new one.
// - Lists this pack's templates in the template browser lite before sonic, fast -> balanced -> hq
//   (ComfyUI lists a pack's templates in the order its server globs the files, which is arbitrary).
// Only the frontend's public extension API is used (app, api, node.addDOMWidget): it is the same in
// the frontend ComfyUI 0.3.6x pins (1.27) and in the 2026 ones (1.5x).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SHOWS_TEXT = new Set([
  "LipSyncCorrect",
  "SONIC_PreData",
  "VideoEncode",
  "SONIC_ModelLoader",
  "SONIC_TextToSpeech",
]);
const WIDGET = "sonic_info";
const ranThisRun = new Set();

// Text box size: tall enough for the whole text (measured in the page; estimated from the text
// length until the box has been laid out). With the widget's margins it takes at most
// MAX_WIDGET_HEIGHT, the room scripts/make_workflows.py leaves below a node; longer text scrolls.
const LINE_HEIGHT = 13;
const CHAR_WIDTH = 6.8; // ComfyUI's textarea: 10 px monospace by default
const MARGIN = 10; // a DOM widget's margin above and below its element (ComfyUI's default)
const MAX_WIDGET_HEIGHT = 90;
const MIN_TEXT_HEIGHT = 16;
const MAX_TEXT_HEIGHT = MAX_WIDGET_HEIGHT - 2 * MARGIN;

const clampHeight = (h) => Math.min(MAX_TEXT_HEIGHT, Math.max(MIN_TEXT_HEIGHT, Math.ceil(h)));

/** Estimated height in canvas units that shows `text` whole in a box `width` wide (capped). */
export function textHeight(text, width) {
  const perLine = Math.max(20, Math.floor((width - 30) / CHAR_WIDTH));
  const lines = String(text)
    .split("\n")
    .reduce((n, line) => n + Math.max(1, Math.ceil(line.length / perLine)), 0);
  return clampHeight(lines * LINE_HEIGHT + 6);
}

/** The height the box's text takes once laid out, or null while it is not on the page. */
function measuredHeight(box) {
  if (!box.isConnected || !box.clientWidth) return null;
  const shown = box.style.height;
  box.style.height = "0px"; // scrollHeight is then the text's own height, not the box's
  const height = box.scrollHeight;
  box.style.height = shown;
  return height > 0 ? clampHeight(height + 4) : null;
}

function infoWidget(node) {
  let widget = node.widgets?.find((w) => w.name === WIDGET);
  if (widget) return widget;
  const box = document.createElement("textarea");
  box.className = "comfy-multiline-input"; // ComfyUI's own textarea look
  box.readOnly = true;
  box.style.opacity = 0.75;
  let text = "";
  let measured = null;
  // the frontend gives the element the widget's height less its margins
  const height = () => (measured ?? textHeight(text, node.size?.[0] ?? 300)) + 2 * (widget?.margin ?? MARGIN);
  // Not part of the graph: neither saved in the workflow (serialize: false, on the widget and its
  // options) nor sent as a node input, which would defeat ComfyUI's cache on the next run.
  widget = node.addDOMWidget(WIDGET, "sonic_info", box, {
    serialize: false,
    getValue: () => text,
    setValue: (v) => {
      text = String(v ?? "");
      box.value = text;
      measured = null;
    },
    getMinHeight: height,
    getMaxHeight: height,
  });
  widget.serialize = false;
  widget.inputEl = box;
  widget.remeasure = () => {
    const h = measuredHeight(box);
    if (h == null || h === measured) return false;
    measured = h;
    return true;
  };
  return widget;
}

function showText(node, lines) {
  const widget = infoWidget(node);
  widget.value = (Array.isArray(lines) ? lines : [lines]).join("\n");
  fitNode(node);
  redraw(node);
}

/** Grow (never shrink) the node so the text box and any preview fit below its widgets. */
function fitNode(node) {
  const need = node.computeSize?.();
  if (need && node.size && need[1] > node.size[1]) node.setSize?.([node.size[0], need[1]]);
}

function redraw(node) {
  node.setDirtyCanvas?.(true, true);
  // The frontend places a new video/image preview, and lays out our text box, on its next frame:
  // after that, size the box to its text, grow the node and redraw, so nothing hangs below the
  // node until something else repaints the canvas.
  const later = globalThis.requestAnimationFrame ?? ((f) => f());
  later(() =>
    later(() => {
      node.widgets?.find((w) => w.name === WIDGET)?.remeasure?.();
      fitNode(node);
      app.graph?.setDirtyCanvas?.(true, true);
    }),
  );
}

function previewElements(node) {
  return (node.widgets || [])
    .filter((w) => w.name !== WIDGET)
    .map((w) => w.element)
    .filter((el) => el && el.style && (el.querySelector?.("video, img") || /VIDEO|IMG/.test(el.tagName || "")));
}

function setPreviewShown(node, shown) {
  for (const el of previewElements(node)) el.style.display = shown ? "" : "none";
  if (!shown) {
    node.imgs = undefined; // the canvas-drawn image preview
    if (app.nodeOutputs) delete app.nodeOutputs[node.id];
  }
}

function ourNodes() {
  const graph = app.graph;
  const nodes = graph?._nodes || graph?.nodes || [];
  return nodes.filter((n) => SHOWS_TEXT.has(n.comfyClass || n.type));
}

/** After a cancelled or failed run: mark every output of ours that this run did not produce. */
export function markStale(reason) {
  for (const node of ourNodes()) {
    if (ranThisRun.has(String(node.id))) continue;
    const hadResult = node.widgets?.some((w) => w.name === WIDGET) || node.imgs || previewElements(node).length;
    if (!hadResult) continue;
    setPreviewShown(node, false);
    showText(node, [`(run ${reason}: no new result from this node; the last one was cleared)`]);
  }
}

// ------------------------------------------------------------ template order
const BACKEND_ORDER = ["lite", "sonic"];
const TIER_ORDER = ["fast", "balanced", "hq"];

/** Sort key of a template name such as sonic_lite_fast: backend, then any other words, then tier. */
function templateKey(name) {
  const words = name.toLowerCase().split(/[_\-\s]+/);
  if (words[0] === "sonic" && words.length > 1) words.shift(); // the pack's own prefix
  const rank = (order) => {
    const i = words.findIndex((w) => order.includes(w));
    return i < 0 ? order.length : order.indexOf(words.splice(i, 1)[0]);
  };
  const backend = rank(BACKEND_ORDER);
  const tier = rank(TIER_ORDER);
  return [backend, words.join(" "), tier, name];
}

export function orderTemplates(names) {
  const keyed = names.map((name) => [templateKey(name), name]);
  keyed.sort(([a], [b]) => {
    for (let i = 0; i < a.length; i++) {
      if (a[i] < b[i]) return -1;
      if (a[i] > b[i]) return 1;
    }
    return 0;
  });
  return keyed.map(([, name]) => name);
}

/** The key ComfyUI files our templates under: this pack's folder in custom_nodes. */
function packFolder() {
  try {
    const after = new URL(import.meta.url).pathname.split("/extensions/")[1];
    return after ? decodeURIComponent(after.split("/")[0]) : null;
  } catch {
    return null;
  }
}

function orderOurTemplates(byPack) {
  if (!byPack || typeof byPack !== "object") return byPack;
  const ours = packFolder();
  for (const [pack, names] of Object.entries(byPack)) {
    const isOurs = pack === ours || (Array.isArray(names) && names.includes("sonic_lite_fast"));
    if (isOurs && Array.isArray(names)) byPack[pack] = orderTemplates(names);
  }
  return byPack;
}

if (typeof api.getWorkflowTemplates === "function") {
  const listTemplates = api.getWorkflowTemplates.bind(api);
  api.getWorkflowTemplates = async (...args) => orderOurTemplates(await listTemplates(...args));
}

// ------------------------------------------------------------ events
api.addEventListener("execution_start", () => ranThisRun.clear());
api.addEventListener("executed", (event) => {
  const id = event.detail?.display_node ?? event.detail?.node;
  if (id != null) ranThisRun.add(String(id));
});
// cached nodes did not run, but their last result is this run's result too
api.addEventListener("execution_cached", (event) => {
  for (const id of event.detail?.nodes || []) ranThisRun.add(String(id));
});
api.addEventListener("execution_interrupted", () => markStale("cancelled"));
api.addEventListener("execution_error", () => markStale("failed"));

app.registerExtension({
  name: "sonic.nodes.info",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!SHOWS_TEXT.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      setPreviewShown(this, true);
      if (message?.text) showText(this, message.text);
      else redraw(this);
    };
  },
});
