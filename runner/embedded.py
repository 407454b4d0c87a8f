"""The embedded executor: runs an API-format graph in this process, no ComfyUI server.

It exists so a user with no GPU host (or a script, or CI) can run a saved
workflow with one command. It mirrors what ComfyUI's executor does for the
graphs we ship: only the nodes that feed an output node run, in dependency
order, each output computed once; links are `[source_id, slot]`. Core
LoadImage / LoadAudio are replaced by twins that read a file path directly.

This module is imported by the runner only when it has no host, and it is the
only runner module that loads the node pack. It never imports torch itself: while
it runs, IMAGE and AUDIO values are numpy arrays (comfy_bridge.set_array_values),
so torch is loaded only by a backend that computes with it (sonic), not by a lite
render.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .workflow import WorkflowError, is_link

ProgressSink = Callable[[dict], None]
#: Asked between nodes and at every progress step; True stops the render (``RenderCancelled``).
CancelCheck = Callable[[], bool]


class RenderCancelled(RuntimeError):
    """The caller asked the render to stop (``cancel()`` answered True); nothing was saved by then."""


def _pack() -> ModuleType:
    """The node pack package, whether we were started as comfyui_sonic.runner or as `python -m runner`."""
    parent = (__package__ or "").rpartition(".")[0]
    if parent:
        return importlib.import_module(parent)
    if "comfyui_sonic" in sys.modules:
        return sys.modules["comfyui_sonic"]
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location(
        "comfyui_sonic", root / "__init__.py", submodule_search_locations=[str(root)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_sonic"] = module
    spec.loader.exec_module(module)
    return module


class LoadImage:
    """Twin of ComfyUI's core LoadImage: `image` is a file path here, not a name in input/."""

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("STRING", {"tooltip": "Path of the portrait image."})}}

    def load(self, image: str):
        engine = importlib.import_module(_pack().__name__ + ".nodes.engine.image_input")
        frames_io = importlib.import_module(_pack().__name__ + ".nodes.frames_io")
        return frames_io.image_to_comfy(engine.load_image(_existing(image, "image")))


class LoadAudio:
    """Twin of ComfyUI's core LoadAudio: `audio` is a file path; returns the AUDIO dict."""

    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ("STRING", {"tooltip": "Path of the speech clip."})}}

    def load(self, audio: str):
        engine = importlib.import_module(_pack().__name__ + ".nodes.engine.audio_input")
        frames_io = importlib.import_module(_pack().__name__ + ".nodes.frames_io")
        return (frames_io.audio_to_comfy(engine.load_audio(_existing(audio, "audio"))),)


CORE_TWINS: dict[str, type] = {"LoadImage": LoadImage, "LoadAudio": LoadAudio}


def _existing(path: str, input_name: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"{input_name}: file not found: {path}; pass an existing file with --{input_name}"
        )
    return p


def node_classes() -> dict[str, type]:
    return {**_pack().NODE_CLASS_MAPPINGS, **CORE_TWINS}


def _title(prompt: dict, node_id: str) -> str:
    node = prompt[node_id]
    return node.get("_meta", {}).get("title") or f"{node.get('class_type')} #{node_id}"


def execution_order(prompt: dict, classes: dict[str, type]) -> list[str]:
    """Node ids needed by the output nodes, each after everything it reads from."""
    for node_id, node in prompt.items():
        if node.get("class_type") not in classes:
            raise WorkflowError(
                f"node {node_id} ({node.get('class_type')}): unknown node type; the embedded executor runs the Sonic nodes, "
                "LoadImage and LoadAudio - run other graphs on a ComfyUI host with --host"
            )
    outputs = [i for i, n in prompt.items() if getattr(classes[n["class_type"]], "OUTPUT_NODE", False)]
    if not outputs:
        raise WorkflowError("workflow: no output node (e.g. VideoEncode); nothing would be saved")
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(node_id: str) -> None:
        if state.get(node_id) == "done":
            return
        if state.get(node_id) == "visiting":
            raise WorkflowError(
                f"node {node_id} ({_title(prompt, node_id)}): the graph has a cycle through it"
            )
        state[node_id] = "visiting"
        for name, value in prompt[node_id].get("inputs", {}).items():
            if is_link(value):
                if value[0] not in prompt:
                    raise WorkflowError(
                        f"{_title(prompt, node_id)}.{name}: links to node {value[0]}, which is not in the workflow"
                    )
                visit(value[0])
        state[node_id] = "done"
        order.append(node_id)

    for node_id in sorted(outputs, key=lambda i: (len(i), i)):
        visit(node_id)
    return order


WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def validate_inputs(prompt: dict, order: list[str], classes: dict[str, type]) -> dict[str, dict[str, Any]]:
    """Every input of the nodes that will run, checked against their INPUT_TYPES before any node runs.

    What ComfyUI's validation checks - required inputs present, a link's output type matches the
    input, a value has the input's type, lies within min/max and is one of a combo's choices - plus
    what it lets through: NaN and infinity. Returns the values converted as ComfyUI converts them
    (a FLOAT given as 25 becomes 25.0). Raises one WorkflowError naming the first bad input (node
    title, input, value, what is allowed) and which others are wrong, so a bad --set fails at once
    instead of after minutes of rendering.
    """
    pack = _pack()
    checks = importlib.import_module(pack.__name__ + ".nodes.input_check")
    input_error = importlib.import_module(pack.__name__ + ".nodes.engine.errors").SonicInputError
    problems: list[tuple[str, str]] = []  # (where, what is wrong and what to do)
    values: dict[str, dict[str, Any]] = {}
    for node_id in order:
        cls = classes[prompt[node_id]["class_type"]]
        spec = cls.INPUT_TYPES()
        declared = checks.declared_inputs(cls)
        given = prompt[node_id].get("inputs", {})
        title = _title(prompt, node_id)
        values[node_id] = {}
        missing = [n for n in spec.get("required", {}) if n not in given]
        if missing:
            problems.append(
                (
                    title,
                    f"required input(s) {', '.join(missing)} missing; set them in the workflow or with --set",
                )
            )
        for name, value in given.items():
            if name not in declared:
                continue  # ComfyUI also ignores inputs a node does not declare (old templates)
            input_type, options = declared[name]
            where = f"{title}.{name} (node {node_id})"
            if is_link(value):
                problem = _link_problem(prompt, classes, value, input_type)
                if problem:
                    problems.append((where, problem))
                continue
            if isinstance(input_type, str) and input_type not in WIDGET_TYPES:
                problems.append(
                    (
                        where,
                        f"expects a link from a node's {input_type} output, got the value {value!r}; "
                        "connect it in the workflow",
                    )
                )
                continue
            if input_type == "COMBO":  # the newer spelling of a combo: ("COMBO", {"options": [...]})
                input_type = list(options.get("options", []))
            try:
                values[node_id][name] = checks.check_value(name, value, input_type, options)
            except input_error as exc:
                problems.append((where, f"{exc.problem}; {exc.fix}"))
    if problems:
        (where, what), rest = problems[0], [w for w, _ in problems[1:]]
        also = f" (also wrong: {', '.join(rest)})" if rest else ""
        raise WorkflowError(f"{where}: {what}{also}")
    return values


def _link_problem(prompt: dict, classes: dict[str, type], link: list, input_type: Any) -> str | None:
    source_id, slot = link
    source = classes[prompt[source_id]["class_type"]]
    outputs = tuple(getattr(source, "RETURN_TYPES", ()))
    source_title = _title(prompt, source_id)
    if not 0 <= slot < len(outputs):
        return f"links to output {slot} of {source_title}, which has {len(outputs)} output(s); fix the link"
    produced = outputs[slot]
    if not isinstance(input_type, str) or not isinstance(produced, str) or "*" in (input_type, produced):
        return None
    if set(produced.split(",")) & set(input_type.split(",")):
        return None
    return (
        f"expects {input_type} but is linked to output {slot} of {source_title}, which gives {produced}; "
        f"connect a {input_type} output"
    )


def _node_inputs(node_id: str, prompt: dict, values: dict[str, Any], results: dict[str, tuple]) -> dict:
    """The node's checked values plus the outputs its links point to."""
    kwargs = dict(values)
    for name, value in prompt[node_id].get("inputs", {}).items():
        if is_link(value) and name not in kwargs:
            kwargs[name] = results[value[0]][value[1]]
    return kwargs


