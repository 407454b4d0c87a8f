// Front-end extension for the Sonic node pack.
// Shows LipSyncCorrect's measured audio/video offset (and any SONIC_PreData warnings)
// on the node itself after it runs: the backend reports them as ui "text" entries.
import { app } from "../../scripts/app.js";

const SHOWS_TEXT = new Set(["LipSyncCorrect", "SONIC_PreData", "VideoEncode"]);

function showText(node, lines) {
  const text = (Array.isArray(lines) ? lines : [lines]).join("\n");
  let widget = node.widgets?.find((w) => w.name === "sonic_info");
  if (!widget) {
    widget = node.addWidget("text", "sonic_info", "", () => {}, { serialize: false });
    widget.disabled = true;
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
