"""web/sonic.js run under Node against stand-ins for ComfyUI's frontend modules (app, api, widgets).

What it checks is what a user sees: the info text after a run, and that a cancelled or failed run
leaves no stale preview or text on our nodes that did not run in it.
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
    "scripts/api.js": "export const api = new EventTarget();\n",
    "scripts/widgets.js": """
export const ComfyWidgets = {
  STRING(node, name, spec, app) {
    const widget = { name, value: "", options: {}, inputEl: { style: {} } };
    (node.widgets ||= []).push(widget);
    return { widget };
  },
};
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
import { app, extensions } from "./scripts/app.js";
import { api } from "./scripts/api.js";
await import("./extensions/sonic/sonic.js");

function makeNode(id, type) {
  class NodeType { setDirtyCanvas() {} }
  for (const ext of extensions) await_(ext.beforeRegisterNodeDef(NodeType, { name: type }));
  const node = new NodeType();
  Object.assign(node, { id, type, comfyClass: type, widgets: [] });
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