def run_embedded(
    prompt: dict,
    out_dir: Path,
    progress_sink: ProgressSink | None = None,
    models_dir: Path | None = None,
    cancel: CancelCheck | None = None,
) -> list[Path]:
    """Run the graph; return the files its output nodes saved (under out_dir).

    ``progress_sink`` gets ``{"event": "node"}`` as each node starts, ``{"event": "progress"}`` at
    its steps and ``{"event": "executed", "output": ui}`` after a node that reports a ui (its text,
    e.g. SONIC_PreData's face crop and warnings, and any saved file).

    ``cancel`` is how a server stops a render it no longer wants (``DELETE /v1/jobs/{id}``):
    it is asked before each node and at each progress step of the engine's loops (the same
    places ComfyUI's interrupt is honoured), and a True answer raises ``RenderCancelled``.
    The video encoder removes its partial file when it is interrupted, so nothing half
    written is left among the outputs.
    """
    pack = _pack()
    bridge = importlib.import_module(pack.__name__ + ".nodes.comfy_bridge")
    classes = node_classes()
    order = execution_order(prompt, classes)
    out_dir = Path(out_dir)
    bridge.set_output_dir(out_dir)
    bridge.set_array_values(True)  # only our nodes and the twins read them: no torch for a lite render
    if models_dir is not None:
        bridge.set_model_dirs([Path(models_dir)])  # before validation: the loader's choices come from it
    results: dict[str, tuple] = {}
    files: list[Path] = []
    try:
        checked = validate_inputs(prompt, order, classes)
        out_dir.mkdir(parents=True, exist_ok=True)
        for node_id in order:
            cls = classes[prompt[node_id]["class_type"]]
            title = _title(prompt, node_id)
            _check(cancel)
            bridge.set_progress_factory(_progress_factory(progress_sink, node_id, title, cancel))
            _emit(progress_sink, {"event": "node", "node": node_id, "title": title})
            kwargs = _node_inputs(node_id, prompt, checked[node_id], results)
            raw = getattr(cls(), cls.FUNCTION)(**kwargs)
            ui = raw.get("ui", {}) if isinstance(raw, dict) else {}
            results[node_id] = tuple(raw.get("result", ())) if isinstance(raw, dict) else tuple(raw)
            files += _ui_files(ui, out_dir)
            if ui:  # ComfyUI's `executed` message: what the node shows (the face crop, the offset, the file)
                _emit(progress_sink, {"event": "executed", "node": node_id, "title": title, "output": ui})
    finally:  # leave no process-wide setting behind for the next run in this process
        bridge.set_progress_factory(None)
        bridge.set_output_dir(None)
        bridge.set_array_values(False)
        bridge.set_model_dirs([])
    return files


def _ui_files(ui: dict, out_dir: Path) -> list[Path]:
    """Files reported the ComfyUI way ({"filename","subfolder","type"} under any ui key)."""
    found = []
    for items in ui.values():
        for item in items if isinstance(items, (list, tuple)) else []:
            if isinstance(item, dict) and "filename" in item:
                found.append(out_dir / item.get("subfolder", "") / item["filename"])
    return found


def _emit(sink: ProgressSink | None, event: dict) -> None:
    if sink is not None:
        try:
            sink(event)
        except Exception:  # a display problem must never stop the render
            pass


def _check(cancel: CancelCheck | None) -> None:
    if cancel is not None and cancel():
        raise RenderCancelled("render cancelled")


def _progress_factory(sink: ProgressSink | None, node_id: str, title: str, cancel: CancelCheck | None = None):
    def make(total: int, label: str = ""):
        return _SinkProgress(sink, node_id, label or title, total, cancel)

    return make


class _SinkProgress:
    def __init__(
        self,
        sink: ProgressSink | None,
        node_id: str,
        title: str,
        total: int,
        cancel: CancelCheck | None = None,
    ) -> None:
        self.sink, self.node_id, self.title, self.total, self.done = sink, node_id, title, int(total), 0
        self.cancel = cancel

    def update(self, n: int = 1) -> None:
        _check(self.cancel)
        self.done += n
        _emit(
            self.sink,
            {
                "event": "progress",
                "node": self.node_id,
                "title": self.title,
                "value": self.done,
                "max": self.total,
            },
        )

    def check_cancel(self) -> None:
        _check(self.cancel)
