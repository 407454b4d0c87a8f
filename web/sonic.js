// Front-end extension for the Sonic node pack.
// Shows what a node reports as ui "text" after it runs (LipSyncCorrect's measured
// audio/video offset, SONIC_PreData's crop and duration notes, VideoEncode's file)
// in a read-only text box on the node. The box is never saved into the workflow.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const SHOWS_TEXT = new Set(["LipSyncCorrect", "SONIC_PreData", "VideoEncode"]);
const WIDGET = "sonic_info";

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
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "sonic.nodes.info",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!SHOWS_TEXT.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (message?.text) showText(this, message.text);
    };
  },
});
