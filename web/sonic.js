// Front-end extension for the Sonic node pack.
// - Shows what a node reports as ui "text" after it runs (LipSyncCorrect's measured
//   audio/video offset, SONIC_PreData's crop and duration notes, VideoEncode's file,
//   SONIC_ModelLoader's model check) in a read-only text box on the node. The box is never
//   saved into the workflow.
// - When a run is cancelled or fails, our nodes that did not run in it hide their previews and
//   say so in that box: a result from an earlier run is never mistaken for a new one.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const SHOWS_TEXT = new Set([
  "LipSyncCorrect",
  "SONIC_PreData",
  "VideoEncode",
  "SONIC_ModelLoader",
  "SONIC_TextToSpeech",
]);
const WIDGET = "sonic_info";
const ranThisRun = new Set();

function showText(node, lines) {
  const text = (Array.isArray(lines) ? lines : [lines]).join("\n");
  let widget = node.widgets?.find((w) => w.name === WIDGET);
  if (!widget) {
    // A multiline STRING widget shows the whole text (a one-line widget truncates it).
    widget = ComfyWidgets.STRING(node, WIDGET, ["STRING", { multiline: true }], app).widget;
    // Not part of the graph: neither saved in the workflow (widget.serialize) nor sent as a
    // node input (options.serialize), which would defeat ComfyUI's cache on the next run.
    widget.serialize = false;
    widget.options = { ...(widget.options || {}), serialize: false };
    if (widget.inputEl) {
      widget.inputEl.readOnly = true;
      widget.inputEl.style.opacity = 0.75;
    }
  }
  widget.value = text;
  redraw(node);
}

function redraw(node) {
  node.setDirtyCanvas?.(true, true);
  // the frontend places a new video/image preview on the next frame: redraw then as well,
  // so it does not hang below the node until something else repaints the canvas
  globalThis.requestAnimationFrame?.(() => app.graph?.setDirtyCanvas?.(true, true));
}

function previewElements(node) {
  return (node.widgets || [])
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

api.addEventListener("execution_start", () => ranThisRun.clear());
api.addEventListener("executed", (event) => {
  const id = event.detail?.display_node ?? event.detail?.node;
  if (id != null) ranThisRun.add(String(id));
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
