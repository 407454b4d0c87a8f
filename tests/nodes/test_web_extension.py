"""web/sonic.js run under Node against stand-ins for ComfyUI's frontend modules (app, api) and nodes.

What it checks is what a user sees: the info text after a run, and that a cancelled or failed run
leaves no stale preview or text on our nodes that did not run in it; the template browser's order.
The same file was checked by eye in a real ComfyUI page (frontends 1.27 and 1.58; docs/comfyui/).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")

FAKES = {
    "scripts/api.js": """
export const api = new EventTarget();
// what ComfyUI's server answers: {pack folder: template names in glob order}
api.getWorkflowTemplates = async () => ({
  "ComfyUI-Sonic": ["sonic_sonic_fast", "sonic_lite_hq", "sonic_sonic_hq", "sonic_lite_fast",
                    "sonic_sonic_balanced", "sonic_lite_balanced"],
  "other-pack": ["b", "a"],
});
""",
    "scripts/app.js": """
export const extensions = [];
export const app = {
  graph: { _nodes: [], setDirtyCanvas() {} },
  nodeOutputs: {},
  registerExtension(ext) { extensions.push(ext); },
};
""",
}

HARNESS = """
globalThis.document = { createElement: (tagName) => ({ tagName, style: {}, value: "" }) };
import { app, extensions } from "./scripts/app.js";
import { api } from "./scripts/api.js";
await import("./extensions/sonic/sonic.js");

function makeNode(id, type) {
  class NodeType {
    setDirtyCanvas() {}
    // LiteGraph's node: a DOM widget's value goes through its options (as ComfyUI's frontend does)
    addDOMWidget(name, kind, element, options) {
      const widget = { name, type: kind, element, options, margin: 10,
        get value() { return options.getValue(); }, set value(v) { options.setValue(v); } };
      this.widgets.push(widget);
      return widget;
    }
    computeSize() { return [this.size[0], 100 + Math.max(0, ...this.widgets.map((w) => w.options?.getMinHeight?.() ?? 0))]; }
    setSize(size) { this.size = size; }
  }
  for (const ext of extensions) await_(ext.beforeRegisterNodeDef(NodeType, { name: type }));
  const node = new NodeType();
  Object.assign(node, { id, type, comfyClass: type, widgets: [], size: [300, 100] });
  const video = { tagName: "VIDEO", style: { display: "" } };
  node.widgets.push({ name: "video-preview", element: video });
  return node;
}
function await_(p) { return p; }
const send = (type, detail = {}) => api.dispatchEvent(new CustomEvent(type, { detail }));
const info = (n) => n.widgets.find((w) => w.name === "sonic_info")?.value ?? null;
const shown = (n) => n.widgets.find((w) => w.name === "video-preview").element.style.display !== "none";

const save = makeNode(7, "VideoEncode");
const lipsync = makeNode(6, "LipSyncCorrect");
const prepare = makeNode(4, "SONIC_PreData");
app.graph._nodes.push(save, lipsync, prepare);
const out = {};

// run 1 finishes
send("execution_start");
for (const n of [prepare, lipsync, save]) { n.onExecuted({ text: [`result ${n.id} run 1`] }); send("executed", { node: String(n.id) }); }
out.afterRun = [info(save), info(lipsync), shown(save)];

// run 2: Prepare runs again, then the user cancels before Lip Sync and Save MP4
send("execution_start");
prepare.onExecuted({ text: ["result 4 run 2"] }); send("executed", { node: "4" });
send("execution_interrupted");
out.afterCancel = [info(save), info(lipsync), info(prepare), shown(save)];

// run 3 fails; run 4 succeeds again and shows its preview
send("execution_start"); send("execution_error");
out.afterError = info(prepare);
send("execution_start"); save.onExecuted({ text: ["result 7 run 4"] }); send("executed", { node: "7" });
out.afterNewRun = [info(save), shown(save)];

// run 5 gives Prepare a new result; in run 6 Prepare is cached (that result is run 6's too), then
// the user cancels
send("execution_start"); prepare.onExecuted({ text: ["result 4 run 5"] }); send("executed", { node: "4" });
send("execution_start"); send("execution_cached", { nodes: ["4"] }); send("execution_interrupted");
out.cachedKept = info(prepare);

// the info box is never saved in the workflow, and grows the node to show a long text whole
const box = prepare.widgets.find((w) => w.name === "sonic_info");
out.serialize = [box.serialize, box.options.serialize];
const short = prepare.size[1];
prepare.onExecuted({ text: ["a crop note that is long enough to wrap over two lines or more in the box", "summary"] });
out.grew = prepare.size[1] > short;
out.templates = await api.getWorkflowTemplates();
console.log(JSON.stringify(out));
"""


@pytest.fixture
def frontend(tmp_path):
    for rel, text in FAKES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "extensions" / "sonic").mkdir(parents=True)
    shutil.copy(ROOT / "web" / "sonic.js", tmp_path / "extensions" / "sonic" / "sonic.js")
    (tmp_path / "harness.mjs").write_text(HARNESS)
    return tmp_path


@pytest.mark.skipif(NODE is None, reason="needs Node.js to run the frontend extension")
def test_a_cancelled_or_failed_run_leaves_no_stale_result_on_our_nodes(frontend):
    done = subprocess.run(
        [NODE, str(frontend / "harness.mjs")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["afterRun"] == ["result 7 run 1", "result 6 run 1", True]
    stale_save, stale_lipsync, prepare, save_shown = out["afterCancel"]
    assert "cancelled" in stale_save and "run 1" not in stale_save
    assert "cancelled" in stale_lipsync and "run 1" not in stale_lipsync
    assert prepare == "result 4 run 2", "a node that did run in the cancelled run keeps its new result"
    assert save_shown is False
    assert "failed" in out["afterError"]
    assert out["afterNewRun"] == ["result 7 run 4", True]
    assert out["cachedKept"] == "result 4 run 5", "a cached node's result is not stale"
    assert out["serialize"] == [False, False]
    assert out["grew"] is True


@pytest.mark.skipif(NODE is None, reason="needs Node.js to run the frontend extension")
def test_the_template_browser_lists_lite_before_sonic_and_fast_before_hq(frontend):
    done = subprocess.run(
        [NODE, str(frontend / "harness.mjs")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    templates = json.loads(done.stdout.strip().splitlines()[-1])["templates"]
    assert templates["ComfyUI-Sonic"] == [
        "sonic_lite_fast",
        "sonic_lite_balanced",
        "sonic_lite_hq",
        "sonic_sonic_fast",
        "sonic_sonic_balanced",
        "sonic_sonic_hq",
    ]
    assert templates["other-pack"] == ["b", "a"], "another pack's templates are left as they are"


def test_the_info_box_never_grows_past_the_room_the_templates_leave_for_it():
    import re
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import make_workflows

    cap = int(re.search(r"const MAX_WIDGET_HEIGHT = (\d+);", (ROOT / "web" / "sonic.js").read_text())[1])
    for title in ("Sonic Model", "Prepare", "Lip Sync"):  # nodes whose only addition is the info box
        assert make_workflows.PREVIEW_HEIGHT[title] >= cap, title
